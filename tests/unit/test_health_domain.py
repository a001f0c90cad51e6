"""Team health: who counts as active, the verdict table, the window's edges, baselines."""

from __future__ import annotations

from collections.abc import Mapping
from datetime import UTC, datetime, timedelta

import pytest

from airlock_server.domain.errors import InvalidArgument
from airlock_server.domain.health import (
    DEFAULT_ACTIVITY_WINDOW,
    Activity,
    ActivityKind,
    HealthStatus,
    activity_of_vote,
    activity_window,
    baseline_approvers,
    latest,
    status_of,
    team_health,
    within,
)
from airlock_server.domain.principals import Principal, PrincipalKind
from airlock_server.domain.sessions import (
    Session,
    SessionKind,
    SessionState,
    VoteDecision,
    cast_vote,
    new_session,
)
from airlock_server.domain.teams import (
    InvitationState,
    Team,
    TeamMember,
    TeamState,
    TeamStatus,
    TeamVersion,
)

NOW = datetime(2026, 6, 1, tzinfo=UTC)
DAY = timedelta(days=1)
WINDOW = DEFAULT_ACTIVITY_WINDOW
IDS = ("ap0", "ap1", "ap2", "ap3", "ap4")


def member(
    i: int, state: InvitationState = InvitationState.ACCEPTED, key: bool = True
) -> TeamMember:
    return TeamMember(
        IDS[i],
        f"inv-{i}",
        state,
        NOW - 200 * DAY if state is not InvitationState.PENDING else None,
        bytes([i]) * 32 if key and state is InvitationState.ACCEPTED else None,
    )


def team(members: tuple[TeamMember, ...], m: int) -> Team:
    version = TeamVersion(
        version=3,
        description="",
        min_approvals=m,
        session_ttl=DAY,
        invitation_ttl=DAY,
        members=members,
        create_time=NOW - 300 * DAY,
        invitation_expire_time=NOW - 299 * DAY,
    )
    return Team(
        team_id="team-1",
        arn="arn:aws:mpa:us-east-1::approval-team/team-1",
        name="guardians",
        state=TeamState.ACTIVE,
        status=TeamStatus.ACTIVE,
        status_message="",
        current=version,
        revision=1,
        create_time=NOW - 300 * DAY,
        update_time=NOW - 300 * DAY,
    )


def voted(days_ago: float, kind: ActivityKind = ActivityKind.VOTED) -> Activity:
    return Activity(kind, NOW - timedelta(days=days_ago))


def everyone(n: int) -> dict[str, bool]:
    return {a: True for a in IDS[:n]}


def health(
    n: int,
    m: int,
    activity: Mapping[str, Activity],
    enabled: Mapping[str, bool] | None = None,
    members: tuple[TeamMember, ...] | None = None,
    window: timedelta = WINDOW,
) -> tuple[HealthStatus, int, int, bool]:
    t = team(members or tuple(member(i) for i in range(n)), m)
    h = team_health(t, everyone(n) if enabled is None else enabled, activity, window, NOW)
    return h.status, h.active_approvers, h.slack, h.quorum_reachable


# --- the verdict table --------------------------------------------------------------------


@pytest.mark.parametrize(
    ("slack", "status"),
    [
        (3, HealthStatus.HEALTHY),
        (1, HealthStatus.HEALTHY),
        (0, HealthStatus.AT_RISK),
        (-1, HealthStatus.UNHEALTHY),
        (-3, HealthStatus.UNHEALTHY),
    ],
)
def test_status_of_slack(slack: int, status: HealthStatus) -> None:
    assert status_of(slack) is status


@pytest.mark.parametrize(
    ("n", "m", "active", "expected"),
    [
        # N, M, how many are active -> status, active, slack, quorum reachable
        (3, 2, 3, (HealthStatus.HEALTHY, 3, 1, True)),
        (3, 2, 2, (HealthStatus.AT_RISK, 2, 0, True)),
        (3, 2, 1, (HealthStatus.UNHEALTHY, 1, -1, False)),
        (3, 2, 0, (HealthStatus.UNHEALTHY, 0, -2, False)),
        (5, 3, 5, (HealthStatus.HEALTHY, 5, 2, True)),
        (5, 3, 3, (HealthStatus.AT_RISK, 3, 0, True)),
        (2, 2, 2, (HealthStatus.AT_RISK, 2, 0, True)),
        (2, 2, 1, (HealthStatus.UNHEALTHY, 1, -1, False)),
    ],
)
def test_verdict_table(
    n: int, m: int, active: int, expected: tuple[HealthStatus, int, int, bool]
) -> None:
    activity = {IDS[i]: voted(1) if i < active else voted(365) for i in range(n)}
    assert health(n, m, activity) == expected


