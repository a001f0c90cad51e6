"""Approval sessions: the session state table, votes, quorum and the signed-vote digest.

A session freezes, at creation, the team version, the approvers who may vote and M. Every rule
here is a pure function from a session (and a clock reading) to a new session or an error.
The vote digest's byte layout is the contract in docs/signed-votes.md.
"""

from __future__ import annotations

import enum
import hashlib
import re
import struct
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta

from airlock_server.domain.errors import (
    APPROVER_DISABLED,
    RESERVED_ACTION,
    FailedPrecondition,
    FieldViolation,
    InvalidArgument,
    InvalidTransition,
    PermissionDenied,
    Reason,
)
from airlock_server.domain.events import format_time
from airlock_server.domain.principals import NAME, Principal, PrincipalKind

MAX_COMMENT = 200
MAX_EXECUTION_MESSAGE = 256
MAX_PROTECTED_RESOURCE = 2048
MAX_METADATA_ENTRIES = 50
MAX_METADATA_KEY = 128
MAX_METADATA_VALUE = 1024
ACTION = re.compile(r"^[a-zA-Z0-9._:-]{1,128}\Z")

VOTE_DIGEST_TAG = "airlock.vote.v2"
DRAFT_DIGEST_TAG = "airlock.team-draft.v1"


class SessionState(enum.Enum):
    PENDING = "PENDING"
    APPROVED = "APPROVED"
    FAILED = "FAILED"
    CANCELLED = "CANCELLED"


class SessionStatus(enum.Enum):
    """Why the session is in its state; PENDING and APPROVED map to the proto's UNSPECIFIED."""

    PENDING = "PENDING"
    APPROVED = "APPROVED"
    REJECTED = "REJECTED"
    EXPIRED = "EXPIRED"
    CANCELLED_BY_USER = "CANCELLED_BY_USER"
    CONFIGURATION_CHANGED = "CONFIGURATION_CHANGED"
    TEAM_DELETED = "TEAM_DELETED"


class ExecutionStatus(enum.Enum):
    NONE = "NONE"
    PENDING = "PENDING"
    EXECUTED = "EXECUTED"
    FAILED = "FAILED"


class SessionKind(enum.Enum):
    RESTORE_ACCESS = "RESTORE_ACCESS"
    REVOKE_RESTORE_ACCESS = "REVOKE_RESTORE_ACCESS"
    ASSOCIATE_TEAM = "ASSOCIATE_TEAM"
    DISASSOCIATE_TEAM = "DISASSOCIATE_TEAM"
    TEAM_UPDATE = "TEAM_UPDATE"
    TEAM_DELETION = "TEAM_DELETION"
    BASELINE = "BASELINE"
    GENERIC = "GENERIC"


class VoteDecision(enum.Enum):
    APPROVE = "APPROVE"
    REJECT = "REJECT"


# The action each built-in kind approves; a generic session names its own action.
KIND_ACTIONS: Mapping[SessionKind, str] = {
    SessionKind.RESTORE_ACCESS: "backup:CreateRestoreAccessBackupVault",
    SessionKind.REVOKE_RESTORE_ACCESS: "backup:RevokeRestoreAccessBackupVault",
    SessionKind.ASSOCIATE_TEAM: "backup:AssociateBackupVaultMpaApprovalTeam",
    SessionKind.DISASSOCIATE_TEAM: "backup:DisassociateBackupVaultMpaApprovalTeam",
    SessionKind.TEAM_UPDATE: "mpa:UpdateApprovalTeam",
    SessionKind.TEAM_DELETION: "mpa:StartActiveApprovalTeamDeletion",
    SessionKind.BASELINE: "mpa:StartApprovalTeamBaseline",
}
# A service must not start a generic session that an approver would take for a built-in one:
# these actions, in any case, and every action under Airlock's own prefixes.
RESERVED_ACTIONS = frozenset(a.lower() for a in KIND_ACTIONS.values())
RESERVED_PREFIXES = ("backup:", "mpa:")


def is_reserved_action(action: str) -> bool:
    """Case-insensitive: `backup:createrestoreaccessbackupvault` is the restore action too."""
    folded = action.lower()
    return folded in RESERVED_ACTIONS or folded.startswith(RESERVED_PREFIXES)


