"""A team that guards itself: updates and deletion, each voted by the current version."""

from __future__ import annotations

import itertools
from collections.abc import Callable
from dataclasses import replace
from datetime import UTC, datetime, timedelta

import pytest

from airlock_server.domain.errors import FailedPrecondition, InvalidArgument
from airlock_server.domain.sessions import KeyChange, SessionStatus
from airlock_server.domain.team_changes import (
    MAX_PENDING_WINDOW_DAYS,
    NewKey,
    TeamDeletion,
    apply_approved_update,
    approve_deletion,
    deletion_due,
    fail_deletion,
    fail_update,
    finish_deletion,
    has_pending_change,
    invitable_version,
    require_changeable,
    same_draft,
    settle_update_activation,
    start_deletion,
    start_update,
    team_draft,
    voters,
)
from airlock_server.domain.teams import (
    InvitationState,
    Team,
    TeamMember,
    TeamState,
    TeamStatus,
    TeamVersion,
)

T0 = datetime(2025, 1, 1, tzinfo=UTC)
DAY = timedelta(hours=24)


def ids() -> Callable[[], str]:
    counter = itertools.count(1)
    return lambda: f"inv-new-{next(counter)}"


def accepted(approver_id: str) -> TeamMember:
    return TeamMember(
        approver_id,
        f"inv-{approver_id}",
        InvitationState.ACCEPTED,
        response_time=T0,
        public_key=approver_id.encode().ljust(32, b"\0"),
    )


def active_team(approvers: tuple[str, ...] = ("a", "b", "c"), m: int = 2) -> Team:
    version = TeamVersion(1, "v1", m, DAY, DAY, tuple(accepted(a) for a in approvers), T0, T0 + DAY)
    return Team(
        "t1", "arn:t1", "guards", TeamState.ACTIVE, TeamStatus.ACTIVE, "", version, 3, T0, T0
    )


def update(team: Team, approvers: tuple[str, ...], m: int = 2, **kw: object) -> Team:
    return start_update(
        team,
        description="v2",
        approver_ids=approvers,
        min_approvals=m,
        session_ttl=None,
        invitation_ttl=None,
        session_id="us1",
        now=T0 + timedelta(hours=1),
        new_invitation_id=ids(),
        **kw,  # type: ignore[arg-type]
    )


NOW = T0 + timedelta(hours=2)


# --- starting an update ---


def test_update_drafts_the_next_version() -> None:
    team = update(active_team(), ("a", "b", "d"), m=3)
    assert team.state is TeamState.ACTIVE
    assert team.status is TeamStatus.UPDATE_PENDING_APPROVAL
    assert team.update_session_id == "us1"
    assert team.revision == 4
    assert team.current.version == 1  # the old version stays in force
    draft = team.pending
    assert draft is not None
    assert (draft.version, draft.min_approvals, draft.description) == (2, 3, "v2")
    states = {m.approver_id: m.invitation_state for m in draft.members}
    assert states == {
        "a": InvitationState.ACCEPTED,
        "b": InvitationState.ACCEPTED,
        "d": InvitationState.PENDING,
    }


def test_carried_over_approvers_keep_key_but_get_new_rows() -> None:
    old = active_team()
    draft = update(old, ("a", "b", "d")).pending
    assert draft is not None
    a = draft.member("a")
    assert a is not None
    assert a.public_key == old.current.member("a").public_key  # type: ignore[union-attr]
    assert a.response_time == T0
    assert a.invitation_id.startswith("inv-new-")
    assert len({m.invitation_id for m in draft.members}) == 3
    d = draft.member("d")
    assert d is not None
    assert d.public_key is None


NEW_B = b"B" * 32