def test_the_report_carries_every_approver_and_the_team() -> None:
    t = team(tuple(member(i) for i in range(3)), 2)
    activity = {"ap0": voted(1), "ap1": voted(5, ActivityKind.BASELINED)}
    h = team_health(t, everyone(3), activity, WINDOW, NOW)
    assert (h.team_id, h.team_name, h.team_version) == ("team-1", "guardians", 3)
    assert (h.min_approvals, h.number_of_approvers, h.activity_window) == (2, 3, WINDOW)
    assert h.evaluate_time == NOW
    assert [a.approver_id for a in h.approvers] == ["ap0", "ap1", "ap2"]
    assert [a.active for a in h.approvers] == [True, True, False]
    assert h.approvers[1].last_activity == activity["ap1"]
    assert h.approvers[2].last_activity is None


# --- the window's edges -------------------------------------------------------------------


@pytest.mark.parametrize(
    ("age", "active"),
    [
        (timedelta(0), True),
        (WINDOW - timedelta(seconds=1), True),
        (WINDOW, True),  # exactly the window: still inside
        (WINDOW + timedelta(microseconds=1), False),
        (WINDOW + DAY, False),
        (-DAY, True),  # a replica's clock ahead of ours: recent all the same
    ],
)
def test_window_edges(age: timedelta, active: bool) -> None:
    activity = Activity(ActivityKind.VOTED, NOW - age)
    assert within(activity, WINDOW, NOW) is active
    status, count, _, _ = health(2, 2, {"ap0": activity, "ap1": voted(1)})
    assert count == (2 if active else 1)
    assert status is (HealthStatus.AT_RISK if active else HealthStatus.UNHEALTHY)


def test_never_active_is_not_within_any_window() -> None:
    assert not within(None, timedelta(days=3650), NOW)


def test_a_shorter_window_makes_old_activity_inactive() -> None:
    activity = {"ap0": voted(1), "ap1": voted(20), "ap2": voted(40)}
    assert health(3, 2, activity)[0] is HealthStatus.HEALTHY
    assert health(3, 2, activity, window=30 * DAY)[:2] == (HealthStatus.AT_RISK, 2)
    assert health(3, 2, activity, window=10 * DAY)[:2] == (HealthStatus.UNHEALTHY, 1)


@pytest.mark.parametrize("kind", list(ActivityKind))
def test_every_kind_of_activity_counts(kind: ActivityKind) -> None:
    activity = {"ap0": voted(1, kind), "ap1": voted(1, kind)}
    assert health(2, 2, activity)[:2] == (HealthStatus.AT_RISK, 2)


@pytest.mark.parametrize(
    ("window", "expected"),
    [
        (None, DEFAULT_ACTIVITY_WINDOW),
        (timedelta(hours=1), timedelta(hours=1)),
        (timedelta(days=30), timedelta(days=30)),
        (timedelta(days=3650), timedelta(days=3650)),
    ],
)
def test_activity_window_default_and_bounds(window: timedelta | None, expected: timedelta) -> None:
    assert timedelta(days=90) == DEFAULT_ACTIVITY_WINDOW
    assert activity_window(window) == expected


@pytest.mark.parametrize(
    "window", [timedelta(minutes=59), timedelta(days=3651), timedelta(seconds=-1)]
)
def test_activity_window_out_of_bounds_names_the_field(window: timedelta) -> None:
    with pytest.raises(InvalidArgument) as err:
        activity_window(window)
    assert err.value.violations[0].field == "activity_window"


# --- identities, keys, invitations ----------------------------------------------------------


def test_a_disabled_identity_is_not_active_however_recent() -> None:
    activity = {a: voted(1) for a in IDS[:3]}
    enabled = {"ap0": True, "ap1": False, "ap2": True}
    t = team(tuple(member(i) for i in range(3)), 2)
    h = team_health(t, enabled, activity, WINDOW, NOW)
    assert [a.identity_enabled for a in h.approvers] == [True, False, True]
    assert [a.active for a in h.approvers] == [True, False, True]
    assert h.status is HealthStatus.AT_RISK


def test_an_unknown_identity_counts_as_disabled() -> None:
    activity = {a: voted(1) for a in IDS[:2]}
    assert health(2, 2, activity, enabled={"ap0": True})[:2] == (HealthStatus.UNHEALTHY, 1)


