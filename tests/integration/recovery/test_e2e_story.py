"""The whole story against a real `airlock-server` process, driven by the generated stubs:
vault -> associate -> request -> two signed votes -> AVAILABLE -> CheckAccess yes ->
revoke session (the admin's) -> approved -> CheckAccess no. Also: the attacker's refusals carry
their codes.
"""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
from collections.abc import AsyncIterator
from pathlib import Path

import grpc
import pytest
import pytest_asyncio
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from google.rpc import error_details_pb2, status_pb2
from integration.recovery.recovery_world import raw_key

from airlock.v1 import (
    approver_service_pb2,
    approver_service_pb2_grpc,
    common_pb2,
    identity_service_pb2,
    identity_service_pb2_grpc,
    session_pb2,
    session_service_pb2,
    session_service_pb2_grpc,
    team_service_pb2,
    team_service_pb2_grpc,
    vault_pb2,
    vault_service_pb2,
    vault_service_pb2_grpc,
)
from airlock_server.domain.principals import Principal, PrincipalKind
from airlock_server.domain.sessions import Session, SessionKind, VoteDecision, vote_digest
from airlock_server.transport import convert

pytestmark = pytest.mark.asyncio

BIN = Path(sys.executable).parent
OWNER, RECOVERY = "444455556666", "777788889999"
TIMEOUT = 30.0


def _env(url: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("AIRLOCK_")}
    env.update(
        AIRLOCK_DATABASE_URL=url,
        AIRLOCK_LOG_FORMAT="json",
        AIRLOCK_REGION="eu-west-1",
        AIRLOCK_SHUTDOWN_GRACE="2",
    )
    return env


@pytest_asyncio.fixture
async def server(database_url: str, tmp_path: Path) -> AsyncIterator[tuple[str, str]]:
    env = {**_env(database_url), "AIRLOCK_LOG_KEY_FILE": str(tmp_path / "log-key.pem")}
    server_bin = str(BIN / "airlock-server")
    token_file = tmp_path / "admin.token"
    boot = await asyncio.create_subprocess_exec(
        server_bin,
        "bootstrap",
        "--admin-token-file",
        str(token_file),
        env=env,
        stdout=asyncio.subprocess.DEVNULL,
        stderr=asyncio.subprocess.DEVNULL,
    )
    assert await asyncio.wait_for(boot.wait(), TIMEOUT) == 0
    ready = tmp_path / "ready"
    log_path = tmp_path / "server.log"
    with log_path.open("wb") as log:
        proc = await asyncio.create_subprocess_exec(
            server_bin,
            "serve",
            "--listen",
            "127.0.0.1:0",
            "--ready-file",
            str(ready),
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
        )
    try:
        for _ in range(int(TIMEOUT / 0.05)):
            if ready.exists() and ready.read_text().strip():
                break
            assert proc.returncode is None, log_path.read_text()
            await asyncio.sleep(0.05)
        else:
            pytest.fail("the server did not become ready")
        yield f"127.0.0.1:{ready.read_text().strip()}", token_file.read_text().strip()
    finally:
        proc.terminate()
        try:
            await asyncio.wait_for(proc.wait(), TIMEOUT)
        except TimeoutError:
            proc.kill()
            await proc.wait()


def _md(token: str) -> tuple[tuple[str, str]]:
    return (("authorization", f"Bearer {token}"),)


def _reason(err: grpc.aio.AioRpcError) -> str:
    """The ErrorInfo reason of a refusal, from the status details in the trailers."""
    details = dict(err.trailing_metadata() or ()).get("grpc-status-details-bin")
    assert isinstance(details, bytes)
    for d in status_pb2.Status.FromString(details).details:
        info = error_details_pb2.ErrorInfo()
        if d.Unpack(info):
            return str(info.reason)
    raise AssertionError("no ErrorInfo in the trailers")


def _domain_session(s: session_pb2.Session) -> Session:
    """Just what the vote digest needs, from the wire."""
    kinds = {
        PrincipalKind.ACCOUNT: common_pb2.PRINCIPAL_KIND_ACCOUNT,
        PrincipalKind.SERVICE: common_pb2.PRINCIPAL_KIND_SERVICE,
        PrincipalKind.ADMIN: common_pb2.PRINCIPAL_KIND_ADMIN,
    }
    kind = next(k for k, v in kinds.items() if v == s.requester.kind)
    return Session(
        session_id=s.session_id,
        kind=SessionKind.GENERIC,
        team_id=s.team_id,
        team_version=s.team_version,
        approver_ids=tuple(s.approver_ids),
        min_approvals=s.min_approvals,
        requester=Principal(kind, s.requester.subject),
        requester_account_id=s.requester_account_id,
        action=s.action,
        protected_resource=s.protected_resource,
        comment=s.comment,
        create_time=convert.from_ts(s.create_time),
        expire_time=convert.from_ts(s.expire_time),
    )


