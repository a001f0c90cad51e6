"""Team health and baselines on SQLite and PostgreSQL: activity recorded by invitation
answers, votes and baseline answers; the baseline flow; who did not answer; refusals."""

from __future__ import annotations

import asyncio
from datetime import timedelta

import pytest
from alembic import command
from integration.harness import Harness
from integration.recovery.recovery_world import World
from sqlalchemy import text

from airlock_server.app.ports import SessionQuery
from airlock_server.domain.errors import (
    DomainError,
    FailedPrecondition,
    InvalidArgument,
    NotFound,
    PermissionDenied,
)
from airlock_server.domain.health import Activity, ActivityKind, HealthStatus, TeamHealth
from airlock_server.domain.principals import Principal, PrincipalKind
from airlock_server.domain.sessions import (
    ExecutionStatus,
    SessionKind,
    SessionState,
    SessionStatus,
    VoteDecision,
)
from airlock_server.domain.teams import TeamSpec
from airlock_server.persistence.migrate import alembic_config, upgrade

pytestmark = pytest.mark.asyncio

DAY = timedelta(days=1)


async def health(
    world: World, window: timedelta | None = None, app: Harness | None = None
) -> TeamHealth:
    app = app or world.app
    found: TeamHealth = await app.teams.get_team_health(world.admin, world.team_id, window)
    return found


def kinds(h: TeamHealth) -> dict[str, ActivityKind | None]:
    return {a.approver_id: a.last_activity.kind if a.last_activity else None for a in h.approvers}


def actives(h: TeamHealth) -> dict[str, bool]:
    return {a.approver_id: a.active for a in h.approvers}


async def generic_session(world: World) -> str:
    view = await world.app.sessions.start_session(
        world.service, world.team_id, "db:DropTable", "db/orders", {}, "", ""
    )
    session_id: str = view.session.session_id
    return session_id


async def not_answered(world: World, session_id: str) -> list[str]:
    s = (await world.app.sessions.get_session(world.admin, session_id)).session
    voted = {v.approver_id for v in s.votes}
    return [a for a in s.approver_ids if a not in voted]


# --- activity -------------------------------------------------------------------------------


async def test_invitation_answers_make_a_new_team_healthy(world: World) -> None:
    h = await health(world)
    assert h.status is HealthStatus.HEALTHY
    assert (h.active_approvers, h.min_approvals, h.number_of_approvers, h.slack) == (3, 2, 3, 1)
    assert h.quorum_reachable
    assert h.activity_window == timedelta(days=90)
    assert h.evaluate_time == world.clock.now
    assert set(kinds(h).values()) == {ActivityKind.RESPONDED_TO_INVITATION}
    assert all(a.identity_enabled and a.key_enrolled for a in h.approvers)
    assert all(a.last_activity and a.last_activity.time == world.clock.now for a in h.approvers)


async def test_activity_ages_out_of_the_window(world: World) -> None:
    world.clock.advance(90 * DAY)
    assert (await health(world)).status is HealthStatus.HEALTHY  # the edge is inclusive
    world.clock.advance(timedelta(seconds=1))
    h = await health(world)
    assert (h.status, h.active_approvers, h.slack, h.quorum_reachable) == (
        HealthStatus.UNHEALTHY,
        0,
        -2,
        False,
    )
    # A longer window counts them again.
    assert (await health(world, 120 * DAY)).status is HealthStatus.HEALTHY


async def test_votes_record_activity_before_they_are_answered(world: World) -> None:
    world.clock.advance(100 * DAY)
    session_id = await generic_session(world)
    world.clock.advance(timedelta(minutes=5))
    await world.vote("alice", session_id)
    h = await health(world)
    assert kinds(h)["alice"] is ActivityKind.VOTED
    assert actives(h) == {"alice": True, "bob": False, "carol": False}
    assert h.status is HealthStatus.UNHEALTHY
    alice = next(a for a in h.approvers if a.approver_id == "alice")
    assert alice.last_activity == Activity(ActivityKind.VOTED, world.clock.now)

    # A rejection is activity too.
    world.clock.advance(timedelta(minutes=5))
    await world.vote("bob", session_id, VoteDecision.REJECT)
    h = await health(world)
    assert kinds(h)["bob"] is ActivityKind.VOTED
    assert (h.status, h.active_approvers) == (HealthStatus.AT_RISK, 2)

    # The team as the API shows it carries the same last activity.
    shown = await world.app.teams.activity_of([world.team_id])
    assert shown[world.team_id]["alice"].kind is ActivityKind.VOTED
    assert shown[world.team_id]["carol"].kind is ActivityKind.RESPONDED_TO_INVITATION