def test_a_missing_key_is_not_active() -> None:
    members = (member(0), member(1, key=False), member(2))
    activity = {a: voted(1) for a in IDS[:3]}
    t = team(members, 2)
    h = team_health(t, everyone(3), activity, WINDOW, NOW)
    assert [a.key_enrolled for a in h.approvers] == [True, False, True]
    assert [a.active for a in h.approvers] == [True, False, True]
    assert h.status is HealthStatus.AT_RISK


@pytest.mark.parametrize(
    "state",
    [
        InvitationState.PENDING,
        InvitationState.DECLINED,
        InvitationState.EXPIRED,
        InvitationState.CANCELLED,
    ],
)
def test_only_accepted_approvers_are_active(state: InvitationState) -> None:
    members = (member(0), member(1), member(2, state))
    activity = {a: voted(1) for a in IDS[:3]}
    t = team(members, 2)
    h = team_health(t, everyone(3), activity, WINDOW, NOW)
    assert h.approvers[2].invitation_state is state
    assert not h.approvers[2].active
    assert (h.status, h.active_approvers) == (HealthStatus.AT_RISK, 2)


def test_disabled_and_keyless_and_stale_together_make_quorum_unreachable() -> None:
    members = (member(0), member(1, key=False), member(2), member(3), member(4))
    enabled = {**everyone(5), "ap2": False}
    activity = {"ap0": voted(1), "ap1": voted(1), "ap2": voted(1), "ap3": voted(91)}
    status, count, slack, reachable = health(5, 3, activity, enabled=enabled, members=members)
    assert (status, count, slack, reachable) == (HealthStatus.UNHEALTHY, 1, -2, False)


# --- activity ---------------------------------------------------------------------------------


def test_the_later_activity_wins_and_a_tie_goes_to_the_newer_record() -> None:
    old, new = voted(5), voted(1, ActivityKind.BASELINED)
    assert latest(None, old) is old
    assert latest(old, new) is new
    assert latest(new, old) is new
    tie = Activity(ActivityKind.RESPONDED_TO_INVITATION, new.time)
    assert latest(new, tie) is tie


@pytest.mark.parametrize(
    ("kind", "activity"),
    [(SessionKind.BASELINE, ActivityKind.BASELINED)]
    + [(k, ActivityKind.VOTED) for k in SessionKind if k is not SessionKind.BASELINE],
)
def test_a_vote_on_a_baseline_is_a_baseline_answer(
    kind: SessionKind, activity: ActivityKind
) -> None:
    assert activity_of_vote(kind) is activity


# --- baselines --------------------------------------------------------------------------------


def test_a_baseline_asks_every_accepted_approver_by_default() -> None:
    members = (member(0), member(1), member(2, InvitationState.PENDING))
    assert baseline_approvers(team(members, 2).current, ()) == ("ap0", "ap1")


def test_a_baseline_asks_the_chosen_approvers_in_their_order() -> None:
    version = team(tuple(member(i) for i in range(3)), 2).current
    assert baseline_approvers(version, ("ap2", "ap0")) == ("ap2", "ap0")


def test_a_baseline_refuses_strangers_unanswered_and_duplicates_by_field() -> None:
    members = (member(0), member(1), member(2, InvitationState.DECLINED))
    with pytest.raises(InvalidArgument) as err:
        baseline_approvers(team(members, 2).current, ("ap0", "mallory", "ap2", "ap0"))
    fields = [v.field for v in err.value.violations]
    assert fields == ["approver_ids[1]", "approver_ids[2]", "approver_ids[3]"]


def _baseline(asked: tuple[str, ...]) -> Session:
    return new_session(
        session_id="ses-1",
        kind=SessionKind.BASELINE,
        team_id="team-1",
        team_version=3,
        approver_ids=asked,
        min_approvals=len(asked),
        requester=Principal(PrincipalKind.ADMIN, ""),
        protected_resource="arn:aws:mpa:us-east-1::approval-team/team-1",
        now=NOW,
        ttl=DAY,
    )


def test_a_baseline_completes_when_every_asked_approver_answered() -> None:
    s = _baseline(("ap0", "ap1", "ap2"))
    for i, approver in enumerate(("ap0", "ap1", "ap2")):
        s = cast_vote(s, approver, VoteDecision.APPROVE, "", b"s" * 64, NOW)
        expected = SessionState.APPROVED if i == 2 else SessionState.PENDING
        assert s.state is expected


def test_a_baseline_is_not_rejected() -> None:
    s = _baseline(("ap0", "ap1"))
    with pytest.raises(InvalidArgument) as err:
        cast_vote(s, "ap0", VoteDecision.REJECT, "", b"s" * 64, NOW)
    assert err.value.violations[0].field == "decision"
