"""Approval teams: the state table, the limits of the design and the activation rule."""

from __future__ import annotations

import itertools
from collections.abc import Sequence
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from airlock_server.domain.errors import FailedPrecondition, InvalidArgument, InvalidTransition
from airlock_server.domain.teams import (
    ALLOWED_TRANSITIONS,
    DEFAULT_INVITATION_TTL,
    DEFAULT_SESSION_TTL,
    MAX_TTL,
    MIN_TTL,
    Activation,
    InvitationState,
    Team,
    TeamMember,
    TeamSpec,
    TeamState,
    TeamStatus,
    TeamVersion,
    activation_of,
    key_proof_message,
    respond,
    settle_new_team,
    transition,
    validate_team_spec,
)

T0 = datetime(2025, 1, 1, tzinfo=UTC)
DAY = timedelta(hours=24)
KEY = bytes(range(32))

# --- the state table ------------------------------------------------------------------------

EXPECTED_TRANSITIONS = {
    (TeamState.PENDING, TeamState.ACTIVE),
    (TeamState.PENDING, TeamState.INACTIVE),
    (TeamState.PENDING, TeamState.DELETED),
    (TeamState.ACTIVE, TeamState.ACTIVE),
    (TeamState.ACTIVE, TeamState.DELETING),
    (TeamState.INACTIVE, TeamState.DELETED),
    (TeamState.DELETING, TeamState.DELETED),
}
ALL_PAIRS = list(itertools.product(TeamState, TeamState))


def test_table_covers_every_state() -> None:
    assert set(ALLOWED_TRANSITIONS) == set(TeamState)


def test_table_is_the_one_of_the_design() -> None:
    actual = {(a, b) for a, targets in ALLOWED_TRANSITIONS.items() for b in targets}
    assert actual == EXPECTED_TRANSITIONS


def test_deleted_is_final() -> None:
    assert ALLOWED_TRANSITIONS[TeamState.DELETED] == frozenset()


@pytest.mark.parametrize(
    ("current", "target"), ALL_PAIRS, ids=[f"{a.value}->{b.value}" for a, b in ALL_PAIRS]
)
def test_transition(current: TeamState, target: TeamState) -> None:
    if (current, target) in EXPECTED_TRANSITIONS:
        assert transition(current, target) is target
        return
    with pytest.raises(InvalidTransition) as caught:
        transition(current, target)
    err = caught.value
    assert isinstance(err, FailedPrecondition)
    assert err.reason == "INVALID_STATE_TRANSITION"
    assert err.metadata["state"] == current.value
    assert err.metadata["target"] == target.value
    assert current.value in err.message
    assert target.value in err.message


# --- validate_team_spec -----------------------------------------------------------------------


def spec(**overrides: Any) -> TeamSpec:
    args: dict[str, Any] = {
        "name": "vault-guardians",
        "description": "the people who guard the vaults",
        "approver_ids": ["alice", "bob", "carol"],
        "min_approvals": 2,
        "session_ttl": None,
        "invitation_ttl": None,
    }
    args.update(overrides)
    return validate_team_spec(**args)


def violated(**overrides: Any) -> list[str]:
    with pytest.raises(InvalidArgument) as caught:
        spec(**overrides)
    err = caught.value
    assert err.reason == "INVALID_ARGUMENT"
    assert err.violations, "an InvalidArgument names at least one field"
    return [v.field for v in err.violations]


def approvers(n: int) -> list[str]:
    return [f"approver-{i}" for i in range(n)]


def test_a_valid_spec_with_defaults() -> None:
    s = spec()
    assert s == TeamSpec(
        "vault-guardians",
        "the people who guard the vaults",
        ("alice", "bob", "carol"),
        2,
        DEFAULT_SESSION_TTL,
        DEFAULT_INVITATION_TTL,
    )
    assert timedelta(hours=24) == DEFAULT_SESSION_TTL == DEFAULT_INVITATION_TTL