# The session state table: only a pending session changes, and only once.
ALLOWED_TRANSITIONS: Mapping[SessionState, frozenset[SessionState]] = {
    SessionState.PENDING: frozenset(
        {SessionState.APPROVED, SessionState.FAILED, SessionState.CANCELLED}
    ),
    SessionState.APPROVED: frozenset(),
    SessionState.FAILED: frozenset(),
    SessionState.CANCELLED: frozenset(),
}

# Which status codes may accompany which final state.
STATUSES_OF: Mapping[SessionState, frozenset[SessionStatus]] = {
    SessionState.PENDING: frozenset({SessionStatus.PENDING}),
    SessionState.APPROVED: frozenset({SessionStatus.APPROVED}),
    SessionState.FAILED: frozenset({SessionStatus.REJECTED, SessionStatus.EXPIRED}),
    SessionState.CANCELLED: frozenset(
        {
            SessionStatus.CANCELLED_BY_USER,
            SessionStatus.CONFIGURATION_CHANGED,
            SessionStatus.TEAM_DELETED,
        }
    ),
}
# Cancellations the server makes on its own when the team changes; no principal asks for them.
SYSTEM_CANCELLATIONS = frozenset({SessionStatus.CONFIGURATION_CHANGED, SessionStatus.TEAM_DELETED})


def transition(current: SessionState, target: SessionState) -> SessionState:
    if target not in ALLOWED_TRANSITIONS[current]:
        raise InvalidTransition("session", current.value, target.value)
    return target


@dataclass(frozen=True)
class Vote:
    """One approver's final decision, with its Ed25519 signature over `vote_digest`."""

    approver_id: str
    decision: VoteDecision
    comment: str
    time: datetime
    signature: bytes


class KeyChange(enum.Enum):
    """What a team draft does with one member's key."""

    KEEPS_KEY = "KEEPS_KEY"  # carried over: votes with the key it holds in the version in force
    NEW_KEY = "NEW_KEY"  # re-enrolled: must enroll exactly `public_key`
    NEW_APPROVER = "NEW_APPROVER"  # invited: enrolls `public_key` if named, else its own choice


@dataclass(frozen=True)
class DraftMember:
    approver_id: str
    change: KeyChange
    public_key: bytes | None
    # NEW_KEY: the approver's key in force signed the new key (docs/signed-votes.md).
    signed_by_current_key: bool = False


@dataclass(frozen=True)
class TeamDraft:
    """What a TEAM_UPDATE session asks the team to approve, shown to its approvers and covered
    by their vote signatures (`draft_digest`)."""

    team_id: str
    version: int
    description: str
    min_approvals: int
    session_ttl: timedelta
    invitation_ttl: timedelta
    members: tuple[DraftMember, ...]


@dataclass(frozen=True)
class Session:
    session_id: str
    kind: SessionKind
    team_id: str
    team_version: int
    # The approvers of the frozen version who had accepted: exactly those who may vote.
    approver_ids: tuple[str, ...]
    min_approvals: int
    requester: Principal
    requester_account_id: str
    action: str
    protected_resource: str
    comment: str
    create_time: datetime
    expire_time: datetime
    metadata: Mapping[str, str] = field(default_factory=dict)
    votes: tuple[Vote, ...] = ()
    state: SessionState = SessionState.PENDING
    status: SessionStatus = SessionStatus.PENDING
    status_message: str = "waiting for votes"
    execution_status: ExecutionStatus = ExecutionStatus.NONE
    execution_message: str = ""
    complete_time: datetime | None = None
    execution_time: datetime | None = None
    # TEAM_UPDATE: the draft voted on (its digest is part of every vote signature).
    draft: TeamDraft | None = None
    # Approvers of the frozen set disabled while the session was open: their votes no longer
    # count and they vote no more (`exclude_approver`).
    excluded_approver_ids: tuple[str, ...] = ()

    @property
    def number_of_approvers(self) -> int:
        return len(self.approver_ids)

    @property
    def eligible_count(self) -> int:
        """N less the excluded approvers: who can still make up M."""
        return len(self.approver_ids) - len(self.excluded_approver_ids)

    def _counted(self) -> list[Vote]:
        return [v for v in self.votes if v.approver_id not in self.excluded_approver_ids]

    @property
    def approval_count(self) -> int:
        return sum(1 for v in self._counted() if v.decision is VoteDecision.APPROVE)

    @property
    def rejection_count(self) -> int:
        return sum(1 for v in self._counted() if v.decision is VoteDecision.REJECT)

    @property
    def is_final(self) -> bool:
        return self.state is not SessionState.PENDING

    def vote_of(self, approver_id: str) -> Vote | None:
        return next((v for v in self.votes if v.approver_id == approver_id), None)

    def awaits_vote_of(self, approver_id: str) -> bool:
        """What ListAssignedSessions shows: pending, in the frozen set, not voted yet."""
        return (
            self.state is SessionState.PENDING
            and approver_id in self.approver_ids
            and self.vote_of(approver_id) is None
        )

    def is_expired_at(self, now: datetime) -> bool:
        return self.state is SessionState.PENDING and now >= self.expire_time


