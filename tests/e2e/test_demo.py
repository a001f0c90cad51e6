"""`airlock demo` against a real server process, on SQLite and on PostgreSQL: the whole story of
docs (vault, team, request, the attacker's refusals, two signed votes, access) runs as a user runs
it, exits 0, says what happened, and leaves the state it says through the SDK."""

from __future__ import annotations

import json
import re
from typing import TYPE_CHECKING

import pytest

from airlock.v1 import session_pb2, team_pb2, vault_pb2
from airlock_client import AirlockClient

if TYPE_CHECKING:  # the `server` fixture's type; a conftest is not importable at run time
    from e2e.conftest import ServerProcess

pytestmark = pytest.mark.timeout(300)


def test_demo_tells_the_whole_story(server: ServerProcess) -> None:
    token_file = server.write_token("admin", server.admin_token)
    done = server.cli(token_file, "demo")
    assert done.returncode == 0, done.stdout + done.stderr
    out = done.stdout
    steps = [int(n) for n in re.findall(r"^\[step (\d+)\] ", out, flags=re.MULTILINE)]
    assert steps == list(range(1, len(steps) + 1))
    assert len(steps) >= 10
    assert "team state: ACTIVE" in out
    assert re.search(r"session: ses-\S+ PENDING", out)
    assert re.search(r"grant: rag-\S+ CREATING", out)
    assert "attacker CancelSession: REFUSED PERMISSION_DENIED NOT_SESSION_REQUESTER" in out
    assert "attacker Vote(REJECT): REFUSED PERMISSION_DENIED" in out
    for rpc in ("DisassociateApprovalTeam", "RevokeRestoreAccess"):
        assert f"attacker {rpc}: REFUSED FAILED_PRECONDITION VAULT_UNDER_RECOVERY" in out
    assert re.search(r"APPROVE -> APPROVED \(2 of 2\)", out)
    assert "CheckAccess(vault, R): yes" in out
    assert re.search(r"grant: rag-\S+ AVAILABLE", out)
    assert "The story holds" in out


@pytest.mark.asyncio
async def test_demo_json_summary_matches_the_server(server: ServerProcess) -> None:
    token_file = server.write_token("admin", server.admin_token)
    done = server.cli(token_file, "--json", "demo")
    assert done.returncode == 0, done.stderr
    summary = json.loads(done.stdout)  # stdout holds only the summary; the story is on stderr
    assert "[step 1]" in done.stderr
    assert summary["ok"] is True
    assert summary["sessionState"] == "APPROVED"
    assert summary["grantState"] == "AVAILABLE"
    assert summary["accessAllowed"] is True
    assert {r["attempt"]: r["code"] for r in summary["refusals"]} == {
        "DisassociateApprovalTeam": "FAILED_PRECONDITION",
        "RevokeRestoreAccess": "FAILED_PRECONDITION",
        "CancelSession": "PERMISSION_DENIED",
        "Vote(REJECT)": "PERMISSION_DENIED",
    }
    for refusal in summary["refusals"][:2]:
        assert refusal["reason"] == "VAULT_UNDER_RECOVERY"

    async with AirlockClient.connect(server.target, server.admin_token) as admin:
        team = await admin.get_team(summary["teamId"])
        assert team.state == team_pb2.ApprovalTeam.STATE_ACTIVE
        assert team.min_approvals == 2
        assert sorted(a.approver_id for a in team.approvers) == sorted(summary["approverIds"])
        vault = await admin.get_vault(summary["vaultArn"])
        assert vault.team_id == summary["teamId"]  # the attacker did not remove it
        assert not vault.HasField("pending_association")  # nor open a change of it
        session = await admin.get_session(summary["sessionId"])
        assert session.state == session_pb2.Session.STATE_APPROVED
        assert session.kind == session_pb2.Session.KIND_RESTORE_ACCESS
        assert session.requester.subject == summary["recoveryAccount"]
        assert session.approval_count == 2
        assert [v.decision for v in session.votes] == [session_pb2.VOTE_DECISION_APPROVE] * 2
        # The attacker's refused calls opened no session.
        by_owner = admin.list_sessions(requester_account_id=summary["ownerAccount"])
        assert [s.session_id async for s in by_owner] == []
        access = await admin.check_access(summary["vaultArn"], summary["recoveryAccount"])
        assert access.allowed
        assert access.grant.grant_id == summary["grantId"]
        assert access.grant.state == vault_pb2.RestoreAccessGrant.STATE_AVAILABLE
        owner_access = await admin.check_access(summary["vaultArn"], summary["ownerAccount"])
        assert not owner_access.allowed


def test_demo_with_a_non_admin_credential_fails_clearly(server: ServerProcess) -> None:
    admin_file = server.write_token("admin", server.admin_token)
    issued = server.cli_json(admin_file, "credentials", "issue", "--kind", "auditor")
    auditor_file = server.write_token("auditor", issued["token"])
    done = server.cli(auditor_file, "demo")
    assert done.returncode == 3, done.stdout + done.stderr
    assert "demo failed: step 1" in done.stderr
    assert "not an admin credential" in done.stderr
