"""The team story for people: through the `airlock` CLI (in its own process, as users run it)
and through the SDK. Approvers are created, keys generated, invitations accepted or declined,
teams shared; invitations expire at read time and by the sweeper. The server's log is checked
afterwards: one JSON line per RPC, and never a token.
"""

from __future__ import annotations

import asyncio
import re
import secrets
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest

from airlock.v1 import team_pb2
from airlock_client import (
    AirlockClient,
    FailedPreconditionError,
    PermissionDeniedError,
    generate_private_key,
    public_key_base64,
    public_key_bytes,
)

if TYPE_CHECKING:  # the `server` fixture's type; a conftest is not importable at run time
    from e2e.conftest import ServerProcess

Team = team_pb2.ApprovalTeam
Invitation = team_pb2.Invitation

# Every token the server issues looks like this (airlock_server.app.identity.new_token).
TOKEN_PATTERN = re.compile(r"alk_[A-Za-z0-9_-]{20,}")
SWEEP_WAIT = 30.0


def unique(prefix: str) -> str:
    return f"{prefix}-{secrets.token_hex(4)}"


def unique_account_id() -> str:
    return f"{secrets.randbelow(10**12):012d}"


def assert_no_secret_in_log(server: ServerProcess, *secrets_: str) -> None:
    text = server.log_text()
    for secret in (server.admin_token, *secrets_):
        assert secret
        assert secret not in text
    assert not TOKEN_PATTERN.search(text)


