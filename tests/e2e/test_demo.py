"""`airlock demo` against a real server process, on SQLite and on PostgreSQL: the whole story of
the design (vault, team, request, the attacker's refusals, two signed votes, access; the recovery
in the event log, VerifyLog, a signed checkpoint; team health and a baseline; the grant revoked
through the team) runs as a user runs it, exits 0, says what happened, and leaves the state it
says through the SDK. Against a server without a log key it skips the checkpoint, saying so."""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest

from airlock.v1 import common_pb2, session_pb2, team_pb2, vault_pb2
from airlock_client import AirlockClient
from airlock_server.log_key import load_log_key

if TYPE_CHECKING:  # the `server` fixture's type; a conftest is not importable at run time
    from e2e.conftest import ServerProcess

pytestmark = pytest.mark.timeout(300)

STEPS = 18


def _steps(out: str) -> dict[str, str]:
    """Each step's title -> the lines it printed."""
    parts = re.split(r"^\[step \d+\] (.*)$", out, flags=re.MULTILINE)
    return dict(zip(parts[1::2], parts[2::2], strict=True))


def _step(out: str, title_start: str) -> str:
    found = [text for title, text in _steps(out).items() if title.startswith(title_start)]
    assert len(found) == 1, (title_start, list(_steps(out)))
    return found[0]


def test_demo_tells_the_whole_story(server: ServerProcess) -> None:
    token_file = server.write_token("admin", server.admin_token)
    done = server.cli(token_file, "demo")
    assert done.returncode == 0, done.stdout + done.stderr
    out = done.stdout
    steps = [int(n) for n in re.findall(r"^\[step (\d+)\] ", out, flags=re.MULTILINE)]
    assert steps == list(range(1, STEPS + 1))
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

    owner = re.search(r"owner account A: (\d{12})", out)
    assert owner is not None
    log = _step(out, "an auditor reads R's recovery from the event log")
    events = re.findall(r"^    #(\d+): (\S+) by (\S+)", log, flags=re.MULTILINE)
    assert [int(seq) for seq, _, _ in events] == sorted(int(seq) for seq, _, _ in events)
    types = [t for _, t, _ in events]
    assert types.count("vote.cast") == 2
    for once in ("session.created", "grant.requested", "session.approved", "grant.available"):
        assert types.count(once) == 1, (once, types)
    assert f"call.denied by account:{owner.group(1)} (NOT_SESSION_REQUESTER)" in log
    assert types.index("session.created") < types.index("vote.cast")
    assert types.index("session.approved") > max(i for i, t in enumerate(types) if t == "vote.cast")
    assert re.search(
        r"log: INTACT: \d+ events checked, head at seq \d+",
        _step(out, "the auditor verifies the whole log"),
    )
    checkpoint = _step(out, "the auditor keeps a signed checkpoint")
    assert re.search(r"checkpoint: seq \d+, hash [0-9a-f]{16}\.\.\., signed by log key", checkpoint)
    assert "log against the checkpoint: INTACT" in checkpoint
    health = _step(out, "the admin checks the team's health")
    assert "health: HEALTHY: 3 of 3 approvers active, M = 2, slack 1, quorum reachable" in health
    assert len(re.findall(r"^    demo-\S+: active, last activity", health, re.MULTILINE)) == 3
    baseline = _step(out, "the admin starts a baseline")
    assert re.search(r"baseline: ses-\S+ PENDING, 3 answers needed", baseline)
    assert "answered -> APPROVED (3 of 3)" in baseline
    revoke = _step(out, "the admin revokes R's grant")
    assert re.search(r"revocation: ses-\S+ PENDING; grant still AVAILABLE until approved", revoke)
    assert "APPROVE -> APPROVED (2 of 2)" in revoke
    ended = _step(out, "the grant is REVOKED")
    assert re.search(r"grant: rag-\S+ REVOKED", ended)
    assert "CheckAccess(vault, R): no" in ended
    assert re.search(r"The story holds: 18 steps, .* AVAILABLE then REVOKED, log intact", out)


