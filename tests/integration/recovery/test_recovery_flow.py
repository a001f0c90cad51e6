"""The recovery flow on SQLite and PostgreSQL: vaults, associations, restore access, votes."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from datetime import timedelta

import pytest
from integration.recovery.recovery_world import OWNER, RECOVERY, World

from airlock_server.app.ports import SessionQuery
from airlock_server.domain.errors import (
    AlreadyExists,
    DomainError,
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
from airlock_server.domain.vaults import GrantState

pytestmark = pytest.mark.asyncio

UNDER = "VAULT_UNDER_RECOVERY"


async def test_the_story(world: World) -> None:
    arn = await world.vault()
    assert arn == f"arn:aws:backup:eu-west-1:{OWNER}:backup-vault:prod-lag"
    vault = await world.app.vaults.get_vault(world.owner, arn)
    assert vault.team_id == world.team_id
    assert vault.pending_association is None

    asked = await world.app.vaults.request_restore_access(
        world.recovery, arn, "", "account A is compromised", ""
    )
    grant, session = asked.grant, asked.session.session
    assert grant.state is GrantState.CREATING
    assert session.action == "backup:CreateRestoreAccessBackupVault"
    assert session.kind is SessionKind.RESTORE_ACCESS
    assert session.approver_ids == ("alice", "bob", "carol")
    assert session.min_approvals == 2
    assert session.requester_account_id == RECOVERY
    assert asked.session.team_name == "guardians"
    no = await world.app.vaults.check_access(world.service, arn, RECOVERY)
    assert not no.allowed
    assert no.grant is None

    first = await world.vote("alice", session.session_id, comment="looks right")
    assert first.session.state is SessionState.PENDING
    assert first.session.approval_count == 1
    done = await world.vote("bob", session.session_id)
    assert done.session.state is SessionState.APPROVED
    assert done.session.execution_status is ExecutionStatus.EXECUTED
    assert [v.approver_id for v in done.session.votes] == ["alice", "bob"]
    assert done.session.votes[0].comment == "looks right"

    yes = await world.app.vaults.check_access(world.service, arn, RECOVERY)
    assert yes.allowed
    assert yes.grant is not None
    assert yes.grant.grant_id == grant.grant_id
    assert yes.grant.state is GrantState.AVAILABLE

    # R's access ends only through the team: the admin asks (the owner may not, see the
    # attacker's test), the team approves.
    revoking = await world.app.vaults.revoke_restore_access(world.admin, grant.grant_id, "", "")
    assert revoking.grant.state is GrantState.AVAILABLE
    assert revoking.session.session.kind is SessionKind.REVOKE_RESTORE_ACCESS
    still = await world.app.vaults.check_access(world.owner, arn, RECOVERY)
    assert still.allowed  # a pending revocation does not end access
    await world.vote("carol", revoking.session.session.session_id)
    await world.vote("alice", revoking.session.session.session_id)
    after = await world.app.vaults.check_access(world.auditor, arn, RECOVERY)
    assert not after.allowed
    grants = await world.app.vaults.list_restore_access(world.recovery, "", None, 0, "")
    assert [g.state for g in grants.items] == [GrantState.REVOKED]

    # Every state change left its event.
    types = await _event_types(world)
    for expected in (
        "vault.created",
        "vault.team_associated",
        "session.created",
        "grant.requested",
        "vote.cast",
        "session.approved",
        "grant.available",
        "grant.revoke_requested",
        "grant.revoked",
    ):
        assert expected in types, expected


async def _event_types(world: World) -> list[str]:
    from sqlalchemy import text

    async with world.app.engine.connect() as conn:
        return list(await conn.scalars(text("SELECT type FROM events ORDER BY seq")))


async def test_rejection_fails_at_once_and_the_grant_fails(world: World) -> None:
    arn = await world.vault()
    asked = await world.app.vaults.request_restore_access(world.recovery, arn, "rv", "", "")
    sid = asked.session.session.session_id
    one = await world.vote("alice", sid, VoteDecision.REJECT)
    assert one.session.state is SessionState.PENDING  # N - M = 1 rejection still allows M
    two = await world.vote("bob", sid, VoteDecision.REJECT)
    assert two.session.state is SessionState.FAILED
    assert two.session.status is SessionStatus.REJECTED
    grant = (await world.app.vaults.list_restore_access(world.owner, arn, None, 0, "")).items[0]
    assert grant.state is GrantState.FAILED
    assert grant.restore_vault_arn.endswith(f":{RECOVERY}:backup-vault:rv")
    # A vote on a finished session changes nothing.
    with pytest.raises(FailedPrecondition) as err:
        await world.vote("carol", sid)
    assert err.value.reason == "SESSION_NOT_PENDING"
    # The failed request no longer blocks a new one.
    again = await world.app.vaults.request_restore_access(world.recovery, arn, "", "", "")
    assert again.grant.state is GrantState.CREATING


async def test_votes_are_final_and_signed(world: World) -> None:
    arn = await world.vault()
    asked = await world.app.vaults.request_restore_access(world.recovery, arn, "", "", "")
    session = asked.session.session
    sid = session.session_id
    before = await world.app.snapshot()
    alice = world.approver("alice")
    # Missing, wrong-decision, other approver's and garbage signatures: INVALID_ARGUMENT.
    for signature in (
        b"",
        world.sign("alice", session, VoteDecision.REJECT),
        world.sign("bob", session, VoteDecision.APPROVE),
        b"x" * 64,
    ):
        with pytest.raises(InvalidArgument) as bad:
            await world.app.sessions.vote(alice, sid, VoteDecision.APPROVE, "", signature, "")
        assert bad.value.violations[0].field == "signature"
    # Not a member of the frozen set.
    with pytest.raises(PermissionDenied) as outsider:
        await world.app.sessions.vote(
            world.approver("dave"),
            sid,
            VoteDecision.APPROVE,
            "",
            world.sign("dave", session, VoteDecision.APPROVE),
            "",
        )
    assert outsider.value.reason == "NOT_SESSION_APPROVER"
    # Not an approver credential at all.
    for caller in (world.owner, world.admin, world.recovery, world.service):
        with pytest.raises(PermissionDenied):
            await world.app.sessions.vote(
                caller,
                sid,
                VoteDecision.APPROVE,
                "",
                world.sign("alice", session, VoteDecision.APPROVE),
                "",
            )
    assert await world.app.snapshot() == before

    await world.vote("alice", sid, VoteDecision.REJECT)
    with pytest.raises(FailedPrecondition) as twice:
        await world.vote("alice", sid, VoteDecision.APPROVE)
    assert twice.value.reason == "ALREADY_VOTED"
    view = await world.app.sessions.get_session(world.admin, sid)
    assert [(v.approver_id, v.decision) for v in view.session.votes] == [
        ("alice", VoteDecision.REJECT)
    ]
    assert len(view.session.votes[0].signature) == 64


async def test_vote_request_id_replays(world: World) -> None:
    arn = await world.vault()
    session = (
        await world.app.vaults.request_restore_access(world.recovery, arn, "", "", "")
    ).session.session
    sig = world.sign("alice", session, VoteDecision.APPROVE)
    alice = world.approver("alice")
    a = await world.app.sessions.vote(
        alice, session.session_id, VoteDecision.APPROVE, "", sig, "r1"
    )
    b = await world.app.sessions.vote(
        alice, session.session_id, VoteDecision.APPROVE, "", sig, "r1"
    )
    assert a.session.votes == b.session.votes
    assert len(b.session.votes) == 1


async def test_one_open_request_per_vault_and_account(world: World) -> None:
    arn = await world.vault()
    first = await world.app.vaults.request_restore_access(world.recovery, arn, "", "", "q1")
    retry = await world.app.vaults.request_restore_access(world.recovery, arn, "", "", "q1")
    assert retry.grant.grant_id == first.grant.grant_id
    with pytest.raises(AlreadyExists):
        await world.app.vaults.request_restore_access(world.recovery, arn, "", "", "")
    # The owner is a recovery account of its own vault as well, with its own request.
    own = await world.app.vaults.request_restore_access(world.owner, arn, "", "", "")
    assert own.grant.account_id == OWNER
    assert await world.app.count("restore_access_grants") == 2


async def test_expiry_by_read_and_by_sweeper(world: World) -> None:
    arn = await world.vault()
    a = await world.app.vaults.request_restore_access(world.recovery, arn, "", "", "")
    b = await world.app.vaults.request_restore_access(world.owner, arn, "", "", "")
    world.clock.advance(timedelta(hours=24))
    # A vote on an expired session is refused, and the expiry is written down.
    with pytest.raises(FailedPrecondition) as late:
        await world.vote("alice", a.session.session.session_id)
    assert late.value.reason in ("SESSION_EXPIRED", "SESSION_NOT_PENDING")
    assert await world.app.count("sessions", "state = 'FAILED'") == 1
    assert await world.app.count("restore_access_grants", "state = 'FAILED'") == 1
    assert await world.app.count("votes") == 0
    # The sweeper settles the other one.
    assert await world.app.sessions.sweep_expired_sessions() == 1
    assert await world.app.sessions.sweep_expired_sessions() == 0
    view = await world.app.sessions.get_session(world.owner, b.session.session.session_id)
    assert view.session.state is SessionState.FAILED
    assert view.session.status is SessionStatus.EXPIRED
    assert view.session.complete_time == view.session.expire_time
    grants = await world.app.vaults.list_restore_access(world.owner, arn, GrantState.FAILED, 0, "")
    assert len(grants.items) == 2


async def test_read_time_expiry_on_get(world: World) -> None:
    arn = await world.vault()
    a = await world.app.vaults.request_restore_access(world.recovery, arn, "", "", "")
    world.clock.advance(timedelta(hours=25))
    listed = await world.app.sessions.list_sessions(
        world.admin, SessionQuery(state=SessionState.FAILED), 0, ""
    )
    assert [s.session.status for s in listed.items] == [SessionStatus.EXPIRED]
    pending = await world.app.sessions.list_sessions(
        world.admin, SessionQuery(state=SessionState.PENDING), 0, ""
    )
    assert pending.items == ()
    view = await world.app.sessions.get_session(world.recovery, a.session.session.session_id)
    assert view.session.status is SessionStatus.EXPIRED
    assert await world.app.count("restore_access_grants", "state = 'FAILED'") == 1


async def test_cancel_by_requester_or_admin_only(world: World) -> None:
    arn = await world.vault()
    a = await world.app.vaults.request_restore_access(world.recovery, arn, "", "", "")
    sid = a.session.session.session_id
    before = await world.app.snapshot()
    for caller in (world.owner, world.approver("alice"), world.service, world.auditor):
        with pytest.raises(PermissionDenied):
            await world.app.sessions.cancel_session(caller, sid, "")
    assert await world.app.snapshot() == before
    done = await world.app.sessions.cancel_session(world.recovery, sid, "")
    assert done.session.state is SessionState.CANCELLED
    assert done.session.status is SessionStatus.CANCELLED_BY_USER
    assert await world.app.count("restore_access_grants", "state = 'FAILED'") == 1
    b = await world.app.vaults.request_restore_access(world.recovery, arn, "", "", "")
    admin_done = await world.app.sessions.cancel_session(
        world.admin, b.session.session.session_id, ""
    )
    assert admin_done.session.state is SessionState.CANCELLED


async def test_association_changes_need_the_current_team(world: World) -> None:
    other = await world.make_team("others", ("dave", "erin", "carol"))
    await world.share(other, world.owner)
    arn = await world.vault()
    change = await world.app.vaults.associate(world.owner, arn, other, "move", "")
    assert change.vault.team_id == world.team_id
    assert change.vault.pending_association is not None
    assert change.session is not None
    assert change.session.session.team_id == world.team_id
    sid = change.session.session.session_id
    # One change at a time.
    with pytest.raises(FailedPrecondition) as busy:
        await world.app.vaults.disassociate(world.owner, arn, "", "")
    assert busy.value.reason == "ASSOCIATION_CHANGE_PENDING"
    # The new team's members do not vote on the change (dave is not in the current team).
    with pytest.raises(PermissionDenied):
        await world.vote("dave", sid)
    await world.vote("alice", sid)
    await world.vote("carol", sid)
    vault = await world.app.vaults.get_vault(world.owner, arn)
    assert vault.team_id == other
    assert vault.pending_association is None
    # Disassociation, now voted by the new team; rejected, so the vault keeps it.
    gone = await world.app.vaults.disassociate(world.owner, arn, "", "")
    assert gone.session is not None
    assert gone.session.session.team_id == other
    await world.vote("dave", gone.session.session.session_id, VoteDecision.REJECT)
    await world.vote("erin", gone.session.session.session_id, VoteDecision.REJECT)
    vault = await world.app.vaults.get_vault(world.owner, arn)
    assert vault.team_id == other
    assert vault.pending_association is None
    # Approved, it takes effect.
    gone = await world.app.vaults.disassociate(world.owner, arn, "", "")
    assert gone.session is not None
    await world.vote("dave", gone.session.session.session_id)
    await world.vote("erin", gone.session.session.session_id)
    vault = await world.app.vaults.get_vault(world.owner, arn)
    assert vault.team_id is None


async def test_the_attacker_with_the_owner_credential(world: World) -> None:
    """Account A is compromised: with A's credential, disassociating the team, changing it,
    revoking R's grant, cancelling R's request, voting and going through a team not shared are
    each refused with their code, and nothing changes, before and after R's grant is AVAILABLE."""
    arn = await world.vault()
    other = await world.make_team("attackers-pick", ("dave", "erin"))
    await world.share(other, world.owner)
    unshared = await world.make_team("unshared", ("dave", "erin"))
    asked = await world.app.vaults.request_restore_access(world.recovery, arn, "", "", "")
    sid, grant_id = asked.session.session.session_id, asked.grant.grant_id

    async def attack(state: GrantState) -> None:
        before = await world.app.snapshot()
        vaults, sessions = world.app.vaults, world.app.sessions
        signed = world.sign("alice", asked.session.session, VoteDecision.REJECT)
        refusals: list[tuple[type[DomainError], str, Callable[[], Awaitable[object]]]] = [
            (FailedPrecondition, UNDER, lambda: vaults.disassociate(world.owner, arn, "", "")),
            (FailedPrecondition, UNDER, lambda: vaults.associate(world.owner, arn, other, "", "")),
            (
                FailedPrecondition,
                UNDER,
                lambda: vaults.revoke_restore_access(world.owner, grant_id, "", ""),
            ),
            (
                PermissionDenied,
                "NOT_SESSION_REQUESTER",
                lambda: sessions.cancel_session(world.owner, sid, ""),
            ),
            (
                PermissionDenied,
                "PERMISSION_DENIED",
                lambda: sessions.vote(world.owner, sid, VoteDecision.REJECT, "", signed, ""),
            ),
            (
                PermissionDenied,
                "TEAM_NOT_SHARED",
                lambda: vaults.associate(world.owner, arn, unshared, "", ""),
            ),
        ]
        for error, reason, call in refusals:
            with pytest.raises(error) as refused:
                await call()
            assert refused.value.reason == reason
            if reason == UNDER:
                assert refused.value.metadata["grantId"] == grant_id
                assert refused.value.metadata["state"] == state.value
                assert grant_id in refused.value.message
        # Nothing changed: no session, vote, vault or grant row, and no event (a refusal's
        # `call.denied` is the interceptor's, on the wire; tests/e2e cover it).
        assert await world.app.snapshot() == before
        vault = await world.app.vaults.get_vault(world.owner, arn)
        assert vault.team_id == world.team_id
        assert vault.pending_association is None

    await attack(GrantState.CREATING)
    await world.vote("alice", sid)
    await world.vote("bob", sid)
    await attack(GrantState.AVAILABLE)
    # The admin's revocation is pending: the grant is still AVAILABLE, still a recovery.
    revoking = await world.app.vaults.revoke_restore_access(world.admin, grant_id, "", "")
    await attack(GrantState.AVAILABLE)
    for name in ("alice", "carol"):
        await world.vote(name, revoking.session.session.session_id, VoteDecision.REJECT)
    access = await world.app.vaults.check_access(world.service, arn, RECOVERY)
    assert access.allowed
    assert access.grant is not None
    assert access.grant.grant_id == grant_id

    # Other accounts cannot touch the owner's vault or R's request either.
    before = await world.app.snapshot()
    with pytest.raises(PermissionDenied) as req:
        await world.app.vaults.request_restore_access(world.stranger, arn, "", "", "")
    assert req.value.reason == "NOT_VISIBLE"
    with pytest.raises(PermissionDenied):
        await world.app.vaults.disassociate(world.recovery, arn, "", "")
    with pytest.raises(PermissionDenied):
        await world.app.vaults.revoke_restore_access(world.recovery, grant_id, "", "")
    assert await world.app.snapshot() == before
    second = await world.app.vaults.create_vault(world.stranger, "", "side", 7, 7, {}, "")
    with pytest.raises(PermissionDenied) as foreign:
        await world.app.vaults.associate(world.stranger, second.vault_arn, world.team_id, "", "")
    assert foreign.value.reason == "TEAM_NOT_SHARED"