def test_explicit_ttls_are_kept() -> None:
    s = spec(session_ttl=timedelta(hours=2), invitation_ttl=timedelta(days=3))
    assert s.session_ttl == timedelta(hours=2)
    assert s.invitation_ttl == timedelta(days=3)


@pytest.mark.parametrize(("n", "m"), [(2, 2), (3, 2), (3, 3), (50, 2), (50, 50), (10, 7)])
def test_m_of_n_within_bounds(n: int, m: int) -> None:
    s = spec(approver_ids=approvers(n), min_approvals=m)
    assert len(s.approver_ids) == n
    assert s.min_approvals == m


@pytest.mark.parametrize("n", [0, 1, 51, 60])
def test_approver_count_out_of_bounds(n: int) -> None:
    assert "approver_ids" in violated(approver_ids=approvers(n), min_approvals=2)


@pytest.mark.parametrize(("n", "m"), [(3, 1), (3, 0), (3, -1), (3, 4), (50, 51), (2, 3)])
def test_min_approvals_out_of_bounds(n: int, m: int) -> None:
    assert violated(approver_ids=approvers(n), min_approvals=m) == ["min_approvals"]


def test_approvers_must_be_distinct() -> None:
    assert violated(approver_ids=["alice", "bob", "alice"]) == ["approver_ids"]


@pytest.mark.parametrize(
    "name", ["a", "A.b_c-9", "x" * 64, "Vault.Guardians-2025_eu"], ids=lambda s: s[:20]
)
def test_valid_names(name: str) -> None:
    assert spec(name=name).name == name


@pytest.mark.parametrize(
    "name",
    ["", "x" * 65, "has space", "slash/name", "ünïcode", "semi;colon", "new\nline", "trailing\n"],
    ids=repr,
)
def test_invalid_names(name: str) -> None:
    assert violated(name=name) == ["name"]


@pytest.mark.parametrize("bad", ["", "has space", "x" * 65, "bob\n"], ids=repr)
def test_invalid_approver_id_names_its_index(bad: str) -> None:
    assert violated(approver_ids=["alice", bad, "carol"]) == ["approver_ids[1]"]


def test_description_limit() -> None:
    assert spec(description="d" * 256).description == "d" * 256
    assert spec(description="").description == ""
    assert violated(description="d" * 257) == ["description"]


@pytest.mark.parametrize("field", ["session_ttl", "invitation_ttl"])
@pytest.mark.parametrize(
    "ttl", [MIN_TTL, timedelta(minutes=15), timedelta(hours=1), timedelta(days=7), MAX_TTL]
)
def test_ttl_within_bounds(field: str, ttl: timedelta) -> None:
    assert getattr(spec(**{field: ttl}), field) == ttl


@pytest.mark.parametrize("field", ["session_ttl", "invitation_ttl"])
@pytest.mark.parametrize(
    "ttl",
    [
        timedelta(minutes=15) - timedelta(microseconds=1),
        timedelta(minutes=1),
        timedelta(seconds=-1),
        timedelta(days=7, microseconds=1),
        timedelta(days=30),
    ],
    ids=str,
)
def test_ttl_out_of_bounds(field: str, ttl: timedelta) -> None:
    assert violated(**{field: ttl}) == [field]


def test_ttl_bounds_are_the_design() -> None:
    assert timedelta(minutes=15) == MIN_TTL
    assert timedelta(days=7) == MAX_TTL


def test_several_violations_are_reported_together() -> None:
    fields = violated(
        name="bad name",
        description="d" * 300,
        approver_ids=["alice", "alice"],
        min_approvals=5,
        session_ttl=timedelta(minutes=1),
        invitation_ttl=timedelta(days=8),
    )
    assert set(fields) == {
        "name",
        "description",
        "approver_ids",
        "min_approvals",
        "session_ttl",
        "invitation_ttl",
    }


def test_violations_appear_in_message_and_metadata() -> None:
    with pytest.raises(InvalidArgument) as caught:
        spec(name="", description="d" * 300)
    err = caught.value
    assert "name" in err.message
    assert "description" in err.message
    assert err.metadata["fields"] == "name, description"