def validate_comment(comment: str, field: str = "comment") -> None:
    if len(comment) > MAX_COMMENT:
        raise InvalidArgument.field(field, f"at most {MAX_COMMENT} characters")


def _metadata_violations(metadata: Mapping[str, str]) -> list[FieldViolation]:
    out: list[FieldViolation] = []
    if len(metadata) > MAX_METADATA_ENTRIES:
        out.append(FieldViolation("metadata", f"at most {MAX_METADATA_ENTRIES} entries"))
    for key, value in metadata.items():
        if not 1 <= len(key) <= MAX_METADATA_KEY:
            out.append(
                FieldViolation(f"metadata[{key!r}]", f"keys are 1 to {MAX_METADATA_KEY} characters")
            )
        if len(value) > MAX_METADATA_VALUE:
            out.append(
                FieldViolation(
                    f"metadata[{key!r}]", f"values are at most {MAX_METADATA_VALUE} characters"
                )
            )
    return out


def new_session(
    *,
    session_id: str,
    kind: SessionKind,
    team_id: str,
    team_version: int,
    approver_ids: Sequence[str],
    min_approvals: int,
    requester: Principal,
    protected_resource: str,
    now: datetime,
    ttl: timedelta,
    action: str | None = None,
    comment: str = "",
    metadata: Mapping[str, str] | None = None,
    draft: TeamDraft | None = None,
) -> Session:
    """A PENDING session; `approver_ids` must already be the accepted members of the version.

    `action` is required for GENERIC sessions and must match the kind's action otherwise.
    """
    metadata = dict(metadata or {})
    violations: list[FieldViolation] = []
    if kind is SessionKind.GENERIC:
        if action is None or not ACTION.match(action):
            violations.append(FieldViolation("action", "must match [a-zA-Z0-9._:-]{1,128}"))
        elif is_reserved_action(action):
            raise InvalidArgument(
                [
                    FieldViolation(
                        "action",
                        f"{action!r} is reserved for Airlock's own sessions (the actions of its "
                        f"session kinds and every action under {' or '.join(RESERVED_PREFIXES)}, "
                        "in any case)",
                    )
                ],
                reason=RESERVED_ACTION,
            )
        resolved = action or ""
    else:
        resolved = KIND_ACTIONS[kind]
        if action is not None and action != resolved:
            violations.append(FieldViolation("action", f"a {kind.value} session is {resolved!r}"))
    if not 1 <= len(protected_resource) <= MAX_PROTECTED_RESOURCE:
        violations.append(
            FieldViolation(
                "protected_resource", f"must be 1 to {MAX_PROTECTED_RESOURCE} characters"
            )
        )
    if len(comment) > MAX_COMMENT:
        violations.append(FieldViolation("comment", f"at most {MAX_COMMENT} characters"))
    violations.extend(_metadata_violations(metadata))
    if violations:
        raise InvalidArgument(violations)
    # The rest comes from the server, not the caller: a breach is a bug, reported all the same.
    n = len(approver_ids)
    if n == 0 or len(set(approver_ids)) != n or any(not NAME.match(a) for a in approver_ids):
        raise InvalidArgument.field("approver_ids", "distinct approver ids, at least one")
    if not 1 <= min_approvals <= n:
        raise InvalidArgument.field("min_approvals", "must be between 1 and the approver count")
    if ttl <= timedelta(0):
        raise InvalidArgument.field("session_ttl", "must be positive")
    return Session(
        session_id=session_id,
        kind=kind,
        team_id=team_id,
        team_version=team_version,
        approver_ids=tuple(approver_ids),
        min_approvals=min_approvals,
        requester=requester,
        requester_account_id=(requester.subject if requester.kind is PrincipalKind.ACCOUNT else ""),
        action=resolved,
        protected_resource=protected_resource,
        comment=comment,
        metadata=metadata,
        create_time=now,
        expire_time=now + ttl,
        draft=draft,
    )