def test_reenrolled_approvers_are_invited_again_bound_to_their_new_key() -> None:
    team = active_team()
    changed = update(
        team, ("a", "b", "c"), reenroll_approver_ids=("b",), new_keys=(NewKey("b", NEW_B),)
    )
    draft = changed.pending
    assert draft is not None
    assert draft.member("b").invitation_state is InvitationState.PENDING  # type: ignore[union-attr]
    assert draft.member("b").public_key is None  # type: ignore[union-attr]
    assert draft.member("b").approved_key == NEW_B  # type: ignore[union-attr]
    shown = team_draft(team, draft)
    assert [(m.approver_id, m.change, m.public_key) for m in shown.members] == [
        ("a", KeyChange.KEEPS_KEY, b"a".ljust(32, b"\0")),
        ("b", KeyChange.NEW_KEY, NEW_B),
        ("c", KeyChange.KEEPS_KEY, b"c".ljust(32, b"\0")),
    ]
    assert same_draft(shown, changed)
    assert not same_draft(replace(shown, min_approvals=3), changed)


def test_a_reenrolled_approver_needs_its_new_key_in_the_draft() -> None:
    with pytest.raises(InvalidArgument) as err:
        update(active_team(), ("a", "b", "c"), reenroll_approver_ids=("b",))
    assert err.value.reason == "NEW_KEY_REQUIRED"
    assert err.value.violations[0].field == "new_keys"


@pytest.mark.parametrize(
    ("new_keys", "field"),
    [
        ((NewKey("a", NEW_B),), "new_keys[0]"),  # a keeps its key: not invited
        ((NewKey("b", b"a".ljust(32, b"\0")),), "new_keys[0].public_key"),  # a's key
    ],
)
def test_a_new_key_is_only_for_an_invited_member_and_is_new(
    new_keys: tuple[NewKey, ...], field: str
) -> None:
    with pytest.raises(InvalidArgument) as err:
        update(active_team(), ("a", "b", "c"), reenroll_approver_ids=("b",), new_keys=new_keys)
    assert err.value.violations[0].field == field


def test_reenroll_must_name_members_of_the_new_set() -> None:
    with pytest.raises(InvalidArgument) as err:
        update(active_team(), ("a", "b"), reenroll_approver_ids=("c",))
    assert err.value.violations[0].field == "reenroll_approver_ids"


@pytest.mark.parametrize(
    ("approvers", "m", "field"),
    [
        (("a",), 2, "approver_ids"),
        (("a", "a", "b"), 2, "approver_ids"),
        (("a", "b"), 3, "min_approvals"),
        (("a", "b"), 1, "min_approvals"),
        (("a", "bad id"), 2, "approver_ids[1]"),
    ],
)
def test_update_uses_the_team_limits(approvers: tuple[str, ...], m: int, field: str) -> None:
    with pytest.raises(InvalidArgument) as err:
        update(active_team(), approvers, m=m)
    assert field in {v.field for v in err.value.violations}


@pytest.mark.parametrize("state", [TeamState.PENDING, TeamState.INACTIVE, TeamState.DELETING])
def test_only_active_teams_change(state: TeamState) -> None:
    team = replace(active_team(), state=state)
    for attempt in (
        lambda: update(team, ("a", "b")),
        lambda: start_deletion(team, pending_window_days=1, session_id="ds", now=NOW),
    ):
        with pytest.raises(FailedPrecondition) as err:
            attempt()
        assert err.value.reason == "TEAM_NOT_ACTIVE"
        assert state.value in err.value.message


@pytest.mark.parametrize(
    ("status", "pending"),
    [
        (TeamStatus.UPDATE_PENDING_APPROVAL, True),
        (TeamStatus.UPDATE_PENDING_ACTIVATION, True),
        (TeamStatus.DELETE_PENDING_APPROVAL, True),
        (TeamStatus.ACTIVE, False),
        (TeamStatus.UPDATE_FAILED_APPROVAL, False),
        (TeamStatus.UPDATE_FAILED_ACTIVATION, False),
        (TeamStatus.DELETE_FAILED_APPROVAL, False),
    ],
)
def test_one_pending_change_at_a_time(status: TeamStatus, pending: bool) -> None:
    team = replace(active_team(), status=status)
    assert has_pending_change(team) is pending
    if pending:
        with pytest.raises(FailedPrecondition) as err:
            require_changeable(team)
        assert err.value.reason == "TEAM_CHANGE_PENDING"
        assert status.value in err.value.message
    else:
        require_changeable(team)