async def test_visibility_of_sessions(world: World) -> None:
    arn = await world.vault()
    a = await world.app.vaults.request_restore_access(world.recovery, arn, "", "", "")
    sid = a.session.session.session_id
    for caller in (world.admin, world.auditor, world.recovery, world.owner, world.approver("bob")):
        assert (await world.app.sessions.get_session(caller, sid)).session.session_id == sid
    for caller in (world.stranger, world.service, world.approver("dave")):
        with pytest.raises(PermissionDenied):
            await world.app.sessions.get_session(caller, sid)
    assert (
        len((await world.app.sessions.list_sessions(world.owner, SessionQuery(), 0, "")).items) == 1
    )
    assert (
        await world.app.sessions.list_sessions(world.stranger, SessionQuery(), 0, "")
    ).items == ()
    assert (
        await world.app.sessions.list_sessions(world.approver("dave"), SessionQuery(), 0, "")
    ).items == ()
    assigned = await world.app.sessions.list_assigned(world.approver("bob"), None, True, 0, "")
    assert [s.session.session_id for s in assigned.items] == [sid]
    await world.vote("bob", sid)
    assigned = await world.app.sessions.list_assigned(world.approver("bob"), None, True, 0, "")
    assert assigned.items == ()
    mine = await world.app.sessions.list_assigned(world.approver("bob"), None, False, 0, "")
    assert len(mine.items) == 1
    with pytest.raises(PermissionDenied):
        await world.app.sessions.list_assigned(world.owner, None, True, 0, "")
    with pytest.raises(NotFound):
        await world.app.sessions.get_session(world.admin, "ses-nope")


