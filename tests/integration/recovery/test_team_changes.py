"""A team that guards itself, on SQLite and PostgreSQL: updates and deletion voted by the team."""

from __future__ import annotations

from datetime import UTC, timedelta

import grpc
import pytest
from google.protobuf import field_mask_pb2
from google.rpc import error_details_pb2, status_pb2
from integration.recovery.recovery_world import RECOVERY, World, raw_key
from sqlalchemy import text

from airlock.v1 import team_pb2, team_service_pb2, team_service_pb2_grpc
from airlock_server.app.audit import AuditService
from airlock_server.app.teams import TeamUpdate
from airlock_server.domain.errors import (
    EtagMismatch,
    FailedPrecondition,
    InvalidArgument,
    NotFound,
    PermissionDenied,
)
from airlock_server.domain.sessions import (
    ExecutionStatus,
    SessionKind,
    SessionState,
    SessionStatus,
    VoteDecision,
)
from airlock_server.domain.teams import InvitationState, TeamState, TeamStatus, key_proof_message
from airlock_server.domain.vaults import GrantState
from airlock_server.persistence.db import session_factory
from airlock_server.persistence.event_log import PollSignal
from airlock_server.persistence.events import SqlEventLogReader
from airlock_server.transport import convert
from airlock_server.transport.server import UseCases, build_server

pytestmark = pytest.mark.asyncio

NEW_SET = TeamUpdate(approver_ids=("alice", "bob", "dave"), min_approvals=2)


async def _event_types(world: World) -> list[str]:
    async with world.app.engine.connect() as conn:
        return list(await conn.scalars(text("SELECT type FROM events ORDER BY seq")))


async def _accept(world: World, name: str, invitation_id: str, accept: bool = True) -> None:
    key = world.keys[name]
    await world.app.teams.respond_to_invitation(
        world.approver(name),
        invitation_id,
        accept,
        raw_key(key) if accept else b"",
        key.sign(key_proof_message(invitation_id)) if accept else b"",
        "",
    )


async def _draft_invitation(world: World, name: str) -> str:
    page = await world.app.teams.list_invitations(
        world.approver(name), InvitationState.PENDING, world.team_id, 0, ""
    )
    assert len(page.items) == 1
    assert page.items[0].version.version == 2
    return str(page.items[0].member.invitation_id)


async def _generic(world: World) -> str:
    view = await world.app.sessions.start_session(
        world.service, world.team_id, "billing:Refund", "order-1", {}, "", ""
    )
    return str(view.session.session_id)


async def test_update_approved_invited_accepted_takes_force(world: World) -> None:
    arn = await world.vault()
    asked = await world.app.vaults.request_restore_access(world.recovery, arn, "", "", "")
    old_sid = asked.session.session.session_id
    before = await world.app.teams.get_team(world.admin, world.team_id)

    team, upd = await world.app.teams.update_team(
        world.admin, world.team_id, before.etag, NEW_SET, "upd-1"
    )
    assert team.status is TeamStatus.UPDATE_PENDING_APPROVAL
    assert team.state is TeamState.ACTIVE
    assert team.pending is not None
    assert team.pending.version == 2
    assert team.update_session_id == upd.session.session_id
    assert upd.session.kind is SessionKind.TEAM_UPDATE
    assert upd.session.approver_ids == ("alice", "bob", "carol")
    # A retry with the same request id gets the same session.
    _, again = await world.app.teams.update_team(world.admin, world.team_id, "", NEW_SET, "upd-1")
    assert again.session.session_id == upd.session.session_id
    # Before approval, dave sees no invitation and cannot answer one.
    none = await world.app.teams.list_invitations(world.approver("dave"), None, "", 0, "")
    assert none.items == ()
    dave = team.pending.member("dave")
    assert dave is not None
    with pytest.raises(FailedPrecondition) as err:
        await _accept(world, "dave", dave.invitation_id)
    assert err.value.reason == "INVITATION_CLOSED"

    sid = upd.session.session_id
    await world.vote("alice", sid)
    done = await world.vote("bob", sid)
    assert done.session.state is SessionState.APPROVED
    assert done.session.execution_status is ExecutionStatus.EXECUTED
    waiting = await world.app.teams.get_team(world.admin, world.team_id)
    assert waiting.status is TeamStatus.UPDATE_PENDING_ACTIVATION
    assert waiting.current.version == 1
    # The old version still works while the new approvers answer.
    assert (await world.app.sessions.get_session(world.admin, old_sid)).session.is_final is False

    await _accept(world, "dave", await _draft_invitation(world, "dave"))
    after = await world.app.teams.get_team(world.admin, world.team_id)
    assert after.status is TeamStatus.ACTIVE
    assert after.current.version == 2
    assert after.pending is None
    assert after.current.approver_ids == ("alice", "bob", "dave")

    old = (await world.app.sessions.get_session(world.admin, old_sid)).session
    assert old.state is SessionState.CANCELLED
    assert old.status is SessionStatus.CONFIGURATION_CHANGED
    grant = (await world.app.vaults.list_restore_access(world.owner, arn, None, 0, "")).items[0]
    assert grant.state is GrantState.FAILED

    # The new version votes: carried-over approvers kept their keys.
    fresh = await world.app.vaults.request_restore_access(world.recovery, arn, "", "", "")
    new_sid = fresh.session.session.session_id
    assert fresh.session.session.approver_ids == ("alice", "bob", "dave")
    assert fresh.session.session.team_version == 2
    await world.vote("alice", new_sid)
    ok = await world.vote("dave", new_sid)
    assert ok.session.state is SessionState.APPROVED
    assert (await world.app.vaults.check_access(world.service, arn, RECOVERY)).allowed

    types = await _event_types(world)
    for expected in ("team.update_requested", "team.update_approved", "team.updated"):
        assert expected in types, expected