async def wait_until_state(server: ServerProcess, team_id: str, state: str) -> None:
    """Polls the teams table (never the API, which would settle the team itself); bounded."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + SWEEP_WAIT
    while (found := await server.team_state_in_database(team_id)) != state:
        if loop.time() > deadline:
            pytest.fail(f"team {team_id} still {found} after {SWEEP_WAIT}s; expected {state}")
        await asyncio.sleep(0.2)


# --- the CLI ----------------------------------------------------------------------------------


def cli_ok(server: ServerProcess, token_file: Path | None, *args: str) -> Any:
    return server.cli_json(token_file, *args)


def test_team_flow_through_the_cli(server: ServerProcess, tmp_path: Path) -> None:
    admin = server.write_token("admin", server.admin_token)
    me = cli_ok(server, admin, "whoami")
    assert me["principal"]["kind"] == "PRINCIPAL_KIND_ADMIN"

    approvers = [unique(name) for name in ("ana", "ben", "cem")]
    token_files: dict[str, Path] = {}
    for approver_id in approvers:
        created = cli_ok(server, admin, "approvers", "create", approver_id, "--name", approver_id)
        assert created["approverId"] == approver_id
        assert created["state"] == "STATE_ENABLED"
        token_file = tmp_path / f"{approver_id}.token"
        issued = cli_ok(
            server,
            admin,
            "credentials",
            "issue",
            "--kind",
            "approver",
            "--subject",
            approver_id,
            "--token-out",
            str(token_file),
        )
        assert issued["credential"]["principal"]["subject"] == approver_id
        assert not issued.get("token"), "--token-out must keep the token off stdout"
        assert token_file.stat().st_mode & 0o777 == 0o600
        token_files[approver_id] = token_file
    account_id = unique_account_id()
    account = cli_ok(server, admin, "accounts", "register", account_id, "--name", unique("prod"))
    assert account["accountId"] == account_id

    # A 2-of-3 team: PENDING until every approver accepts.
    team = cli_ok(
        server,
        admin,
        "teams",
        "create",
        unique("vault-guard"),
        *(arg for a in approvers for arg in ("--approver", a)),
        "--min-approvals",
        "2",
    )
    assert team["state"] == "STATE_PENDING"
    assert team["statusCode"] == "STATUS_CODE_PENDING_ACTIVATION"
    assert team["minApprovals"] == 2
    assert {a["approverId"] for a in team["approvers"]} == set(approvers)
    team_id = team["teamId"]

    keys: dict[str, Path] = {}
    answers: list[Any] = []
    for approver_id in approvers:
        key_file = tmp_path / f"{approver_id}.key"
        generated = server.cli(None, "approver", "keygen", "--out", str(key_file))
        assert generated.returncode == 0, generated.stderr
        assert key_file.stat().st_mode & 0o777 == 0o600
        keys[approver_id] = key_file
        listed = cli_ok(server, token_files[approver_id], "approver", "invitations")
        mine = [i for i in listed["invitations"] if i["teamId"] == team_id]
        assert len(mine) == 1
        assert mine[0]["approverId"] == approver_id
        assert mine[0]["state"] == "STATE_PENDING"
        answer = cli_ok(
            server,
            token_files[approver_id],
            "approver",
            "accept",
            mine[0]["invitationId"],
            "--key",
            str(key_file),
        )
        assert answer["invitation"]["state"] == "STATE_ACCEPTED"
        answers.append(answer)
    assert [a["teamState"] for a in answers] == ["STATE_PENDING", "STATE_PENDING", "STATE_ACTIVE"]

    shown = cli_ok(server, admin, "teams", "get", team_id)
    assert shown["state"] == "STATE_ACTIVE"
    assert all(a["invitationState"] == "STATE_ACCEPTED" for a in shown["approvers"])
    assert all(a["publicKey"] for a in shown["approvers"])

    # Human-readable output works too (the default).
    readable = server.cli(admin, "teams", "get", team_id)
    assert readable.returncode == 0, readable.stderr
    assert team_id in readable.stdout
    assert "ACTIVE" in readable.stdout

    # A second team, declined by one approver: INACTIVE / FAILED_ACTIVATION at once.
    second = cli_ok(
        server,
        admin,
        "teams",
        "create",
        unique("declined"),
        *(arg for a in approvers for arg in ("--approver", a)),
        "--min-approvals",
        "2",
    )
    invitation = next(
        i
        for i in cli_ok(server, token_files[approvers[1]], "approver", "invitations")["invitations"]
        if i["teamId"] == second["teamId"]
    )
    declined = cli_ok(
        server, token_files[approvers[1]], "approver", "decline", invitation["invitationId"]
    )
    assert declined["invitation"]["state"] == "STATE_DECLINED"
    assert declined["teamState"] == "STATE_INACTIVE"
    assert declined["teamStatusCode"] == "STATUS_CODE_FAILED_ACTIVATION"
    shown = cli_ok(server, admin, "teams", "get", second["teamId"])
    assert shown["state"] == "STATE_INACTIVE"
    assert shown["statusCode"] == "STATUS_CODE_FAILED_ACTIVATION"
    # Its invitations are closed now: a late accept is refused (FAILED_PRECONDITION = 64 + 9).
    late = next(
        i
        for i in cli_ok(server, token_files[approvers[0]], "approver", "invitations")["invitations"]
        if i["teamId"] == second["teamId"]
    )
    refused = server.cli(
        token_files[approvers[0]],
        "approver",
        "accept",
        late["invitationId"],
        "--key",
        str(keys[approvers[0]]),
    )
    assert refused.returncode == 64 + 9, refused.stderr
    assert "INVITATION_CLOSED" in refused.stderr

    # Shared with the account, the ACTIVE team is the only one the account sees.
    shared = cli_ok(server, admin, "teams", "share", team_id, "--account", account_id)
    assert shared["principal"]["subject"] == account_id
    shares = cli_ok(server, admin, "teams", "shares", team_id)
    assert [s["principal"]["subject"] for s in shares["shares"]] == [account_id]
    account_token = tmp_path / "account.token"
    cli_ok(
        server,
        admin,
        "credentials",
        "issue",
        "--kind",
        "account",
        "--subject",
        account_id,
        "--token-out",
        str(account_token),
    )
    seen = cli_ok(server, account_token, "teams", "list")
    assert [t["teamId"] for t in seen["teams"]] == [team_id]
    # The account may not administer (PERMISSION_DENIED = 64 + 7).
    denied = server.cli(account_token, "teams", "share", second["teamId"], "--account", account_id)
    assert denied.returncode == 64 + 7, denied.stderr

    # Without a credential, or with a bad one: UNAUTHENTICATED (64 + 16).
    bad = server.write_token("bad", "alk_" + secrets.token_urlsafe(32))
    unauthenticated = server.cli(bad, "whoami")
    assert unauthenticated.returncode == 64 + 16, unauthenticated.stderr

    tokens = [p.read_text().strip() for p in (*token_files.values(), account_token)]
    assert_no_secret_in_log(server, *tokens)


# --- the SDK ----------------------------------------------------------------------------------


@pytest.mark.asyncio
async def test_team_flow_through_the_sdk(server: ServerProcess) -> None:
    approvers = [unique(name) for name in ("dee", "eli", "fay")]
    account_id = unique_account_id()
    other_account = unique_account_id()
    tokens: dict[str, str] = {}
    async with AirlockClient.connect(server.target, server.admin_token) as admin:
        for approver_id in approvers:
            await admin.create_approver(approver_id, approver_id.title())
            issued = await admin.issue_credential("approver", approver_id)
            tokens[approver_id] = issued.token
        await admin.register_account(account_id, unique("acct"))
        await admin.register_account(other_account, unique("other"))
        team = await admin.create_team(unique("sdk-team"), approvers, 2)
        assert team.state == Team.STATE_PENDING
        assert team.status_code == Team.STATUS_CODE_PENDING_ACTIVATION
        declined_team = await admin.create_team(unique("sdk-declined"), approvers, 3)
        unshared_team = await admin.create_team(unique("sdk-unshared"), approvers[:2], 2)

        keys = {a: generate_private_key() for a in approvers}
        states = []
        for approver_id in approvers:
            async with AirlockClient.connect(server.target, tokens[approver_id]) as me:
                mine = [i async for i in me.list_invitations(team_id=team.team_id)]
                assert [i.approver_id for i in mine] == [approver_id]
                assert mine[0].state == Invitation.STATE_PENDING
                answered = await me.respond_to_invitation(
                    mine[0].invitation_id, True, keys[approver_id]
                )
                assert answered.invitation.state == Invitation.STATE_ACCEPTED
                states.append(answered.team_state)
        assert states == [Team.STATE_PENDING, Team.STATE_PENDING, Team.STATE_ACTIVE]
        active = await admin.get_team(team.team_id)
        assert active.state == Team.STATE_ACTIVE
        assert {a.approver_id: a.public_key for a in active.approvers} == {
            a: public_key_bytes(keys[a]) for a in approvers
        }

        # Declined by the last approver after two accepts: INACTIVE, FAILED_ACTIVATION.
        for approver_id, accept in zip(approvers, (True, True, False), strict=True):
            async with AirlockClient.connect(server.target, tokens[approver_id]) as me:
                (invitation,) = [
                    i async for i in me.list_invitations(team_id=declined_team.team_id)
                ]
                answered = await me.respond_to_invitation(
                    invitation.invitation_id, accept, keys[approver_id] if accept else None
                )
        assert answered.team_state == Team.STATE_INACTIVE
        assert answered.team_status_code == Team.STATUS_CODE_FAILED_ACTIVATION
        inactive = await admin.get_team(declined_team.team_id)
        assert inactive.state == Team.STATE_INACTIVE
        assert inactive.status_code == Team.STATUS_CODE_FAILED_ACTIVATION

        # Shares: the account sees exactly the teams shared with it.
        await admin.share_team(team.team_id, account_id=account_id)
        await admin.share_team(declined_team.team_id, account_id=account_id)
        await admin.share_team(unshared_team.team_id, account_id=other_account)
        account_token = (await admin.issue_credential("account", account_id)).token
        async with AirlockClient.connect(server.target, account_token) as account:
            seen = {t.team_id async for t in account.list_teams()}
            assert seen == {team.team_id, declined_team.team_id}
            with pytest.raises(PermissionDeniedError) as denied:
                await account.get_team(unshared_team.team_id)
            assert denied.value.reason == "PERMISSION_DENIED"
            with pytest.raises(PermissionDeniedError):
                await account.share_team(unshared_team.team_id, account_id=account_id)
        assert {s.principal.subject async for s in admin.list_team_shares(team.team_id)} == {
            account_id
        }

    assert_no_secret_in_log(server, *tokens.values(), account_token)
    for key in keys.values():
        assert public_key_base64(key) not in server.log_text()


# --- expiry -----------------------------------------------------------------------------------


@pytest.mark.asyncio
async def test_expired_invitations_settle_the_team_at_read_time(
    quiet_server: ServerProcess,
) -> None:
    """On a server whose sweeper is asleep, the read itself decides and writes it down."""
    server = quiet_server
    approvers = [unique("gus"), unique("hal")]
    async with AirlockClient.connect(server.target, server.admin_token) as admin:
        tokens = {}
        for approver_id in approvers:
            await admin.create_approver(approver_id, approver_id)
            tokens[approver_id] = (await admin.issue_credential("approver", approver_id)).token
        team = await admin.create_team(unique("expiring"), approvers, 2)
        async with AirlockClient.connect(server.target, tokens[approvers[0]]) as first:
            (invitation,) = [i async for i in first.list_invitations(team_id=team.team_id)]
            await first.respond_to_invitation(
                invitation.invitation_id, True, generate_private_key()
            )

        await server.backdate_invitations(team.team_id, datetime.now(UTC) - timedelta(minutes=1))
        assert await server.team_state_in_database(team.team_id) == "PENDING"

        expired = await admin.get_team(team.team_id)
        assert expired.state == Team.STATE_INACTIVE
        assert expired.status_code == Team.STATUS_CODE_FAILED_ACTIVATION
        states = {a.approver_id: a.invitation_state for a in expired.approvers}
        assert states[approvers[0]] == Invitation.STATE_ACCEPTED
        assert states[approvers[1]] == Invitation.STATE_EXPIRED
        assert await server.team_state_in_database(team.team_id) == "INACTIVE"

        # The late approver finds its invitation closed.
        async with AirlockClient.connect(server.target, tokens[approvers[1]]) as late:
            (invitation,) = [i async for i in late.list_invitations(team_id=team.team_id)]
            assert invitation.state == Invitation.STATE_EXPIRED
            with pytest.raises(FailedPreconditionError) as closed:
                await late.respond_to_invitation(
                    invitation.invitation_id, True, generate_private_key()
                )
            assert closed.value.reason == "INVITATION_CLOSED"

        # An INACTIVE team can be deleted without approval.
        deleted = await admin.delete_inactive_team(team.team_id)
        assert deleted.state == Team.STATE_DELETED


@pytest.mark.asyncio
async def test_the_sweeper_settles_expired_invitations_without_a_read(
    server: ServerProcess,
) -> None:
    """The shared servers sweep every second (AIRLOCK_SWEEP_INTERVAL=1)."""
    approvers = [unique("ida"), unique("jon")]
    async with AirlockClient.connect(server.target, server.admin_token) as admin:
        for approver_id in approvers:
            await admin.create_approver(approver_id, approver_id)
        team = await admin.create_team(unique("swept"), approvers, 2)
    await server.backdate_invitations(team.team_id, datetime.now(UTC) - timedelta(minutes=1))
    await wait_until_state(server, team.team_id, "INACTIVE")
    async with AirlockClient.connect(server.target, server.admin_token) as admin:
        swept = await admin.get_team(team.team_id)
    assert swept.state == Team.STATE_INACTIVE
    assert swept.status_code == Team.STATUS_CODE_FAILED_ACTIVATION
    assert any(r.get("event") == "sweeper.settled_teams" for r in server.log_records())


# --- the log ----------------------------------------------------------------------------------


@pytest.mark.asyncio
async def test_one_json_log_line_per_rpc_and_no_token(server: ServerProcess) -> None:
    approver_id = unique("kim")
    async with AirlockClient.connect(server.target, server.admin_token) as admin:
        await admin.create_approver(approver_id, approver_id)
        token = (await admin.issue_credential("approver", approver_id)).token
    calls = [
        ("/airlock.v1.IdentityService/WhoAmI", "OK"),
        ("/airlock.v1.ApproverService/ListInvitations", "OK"),
        ("/airlock.v1.ApproverService/ListInvitations", "OK"),
        ("/airlock.v1.IdentityService/ListApprovers", "PERMISSION_DENIED"),
        ("/airlock.v1.TeamService/StartTeamBaseline", "PERMISSION_DENIED"),
    ]
    async with AirlockClient.connect(server.target, token) as me:
        await me.whoami()
        [i async for i in me.list_invitations()]
        [i async for i in me.list_invitations(page_size=5)]
        with pytest.raises(PermissionDeniedError):
            [a async for a in me.list_approvers()]
        with pytest.raises(PermissionDeniedError):  # admin only
            await me.start_team_baseline("team-0000000000000000")

    # An aborted call's status can reach the client a moment before its line is written.
    def mine() -> list[dict[str, Any]]:
        return [
            r
            for r in server.log_records()  # every line is JSON, or this fails
            if r.get("event") == "rpc.completed" and r.get("principal") == f"approver:{approver_id}"
        ]

    loop = asyncio.get_running_loop()
    deadline = loop.time() + 10
    while len(mine()) < len(calls) and loop.time() < deadline:  # noqa: ASYNC110 (a file)
        await asyncio.sleep(0.05)
    lines = mine()
    assert sorted((r["method"], r["code"]) for r in lines) == sorted(calls)
    for record in lines:
        assert isinstance(record["duration_ms"], int | float)
        assert record["duration_ms"] >= 0
        assert record["level"] == "info"
        assert "timestamp" in record
    for record in server.log_records():
        if record.get("event") == "rpc.completed":
            assert {"method", "principal", "code", "duration_ms"} <= record.keys()
    assert_no_secret_in_log(server, token)
