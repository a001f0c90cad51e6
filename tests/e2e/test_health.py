"""Team health end to end, through the `airlock` CLI against a real server: a baseline asked of
two approvers, one answers (a signed APPROVE), one does not; `airlock health --json` names who did
not answer, the teams at risk and the inactive approvers; refusals change nothing."""

from __future__ import annotations

import asyncio
import secrets
from pathlib import Path
from typing import TYPE_CHECKING, Any

from airlock_client import AirlockClient

if TYPE_CHECKING:  # the `server` fixture's type; a conftest is not importable at run time
    from e2e.conftest import ServerProcess

EXIT_INVALID_ARGUMENT = 64 + 3
EXIT_PERMISSION_DENIED = 64 + 7


def unique(prefix: str) -> str:
    return f"{prefix}-{secrets.token_hex(4)}"


def cli_ok(server: ServerProcess, token_file: Path | None, *args: str) -> Any:
    return server.cli_json(token_file, *args)


async def start_sessions(server: ServerProcess, token: str, team_id: str, n: int) -> list[str]:
    async with AirlockClient.connect(server.target, token) as client:
        return [
            (await client.start_session(team_id, "db:DropTable", f"db/t{i}")).session_id
            for i in range(n)
        ]


def our_team(report: Any, team_id: str) -> Any:
    return next(t for t in report["teams"] if t["teamId"] == team_id)