async def test_the_story_over_grpc(server: tuple[str, str]) -> None:
    target, admin = server
    async with grpc.aio.insecure_channel(target) as channel:
        ids = identity_service_pb2_grpc.IdentityServiceStub(channel)
        teams = team_service_pb2_grpc.TeamServiceStub(channel)
        approvers = approver_service_pb2_grpc.ApproverServiceStub(channel)
        vaults = vault_service_pb2_grpc.VaultServiceStub(channel)
        sessions = session_service_pb2_grpc.SessionServiceStub(channel)

        async def token(kind: common_pb2.PrincipalKind.ValueType, subject: str) -> str:
            issued = await ids.IssueCredential(
                identity_service_pb2.IssueCredentialRequest(
                    principal=common_pb2.Principal(kind=kind, subject=subject)
                ),
                metadata=_md(admin),
                timeout=TIMEOUT,
            )
            return issued.token

        keys = {name: Ed25519PrivateKey.generate() for name in ("ann", "ben", "cat")}
        tokens: dict[str, str] = {}
        for name in keys:
            await ids.CreateApprover(
                identity_service_pb2.CreateApproverRequest(
                    approver_id=name, display_name=name, email=f"{name}@example.com"
                ),
                metadata=_md(admin),
                timeout=TIMEOUT,
            )
            tokens[name] = await token(common_pb2.PRINCIPAL_KIND_APPROVER, name)
        for account in (OWNER, RECOVERY):
            await ids.RegisterAccount(
                identity_service_pb2.RegisterAccountRequest(account_id=account, name="acct"),
                metadata=_md(admin),
                timeout=TIMEOUT,
            )
        owner = await token(common_pb2.PRINCIPAL_KIND_ACCOUNT, OWNER)
        recovery = await token(common_pb2.PRINCIPAL_KIND_ACCOUNT, RECOVERY)
        checker = await token(common_pb2.PRINCIPAL_KIND_SERVICE, "data-plane")

        created = await teams.CreateApprovalTeam(
            team_service_pb2.CreateApprovalTeamRequest(
                name="guardians", approver_ids=list(keys), min_approvals=2
            ),
            metadata=_md(admin),
            timeout=TIMEOUT,
        )
        team_id = created.team.team_id
        for member in created.team.approvers:
            key = keys[member.approver_id]
            await approvers.RespondToInvitation(
                approver_service_pb2.RespondToInvitationRequest(
                    invitation_id=member.invitation_id,
                    decision=approver_service_pb2.INVITATION_DECISION_ACCEPT,
                    public_key=raw_key(key),
                    key_proof=key.sign(member.invitation_id.encode()),
                ),
                metadata=_md(tokens[member.approver_id]),
                timeout=TIMEOUT,
            )
        for account in (OWNER, RECOVERY):
            await teams.ShareTeam(
                team_service_pb2.ShareTeamRequest(
                    team_id=team_id,
                    principal=common_pb2.Principal(
                        kind=common_pb2.PRINCIPAL_KIND_ACCOUNT, subject=account
                    ),
                ),
                metadata=_md(admin),
                timeout=TIMEOUT,
            )

        vault = (
            await vaults.CreateVault(
                vault_service_pb2.CreateVaultRequest(
                    name="prod-lag", min_retention_days=7, max_retention_days=35
                ),
                metadata=_md(owner),
                timeout=TIMEOUT,
            )
        ).vault
        arn = vault.vault_arn
        assert arn == f"arn:aws:backup:eu-west-1:{OWNER}:backup-vault:prod-lag"
        associated = await vaults.AssociateApprovalTeam(
            vault_service_pb2.AssociateApprovalTeamRequest(vault_arn=arn, team_id=team_id),
            metadata=_md(owner),
            timeout=TIMEOUT,
        )
        assert associated.vault.team_id == team_id
        assert not associated.HasField("session")

        asked = await vaults.RequestRestoreAccess(
            vault_service_pb2.RequestRestoreAccessRequest(vault_arn=arn, comment="A is gone"),
            metadata=_md(recovery),
            timeout=TIMEOUT,
        )
        assert asked.grant.state == vault_pb2.RestoreAccessGrant.STATE_CREATING
        sid = asked.session.session_id

        # The attacker, with the owner's credential: cannot cancel R's request, nor vote, nor
        # remove the team while R's recovery is in progress.
        with pytest.raises(grpc.aio.AioRpcError) as remove:
            await vaults.DisassociateApprovalTeam(
                vault_service_pb2.DisassociateApprovalTeamRequest(vault_arn=arn),
                metadata=_md(owner),
                timeout=TIMEOUT,
            )
        assert remove.value.code() == grpc.StatusCode.FAILED_PRECONDITION
        assert _reason(remove.value) == "VAULT_UNDER_RECOVERY"
        with pytest.raises(grpc.aio.AioRpcError) as cancel:
            await sessions.CancelSession(
                session_service_pb2.CancelSessionRequest(session_id=sid),
                metadata=_md(owner),
                timeout=TIMEOUT,
            )
        assert cancel.value.code() == grpc.StatusCode.PERMISSION_DENIED
        with pytest.raises(grpc.aio.AioRpcError) as vote:
            await approvers.Vote(
                approver_service_pb2.VoteRequest(
                    session_id=sid, decision=session_pb2.VOTE_DECISION_REJECT, signature=b"x" * 64
                ),
                metadata=_md(owner),
                timeout=TIMEOUT,
            )
        assert vote.value.code() == grpc.StatusCode.PERMISSION_DENIED

        # A watcher follows the session from the start to its end; the votes wait for its
        # first update, so that it sees the session while it is still PENDING.
        first_update = asyncio.Event()

        async def watch() -> list[int]:
            seen: list[int] = []
            async for update in sessions.WatchSession(
                session_service_pb2.WatchSessionRequest(session_id=sid),
                metadata=_md(recovery),
                timeout=TIMEOUT,
            ):
                seen.append(update.session.state)
                first_update.set()
            return seen

        watcher = asyncio.create_task(watch())
        await asyncio.wait_for(first_update.wait(), TIMEOUT)

        async def cast(session: session_pb2.Session, name: str) -> session_pb2.Session:
            digest = vote_digest(_domain_session(session), VoteDecision.APPROVE)
            response = await approvers.Vote(
                approver_service_pb2.VoteRequest(
                    session_id=session.session_id,
                    decision=session_pb2.VOTE_DECISION_APPROVE,
                    signature=keys[name].sign(digest),
                ),
                metadata=_md(tokens[name]),
                timeout=TIMEOUT,
            )
            return response.session

        # A bad signature is INVALID_ARGUMENT.
        with pytest.raises(grpc.aio.AioRpcError) as bad:
            await approvers.Vote(
                approver_service_pb2.VoteRequest(
                    session_id=sid,
                    decision=session_pb2.VOTE_DECISION_APPROVE,
                    signature=b"x" * 64,
                ),
                metadata=_md(tokens["ann"]),
                timeout=TIMEOUT,
            )
        assert bad.value.code() == grpc.StatusCode.INVALID_ARGUMENT

        assigned = await approvers.ListAssignedSessions(
            approver_service_pb2.ListAssignedSessionsRequest(awaiting_vote=True),
            metadata=_md(tokens["ann"]),
            timeout=TIMEOUT,
        )
        assert [s.session_id for s in assigned.sessions] == [sid]
        await cast(asked.session, "ann")
        final = await cast(asked.session, "cat")
        assert final.state == session_pb2.Session.STATE_APPROVED
        assert final.execution_status == session_pb2.Session.EXECUTION_STATUS_EXECUTED
        assert final.team_name == "guardians"
        seen = await asyncio.wait_for(watcher, TIMEOUT)
        assert seen[0] == session_pb2.Session.STATE_PENDING
        assert seen[-1] == session_pb2.Session.STATE_APPROVED

        check = vault_service_pb2.CheckAccessRequest(vault_arn=arn, account_id=RECOVERY)
        yes = await vaults.CheckAccess(check, metadata=_md(checker), timeout=TIMEOUT)
        assert yes.allowed
        assert yes.grant.state == vault_pb2.RestoreAccessGrant.STATE_AVAILABLE

        # Nor revoke R's grant; the admin may ask the team to.
        revoke = vault_service_pb2.RevokeRestoreAccessRequest(grant_id=yes.grant.grant_id)
        with pytest.raises(grpc.aio.AioRpcError) as refused:
            await vaults.RevokeRestoreAccess(revoke, metadata=_md(owner), timeout=TIMEOUT)
        assert refused.value.code() == grpc.StatusCode.FAILED_PRECONDITION
        assert _reason(refused.value) == "VAULT_UNDER_RECOVERY"
        revoking = await vaults.RevokeRestoreAccess(revoke, metadata=_md(admin), timeout=TIMEOUT)
        assert revoking.grant.revoke_session_id == revoking.session.session_id
        still = await vaults.CheckAccess(check, metadata=_md(checker), timeout=TIMEOUT)
        assert still.allowed
        await cast(revoking.session, "ben")
        done = await cast(revoking.session, "ann")
        assert done.state == session_pb2.Session.STATE_APPROVED
        no = await vaults.CheckAccess(check, metadata=_md(checker), timeout=TIMEOUT)
        assert not no.allowed
        listed = await sessions.ListSessions(
            session_service_pb2.ListSessionsRequest(), metadata=_md(owner), timeout=TIMEOUT
        )
        assert {s.session_id for s in listed.sessions} == {sid, revoking.session.session_id}