def _not_pending(session: Session, doing: str) -> FailedPrecondition:
    return FailedPrecondition(
        f"session {session.session_id} is {session.state.value} ({session.status.value}) "
        f"and {doing}",
        reason=Reason.SESSION_NOT_PENDING,
        metadata={"state": session.state.value, "status": session.status.value},
    )


def _expired(session: Session) -> FailedPrecondition:
    return FailedPrecondition(
        f"session {session.session_id} expired at {format_time(session.expire_time)}",
        reason=Reason.SESSION_EXPIRED,
        metadata={"state": SessionState.FAILED.value, "status": SessionStatus.EXPIRED.value},
    )


def _denied(message: str, reason: Reason, **metadata: str) -> PermissionDenied:
    return PermissionDenied(message, reason=reason, metadata=metadata)


def not_session_approver(session_id: str, approver_id: str) -> PermissionDenied:
    """Vote's refusal of an approver the session did not freeze (also for an unknown id)."""
    return _denied(
        f"approver {approver_id!r} is not an approver of session {session_id}",
        Reason.NOT_SESSION_APPROVER,
        sessionId=session_id,
    )


def not_session_requester(session_id: str) -> PermissionDenied:
    """CancelSession's refusal of a caller other than the requester or the admin (also for an
    unknown id)."""
    return _denied(
        "only the session's requester or the admin may cancel it",
        Reason.NOT_SESSION_REQUESTER,
        sessionId=session_id,
    )


def _finish(
    session: Session,
    state: SessionState,
    status: SessionStatus,
    message: str,
    at: datetime,
) -> Session:
    if status not in STATUSES_OF[state]:
        raise InvalidArgument.field(
            "status", f"{status.value} does not end a session {state.value}"
        )
    return replace(
        session,
        state=transition(session.state, state),
        status=status,
        status_message=message,
        complete_time=at,
        execution_status=(
            ExecutionStatus.PENDING if state is SessionState.APPROVED else ExecutionStatus.NONE
        ),
    )


def cast_vote(
    session: Session,
    approver_id: str,
    decision: VoteDecision,
    comment: str,
    signature: bytes,
    now: datetime,
) -> Session:
    """Record one final vote and settle the session if quorum is reached or unreachable.

    A BASELINE session takes APPROVE only. The signature is kept as given: checking it against
    the frozen version's enrolled key is the caller's job (it needs the key and a crypto
    library). An expired session refuses the vote with SESSION_EXPIRED; the caller should store
    `settle_expired(session, now)`.
    """
    # Who may vote is decided first: a non-approver learns nothing about the session (its
    # kind, its state), the same as for an id that names no session.
    if session.requester == Principal(PrincipalKind.APPROVER, approver_id):
        raise _denied(
            "the requester of a session may not vote on it",
            Reason.REQUESTER_CANNOT_VOTE,
            sessionId=session.session_id,
        )
    if approver_id not in session.approver_ids:
        raise not_session_approver(session.session_id, approver_id)
    if approver_id in session.excluded_approver_ids:
        raise FailedPrecondition(
            f"approver {approver_id!r} was disabled; it votes no more",
            reason=APPROVER_DISABLED,
            metadata={"approverId": approver_id, "sessionId": session.session_id},
        )
    validate_comment(comment)
    # A baseline asks "do you still respond?": the answer is an approval, never a rejection
    # (one rejection would end it for every other approver asked).
    if session.kind is SessionKind.BASELINE and decision is not VoteDecision.APPROVE:
        raise InvalidArgument.field("decision", "a baseline session is answered with APPROVE")
    if session.vote_of(approver_id) is not None:
        raise FailedPrecondition(
            f"approver {approver_id!r} already voted on session {session.session_id}; "
            "votes are final",
            reason=Reason.ALREADY_VOTED,
            metadata={"state": session.state.value},
        )
    if session.state is not SessionState.PENDING:
        raise _not_pending(session, "takes no more votes")
    if now >= session.expire_time:
        raise _expired(session)
    voted = replace(
        session, votes=(*session.votes, Vote(approver_id, decision, comment, now, signature))
    )
    return _decide(voted, now)


