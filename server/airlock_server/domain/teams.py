"""Approval teams: limits, the team state table and the activation rule. Pure, stdlib only."""

from __future__ import annotations

import enum
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from datetime import datetime, timedelta

from airlock_server.domain.errors import (
    KEY_NOT_APPROVED,
    FailedPrecondition,
    FieldViolation,
    InvalidArgument,
    InvalidTransition,
    Reason,
)
from airlock_server.domain.identities import MAX_DESCRIPTION
from airlock_server.domain.principals import NAME

MIN_APPROVERS = 2
MAX_APPROVERS = 50
DEFAULT_SESSION_TTL = timedelta(hours=24)
DEFAULT_INVITATION_TTL = timedelta(hours=24)
MIN_TTL = timedelta(minutes=15)
MAX_TTL = timedelta(days=7)


class TeamState(enum.Enum):
    PENDING = "PENDING"
    ACTIVE = "ACTIVE"
    INACTIVE = "INACTIVE"
    DELETING = "DELETING"
    DELETED = "DELETED"


class TeamStatus(enum.Enum):
    """Why the team is in its state (AWS MPA's StatusCode)."""

    PENDING_ACTIVATION = "PENDING_ACTIVATION"
    ACTIVE = "ACTIVE"
    FAILED_ACTIVATION = "FAILED_ACTIVATION"
    UPDATE_PENDING_APPROVAL = "UPDATE_PENDING_APPROVAL"
    UPDATE_PENDING_ACTIVATION = "UPDATE_PENDING_ACTIVATION"
    UPDATE_FAILED_APPROVAL = "UPDATE_FAILED_APPROVAL"
    UPDATE_FAILED_ACTIVATION = "UPDATE_FAILED_ACTIVATION"
    DELETE_PENDING_APPROVAL = "DELETE_PENDING_APPROVAL"
    DELETE_FAILED_APPROVAL = "DELETE_FAILED_APPROVAL"
    DELETE_PENDING = "DELETE_PENDING"
    DELETED = "DELETED"


class InvitationState(enum.Enum):
    PENDING = "PENDING"
    ACCEPTED = "ACCEPTED"
    DECLINED = "DECLINED"
    EXPIRED = "EXPIRED"
    # Still open when another invitee declined: the team failed, nothing is left to answer.
    CANCELLED = "CANCELLED"


# The team state table: which state may follow which.
ALLOWED_TRANSITIONS: Mapping[TeamState, frozenset[TeamState]] = {
    TeamState.PENDING: frozenset({TeamState.ACTIVE, TeamState.INACTIVE, TeamState.DELETED}),
    TeamState.ACTIVE: frozenset({TeamState.ACTIVE, TeamState.DELETING}),
    TeamState.INACTIVE: frozenset({TeamState.DELETED}),
    TeamState.DELETING: frozenset({TeamState.DELETED}),
    TeamState.DELETED: frozenset(),
}


def transition(current: TeamState, target: TeamState) -> TeamState:
    if target not in ALLOWED_TRANSITIONS[current]:
        raise InvalidTransition("approval team", current.value, target.value)
    return target


@dataclass(frozen=True)
class TeamMember:
    """One approver of one team version, with its invitation."""

    approver_id: str
    invitation_id: str
    invitation_state: InvitationState
    response_time: datetime | None = None
    public_key: bytes | None = None
    # Set for an invitation of a draft the team approved with a named key (a re-enrolled
    # approver's new key): the only key it may enroll.
    approved_key: bytes | None = None


@dataclass(frozen=True)
class TeamVersion:
    version: int
    description: str
    min_approvals: int
    session_ttl: timedelta
    invitation_ttl: timedelta
    members: tuple[TeamMember, ...]
    create_time: datetime
    invitation_expire_time: datetime

    @property
    def approver_ids(self) -> tuple[str, ...]:
        return tuple(m.approver_id for m in self.members)

    def member(self, approver_id: str) -> TeamMember | None:
        return next((m for m in self.members if m.approver_id == approver_id), None)