async def test_a_refused_vote_records_no_activity(world: World) -> None:
    world.clock.advance(100 * DAY)
    session_id = await generic_session(world)
    s = (await world.app.sessions.get_session(world.admin, session_id)).session
    with pytest.raises(DomainError):
        await world.app.sessions.vote(
            world.approver("alice"),
            session_id,
            VoteDecision.APPROVE,
            "",
            world.sign("bob", s, VoteDecision.APPROVE),  # not alice's key
            "",
        )
    assert kinds(await health(world))["alice"] is ActivityKind.RESPONDED_TO_INVITATION


async def test_an_older_activity_never_replaces_a_later_one(world: World) -> None:
    now = world.clock.now
    async with world.app.deps.uow() as uow:
        await uow.activity.record(world.team_id, "alice", Activity(ActivityKind.VOTED, now + DAY))
        await uow.activity.record(
            world.team_id, "alice", Activity(ActivityKind.BASELINED, now - DAY)
        )
        await uow.commit()
    async with world.app.deps.uow() as uow:
        stored = (await uow.activity.of_teams([world.team_id]))[world.team_id]["alice"]
    assert stored == Activity(ActivityKind.VOTED, now + DAY)


async def test_activity_written_at_once_by_many_keeps_the_later(world: World) -> None:
    """PostgreSQL writes activity after the vote's commit, batched (ActivityWriter): callers
    racing on the same rows each get theirs stored or overtaken by a later one."""
    now = world.clock.now

    async def record(name: str, minutes: int) -> None:
        async with world.app.deps.uow() as uow:
            at = now + timedelta(minutes=minutes)
            await uow.activity.record(world.team_id, name, Activity(ActivityKind.VOTED, at))
            await uow.commit()

    await asyncio.gather(
        *(record(name, m) for m in (3, 1, 5, 2, 4) for name in ("alice", "bob", "carol"))
    )
    async with world.app.deps.uow() as uow:
        stored = (await uow.activity.of_teams([world.team_id]))[world.team_id]
    assert {name: a.time for name, a in stored.items()} == {
        name: now + timedelta(minutes=5) for name in ("alice", "bob", "carol")
    }


async def test_a_disabled_identity_is_not_active(world: World) -> None:
    await world.app.identities.disable_approver(world.admin, "carol", "")
    h = await health(world)
    carol = next(a for a in h.approvers if a.approver_id == "carol")
    assert not carol.identity_enabled
    assert not carol.active
    assert (h.status, h.active_approvers, h.slack) == (HealthStatus.AT_RISK, 2, 0)


async def test_activity_is_per_team(world: World) -> None:
    other = await world.make_team("second", ("alice", "bob", "dave"))
    world.clock.advance(100 * DAY)
    await world.share(other, world.service)
    view = await world.app.sessions.start_session(
        world.service, other, "db:DropTable", "db/x", {}, "", ""
    )
    await world.vote("alice", view.session.session_id)
    mine = await health(world)
    theirs = await world.app.teams.get_team_health(world.admin, other, None)
    assert not actives(mine)["alice"]
    assert actives(theirs)["alice"]


# --- baselines --------------------------------------------------------------------------------