async def test_list_sessions_filters_and_pages(world: World) -> None:
    arn = await world.vault()
    ids = []
    for _ in range(3):
        a = await world.app.vaults.request_restore_access(world.recovery, arn, "", "", "")
        ids.append(a.session.session.session_id)
        await world.app.sessions.cancel_session(world.recovery, ids[-1], "")
        world.clock.advance(timedelta(seconds=1))
    generic = await world.app.sessions.start_session(
        world.service, world.team_id, "billing:Refund", "invoice/7", {"amount": "10"}, "", ""
    )
    q = SessionQuery(requester_account_id=RECOVERY)
    first = await world.app.sessions.list_sessions(world.admin, q, 2, "")
    assert [s.session.session_id for s in first.items] == ids[::-1][:2]
    second = await world.app.sessions.list_sessions(world.admin, q, 2, first.next_page_token)
    assert [s.session.session_id for s in second.items] == [ids[0]]
    assert second.next_page_token == ""
    with pytest.raises(InvalidArgument):
        await world.app.sessions.list_sessions(
            world.admin, SessionQuery(action="x"), 2, first.next_page_token
        )
    by_action = await world.app.sessions.list_sessions(
        world.admin, SessionQuery(action="billing:Refund"), 0, ""
    )
    assert [s.session.session_id for s in by_action.items] == [generic.session.session_id]
    by_kind = await world.app.sessions.list_sessions(
        world.admin, SessionQuery(kind=SessionKind.RESTORE_ACCESS, team_id=world.team_id), 0, ""
    )
    assert len(by_kind.items) == 3
    window = await world.app.sessions.list_sessions(
        world.admin,
        SessionQuery(create_time_start=world.clock.now - timedelta(seconds=1)),
        0,
        "",
    )
    assert len(window.items) == 2
    svc = await world.app.sessions.list_sessions(world.service, SessionQuery(), 0, "")
    assert [s.session.session_id for s in svc.items] == [generic.session.session_id]