@dataclass(frozen=True)
class Team:
    team_id: str
    arn: str
    name: str
    state: TeamState
    status: TeamStatus
    status_message: str
    current: TeamVersion
    revision: int
    create_time: datetime
    update_time: datetime
    pending: TeamVersion | None = None
    update_session_id: str | None = None

    @property
    def etag(self) -> str:
        return f'W/"{self.revision}"'


@dataclass(frozen=True)
class TeamShare:
    team_id: str
    principal_kind: str
    subject: str
    create_time: datetime


@dataclass(frozen=True)
class TeamSpec:
    """A validated description of a team version to create."""

    name: str
    description: str
    approver_ids: tuple[str, ...]
    min_approvals: int
    session_ttl: timedelta
    invitation_ttl: timedelta


def validate_team_spec(
    *,
    name: str,
    description: str,
    approver_ids: Sequence[str],
    min_approvals: int,
    session_ttl: timedelta | None,
    invitation_ttl: timedelta | None,
) -> TeamSpec:
    """All of the design's limits; every violation is reported with its field."""
    violations: list[FieldViolation] = []
    if not NAME.match(name):
        violations.append(FieldViolation("name", "must match [a-zA-Z0-9._-]{1,64}"))
    if len(description) > MAX_DESCRIPTION:
        violations.append(FieldViolation("description", f"at most {MAX_DESCRIPTION} characters"))
    n = len(approver_ids)
    if n < MIN_APPROVERS or n > MAX_APPROVERS:
        violations.append(
            FieldViolation(
                "approver_ids", f"a team has {MIN_APPROVERS} to {MAX_APPROVERS} approvers"
            )
        )
    if len(set(approver_ids)) != n:
        violations.append(FieldViolation("approver_ids", "approvers must be distinct"))
    for i, approver_id in enumerate(approver_ids):
        if not NAME.match(approver_id):
            violations.append(FieldViolation(f"approver_ids[{i}]", "not a valid approver id"))
    if min_approvals < MIN_APPROVERS or min_approvals > max(n, MIN_APPROVERS):
        violations.append(
            FieldViolation(
                "min_approvals", f"must be between {MIN_APPROVERS} and the approver count"
            )
        )
    session_ttl = session_ttl or DEFAULT_SESSION_TTL
    invitation_ttl = invitation_ttl or DEFAULT_INVITATION_TTL
    for field, ttl in (("session_ttl", session_ttl), ("invitation_ttl", invitation_ttl)):
        if ttl < MIN_TTL or ttl > MAX_TTL:
            violations.append(FieldViolation(field, "must be between 15 minutes and 7 days"))
    if violations:
        raise InvalidArgument(violations)
    return TeamSpec(
        name, description, tuple(approver_ids), min_approvals, session_ttl, invitation_ttl
    )


class Activation(enum.Enum):
    """Where a version's invitations stand."""

    WAITING = "WAITING"
    COMPLETE = "COMPLETE"
    DECLINED = "DECLINED"
    EXPIRED = "EXPIRED"


def activation_of(version: TeamVersion, now: datetime) -> Activation:
    """One decline fails at once; all accepted activates; otherwise the TTL decides."""
    states = [m.invitation_state for m in version.members]
    if InvitationState.DECLINED in states:
        return Activation.DECLINED
    if all(s is InvitationState.ACCEPTED for s in states):
        return Activation.COMPLETE
    if InvitationState.EXPIRED in states or now >= version.invitation_expire_time:
        return Activation.EXPIRED
    return Activation.WAITING


def close_invitations(version: TeamVersion, outcome: InvitationState) -> TeamVersion:
    """The version once its activation failed: unanswered invitations expire or are cancelled."""
    members = tuple(
        replace(m, invitation_state=outcome) if m.invitation_state is InvitationState.PENDING else m
        for m in version.members
    )
    return replace(version, members=members)