def test_health_and_baseline_through_the_cli(server: ServerProcess, tmp_path: Path) -> None:
    admin = server.write_token("admin", server.admin_token)
    auditor = tmp_path / "auditor.token"
    cli_ok(server, admin, "credentials", "issue", "--kind", "auditor", "--token-out", str(auditor))

    approvers = [unique(name) for name in ("hal", "ida", "jon")]
    tokens: dict[str, Path] = {}
    keys: dict[str, Path] = {}
    for approver_id in approvers:
        cli_ok(server, admin, "approvers", "create", approver_id, "--name", approver_id)
        tokens[approver_id] = tmp_path / f"{approver_id}.token"
        cli_ok(
            server,
            admin,
            "credentials",
            "issue",
            "--kind",
            "approver",
            "--subject",
            approver_id,
            "--token-out",
            str(tokens[approver_id]),
        )
        keys[approver_id] = tmp_path / f"{approver_id}.key"
        done = server.cli(None, "approver", "keygen", "--out", str(keys[approver_id]))
        assert done.returncode == 0, done.stderr
    name = unique("healthy")
    team = cli_ok(
        server,
        admin,
        "teams",
        "create",
        name,
        *(arg for a in approvers for arg in ("--approver", a)),
        "--min-approvals",
        "2",
    )
    team_id = team["teamId"]
    for approver_id in approvers:
        invitation = next(
            i
            for i in cli_ok(server, tokens[approver_id], "approver", "invitations")["invitations"]
            if i["teamId"] == team_id
        )
        cli_ok(
            server,
            tokens[approver_id],
            "approver",
            "accept",
            invitation["invitationId"],
            "--key",
            str(keys[approver_id]),
        )

    # Every approver answered its invitation just now: 3 active, M = 2, slack 1.
    health = cli_ok(server, auditor, "teams", "health", team_id)
    assert health["status"] == "STATUS_HEALTHY"
    assert (health["activeApprovers"], health["minApprovals"], health["slack"]) == (3, 2, 1)
    assert health["activityWindow"] == "7776000s"
    assert {a["lastActivityKind"] for a in health["approvers"]} == {
        "ACTIVITY_KIND_INVITATION_RESPONSE"
    }

    # Only the admin starts a baseline; a refused one creates nothing.
    refused = server.cli(auditor, "teams", "baseline", team_id)
    assert refused.returncode == EXIT_PERMISSION_DENIED, refused.stderr
    assert cli_ok(server, admin, "sessions", "list", "--team", team_id)["sessions"] == []

    hal, ida, jon = approvers
    session = cli_ok(
        server,
        admin,
        "teams",
        "baseline",
        team_id,
        "--approver",
        hal,
        "--approver",
        ida,
        "--comment",
        "quarterly check",
    )
    assert session["kind"] == "KIND_BASELINE"
    assert session["approverIds"] == [hal, ida]
    assert session["minApprovals"] == 2
    sid = session["sessionId"]

    # A baseline is answered with APPROVE; a rejection is refused and changes nothing.
    rejected = server.cli(
        tokens[ida], "approver", "vote", sid, "--reject", "--key", str(keys[ida]), "--yes"
    )
    assert rejected.returncode == EXIT_INVALID_ARGUMENT, rejected.stderr
    answered = cli_ok(
        server, tokens[hal], "approver", "vote", sid, "--approve", "--key", str(keys[hal]), "--yes"
    )
    assert answered["state"] == "STATE_PENDING"
    assert [v["approverId"] for v in answered["votes"]] == [hal]

    shown = cli_ok(server, admin, "teams", "get", team_id)
    by_id = {a["approverId"]: a for a in shown["approvers"]}
    assert by_id[hal]["lastActivityKind"] == "ACTIVITY_KIND_BASELINE"
    assert by_id[ida]["lastActivityKind"] == "ACTIVITY_KIND_INVITATION_RESPONSE"
    assert by_id[hal]["lastActivityTime"]

    # A service starts two sessions on the team; one is cancelled.
    service = unique("svc")
    service_token = tmp_path / "service.token"
    cli_ok(
        server,
        admin,
        "credentials",
        "issue",
        "--kind",
        "service",
        "--subject",
        service,
        "--token-out",
        str(service_token),
    )
    cli_ok(server, admin, "teams", "share", team_id, "--service", service)
    started = asyncio.run(start_sessions(server, service_token.read_text().strip(), team_id, 2))
    cli_ok(server, admin, "sessions", "cancel", started[0])

    # jon's identity is disabled: 2 active of 3 with M = 2, the team is at risk.
    cli_ok(server, admin, "approvers", "disable", jon)

    report = cli_ok(server, auditor, "health", "--since", "30d", "--window", "90d")
    assert report["activityWindowSeconds"] == 90 * 86400
    assert report["sinceSeconds"] == 30 * 86400
    mine = our_team(report, team_id)
    assert mine["name"] == name
    assert mine["state"] == "ACTIVE"
    assert mine["status"] == "AT_RISK"
    assert (mine["activeApprovers"], mine["minApprovals"], mine["slack"]) == (2, 2, 0)
    assert mine["quorumReachable"] is True
    assert mine["inactiveApprovers"] == [jon]
    # The baseline is no approval: it is left out of the session counts.
    assert mine["sessions"] == {
        "requested": 2,
        "approved": 0,
        "failed": 0,
        "expired": 0,
        "cancelled": 1,
        "pending": 1,
    }
    baseline = mine["lastBaseline"]
    assert baseline["sessionId"] == sid
    assert baseline["state"] == "PENDING"
    assert baseline["asked"] == [hal, ida]
    assert baseline["notAnswered"] == [ida]
    assert team_id in [t["teamId"] for t in report["teamsAtRisk"]]
    jons = [a for a in report["inactiveApprovers"] if a["approverId"] == jon]
    assert len(jons) == 1
    assert jons[0]["teamId"] == team_id
    assert "identity disabled" in jons[0]["reasons"]

    readable = server.cli(admin, "health")
    assert readable.returncode == 0, readable.stderr
    assert "Teams at risk" in readable.stdout
    assert name in readable.stdout
    assert f"not answered: {ida}" in readable.stdout

    # The baseline completes once everyone asked answered; nobody is left unanswered.
    done = cli_ok(
        server, tokens[ida], "approver", "vote", sid, "--approve", "--key", str(keys[ida]), "--yes"
    )
    assert done["state"] == "STATE_APPROVED"
    report = cli_ok(server, admin, "health")
    assert our_team(report, team_id)["lastBaseline"]["notAnswered"] == []

    # Approvers and accounts may not read the report.
    denied = server.cli(tokens[hal], "health")
    assert denied.returncode == EXIT_PERMISSION_DENIED, denied.stderr