# --- activation ----------------------------------------------------------------------------


def member(approver_id: str, state: InvitationState) -> TeamMember:
    answered = state in (InvitationState.ACCEPTED, InvitationState.DECLINED)
    return TeamMember(
        approver_id,
        f"inv-{approver_id}",
        state,
        response_time=T0 + timedelta(hours=1) if answered else None,
        public_key=KEY if state is InvitationState.ACCEPTED else None,
    )


def version(states: Sequence[InvitationState], ttl: timedelta = DAY) -> TeamVersion:
    members = tuple(member(f"ap{i}", s) for i, s in enumerate(states))
    return TeamVersion(1, "team", 2, DAY, ttl, members, T0, T0 + ttl)


def pending_team(states: Sequence[InvitationState]) -> Team:
    return Team(
        team_id="team-1",
        arn="arn:airlock:us-east-1:team/team-1",
        name="guardians",
        state=TeamState.PENDING,
        status=TeamStatus.PENDING_ACTIVATION,
        status_message="waiting for every approver to accept",
        current=version(states),
        revision=1,
        create_time=T0,
        update_time=T0,
    )


P, A, D, E = (
    InvitationState.PENDING,
    InvitationState.ACCEPTED,
    InvitationState.DECLINED,
    InvitationState.EXPIRED,
)
BEFORE = T0 + timedelta(hours=2)
AT_DEADLINE = T0 + DAY
AFTER = T0 + DAY + timedelta(seconds=1)


@pytest.mark.parametrize(
    ("states", "now", "expected"),
    [
        ((A, A, A), BEFORE, Activation.COMPLETE),
        ((A, A, A), AFTER, Activation.COMPLETE),
        ((A, P, A), BEFORE, Activation.WAITING),
        ((P, P, P), BEFORE, Activation.WAITING),
        ((A, D, P), BEFORE, Activation.DECLINED),
        ((D, A, A), BEFORE, Activation.DECLINED),
        ((A, D, P), AFTER, Activation.DECLINED),
        ((A, P, A), AT_DEADLINE, Activation.EXPIRED),
        ((A, P, P), AFTER, Activation.EXPIRED),
        ((A, E, A), BEFORE, Activation.EXPIRED),
    ],
)
def test_activation_of(
    states: tuple[InvitationState, ...], now: datetime, expected: Activation
) -> None:
    assert activation_of(version(states), now) is expected


def test_all_accept_activates() -> None:
    team = pending_team((A, A, A))
    settled = settle_new_team(team, BEFORE)
    assert settled.state is TeamState.ACTIVE
    assert settled.status is TeamStatus.ACTIVE
    assert settled.revision == team.revision + 1
    assert settled.update_time == BEFORE
    assert settled.current == team.current
    assert settled.etag != team.etag


def test_one_decline_fails_before_the_deadline() -> None:
    team = pending_team((A, D, P))
    settled = settle_new_team(team, BEFORE)
    assert team.current.invitation_expire_time > BEFORE
    assert settled.state is TeamState.INACTIVE
    assert settled.status is TeamStatus.FAILED_ACTIVATION
    assert "declined" in settled.status_message
    assert settled.revision == team.revision + 1
    # A decline closes the invitations nobody answered: they are cancelled, not expired.
    assert [m.invitation_state for m in settled.current.members] == [
        A,
        D,
        InvitationState.CANCELLED,
    ]


def test_ttl_passed_expires_pending_invitations() -> None:
    team = pending_team((A, P, P))
    settled = settle_new_team(team, AFTER)
    assert settled.state is TeamState.INACTIVE
    assert settled.status is TeamStatus.FAILED_ACTIVATION
    assert "expired" in settled.status_message
    assert [m.invitation_state for m in settled.current.members] == [A, E, E]
    # The accepted approver keeps its answer and its key.
    assert settled.current.members[0] == team.current.members[0]


def test_waiting_team_is_unchanged() -> None:
    team = pending_team((A, P, A))
    assert settle_new_team(team, BEFORE) is team