def test_a_second_update_is_refused() -> None:
    team = update(active_team(), ("a", "b", "d"))
    with pytest.raises(FailedPrecondition) as err:
        update(team, ("a", "b"))
    assert err.value.reason == "TEAM_CHANGE_PENDING"


# --- outcome of the update session ---


def test_approved_update_without_new_invitees_takes_force_at_once() -> None:
    team = apply_approved_update(update(active_team(), ("a", "b"), m=2), NOW)
    assert team.status is TeamStatus.ACTIVE
    assert team.current.version == 2
    assert team.current.approver_ids == ("a", "b")
    assert team.pending is None
    assert team.update_session_id is None


def test_approved_update_with_new_invitees_waits_for_them() -> None:
    team = apply_approved_update(update(active_team(), ("a", "b", "d")), NOW)
    assert team.status is TeamStatus.UPDATE_PENDING_ACTIVATION
    assert team.current.version == 1
    assert team.pending is not None
    assert team.pending.invitation_expire_time == NOW + DAY  # the invitations open now
    assert invitable_version(team) is team.pending


def _answer(team: Team, approver_id: str, state: InvitationState) -> Team:
    assert team.pending is not None
    members = tuple(
        replace(m, invitation_state=state, response_time=NOW) if m.approver_id == approver_id else m
        for m in team.pending.members
    )
    return replace(team, pending=replace(team.pending, members=members))


def test_activation_when_every_new_invitee_accepts() -> None:
    team = apply_approved_update(update(active_team(), ("a", "b", "d", "e"), m=3), NOW)
    team = _answer(team, "d", InvitationState.ACCEPTED)
    assert settle_update_activation(team, NOW) is team  # still waiting for e
    team = _answer(team, "e", InvitationState.ACCEPTED)
    done = settle_update_activation(team, NOW)
    assert done.status is TeamStatus.ACTIVE
    assert (done.current.version, done.current.min_approvals) == (2, 3)
    assert voters(done.current) == ("a", "b", "d", "e")
    assert done.pending is None


@pytest.mark.parametrize(
    ("answer", "at", "message"),
    [
        (InvitationState.DECLINED, NOW, "declined"),
        (None, NOW + DAY, "expired"),
    ],
)
def test_failed_activation_keeps_the_old_version(
    answer: InvitationState | None, at: datetime, message: str
) -> None:
    team = apply_approved_update(update(active_team(), ("a", "b", "d")), NOW)
    if answer is not None:
        team = _answer(team, "d", answer)
    failed = settle_update_activation(team, at)
    assert failed.state is TeamState.ACTIVE
    assert failed.status is TeamStatus.UPDATE_FAILED_ACTIVATION
    assert failed.current.version == 1
    assert message in failed.status_message
    assert failed.pending is not None
    d = failed.pending.member("d")
    assert d is not None
    assert d.invitation_state is not InvitationState.PENDING
    require_changeable(failed)  # a new update may follow


@pytest.mark.parametrize(
    "outcome",
    [SessionStatus.REJECTED, SessionStatus.EXPIRED, SessionStatus.CANCELLED_BY_USER],
)
def test_rejected_update_keeps_the_old_version(outcome: SessionStatus) -> None:
    team = fail_update(update(active_team(), ("a", "b", "d")), outcome, NOW)
    assert team.state is TeamState.ACTIVE
    assert team.status is TeamStatus.UPDATE_FAILED_APPROVAL
    assert team.current.version == 1
    assert team.update_session_id is None
    assert outcome.value in team.status_message
    assert invitable_version(team) is None
    replaced = update(team, ("a", "c"))
    assert replaced.pending is not None
    assert replaced.pending.approver_ids == ("a", "c")