async def test_generic_session_start_vote_complete(world: World) -> None:
    started = await world.app.sessions.start_session(
        world.service, world.team_id, "billing:Refund", "invoice/7", {"amount": "10"}, "pls", "s1"
    )
    again = await world.app.sessions.start_session(
        world.service, world.team_id, "billing:Refund", "invoice/7", {"amount": "10"}, "pls", "s1"
    )
    assert again.session.session_id == started.session.session_id
    sid = started.session.session_id
    for bad in (world.owner, world.admin):
        with pytest.raises(PermissionDenied):
            await world.app.sessions.start_session(
                bad, world.team_id, "billing:Refund", "invoice/7", {}, "", ""
            )
    with pytest.raises(InvalidArgument):
        await world.app.sessions.start_session(
            world.service, world.team_id, "backup:CreateRestoreAccessBackupVault", "x", {}, "", ""
        )
    from airlock_server.domain.principals import Principal, PrincipalKind

    with pytest.raises(PermissionDenied):
        await world.app.sessions.start_session(
            Principal(PrincipalKind.SERVICE, "other"), world.team_id, "a:b", "x", {}, "", ""
        )
    with pytest.raises(FailedPrecondition):
        await world.app.sessions.complete_session(
            world.service, sid, ExecutionStatus.EXECUTED, "", ""
        )
    await world.vote("alice", sid)
    approved = await world.vote("carol", sid)
    assert approved.session.state is SessionState.APPROVED
    assert approved.session.execution_status is ExecutionStatus.PENDING
    with pytest.raises(PermissionDenied):
        await world.app.sessions.complete_session(
            Principal(PrincipalKind.SERVICE, "other"), sid, ExecutionStatus.EXECUTED, "", ""
        )
    done = await world.app.sessions.complete_session(
        world.service, sid, ExecutionStatus.FAILED, "refund bounced", ""
    )
    assert done.session.execution_status is ExecutionStatus.FAILED
    assert done.session.execution_message == "refund bounced"
    with pytest.raises(FailedPrecondition) as twice:
        await world.app.sessions.complete_session(
            world.service, sid, ExecutionStatus.EXECUTED, "", ""
        )
    assert twice.value.reason == "ALREADY_COMPLETED"