async def test_update_rejected_keeps_the_old_version(world: World) -> None:
    _, upd = await world.app.teams.update_team(
        world.admin, world.team_id, "", TeamUpdate(description="new words"), ""
    )
    sid = upd.session.session_id
    await world.vote("alice", sid, VoteDecision.REJECT)
    done = await world.vote("bob", sid, VoteDecision.REJECT)
    assert done.session.status is SessionStatus.REJECTED
    failed = await world.app.teams.get_team(world.admin, world.team_id)
    assert failed.status is TeamStatus.UPDATE_FAILED_APPROVAL
    assert failed.state is TeamState.ACTIVE
    assert failed.current.version == 1
    assert failed.current.description == ""
    assert failed.update_session_id is None
    assert "team.update_failed" in await _event_types(world)

    # The team keeps approving sessions on its old version.
    gsid = await _generic(world)
    await world.vote("alice", gsid)
    approved = await world.vote("carol", gsid)
    assert approved.session.state is SessionState.APPROVED
    assert approved.session.team_version == 1

    # A failed update does not block the next one.
    _, second = await world.app.teams.update_team(
        world.admin, world.team_id, "", TeamUpdate(description="again"), ""
    )
    await world.vote("alice", second.session.session_id)
    await world.vote("carol", second.session.session_id)
    now = await world.app.teams.get_team(world.admin, world.team_id)
    assert now.status is TeamStatus.ACTIVE
    assert now.current.version == 2  # no new invitees: in force at once
    assert now.current.description == "again"


async def test_update_expired_approval_and_declined_activation(world: World) -> None:
    _, upd = await world.app.teams.update_team(world.admin, world.team_id, "", NEW_SET, "")
    world.clock.advance(timedelta(hours=25))
    assert await world.app.sessions.sweep_expired_sessions() == 1
    team = await world.app.teams.get_team(world.admin, world.team_id)
    assert team.status is TeamStatus.UPDATE_FAILED_APPROVAL
    assert (
        await world.app.sessions.get_session(world.admin, upd.session.session_id)
    ).session.status is SessionStatus.EXPIRED

    _, upd = await world.app.teams.update_team(world.admin, world.team_id, "", NEW_SET, "")
    await world.vote("alice", upd.session.session_id)
    await world.vote("bob", upd.session.session_id)
    await _accept(world, "dave", await _draft_invitation(world, "dave"), accept=False)
    team = await world.app.teams.get_team(world.admin, world.team_id)
    assert team.status is TeamStatus.UPDATE_FAILED_ACTIVATION
    assert team.current.version == 1