@pytest.mark.asyncio
async def test_demo_json_summary_matches_the_server(server: ServerProcess) -> None:
    token_file = server.write_token("admin", server.admin_token)
    done = server.cli(token_file, "--json", "demo")
    assert done.returncode == 0, done.stderr
    summary = json.loads(done.stdout)  # stdout holds only the summary; the story is on stderr
    assert "[step 1]" in done.stderr
    assert summary["ok"] is True
    assert summary["steps"] == STEPS
    assert summary["sessionState"] == "APPROVED"
    assert summary["accessAllowedAfterApproval"] is True
    # How it ended: the admin revoked the grant through the team.
    assert summary["grantState"] == "REVOKED"
    assert summary["accessAllowed"] is False
    assert summary["revocationState"] == "APPROVED"
    assert summary["baselineState"] == "APPROVED"
    assert summary["teamHealth"] == "HEALTHY"
    assert summary["activeApprovers"] == 3
    assert summary["logIntact"] is True
    assert summary["recoveryEvents"].count("vote.cast") == 2
    assert "call.denied" in summary["recoveryEvents"]
    assert summary["checkpointSkipped"] is False
    assert summary["checkpointSeq"] >= summary["logCheckedEvents"] > 0
    # The checkpoint is signed by this server's log key.
    log_key = load_log_key(server.directory / "log-key.pem")
    assert log_key is not None
    assert summary["checkpointKeyId"] == log_key.key_id
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
        # R's access ended through an approved revocation session the admin opened.
        access = await admin.check_access(summary["vaultArn"], summary["recoveryAccount"])
        assert not access.allowed
        grants = [g async for g in admin.list_restore_access(vault_arn=summary["vaultArn"])]
        assert [(g.grant_id, g.state) for g in grants] == [
            (summary["grantId"], vault_pb2.RestoreAccessGrant.STATE_REVOKED)
        ]
        revocation = await admin.get_session(summary["revocationSessionId"])
        assert revocation.kind == session_pb2.Session.KIND_REVOKE_RESTORE_ACCESS
        assert revocation.state == session_pb2.Session.STATE_APPROVED
        assert revocation.requester.kind == common_pb2.PRINCIPAL_KIND_ADMIN
        assert revocation.approval_count == 2
        owner_access = await admin.check_access(summary["vaultArn"], summary["ownerAccount"])
        assert not owner_access.allowed
        # The baseline: every approver answered.
        baseline = await admin.get_session(summary["baselineSessionId"])
        assert baseline.kind == session_pb2.Session.KIND_BASELINE
        assert baseline.state == session_pb2.Session.STATE_APPROVED
        assert sorted(v.approver_id for v in baseline.votes) == sorted(summary["approverIds"])
        health = await admin.get_team_health(summary["teamId"])
        assert health.status == team_pb2.TeamHealth.STATUS_HEALTHY
        assert health.quorum_reachable
        assert (health.active_approvers, health.min_approvals, health.slack) == (3, 2, 1)
        # The log holds the whole life of the grant, and still verifies.
        grant_events = [
            e.type async for e in admin.list_events(subject=f"grant:{summary['grantId']}")
        ]
        assert [t for t in grant_events if t != "call.denied"] == [
            "grant.requested",
            "grant.available",
            "grant.revoke_requested",
            "grant.revoked",
        ]
        # The attacker's refused calls against it are on its record too, before approval.
        assert "call.denied" in grant_events[: grant_events.index("grant.available")]
        assert "call.denied" not in grant_events[grant_events.index("grant.available") :]
        assert (await admin.verify_log()).ok


def test_demo_with_a_non_admin_credential_fails_clearly(server: ServerProcess) -> None:
    admin_file = server.write_token("admin", server.admin_token)
    issued = server.cli_json(admin_file, "credentials", "issue", "--kind", "auditor")
    auditor_file = server.write_token("auditor", issued["token"])
    done = server.cli(auditor_file, "demo")
    assert done.returncode == 3, done.stdout + done.stderr
    assert "demo failed: step 1" in done.stderr
    assert "not an admin credential" in done.stderr


@pytest.fixture
def keyless_server(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[ServerProcess]:
    """A server started without its log key file (SQLite: the skip is the client's)."""
    helpers = _e2e_helpers(request)
    env = {"AIRLOCK_LOG_KEY_FILE": str(tmp_path / "no-such-log-key.pem")}
    with helpers.served_database(request.config, "sqlite", tmp_path / "server", env=env) as running:
        yield running


def _e2e_helpers(request: pytest.FixtureRequest) -> Any:
    """tests/e2e/conftest.py as pytest loaded it (a conftest is not importable by name)."""
    path = Path(__file__).with_name("conftest.py")
    for plugin in request.config.pluginmanager.get_plugins():
        if getattr(plugin, "__file__", None) == str(path):
            return plugin
    raise AssertionError("tests/e2e/conftest.py was not loaded")


def test_demo_without_a_log_key_skips_the_checkpoint_and_goes_on(
    keyless_server: ServerProcess,
) -> None:
    token_file = keyless_server.write_token("admin", keyless_server.admin_token)
    done = keyless_server.cli(token_file, "--json", "demo")
    assert done.returncode == 0, done.stderr
    checkpoint = _step(done.stderr, "the auditor keeps a signed checkpoint")
    assert "checkpoint: SKIPPED: this server has no log key" in checkpoint
    assert "LOG_KEY_MISSING" in checkpoint
    summary = json.loads(done.stdout)
    assert summary["checkpointSkipped"] is True
    assert summary["checkpointSeq"] == 0
    assert summary["logIntact"] is True
    assert summary["steps"] == STEPS
    assert summary["grantState"] == "REVOKED"