async def test_watch_follows_until_final(world: World) -> None:
    import asyncio

    arn = await world.vault()
    a = await world.app.vaults.request_restore_access(world.recovery, arn, "", "", "")
    sid = a.session.session.session_id
    updates: asyncio.Queue[tuple[SessionState, int]] = asyncio.Queue()
    seen: list[tuple[SessionState, int]] = []

    async def follow() -> None:
        async for view in world.app.sessions.watch(world.recovery, sid):
            await updates.put((view.session.state, len(view.session.votes)))

    other = world.another_wiring()
    task = asyncio.create_task(follow())
    seen.append(await asyncio.wait_for(updates.get(), 30))
    await world.vote("alice", sid, app=other)
    seen.append(await asyncio.wait_for(updates.get(), 30))
    await world.vote("bob", sid, app=other)
    await asyncio.wait_for(task, 30)
    seen.append(updates.get_nowait())
    assert updates.empty()
    assert seen == [
        (SessionState.PENDING, 0),
        (SessionState.PENDING, 1),
        (SessionState.APPROVED, 2),
    ]


async def test_vault_rules(world: World) -> None:
    with pytest.raises(PermissionDenied):
        await world.app.vaults.create_vault(world.owner, RECOVERY, "x", 7, 8, {}, "")
    with pytest.raises(PermissionDenied):
        await world.app.vaults.create_vault(world.admin, "", "x", 7, 8, {}, "")
    with pytest.raises(InvalidArgument):
        await world.app.vaults.create_vault(world.owner, "", "x", 6, 8, {}, "")
    arn = await world.vault()
    with pytest.raises(AlreadyExists):
        await world.app.vaults.create_vault(world.owner, "", "prod-lag", 7, 8, {}, "")
    with pytest.raises(FailedPrecondition) as same:
        await world.app.vaults.associate(world.owner, arn, world.team_id, "", "")
    assert same.value.reason == "TEAM_ALREADY_ASSOCIATED"
    bare = await world.app.vaults.create_vault(world.owner, "", "bare", 7, 8, {}, "")
    with pytest.raises(FailedPrecondition) as none:
        await world.app.vaults.request_restore_access(world.owner, bare.vault_arn, "", "", "")
    assert none.value.reason == "NO_TEAM_ASSOCIATED"
    # Another account may not see a vault without a team: it learns nothing of it.
    with pytest.raises(PermissionDenied) as unseen:
        await world.app.vaults.request_restore_access(world.recovery, bare.vault_arn, "", "", "")
    assert unseen.value.reason == "NOT_VISIBLE"
    listed = await world.app.vaults.list_vaults(world.owner, "", "", 1, "")
    assert len(listed.items) == 1
    assert listed.next_page_token
    rest = await world.app.vaults.list_vaults(world.owner, "", "", 1, listed.next_page_token)
    assert len(rest.items) == 1
    assert not rest.next_page_token
    assert (await world.app.vaults.list_vaults(world.recovery, "", "", 0, "")).items == ()
    with pytest.raises(PermissionDenied):
        await world.app.vaults.list_vaults(world.recovery, OWNER, "", 0, "")
    # The recovery account sees the vault through the shared team; a stranger does not.
    assert (await world.app.vaults.get_vault(world.recovery, arn)).vault_arn == arn
    with pytest.raises(PermissionDenied):
        await world.app.vaults.get_vault(world.stranger, arn)
    with pytest.raises(NotFound):
        await world.app.vaults.get_vault(world.owner, arn + "x")
    with pytest.raises(PermissionDenied):
        await world.app.vaults.check_access(world.recovery, arn, RECOVERY)
    with pytest.raises(DomainError):
        await world.app.vaults.check_access(world.service, arn, "12")