async def test_draft_invitations_expire_by_the_sweeper(world: World) -> None:
    gsid = await _generic(world)
    _, upd = await world.app.teams.update_team(world.admin, world.team_id, "", NEW_SET, "")
    await world.vote("alice", upd.session.session_id)
    await world.vote("bob", upd.session.session_id)
    assert await world.app.teams.sweep_expired_invitations() == 0
    world.clock.advance(timedelta(hours=24, minutes=1))
    assert await world.app.teams.sweep_expired_invitations() == 1
    team = await world.app.teams.get_team(world.admin, world.team_id)
    assert team.status is TeamStatus.UPDATE_FAILED_ACTIVATION
    assert team.pending is not None
    dave = team.pending.member("dave")
    assert dave is not None
    assert dave.invitation_state is InvitationState.EXPIRED
    # A failed draft is no longer claimed by the sweeper.
    assert await world.app.teams.sweep_expired_invitations() == 0
    # Sessions of the old version were not cancelled (they expire on their own).
    s = (await world.app.sessions.get_session(world.admin, gsid)).session
    assert s.status is not SessionStatus.CONFIGURATION_CHANGED


async def test_one_change_at_a_time_etag_and_admin_only(world: World) -> None:
    team = await world.app.teams.get_team(world.admin, world.team_id)
    with pytest.raises(EtagMismatch):
        await world.app.teams.update_team(world.admin, world.team_id, 'W/"0"', NEW_SET, "")
    with pytest.raises(EtagMismatch):
        await world.app.teams.start_team_deletion(world.admin, world.team_id, 'W/"0"', 0, "")
    with pytest.raises(InvalidArgument):
        await world.app.teams.update_team(world.admin, world.team_id, "", TeamUpdate(), "")
    with pytest.raises(InvalidArgument):
        await world.app.teams.start_team_deletion(world.admin, world.team_id, "", 91, "")
    with pytest.raises(InvalidArgument):
        await world.app.teams.update_team(
            world.admin, world.team_id, "", TeamUpdate(approver_ids=("alice", "nobody")), ""
        )

    snapshot = await world.app.snapshot()
    for caller in (world.owner, world.service, world.approver("alice"), world.auditor):
        with pytest.raises(PermissionDenied):
            await world.app.teams.update_team(caller, world.team_id, "", NEW_SET, "")
        with pytest.raises(PermissionDenied):
            await world.app.teams.start_team_deletion(caller, world.team_id, "", 0, "")
    assert await world.app.snapshot() == snapshot
    unchanged = await world.app.teams.get_team(world.admin, world.team_id)
    assert unchanged == team

    await world.app.teams.update_team(world.admin, world.team_id, team.etag, NEW_SET, "")
    for attempt in (
        world.app.teams.update_team(world.admin, world.team_id, "", NEW_SET, ""),
        world.app.teams.start_team_deletion(world.admin, world.team_id, "", 0, ""),
    ):
        with pytest.raises(FailedPrecondition) as err:
            await attempt
        assert err.value.reason == "TEAM_CHANGE_PENDING"


async def test_deletion_at_once(world: World) -> None:
    arn = await world.vault()
    asked = await world.app.vaults.request_restore_access(world.recovery, arn, "", "", "")
    await world.vote("alice", asked.session.session.session_id)
    await world.vote("bob", asked.session.session.session_id)
    assert (await world.app.vaults.check_access(world.service, arn, RECOVERY)).allowed
    gsid = await _generic(world)

    team, deletion = await world.app.teams.start_team_deletion(
        world.admin, world.team_id, "", 0, "del-1"
    )
    assert team.status is TeamStatus.DELETE_PENDING_APPROVAL
    assert deletion.session.kind is SessionKind.TEAM_DELETION
    shown = convert.team_pb(
        team, (await world.app.teams.deletions_of([world.team_id]))[world.team_id]
    )
    assert shown.deletion_session_id == deletion.session.session_id
    sid = deletion.session.session_id
    await world.vote("alice", sid)
    done = await world.vote("carol", sid)
    assert done.session.state is SessionState.APPROVED
    assert done.session.execution_status is ExecutionStatus.EXECUTED

    with pytest.raises(NotFound):
        await world.app.teams.get_team(world.admin, world.team_id)
    vault = await world.app.vaults.get_vault(world.owner, arn)
    assert vault.team_id is None
    answer = await world.app.vaults.check_access(world.service, arn, RECOVERY)
    assert not answer.allowed
    grant = (await world.app.vaults.list_restore_access(world.owner, arn, None, 0, "")).items[0]
    assert grant.state is GrantState.REVOKED
    generic = (await world.app.sessions.get_session(world.admin, gsid)).session
    assert generic.state is SessionState.CANCELLED
    assert generic.status is SessionStatus.TEAM_DELETED
    types = await _event_types(world)
    for expected in ("team.deletion_requested", "team.deletion_approved", "team.deleted"):
        assert expected in types, expected