def _decide(voted: Session, now: datetime) -> Session:
    """Settle a pending session whose quorum is reached or has become unreachable."""
    m, n = voted.min_approvals, voted.eligible_count
    if voted.approval_count >= m:
        return _finish(
            voted,
            SessionState.APPROVED,
            SessionStatus.APPROVED,
            f"{voted.approval_count} of {n} approvers approved (M = {m})",
            now,
        )
    # Quorum is unreachable once more than N - M have rejected: fail now, not at expiry.
    if voted.rejection_count > n - m:
        return _finish(
            voted,
            SessionState.FAILED,
            SessionStatus.REJECTED,
            f"{voted.rejection_count} of {n} approvers rejected; {m} approvals are no longer "
            "possible",
            now,
        )
    return voted


def exclude_approver(session: Session, approver_id: str, now: datetime) -> Session:
    """The approver was disabled: on a pending session it votes no more and its vote, if any,
    no longer counts toward M; if M approvals became impossible the session fails now, saying
    why. Anything else is returned unchanged."""
    if (
        session.state is not SessionState.PENDING
        or session.is_expired_at(now)
        or approver_id not in session.approver_ids
        or approver_id in session.excluded_approver_ids
    ):
        return session
    excluded = replace(session, excluded_approver_ids=(*session.excluded_approver_ids, approver_id))
    m, n = excluded.min_approvals, excluded.eligible_count
    if excluded.rejection_count > n - m:
        return _finish(
            excluded,
            SessionState.FAILED,
            SessionStatus.REJECTED,
            f"approver {approver_id} was disabled: {n} approvers remain, "
            f"{excluded.rejection_count} of them rejected; {m} approvals are no longer possible",
            now,
        )
    return excluded


def settle_expired(session: Session, now: datetime) -> Session:
    """A pending session past its expiry fails EXPIRED; anything else is returned unchanged.

    complete_time is the expiry itself, so every replica and the sweeper agree on it.
    """
    if not session.is_expired_at(now):
        return session
    return _finish(
        session,
        SessionState.FAILED,
        SessionStatus.EXPIRED,
        f"expired with {session.approval_count} of {session.min_approvals} approvals",
        session.expire_time,
    )


def cancel(
    session: Session,
    by: Principal | None,
    now: datetime,
    status: SessionStatus = SessionStatus.CANCELLED_BY_USER,
) -> Session:
    """End a pending session CANCELLED.

    CANCELLED_BY_USER: only the requester or the admin (`by`); a vault owner cannot cancel a
    recovery account's request. CONFIGURATION_CHANGED / TEAM_DELETED: the server itself
    (`by=None`); a session that expired meanwhile is settled EXPIRED instead, because that is
    what happened first.
    """
    if status in SYSTEM_CANCELLATIONS:
        if by is not None:
            raise _denied(
                f"only the server cancels a session {status.value}",
                Reason.SYSTEM_CANCELLATION_ONLY,
                status=status.value,
            )
        if session.is_expired_at(now):
            return settle_expired(session, now)
        if session.state is not SessionState.PENDING:
            raise _not_pending(session, "cannot be cancelled")
        message = (
            "the team version this session froze was replaced"
            if status is SessionStatus.CONFIGURATION_CHANGED
            else "the team was deleted"
        )
        return _finish(session, SessionState.CANCELLED, status, message, now)
    if status is not SessionStatus.CANCELLED_BY_USER:
        raise InvalidArgument.field("status", f"{status.value} is not a cancellation")
    if by is None or not (by.is_admin or by == session.requester):
        raise not_session_requester(session.session_id)
    if session.state is not SessionState.PENDING:
        raise _not_pending(session, "cannot be cancelled")
    if now >= session.expire_time:
        raise _expired(session)
    return _finish(
        session, SessionState.CANCELLED, SessionStatus.CANCELLED_BY_USER, f"cancelled by {by}", now
    )