@pytest.mark.parametrize("backend", ["postgresql"])
async def test_watch_wakes_on_notify_not_on_the_safety_interval(world: World) -> None:
    """With a safety interval of an hour, a watcher still sees votes committed through another
    wiring: the log's LISTEN connection wakes it."""
    import asyncio

    from airlock_server.app.sessions import SessionService
    from airlock_server.persistence.db import session_factory
    from airlock_server.persistence.event_log import PgListenSignal
    from airlock_server.persistence.events import SqlEventLogReader

    signal = PgListenSignal(world.url)
    watching = SessionService(
        world.app.deps,
        3600.0,
        log=SqlEventLogReader(session_factory(world.app.engine)),
        signal=signal,
    )
    arn = await world.vault()
    a = await world.app.vaults.request_restore_access(world.recovery, arn, "", "", "")
    sid = a.session.session.session_id
    stream = watching.watch(world.recovery, sid)
    try:
        first = await asyncio.wait_for(anext(stream), 30)
        assert (first.session.state, len(first.session.votes)) == (SessionState.PENDING, 0)
        other = world.another_wiring()
        waiting = asyncio.ensure_future(anext(stream))
        await asyncio.sleep(0)  # the watcher is now waiting on the signal
        await world.vote("alice", sid, app=other)
        second = await asyncio.wait_for(waiting, 30)
        assert (second.session.state, len(second.session.votes)) == (SessionState.PENDING, 1)
        await world.vote("bob", sid, app=other)
        third = await asyncio.wait_for(anext(stream), 30)
        assert third.session.state is SessionState.APPROVED
        with pytest.raises(StopAsyncIteration):
            await asyncio.wait_for(anext(stream), 30)
        assert signal.listening
    finally:
        await stream.aclose()
        await signal.close()