async def test_deletion_after_a_window_by_the_sweeper(world: World) -> None:
    arn = await world.vault()
    asked = await world.app.vaults.request_restore_access(world.recovery, arn, "", "", "")
    await world.vote("alice", asked.session.session.session_id)
    await world.vote("bob", asked.session.session.session_id)

    _, deletion = await world.app.teams.start_team_deletion(world.admin, world.team_id, "", 3, "")
    await world.vote("bob", deletion.session.session_id)
    await world.vote("carol", deletion.session.session_id)
    team = await world.app.teams.get_team(world.admin, world.team_id)
    assert team.state is TeamState.DELETING
    assert team.status is TeamStatus.DELETE_PENDING
    record = (await world.app.teams.deletions_of([world.team_id]))[world.team_id]
    shown = convert.team_pb(team, record)
    assert shown.deletion_pending_window_days == 3
    assert (
        shown.deletion_complete_time.ToDatetime().date()
        == (world.clock.now + timedelta(days=3)).date()
    )
    # A DELETING team approves nothing new; access stays until the window ends.
    with pytest.raises(FailedPrecondition):
        await _generic(world)
    assert (await world.app.vaults.check_access(world.service, arn, RECOVERY)).allowed

    assert await world.app.teams.sweep_due_deletions() == 0
    world.clock.advance(timedelta(days=3))
    other = world.another_wiring()
    assert await other.teams.sweep_due_deletions() == 1
    assert await world.app.teams.sweep_due_deletions() == 0
    with pytest.raises(NotFound):
        await world.app.teams.get_team(world.admin, world.team_id)
    assert (await world.app.vaults.get_vault(world.owner, arn)).team_id is None
    assert not (await world.app.vaults.check_access(world.service, arn, RECOVERY)).allowed
    grant = (await world.app.vaults.list_restore_access(world.owner, arn, None, 0, "")).items[0]
    assert grant.state is GrantState.REVOKED


async def test_deletion_rejected_team_stays_active(world: World) -> None:
    _, deletion = await world.app.teams.start_team_deletion(world.admin, world.team_id, "", 0, "")
    sid = deletion.session.session_id
    await world.vote("alice", sid, VoteDecision.REJECT)
    await world.vote("bob", sid, VoteDecision.REJECT)
    team = await world.app.teams.get_team(world.admin, world.team_id)
    assert team.state is TeamState.ACTIVE
    assert team.status is TeamStatus.DELETE_FAILED_APPROVAL
    assert "team.deletion_failed" in await _event_types(world)
    gsid = await _generic(world)
    await world.vote("alice", gsid)
    assert (await world.vote("bob", gsid)).session.state is SessionState.APPROVED
    # And a new change may start.
    again, _ = await world.app.teams.start_team_deletion(world.admin, world.team_id, "", 1, "")
    assert again.status is TeamStatus.DELETE_PENDING_APPROVAL


# --- over gRPC: the servicer, the error table and the team's change fields -----------------


def _reason(err: grpc.aio.AioRpcError) -> str:
    for key, value in err.trailing_metadata() or ():
        if key == "grpc-status-details-bin":
            assert isinstance(value, bytes)
            for d in status_pb2.Status.FromString(value).details:
                if d.Is(error_details_pb2.ErrorInfo.DESCRIPTOR):
                    info = error_details_pb2.ErrorInfo()
                    d.Unpack(info)
                    return str(info.reason)
    raise AssertionError("no ErrorInfo in the trailers")