@pytest.mark.parametrize(
    "state", [TeamState.ACTIVE, TeamState.INACTIVE, TeamState.DELETING, TeamState.DELETED]
)
def test_settle_leaves_other_states_alone(state: TeamState) -> None:
    team = replace(pending_team((A, P, D)), state=state)
    assert settle_new_team(team, AFTER) is team


# --- respond -------------------------------------------------------------------------------


def test_accept_records_key_and_time() -> None:
    v = version((P, P))
    answered = respond(v, "inv-ap0", True, KEY, BEFORE)
    m = answered.member("ap0")
    assert m is not None
    assert m.invitation_state is InvitationState.ACCEPTED
    assert m.public_key == KEY
    assert m.response_time == BEFORE
    assert answered.members[1] == v.members[1]


def test_decline_keeps_no_key() -> None:
    answered = respond(version((P, P)), "inv-ap1", False, KEY, BEFORE)
    m = answered.member("ap1")
    assert m is not None
    assert m.invitation_state is InvitationState.DECLINED
    assert m.public_key is None
    assert m.response_time == BEFORE


@pytest.mark.parametrize("first", [A, D, E])
@pytest.mark.parametrize("accept", [True, False])
def test_an_answer_is_final(first: InvitationState, accept: bool) -> None:
    v = version((first, P))
    with pytest.raises(FailedPrecondition) as caught:
        respond(v, "inv-ap0", accept, KEY, BEFORE)
    assert caught.value.reason == "INVITATION_ALREADY_ANSWERED"
    assert caught.value.metadata == {"invitationId": "inv-ap0", "state": first.value}


@pytest.mark.parametrize("now", [AT_DEADLINE, AFTER])
def test_expired_invitation_is_refused(now: datetime) -> None:
    with pytest.raises(FailedPrecondition) as caught:
        respond(version((P, P)), "inv-ap0", True, KEY, now)
    assert caught.value.reason == "INVITATION_EXPIRED"
    assert caught.value.metadata == {"invitationId": "inv-ap0"}


def test_unknown_invitation() -> None:
    with pytest.raises(InvalidArgument) as caught:
        respond(version((P, P)), "inv-nobody", True, KEY, BEFORE)
    assert [v.field for v in caught.value.violations] == ["invitation_id"]


def test_answers_then_settle() -> None:
    team = pending_team((P, P))
    v = respond(team.current, "inv-ap0", True, KEY, BEFORE)
    v = respond(v, "inv-ap1", True, bytes(reversed(KEY)), BEFORE)
    settled = settle_new_team(replace(team, current=v), BEFORE)
    assert settled.state is TeamState.ACTIVE


def test_a_key_enrolled_by_one_approver_is_refused_for_another() -> None:
    team = pending_team((P, P))
    v = respond(team.current, "inv-ap0", True, KEY, BEFORE)
    with pytest.raises(InvalidArgument) as caught:
        respond(v, "inv-ap1", True, KEY, BEFORE)
    assert caught.value.reason == "KEY_ALREADY_ENROLLED"
    assert [x.field for x in caught.value.violations] == ["public_key"]
    assert v.members[1].invitation_state is InvitationState.PENDING


def test_a_reenrolled_approver_must_enroll_another_key() -> None:
    team = pending_team((P, P))
    with pytest.raises(InvalidArgument) as caught:
        respond(team.current, "inv-ap0", True, KEY, BEFORE, replaced_key=KEY)
    assert caught.value.reason == "KEY_NOT_REPLACED"
    assert [x.field for x in caught.value.violations] == ["public_key"]
    v = respond(team.current, "inv-ap0", True, bytes(reversed(KEY)), BEFORE, replaced_key=KEY)
    assert v.members[0].invitation_state is InvitationState.ACCEPTED


# --- key proof -----------------------------------------------------------------------------


def test_key_proof_message_is_the_invitation_ids_utf8_bytes() -> None:
    assert key_proof_message("inv-123") == b"inv-123"
    assert key_proof_message("inv-é") == "inv-é".encode()
    assert key_proof_message("") == b""