def complete(
    session: Session,
    execution_status: ExecutionStatus,
    now: datetime,
    message: str = "",
) -> Session:
    """Report the approved operation's outcome: APPROVED sessions only, exactly once."""
    violations: list[FieldViolation] = []
    if execution_status not in (ExecutionStatus.EXECUTED, ExecutionStatus.FAILED):
        violations.append(FieldViolation("execution_status", "must be EXECUTED or FAILED"))
    if len(message) > MAX_EXECUTION_MESSAGE:
        violations.append(FieldViolation("message", f"at most {MAX_EXECUTION_MESSAGE} characters"))
    if violations:
        raise InvalidArgument(violations)
    if session.state is not SessionState.APPROVED:
        raise FailedPrecondition(
            f"session {session.session_id} is {session.state.value}; only an APPROVED session "
            "reports an execution result",
            reason=Reason.SESSION_NOT_APPROVED,
            metadata={"state": session.state.value},
        )
    if session.execution_status is not ExecutionStatus.PENDING:
        raise FailedPrecondition(
            f"session {session.session_id} was already completed "
            f"({session.execution_status.value})",
            reason=Reason.ALREADY_COMPLETED,
            metadata={"executionStatus": session.execution_status.value},
        )
    return replace(
        session, execution_status=execution_status, execution_message=message, execution_time=now
    )


# --- the signed-vote digest (docs/signed-votes.md) ---


def length_prefixed(value: str) -> bytes:
    """One field of the signed encodings: 4-byte big-endian length, then the UTF-8 bytes."""
    raw = value.encode("utf-8")
    return struct.pack(">I", len(raw)) + raw


def draft_digest_input(draft: TeamDraft) -> bytes:
    """The exact bytes of a team draft that are hashed (docs/signed-votes.md): length-prefixed
    UTF-8 fields, the members in the draft's order, four fields each."""
    fields = [
        DRAFT_DIGEST_TAG,
        draft.team_id,
        str(draft.version),
        draft.description,
        str(draft.min_approvals),
        str(int(draft.session_ttl.total_seconds())),
        str(int(draft.invitation_ttl.total_seconds())),
        str(len(draft.members)),
    ]
    for m in draft.members:
        fields += [
            m.approver_id,
            m.change.value,
            m.public_key.hex() if m.public_key else "",
            "1" if m.signed_by_current_key else "0",
        ]
    return b"".join(length_prefixed(f) for f in fields)


def draft_digest(draft: TeamDraft | None) -> str:
    """Lowercase hex SHA-256 of `draft_digest_input`; empty for a session with no draft."""
    if draft is None:
        return ""
    return hashlib.sha256(draft_digest_input(draft)).hexdigest()


def vote_digest_input(
    *,
    session_id: str,
    team_id: str,
    team_version: int,
    action: str,
    protected_resource: str,
    requester: str,
    expire_time: datetime,
    draft_sha256: str,
    decision: VoteDecision,
) -> bytes:
    """The exact bytes that are hashed: ten length-prefixed UTF-8 fields, in this order."""
    fields = (
        VOTE_DIGEST_TAG,
        session_id,
        team_id,
        str(team_version),
        action,
        protected_resource,
        requester,
        format_time(expire_time),
        draft_sha256,
        decision.value,
    )
    return b"".join(length_prefixed(f) for f in fields)


def vote_digest(session: Session, decision: VoteDecision) -> bytes:
    """SHA-256 of `vote_digest_input`: what an approver signs with its Ed25519 key."""
    return hashlib.sha256(
        vote_digest_input(
            session_id=session.session_id,
            team_id=session.team_id,
            team_version=session.team_version,
            action=session.action,
            protected_resource=session.protected_resource,
            requester=str(session.requester),
            expire_time=session.expire_time,
            draft_sha256=draft_digest(session.draft),
            decision=decision,
        )
    ).digest()