@pytest.mark.parametrize(
    "apply",
    [
        lambda t: apply_approved_update(t, NOW),
        lambda t: fail_update(t, SessionStatus.REJECTED, NOW),
    ],
)
def test_update_outcomes_need_a_pending_update(apply: Callable[[Team], Team]) -> None:
    with pytest.raises(FailedPrecondition) as err:
        apply(active_team())
    assert err.value.reason == "TEAM_STATUS_MISMATCH"
    assert "ACTIVE" in err.value.message


def test_settle_leaves_other_teams_alone() -> None:
    team = update(active_team(), ("a", "b", "d"))
    assert settle_update_activation(team, NOW + 10 * DAY) is team


def test_invitable_version_of_a_new_team() -> None:
    team = replace(active_team(), state=TeamState.PENDING, status=TeamStatus.PENDING_ACTIVATION)
    assert invitable_version(team) is team.current
    assert invitable_version(update(active_team(), ("a", "b", "d"))) is None


def test_voters_are_the_accepted_members() -> None:
    version = replace(
        active_team().current,
        members=(accepted("a"), TeamMember("b", "inv-b", InvitationState.PENDING)),
    )
    assert voters(version) == ("a",)


# --- deletion ---


def _deletion(days: int) -> tuple[Team, TeamDeletion]:
    return start_deletion(active_team(), pending_window_days=days, session_id="ds1", now=T0)


@pytest.mark.parametrize("days", [-1, MAX_PENDING_WINDOW_DAYS + 1])
def test_pending_window_bounds(days: int) -> None:
    with pytest.raises(InvalidArgument) as err:
        _deletion(days)
    assert err.value.violations[0].field == "pending_window_days"


def test_start_deletion_waits_for_the_team() -> None:
    team, deletion = _deletion(7)
    assert team.state is TeamState.ACTIVE
    assert team.status is TeamStatus.DELETE_PENDING_APPROVAL
    assert deletion == TeamDeletion("t1", "ds1", 7, T0)
    with pytest.raises(FailedPrecondition) as err:
        update(team, ("a", "b"))
    assert err.value.reason == "TEAM_CHANGE_PENDING"


def test_approved_deletion_runs_its_window() -> None:
    team, deletion = _deletion(7)
    team, deletion = approve_deletion(team, deletion, NOW)
    assert team.state is TeamState.DELETING
    assert team.status is TeamStatus.DELETE_PENDING
    assert deletion.approve_time == NOW
    assert deletion.complete_time == NOW + timedelta(days=7)
    early = NOW + timedelta(days=7) - timedelta(seconds=1)
    assert not deletion_due(team, deletion, early)
    with pytest.raises(FailedPrecondition) as err:
        finish_deletion(team, deletion, early)
    assert err.value.reason == "DELETION_NOT_DUE"
    assert deletion_due(team, deletion, NOW + timedelta(days=7))
    gone = finish_deletion(team, deletion, NOW + timedelta(days=7))
    assert (gone.state, gone.status) == (TeamState.DELETED, TeamStatus.DELETED)


def test_zero_day_window_deletes_at_approval() -> None:
    team, deletion = _deletion(0)
    team, deletion = approve_deletion(team, deletion, NOW)
    assert team.state is TeamState.DELETED
    assert deletion.complete_time == NOW


@pytest.mark.parametrize("outcome", [SessionStatus.REJECTED, SessionStatus.EXPIRED])
def test_rejected_deletion_keeps_the_team(outcome: SessionStatus) -> None:
    team, _ = _deletion(7)
    team = fail_deletion(team, outcome, NOW)
    assert team.state is TeamState.ACTIVE
    assert team.status is TeamStatus.DELETE_FAILED_APPROVAL
    require_changeable(team)


def test_deletion_outcomes_need_a_pending_deletion() -> None:
    team = active_team()
    deletion = TeamDeletion("t1", "ds1", 1, T0)
    for attempt in (
        lambda: approve_deletion(team, deletion, NOW),
        lambda: fail_deletion(team, SessionStatus.REJECTED, NOW),
    ):
        with pytest.raises(FailedPrecondition) as err:
            attempt()
        assert err.value.reason == "TEAM_STATUS_MISMATCH"