async def test_update_and_deletion_over_grpc(world: World) -> None:
    app = world.app
    admin_token = (
        await app.identities.issue_credential(
            world.admin, world.admin.kind, world.admin.subject, "t", None, ""
        )
    ).token
    owner_token = (
        await app.identities.issue_credential(
            world.admin, world.owner.kind, world.owner.subject, "t", None, ""
        )
    ).token
    served = build_server(
        UseCases(
            app.identities,
            app.teams,
            app.sessions,
            app.vaults,
            AuditService(app.deps, SqlEventLogReader(session_factory(app.engine)), PollSignal()),
        ),
        "127.0.0.1:0",
    )
    await served.server.start()
    try:
        async with grpc.aio.insecure_channel(f"127.0.0.1:{served.port}") as channel:
            stub = team_service_pb2_grpc.TeamServiceStub(channel)
            admin = (("authorization", f"Bearer {admin_token}"),)
            owner = (("authorization", f"Bearer {owner_token}"),)
            got = await stub.GetApprovalTeam(
                team_service_pb2.GetApprovalTeamRequest(team_id=world.team_id),
                metadata=admin,
                timeout=30,
            )
            etag = got.team.etag
            mask = field_mask_pb2.FieldMask(paths=["description"])
            request = team_service_pb2.UpdateApprovalTeamRequest(
                team_id=world.team_id, description="v2", update_mask=mask
            )

            with pytest.raises(grpc.aio.AioRpcError) as err:
                await stub.UpdateApprovalTeam(request, metadata=owner, timeout=30)
            assert err.value.code() is grpc.StatusCode.PERMISSION_DENIED
            stale = team_service_pb2.UpdateApprovalTeamRequest(
                team_id=world.team_id, etag='W/"0"', description="v2"
            )
            with pytest.raises(grpc.aio.AioRpcError) as err:
                await stub.UpdateApprovalTeam(stale, metadata=admin, timeout=30)
            assert err.value.code() is grpc.StatusCode.FAILED_PRECONDITION
            assert _reason(err.value) == "ETAG_MISMATCH"
            bad_mask = team_service_pb2.UpdateApprovalTeamRequest(
                team_id=world.team_id, update_mask=field_mask_pb2.FieldMask(paths=["name"])
            )
            with pytest.raises(grpc.aio.AioRpcError) as err:
                await stub.UpdateApprovalTeam(bad_mask, metadata=admin, timeout=30)
            assert err.value.code() is grpc.StatusCode.INVALID_ARGUMENT

            request.etag = etag
            updated = await stub.UpdateApprovalTeam(request, metadata=admin, timeout=30)
            assert (
                updated.team.status_code
                == team_pb2.ApprovalTeam.STATUS_CODE_UPDATE_PENDING_APPROVAL
            )
            assert updated.team.update_session_id == updated.session.session_id
            assert updated.team.pending_update.description == "v2"
            assert updated.team.pending_update.version == 2

            with pytest.raises(grpc.aio.AioRpcError) as err:
                await stub.StartTeamDeletion(
                    team_service_pb2.StartTeamDeletionRequest(team_id=world.team_id),
                    metadata=admin,
                    timeout=30,
                )
            assert err.value.code() is grpc.StatusCode.FAILED_PRECONDITION
            assert _reason(err.value) == "TEAM_CHANGE_PENDING"

            await world.vote("alice", updated.session.session_id)
            await world.vote("bob", updated.session.session_id)
            deleting = await stub.StartTeamDeletion(
                team_service_pb2.StartTeamDeletionRequest(
                    team_id=world.team_id, pending_window_days=7, request_id="d-1"
                ),
                metadata=admin,
                timeout=30,
            )
            assert (
                deleting.team.status_code
                == team_pb2.ApprovalTeam.STATUS_CODE_DELETE_PENDING_APPROVAL
            )
            assert deleting.team.description == "v2"
            assert deleting.team.deletion_session_id == deleting.session.session_id
            assert deleting.team.deletion_pending_window_days == 7
            await world.vote("alice", deleting.session.session_id)
            await world.vote("carol", deleting.session.session_id)
            listed = await stub.ListApprovalTeams(
                team_service_pb2.ListApprovalTeamsRequest(), metadata=admin, timeout=30
            )
            [team] = [t for t in listed.teams if t.team_id == world.team_id]
            assert team.state == team_pb2.ApprovalTeam.STATE_DELETING
            assert team.deletion_complete_time.ToDatetime(tzinfo=UTC) == world.clock.now + (
                timedelta(days=7)
            )
    finally:
        await served.server.stop(None)