async def test_the_baseline_flow_and_who_did_not_answer(world: World) -> None:
    world.clock.advance(100 * DAY)
    assert (await health(world)).status is HealthStatus.UNHEALTHY

    started = await world.app.teams.start_team_baseline(
        world.admin, world.team_id, (), "still there?", ""
    )
    s = started.session
    assert s.kind is SessionKind.BASELINE
    assert s.action == "mpa:StartApprovalTeamBaseline"
    assert s.protected_resource.endswith(f"approval-team/{world.team_id}")
    assert s.approver_ids == ("alice", "bob", "carol")
    assert s.min_approvals == 3  # a baseline completes when every approver asked answered
    assert s.comment == "still there?"
    assert started.team_name == "guardians"

    await world.vote("alice", s.session_id)
    done = await world.vote("bob", s.session_id)
    assert done.session.state is SessionState.PENDING
    assert await not_answered(world, s.session_id) == ["carol"]
    h = await health(world)
    assert kinds(h) == {
        "alice": ActivityKind.BASELINED,
        "bob": ActivityKind.BASELINED,
        "carol": ActivityKind.RESPONDED_TO_INVITATION,
    }
    assert (h.status, h.active_approvers) == (HealthStatus.AT_RISK, 2)

    last = await world.vote("carol", s.session_id)
    assert last.session.state is SessionState.APPROVED
    assert last.session.execution_status is ExecutionStatus.EXECUTED
    assert await not_answered(world, s.session_id) == []
    assert (await health(world)).status is HealthStatus.HEALTHY

    # The team is untouched: a baseline is not an approval of anything.
    team = await world.app.teams.get_team(world.admin, world.team_id)
    assert team.current.version == 1
    assert team.update_session_id is None


async def test_a_baseline_of_chosen_approvers_needs_only_them(world: World) -> None:
    started = await world.app.teams.start_team_baseline(
        world.admin, world.team_id, ("carol", "alice"), "", ""
    )
    s = started.session
    assert (s.approver_ids, s.min_approvals) == (("carol", "alice"), 2)
    with pytest.raises(PermissionDenied) as err:
        await world.vote("bob", s.session_id)
    assert err.value.reason == "NOT_SESSION_APPROVER"
    await world.vote("alice", s.session_id)
    done = await world.vote("carol", s.session_id)
    assert done.session.state is SessionState.APPROVED


async def test_an_unanswered_baseline_expires_and_names_who_did_not_answer(world: World) -> None:
    started = await world.app.teams.start_team_baseline(world.admin, world.team_id, (), "", "")
    sid = started.session.session_id
    await world.vote("bob", sid)
    world.clock.advance(25 * timedelta(hours=1))
    assert await world.app.sessions.sweep_expired_sessions() >= 1
    ended = (await world.app.sessions.get_session(world.admin, sid)).session
    assert (ended.state, ended.status) == (SessionState.FAILED, SessionStatus.EXPIRED)
    assert await not_answered(world, sid) == ["alice", "carol"]
    listed = await world.app.sessions.list_sessions(
        world.auditor, SessionQuery(team_id=world.team_id, kind=SessionKind.BASELINE), 10, ""
    )
    assert [v.session.session_id for v in listed.items] == [sid]


async def test_a_baseline_is_answered_with_approve_only(world: World) -> None:
    started = await world.app.teams.start_team_baseline(world.admin, world.team_id, (), "", "")
    sid = started.session.session_id
    before = await world.app.snapshot()
    with pytest.raises(InvalidArgument) as err:
        await world.vote("alice", sid, VoteDecision.REJECT)
    assert err.value.violations[0].field == "decision"
    assert await world.app.snapshot() == before
    assert kinds(await health(world))["alice"] is ActivityKind.RESPONDED_TO_INVITATION


async def test_a_baseline_refuses_bad_approvers_by_field(world: World) -> None:
    before = await world.app.snapshot()
    with pytest.raises(InvalidArgument) as err:
        await world.app.teams.start_team_baseline(
            world.admin, world.team_id, ("alice", "dave", "alice"), "", ""
        )
    assert [v.field for v in err.value.violations] == ["approver_ids[1]", "approver_ids[2]"]
    with pytest.raises(InvalidArgument) as err:
        await world.app.teams.start_team_baseline(world.admin, world.team_id, (), "x" * 201, "")
    assert err.value.violations[0].field == "comment"
    assert await world.app.snapshot() == before


