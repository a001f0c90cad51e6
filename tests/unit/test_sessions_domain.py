"""Session rules: creation, votes, quorum, early failure, expiry, cancellation, completion."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime, timedelta

import pytest

from airlock_server.domain.errors import (
    FailedPrecondition,
    InvalidArgument,
    InvalidTransition,
    PermissionDenied,
)
from airlock_server.domain.principals import Principal, PrincipalKind
from airlock_server.domain.sessions import (
    ALLOWED_TRANSITIONS,
    KIND_ACTIONS,
    ExecutionStatus,
    Session,
    SessionKind,
    SessionState,
    SessionStatus,
    VoteDecision,
    cancel,
    cast_vote,
    complete,
    new_session,
    settle_expired,
    transition,
)

T0 = datetime(2025, 1, 1, tzinfo=UTC)
TTL = timedelta(hours=24)
RECOVERY = Principal(PrincipalKind.ACCOUNT, "222222222222")
OWNER = Principal(PrincipalKind.ACCOUNT, "111111111111")
ADMIN = Principal(PrincipalKind.ADMIN, "")
SIG = b"\x01" * 64
A, R = VoteDecision.APPROVE, VoteDecision.REJECT


def make(
    n: int = 5,
    m: int = 3,
    *,
    requester: Principal = RECOVERY,
    kind: SessionKind = SessionKind.RESTORE_ACCESS,
) -> Session:
    return new_session(
        session_id="s1",
        kind=kind,
        team_id="t1",
        team_version=1,
        approver_ids=[f"ap{i}" for i in range(n)],
        min_approvals=m,
        requester=requester,
        protected_resource="arn:aws:backup:us-east-1:111111111111:backup-vault:v",
        now=T0,
        ttl=TTL,
        comment="please",
    )


def votes(session: Session, decisions: str) -> Session:
    """Apply decisions 'a'/'r' by ap0, ap1, ... one minute apart."""
    for i, d in enumerate(decisions):
        session = cast_vote(
            session, f"ap{i}", A if d == "a" else R, "", SIG, T0 + timedelta(minutes=i + 1)
        )
    return session


# --- creation ---


def test_new_session_freezes_the_request() -> None:
    s = make()
    assert s.state is SessionState.PENDING
    assert s.status is SessionStatus.PENDING
    assert s.action == "backup:CreateRestoreAccessBackupVault"
    assert s.requester_account_id == "222222222222"
    assert s.expire_time == T0 + TTL
    assert (s.number_of_approvers, s.min_approvals) == (5, 3)
    assert s.execution_status is ExecutionStatus.NONE


@pytest.mark.parametrize(
    ("kind", "action"),
    [
        (SessionKind.RESTORE_ACCESS, "backup:CreateRestoreAccessBackupVault"),
        (SessionKind.REVOKE_RESTORE_ACCESS, "backup:RevokeRestoreAccessBackupVault"),
        (SessionKind.ASSOCIATE_TEAM, "backup:AssociateBackupVaultMpaApprovalTeam"),
        (SessionKind.DISASSOCIATE_TEAM, "backup:DisassociateBackupVaultMpaApprovalTeam"),
        (SessionKind.TEAM_UPDATE, "mpa:UpdateApprovalTeam"),
        (SessionKind.TEAM_DELETION, "mpa:StartActiveApprovalTeamDeletion"),
        (SessionKind.BASELINE, "mpa:StartApprovalTeamBaseline"),
    ],
)
def test_each_builtin_kind_has_its_action(kind: SessionKind, action: str) -> None:
    assert KIND_ACTIONS[kind] == action
    assert make(kind=kind).action == action


def test_non_account_requester_has_no_account_id() -> None:
    assert make(requester=ADMIN).requester_account_id == ""


def _generic(**overrides: object) -> Session:
    args: dict[str, object] = {
        "session_id": "g1",
        "kind": SessionKind.GENERIC,
        "team_id": "t1",
        "team_version": 1,
        "approver_ids": ["ap0", "ap1"],
        "min_approvals": 2,
        "requester": Principal(PrincipalKind.SERVICE, "deployer"),
        "protected_resource": "prod/db",
        "now": T0,
        "ttl": TTL,
        "action": "deploy:Release",
    }
    args.update(overrides)
    return new_session(**args)  # type: ignore[arg-type]


def test_generic_session_keeps_its_action_and_metadata() -> None:
    s = _generic(metadata={"ticket": "CHG-1"})
    assert s.action == "deploy:Release"
    assert s.metadata == {"ticket": "CHG-1"}
    assert s.requester_account_id == ""


@pytest.mark.parametrize(
    ("overrides", "fields"),
    [
        ({"action": None}, {"action"}),
        ({"action": "bad action"}, {"action"}),
        ({"action": "x" * 129}, {"action"}),
        ({"action": "backup:CreateRestoreAccessBackupVault"}, {"action"}),
        ({"protected_resource": ""}, {"protected_resource"}),
        ({"protected_resource": "r" * 2049}, {"protected_resource"}),
        ({"comment": "c" * 201}, {"comment"}),
        ({"metadata": {"": "v"}}, {"metadata['']"}),
        ({"metadata": {"k": "v" * 1025}}, {"metadata['k']"}),
        ({"metadata": {f"k{i}": "" for i in range(51)}}, {"metadata"}),
        (
            {"action": "", "protected_resource": "", "comment": "c" * 201},
            {"action", "protected_resource", "comment"},
        ),
    ],
)
def test_generic_validation_names_each_bad_field(
    overrides: dict[str, object], fields: set[str]
) -> None:
    with pytest.raises(InvalidArgument) as err:
        _generic(**overrides)
    assert {v.field for v in err.value.violations} == fields


def test_comment_of_200_characters_is_fine() -> None:
    assert len(_generic(comment="c" * 200).comment) == 200


def test_builtin_kind_refuses_another_action() -> None:
    with pytest.raises(InvalidArgument) as err:
        new_session(
            session_id="s",
            kind=SessionKind.RESTORE_ACCESS,
            team_id="t",
            team_version=1,
            approver_ids=["a", "b"],
            min_approvals=2,
            requester=RECOVERY,
            protected_resource="r",
            now=T0,
            ttl=TTL,
            action="deploy:Release",
        )
    assert err.value.violations[0].field == "action"


@pytest.mark.parametrize(
    ("approvers", "m", "ttl", "field"),
    [
        ([], 1, TTL, "approver_ids"),
        (["a", "a"], 1, TTL, "approver_ids"),
        (["a", "b"], 3, TTL, "min_approvals"),
        (["a", "b"], 0, TTL, "min_approvals"),
        (["a", "b"], 2, timedelta(0), "session_ttl"),
    ],
)
def test_frozen_team_facts_are_checked(
    approvers: list[str], m: int, ttl: timedelta, field: str
) -> None:
    with pytest.raises(InvalidArgument) as err:
        _generic(approver_ids=approvers, min_approvals=m, ttl=ttl)
    assert err.value.violations[0].field == field


# --- the state table ---


@pytest.mark.parametrize(
    ("current", "target", "ok"),
    [
        (SessionState.PENDING, SessionState.APPROVED, True),
        (SessionState.PENDING, SessionState.FAILED, True),
        (SessionState.PENDING, SessionState.CANCELLED, True),
        (SessionState.PENDING, SessionState.PENDING, False),
        (SessionState.APPROVED, SessionState.FAILED, False),
        (SessionState.FAILED, SessionState.APPROVED, False),
        (SessionState.CANCELLED, SessionState.PENDING, False),
    ],
)
def test_transition_table(current: SessionState, target: SessionState, ok: bool) -> None:
    if ok:
        assert transition(current, target) is target
    else:
        with pytest.raises(InvalidTransition):
            transition(current, target)


def test_final_states_have_no_way_out() -> None:
    for state in (SessionState.APPROVED, SessionState.FAILED, SessionState.CANCELLED):
        assert ALLOWED_TRANSITIONS[state] == frozenset()


# --- quorum ---


@pytest.mark.parametrize(
    ("n", "m", "decisions", "state", "status"),
    [
        (5, 3, "aa", SessionState.PENDING, SessionStatus.PENDING),
        (5, 3, "aaa", SessionState.APPROVED, SessionStatus.APPROVED),
        (5, 3, "raraa", SessionState.APPROVED, SessionStatus.APPROVED),
        (5, 3, "rr", SessionState.PENDING, SessionStatus.PENDING),
        # N - M = 2 rejections are still survivable; the third makes 3 approvals impossible.
        (5, 3, "rrr", SessionState.FAILED, SessionStatus.REJECTED),
        (5, 3, "arar", SessionState.PENDING, SessionStatus.PENDING),
        (5, 3, "ararr", SessionState.FAILED, SessionStatus.REJECTED),
        (2, 2, "r", SessionState.FAILED, SessionStatus.REJECTED),
        (2, 2, "aa", SessionState.APPROVED, SessionStatus.APPROVED),
        (3, 2, "ra", SessionState.PENDING, SessionStatus.PENDING),
        (3, 2, "rr", SessionState.FAILED, SessionStatus.REJECTED),
        (50, 50, "a" * 49 + "r", SessionState.FAILED, SessionStatus.REJECTED),
    ],
)
def test_quorum_table(
    n: int, m: int, decisions: str, state: SessionState, status: SessionStatus
) -> None:
    s = votes(make(n, m), decisions)
    assert (s.state, s.status) == (state, status)
    if state is SessionState.PENDING:
        assert s.complete_time is None
    else:
        assert s.complete_time == T0 + timedelta(minutes=len(decisions))


def test_approval_sets_execution_pending_and_counts() -> None:
    s = votes(make(5, 3), "araa")
    assert s.execution_status is ExecutionStatus.PENDING
    assert (s.approval_count, s.rejection_count) == (3, 1)
    assert [v.approver_id for v in s.votes] == ["ap0", "ap1", "ap2", "ap3"]
    assert s.votes[0].signature == SIG
    assert "3 of 5" in s.status_message


def test_rejection_failure_has_no_execution() -> None:
    s = votes(make(3, 2), "rr")
    assert s.execution_status is ExecutionStatus.NONE
    assert "no longer possible" in s.status_message


# --- who may vote, and when ---


def test_second_vote_is_already_voted_and_changes_nothing() -> None:
    s = votes(make(), "a")
    with pytest.raises(FailedPrecondition) as err:
        cast_vote(s, "ap0", R, "", SIG, T0 + timedelta(hours=1))
    assert err.value.reason == "ALREADY_VOTED"
    assert s.approval_count == 1


def test_vote_after_approval_names_the_state() -> None:
    s = votes(make(5, 3), "aaa")
    with pytest.raises(FailedPrecondition) as err:
        cast_vote(s, "ap4", A, "", SIG, T0 + timedelta(hours=1))
    assert err.value.reason == "SESSION_NOT_PENDING"
    assert "APPROVED" in err.value.message


def test_voter_who_made_it_final_is_told_already_voted() -> None:
    s = votes(make(2, 2), "aa")
    with pytest.raises(FailedPrecondition) as err:
        cast_vote(s, "ap1", A, "", SIG, T0 + timedelta(hours=1))
    assert err.value.reason == "ALREADY_VOTED"


def test_outsider_is_permission_denied() -> None:
    with pytest.raises(PermissionDenied) as err:
        cast_vote(make(), "mallory", A, "", SIG, T0)
    assert err.value.reason == "NOT_SESSION_APPROVER"


def test_requester_can_never_vote_even_if_in_the_set() -> None:
    s = make(requester=Principal(PrincipalKind.APPROVER, "ap0"), kind=SessionKind.BASELINE)
    with pytest.raises(PermissionDenied) as err:
        cast_vote(s, "ap0", A, "", SIG, T0)
    assert err.value.reason == "REQUESTER_CANNOT_VOTE"


def test_vote_comment_is_limited() -> None:
    with pytest.raises(InvalidArgument) as err:
        cast_vote(make(), "ap0", A, "c" * 201, SIG, T0)
    assert err.value.violations[0].field == "comment"


@pytest.mark.parametrize("after", [timedelta(0), timedelta(seconds=1)])
def test_vote_at_or_after_expiry_is_refused(after: timedelta) -> None:
    s = make()
    with pytest.raises(FailedPrecondition) as err:
        cast_vote(s, "ap0", A, "", SIG, s.expire_time + after)
    assert err.value.reason == "SESSION_EXPIRED"


def test_vote_just_before_expiry_counts() -> None:
    s = make(2, 2)
    s = cast_vote(s, "ap0", A, "", SIG, T0)
    s = cast_vote(s, "ap1", A, "", SIG, s.expire_time - timedelta(microseconds=1))
    assert s.state is SessionState.APPROVED


def test_awaits_vote_of() -> None:
    s = votes(make(), "a")
    assert not s.awaits_vote_of("ap0")
    assert s.awaits_vote_of("ap1")
    assert not s.awaits_vote_of("mallory")
    assert not votes(make(5, 3), "aaa").awaits_vote_of("ap4")


# --- expiry ---


def test_settle_expired_fails_expired_at_the_expiry() -> None:
    s = votes(make(), "a")
    settled = settle_expired(s, s.expire_time + timedelta(hours=3))
    assert (settled.state, settled.status) == (SessionState.FAILED, SessionStatus.EXPIRED)
    assert settled.complete_time == s.expire_time
    assert settled.votes == s.votes
    assert settled.execution_status is ExecutionStatus.NONE


@pytest.mark.parametrize(
    "session",
    [
        make(),
        votes(make(5, 3), "aaa"),
        votes(make(3, 2), "rr"),
    ],
)
def test_settle_expired_leaves_others_unchanged(session: Session) -> None:
    before_expiry = settle_expired(session, session.expire_time - timedelta(seconds=1))
    assert before_expiry is session
    if session.is_final:
        assert settle_expired(session, session.expire_time + timedelta(days=1)) is session


# --- cancellation ---


@pytest.mark.parametrize("by", [RECOVERY, ADMIN])
def test_requester_or_admin_cancels(by: Principal) -> None:
    s = cancel(make(), by, T0 + timedelta(hours=1))
    assert (s.state, s.status) == (SessionState.CANCELLED, SessionStatus.CANCELLED_BY_USER)
    assert s.complete_time == T0 + timedelta(hours=1)


@pytest.mark.parametrize(
    "by",
    [
        OWNER,  # the compromised vault owner cannot cancel the recovery request
        Principal(PrincipalKind.APPROVER, "ap0"),
        Principal(PrincipalKind.SERVICE, "svc"),
        Principal(PrincipalKind.AUDITOR, ""),
        None,
    ],
)
def test_nobody_else_cancels(by: Principal | None) -> None:
    with pytest.raises(PermissionDenied) as err:
        cancel(make(), by, T0)
    assert err.value.reason == "NOT_SESSION_REQUESTER"


def test_cancel_finished_session_names_the_state() -> None:
    s = votes(make(3, 2), "rr")
    with pytest.raises(FailedPrecondition) as err:
        cancel(s, ADMIN, T0 + timedelta(hours=1))
    assert err.value.reason == "SESSION_NOT_PENDING"
    assert "FAILED" in err.value.message


def test_user_cancel_after_expiry_is_refused() -> None:
    s = make()
    with pytest.raises(FailedPrecondition) as err:
        cancel(s, RECOVERY, s.expire_time)
    assert err.value.reason == "SESSION_EXPIRED"


@pytest.mark.parametrize(
    "status", [SessionStatus.CONFIGURATION_CHANGED, SessionStatus.TEAM_DELETED]
)
def test_system_cancellations(status: SessionStatus) -> None:
    s = cancel(make(), None, T0 + timedelta(hours=1), status)
    assert (s.state, s.status) == (SessionState.CANCELLED, status)


@pytest.mark.parametrize(
    "status", [SessionStatus.CONFIGURATION_CHANGED, SessionStatus.TEAM_DELETED]
)
def test_system_cancellations_are_not_for_principals(status: SessionStatus) -> None:
    with pytest.raises(PermissionDenied) as err:
        cancel(make(), ADMIN, T0, status)
    assert err.value.reason == "SYSTEM_CANCELLATION_ONLY"


def test_system_cancellation_of_an_expired_session_records_the_expiry() -> None:
    s = make()
    settled = cancel(s, None, s.expire_time + timedelta(hours=1), SessionStatus.TEAM_DELETED)
    assert (settled.state, settled.status) == (SessionState.FAILED, SessionStatus.EXPIRED)


@pytest.mark.parametrize(
    "status", [SessionStatus.REJECTED, SessionStatus.EXPIRED, SessionStatus.APPROVED]
)
def test_cancel_with_a_non_cancellation_status_is_refused(status: SessionStatus) -> None:
    with pytest.raises(InvalidArgument):
        cancel(make(), ADMIN, T0, status)


# --- completion ---


@pytest.mark.parametrize("outcome", [ExecutionStatus.EXECUTED, ExecutionStatus.FAILED])
def test_complete_an_approved_session_once(outcome: ExecutionStatus) -> None:
    s = votes(make(2, 2), "aa")
    done = complete(s, outcome, T0 + timedelta(hours=1), "ok")
    assert done.execution_status is outcome
    assert done.execution_time == T0 + timedelta(hours=1)
    assert done.execution_message == "ok"
    with pytest.raises(FailedPrecondition) as err:
        complete(done, outcome, T0 + timedelta(hours=2))
    assert err.value.reason == "ALREADY_COMPLETED"


@pytest.mark.parametrize(
    "session", [make(2, 2), votes(make(2, 2), "r"), cancel(make(2, 2), ADMIN, T0)]
)
def test_complete_needs_an_approved_session(session: Session) -> None:
    with pytest.raises(FailedPrecondition) as err:
        complete(session, ExecutionStatus.EXECUTED, T0)
    assert err.value.reason == "SESSION_NOT_APPROVED"
    assert session.state.value in err.value.message


@pytest.mark.parametrize(
    ("status", "message", "fields"),
    [
        (ExecutionStatus.PENDING, "", {"execution_status"}),
        (ExecutionStatus.NONE, "m" * 257, {"execution_status", "message"}),
    ],
)
def test_complete_validates(status: ExecutionStatus, message: str, fields: set[str]) -> None:
    with pytest.raises(InvalidArgument) as err:
        complete(votes(make(2, 2), "aa"), status, T0, message)
    assert {v.field for v in err.value.violations} == fields


def test_functions_never_mutate_their_input() -> None:
    s = make(2, 2)
    frozen = replace(s)
    votes(s, "aa")
    cancel(s, ADMIN, T0)
    settle_expired(s, s.expire_time)
    assert s == frozen