def expire_invitations(version: TeamVersion) -> TeamVersion:
    """The version as it stands once its TTL passed: unanswered invitations expire."""
    return close_invitations(version, InvitationState.EXPIRED)


def settle_new_team(team: Team, now: datetime) -> Team:
    """A PENDING team becomes ACTIVE or INACTIVE once its activation is decided."""
    if team.state is not TeamState.PENDING:
        return team
    outcome = activation_of(team.current, now)
    if outcome is Activation.WAITING:
        return team
    if outcome is Activation.COMPLETE:
        return replace(
            team,
            state=transition(team.state, TeamState.ACTIVE),
            status=TeamStatus.ACTIVE,
            status_message="every approver accepted",
            revision=team.revision + 1,
            update_time=now,
        )
    current = close_invitations(
        team.current,
        InvitationState.EXPIRED if outcome is Activation.EXPIRED else InvitationState.CANCELLED,
    )
    message = (
        "an approver declined the invitation"
        if outcome is Activation.DECLINED
        else "the invitations expired before every approver accepted"
    )
    return replace(
        team,
        current=current,
        state=transition(team.state, TeamState.INACTIVE),
        status=TeamStatus.FAILED_ACTIVATION,
        status_message=message,
        revision=team.revision + 1,
        update_time=now,
    )


def key_proof_message(invitation_id: str) -> bytes:
    """What an approver signs when it accepts (the invitation id's UTF-8 bytes, as the
    contract says): proof that it holds the key it enrolls."""
    return invitation_id.encode("utf-8")


def respond(
    version: TeamVersion,
    invitation_id: str,
    accept: bool,
    public_key: bytes | None,
    now: datetime,
    replaced_key: bytes | None = None,
) -> TeamVersion:
    """Record one approver's answer; an answer is final.

    `replaced_key`: the key a re-enrolled approver (UpdateApprovalTeam's
    `reenroll_approver_ids`) holds in the version in force; it must enroll another one."""
    member = next((m for m in version.members if m.invitation_id == invitation_id), None)
    if member is None:
        raise InvalidArgument.field("invitation_id", "not an invitation of this team version")
    if member.invitation_state is not InvitationState.PENDING:
        raise FailedPrecondition(
            f"the invitation is {member.invitation_state.value} already; an answer is final",
            reason=Reason.INVITATION_ALREADY_ANSWERED,
            metadata={"invitationId": invitation_id, "state": member.invitation_state.value},
        )
    if now >= version.invitation_expire_time:
        raise FailedPrecondition(
            "the invitation expired",
            reason=Reason.INVITATION_EXPIRED,
            metadata={"invitationId": invitation_id},
        )
    if accept and member.approved_key is not None and public_key != member.approved_key:
        raise InvalidArgument(
            [
                FieldViolation(
                    "public_key",
                    "not the key the team approved for this invitation (its fingerprint is in "
                    "the draft the team voted on)",
                )
            ],
            reason=KEY_NOT_APPROVED,
        )
    # One key, one approver: else one key holder would count twice toward M.
    if accept and public_key and any(m.public_key == public_key for m in version.members):
        raise InvalidArgument(
            [FieldViolation("public_key", "this key is enrolled by another approver")],
            reason=Reason.KEY_ALREADY_ENROLLED,
        )
    if accept and public_key and replaced_key and public_key == replaced_key:
        raise InvalidArgument(
            [
                FieldViolation(
                    "public_key",
                    "this is the key being replaced; re-enrolling needs a new key",
                )
            ],
            reason=Reason.KEY_NOT_REPLACED,
        )
    answered = replace(
        member,
        invitation_state=InvitationState.ACCEPTED if accept else InvitationState.DECLINED,
        response_time=now,
        public_key=public_key if accept else None,
    )
    members = tuple(answered if m is member else m for m in version.members)
    return replace(version, members=members)