async def test_a_baseline_needs_an_active_team(world: World) -> None:
    pending = await world.app.teams.create_team(
        world.admin,
        TeamSpec("waiting", "", ("alice", "bob"), 2, DAY, DAY),
        "",
    )
    before = await world.app.snapshot()
    with pytest.raises(FailedPrecondition) as err:
        await world.app.teams.start_team_baseline(world.admin, pending.team_id, (), "", "")
    assert err.value.reason == "TEAM_NOT_ACTIVE"
    with pytest.raises(NotFound):
        await world.app.teams.start_team_baseline(world.admin, "team-nope", (), "", "")
    assert await world.app.snapshot() == before
    # The pending team's health: nobody accepted yet, so quorum is out of reach.
    h = await world.app.teams.get_team_health(world.admin, pending.team_id, None)
    assert (h.status, h.active_approvers) == (HealthStatus.UNHEALTHY, 0)


async def test_a_baseline_request_id_makes_one_session(world: World) -> None:
    first = await world.app.teams.start_team_baseline(world.admin, world.team_id, (), "", "base-1")
    again = await world.app.teams.start_team_baseline(world.admin, world.team_id, (), "", "base-1")
    assert first.session.session_id == again.session.session_id
    assert await world.app.count("sessions", "kind = 'BASELINE'") == 1


# --- refusals -------------------------------------------------------------------------------


OUTSIDERS = [
    Principal(PrincipalKind.AUDITOR, ""),
    Principal(PrincipalKind.ACCOUNT, "111111111111"),
    Principal(PrincipalKind.SERVICE, "billing"),
    Principal(PrincipalKind.APPROVER, "alice"),
]


@pytest.mark.parametrize("caller", OUTSIDERS, ids=lambda p: p.kind.value)
async def test_only_the_admin_starts_a_baseline_and_a_refusal_changes_nothing(
    world: World, caller: Principal
) -> None:
    before = await world.app.snapshot()
    with pytest.raises(PermissionDenied):
        await world.app.teams.start_team_baseline(caller, world.team_id, (), "", "")
    assert await world.app.snapshot() == before


@pytest.mark.parametrize("caller", OUTSIDERS[1:], ids=lambda p: p.kind.value)
async def test_only_admin_and_auditors_read_health(world: World, caller: Principal) -> None:
    with pytest.raises(PermissionDenied):
        await world.app.teams.get_team_health(caller, world.team_id, None)
    seen = await world.app.teams.get_team_health(world.auditor, world.team_id, None)
    assert seen.status is HealthStatus.HEALTHY


async def test_health_of_an_unknown_team_and_a_bad_window(world: World) -> None:
    with pytest.raises(NotFound):
        await world.app.teams.get_team_health(world.admin, "team-nope", None)
    with pytest.raises(InvalidArgument) as err:
        await world.app.teams.get_team_health(world.admin, world.team_id, timedelta(minutes=1))
    assert err.value.violations[0].field == "activity_window"


# --- the migration fills the table from what was stored before it -----------------------------


async def test_the_migration_backfills_activity_from_answers_and_votes(world: World) -> None:
    session_id = await generic_session(world)
    world.clock.advance(timedelta(hours=1))
    await world.vote("alice", session_id)
    world.clock.advance(timedelta(hours=1))
    base = await world.app.teams.start_team_baseline(world.admin, world.team_id, ("bob",), "", "")
    await world.vote("bob", base.session.session_id)
    before = await health(world)

    config = alembic_config(world.url)
    await world.app.engine.dispose()
    await asyncio.to_thread(command.downgrade, config, "0003")
    await upgrade(world.url)

    async with world.app.engine.connect() as conn:
        rows = await conn.scalar(text("SELECT count(*) FROM approver_activity"))
    assert rows == 3
    # Downgrading past 0008 dropped the rows' MACs (a keyed server now refuses the rows: the
    # operator re-vouches for them, docs/threat-model.md); a server without a key reads them.
    after = await health(world, app=world.another_wiring(keyless=True))
    assert kinds(after) == {
        "alice": ActivityKind.VOTED,
        "bob": ActivityKind.BASELINED,
        "carol": ActivityKind.RESPONDED_TO_INVITATION,
    }
    assert [a.last_activity for a in after.approvers] == [a.last_activity for a in before.approvers]
