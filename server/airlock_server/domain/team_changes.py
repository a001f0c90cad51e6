"""A team that guards itself: updates and deletion, each voted by the team's current version.

Flow of an update: `start_update` (UPDATE_PENDING_APPROVAL, a draft version) -> the session's
outcome: `apply_approved_update` or `fail_update` -> `settle_update_activation` once the new
invitees answer. The version in force changes only in `_activate`; when `team.current.version`
grew, the caller cancels the old version's pending sessions CONFIGURATION_CHANGED.

Flow of a deletion: `start_deletion` (DELETE_PENDING_APPROVAL) -> `approve_deletion` (DELETING
for the pending window; DELETED at once for 0 days) or `fail_deletion` -> `finish_deletion`.
Team has no deletion fields, so the deletion's facts travel in a `TeamDeletion` beside it.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from datetime import datetime, timedelta

from airlock_server.domain.errors import (
    NEW_KEY_REQUIRED,
    FailedPrecondition,
    FieldViolation,
    InvalidArgument,
    Reason,
)
from airlock_server.domain.sessions import (
    DraftMember,
    KeyChange,
    SessionStatus,
    TeamDraft,
    length_prefixed,
)
from airlock_server.domain.teams import (
    Activation,
    InvitationState,
    Team,
    TeamMember,
    TeamSpec,
    TeamState,
    TeamStatus,
    TeamVersion,
    activation_of,
    expire_invitations,
    transition,
    validate_team_spec,
)

MAX_PENDING_WINDOW_DAYS = 90

# Statuses in which the team already waits on a change; a second one is refused.
PENDING_CHANGE_STATUSES = frozenset(
    {
        TeamStatus.UPDATE_PENDING_APPROVAL,
        TeamStatus.UPDATE_PENDING_ACTIVATION,
        TeamStatus.DELETE_PENDING_APPROVAL,
    }
)


@dataclass(frozen=True)
class TeamDeletion:
    """A requested deletion: its session, window and, once approved, when it completes."""

    team_id: str
    session_id: str
    pending_window_days: int
    request_time: datetime
    approve_time: datetime | None = None
    complete_time: datetime | None = None


def has_pending_change(team: Team) -> bool:
    return team.status in PENDING_CHANGE_STATUSES


def require_changeable(team: Team) -> None:
    """Updates and deletion start only on an ACTIVE team with no change in flight."""
    if team.state is not TeamState.ACTIVE:
        raise FailedPrecondition(
            f"approval team {team.team_id} is {team.state.value}; only an ACTIVE team can be "
            "changed",
            reason=Reason.TEAM_NOT_ACTIVE,
            metadata={"state": team.state.value},
        )
    if has_pending_change(team):
        raise FailedPrecondition(
            f"approval team {team.team_id} is {team.status.value}; one change at a time",
            reason=Reason.TEAM_CHANGE_PENDING,
            metadata={"status": team.status.value, "sessionId": team.update_session_id or ""},
        )


def _require_status(team: Team, expected: TeamStatus, doing: str) -> None:
    if team.status is not expected:
        raise FailedPrecondition(
            f"approval team {team.team_id} is {team.state.value} ({team.status.value}) and "
            f"cannot {doing}",
            reason=Reason.TEAM_STATUS_MISMATCH,
            metadata={
                "state": team.state.value,
                "status": team.status.value,
                "expected": expected.value,
            },
        )


def voters(version: TeamVersion) -> tuple[str, ...]:
    """Who votes on a session of this version: its approvers who accepted."""
    return tuple(
        m.approver_id for m in version.members if m.invitation_state is InvitationState.ACCEPTED
    )


def invitable_version(team: Team) -> TeamVersion | None:
    """The version whose PENDING invitations may be answered now, if any.

    A draft's new invitees answer only after the team approved the update.
    """
    if team.state is TeamState.PENDING:
        return team.current
    if team.status is TeamStatus.UPDATE_PENDING_ACTIVATION:
        return team.pending
    return None


# --- updates ---


@dataclass(frozen=True)
class NewKey:
    """A key named in UpdateApprovalTeam for an approver the draft invites (docs/signed-votes.md,
    "Replacing a key"): the team approves exactly this key, and the approver may enroll no other.
    `current_key_signature`: the approver's key in force signed `key_change_message` (optional;
    the draft shows whether it did)."""

    approver_id: str
    public_key: bytes
    current_key_signature: bytes = b""


def key_change_message(team_id: str, approver_id: str, new_key: bytes) -> bytes:
    """What an approver's current key signs to vouch for its new one: four length-prefixed
    UTF-8 fields, `airlock.key-change.v1`, the team id, the approver id, the new key in hex."""
    fields = ("airlock.key-change.v1", team_id, approver_id, new_key.hex())
    return b"".join(length_prefixed(f) for f in fields)


def check_new_keys(
    team: Team, spec: TeamSpec, reenroll_approver_ids: Sequence[str], new_keys: Sequence[NewKey]
) -> None:
    """Each re-enrolled approver names its new key; a key is named only for an approver the
    draft invites (re-enrolled or new), once, and is nobody's key already."""
    violations: list[FieldViolation] = []
    named = [k.approver_id for k in new_keys]
    held = {m.public_key: m.approver_id for m in team.current.members if m.public_key}
    for i, k in enumerate(new_keys):
        where = f"new_keys[{i}]"
        old = team.current.member(k.approver_id)
        invited = k.approver_id in reenroll_approver_ids or (
            k.approver_id in spec.approver_ids
            and (old is None or old.invitation_state is not InvitationState.ACCEPTED)
        )
        if not invited:
            violations.append(
                FieldViolation(
                    where,
                    f"{k.approver_id} is not invited by this draft (name it in "
                    "reenroll_approver_ids to replace its key)",
                )
            )
        elif named.count(k.approver_id) > 1:
            violations.append(FieldViolation(where, f"{k.approver_id} is named more than once"))
        elif k.public_key in held:
            violations.append(
                FieldViolation(
                    f"{where}.public_key",
                    f"this key is enrolled already (by {held[k.public_key]}); a new key is new",
                )
            )
        elif k.current_key_signature and (old is None or old.public_key is None):
            violations.append(
                FieldViolation(
                    f"{where}.current_key_signature",
                    f"{k.approver_id} holds no key in the version in force to sign with",
                )
            )
    if len({k.public_key for k in new_keys}) != len(new_keys):
        violations.append(FieldViolation("new_keys", "two approvers are named with one key"))
    if violations:
        raise InvalidArgument(violations)
    missing = [a for a in reenroll_approver_ids if a not in named]
    if missing:
        raise InvalidArgument(
            [
                FieldViolation(
                    "new_keys",
                    f"re-enrolling {', '.join(missing)} needs its new public key, so the team "
                    "approves that exact key",
                )
            ],
            reason=NEW_KEY_REQUIRED,
        )


def team_draft(team: Team, draft: TeamVersion, new_keys: Sequence[NewKey] = ()) -> TeamDraft:
    """What the team's approvers are shown and sign: the draft's settings and, per member,
    whether it keeps its key (and which), gets the named new key, or is a new approver."""
    signed = {k.approver_id for k in new_keys if k.current_key_signature}
    members: list[DraftMember] = []
    for m in draft.members:
        old = team.current.member(m.approver_id)
        if m.invitation_state is InvitationState.ACCEPTED:
            members.append(DraftMember(m.approver_id, KeyChange.KEEPS_KEY, m.public_key))
        elif old is not None and old.invitation_state is InvitationState.ACCEPTED:
            members.append(
                DraftMember(
                    m.approver_id,
                    KeyChange.NEW_KEY,
                    m.approved_key,
                    m.approver_id in signed,
                )
            )
        else:
            members.append(DraftMember(m.approver_id, KeyChange.NEW_APPROVER, m.approved_key))
    return TeamDraft(
        team_id=team.team_id,
        version=draft.version,
        description=draft.description,
        min_approvals=draft.min_approvals,
        session_ttl=draft.session_ttl,
        invitation_ttl=draft.invitation_ttl,
        members=tuple(members),
    )


def same_draft(shown: TeamDraft, team: Team) -> bool:
    """Whether the team's draft, about to take force, is the one its approvers voted on
    (settings, members, keys). Whether a new key was vouched for is not kept beyond the vote."""
    if team.pending is None:
        return False
    unsigned = tuple(replace(m, signed_by_current_key=False) for m in shown.members)
    return replace(shown, members=unsigned) == team_draft(team, team.pending)


def validate_update(
    team: Team,
    *,
    description: str,
    approver_ids: Sequence[str],
    min_approvals: int,
    session_ttl: timedelta | None,
    invitation_ttl: timedelta | None,
    reenroll_approver_ids: Sequence[str] = (),
) -> TeamSpec:
    """The team's own limits (validate_team_spec), plus: re-enrolled approvers stay members."""
    spec = validate_team_spec(
        name=team.name,
        description=description,
        approver_ids=approver_ids,
        min_approvals=min_approvals,
        session_ttl=session_ttl,
        invitation_ttl=invitation_ttl,
    )
    outsiders = [a for a in reenroll_approver_ids if a not in spec.approver_ids]
    if outsiders:
        raise InvalidArgument.field(
            "reenroll_approver_ids",
            f"not in the new approver set: {', '.join(outsiders)}",
        )
    return spec


def draft_version(
    team: Team,
    spec: TeamSpec,
    *,
    now: datetime,
    new_invitation_id: Callable[[], str],
    reenroll_approver_ids: Sequence[str] = (),
    new_keys: Sequence[NewKey] = (),
) -> TeamVersion:
    """Version current + 1. Every member is a new row with a new invitation id; approvers
    carried over keep their acceptance and key (unless re-enrolled), the others are invited,
    each bound to its key in `new_keys` when one is named."""
    reenroll = set(reenroll_approver_ids)
    approved = {k.approver_id: k.public_key for k in new_keys}
    members: list[TeamMember] = []
    for approver_id in spec.approver_ids:
        old = team.current.member(approver_id)
        if (
            old is not None
            and old.invitation_state is InvitationState.ACCEPTED
            and approver_id not in reenroll
        ):
            members.append(replace(old, invitation_id=new_invitation_id()))
        else:
            members.append(
                TeamMember(
                    approver_id,
                    new_invitation_id(),
                    InvitationState.PENDING,
                    approved_key=approved.get(approver_id),
                )
            )
    return TeamVersion(
        version=team.current.version + 1,
        description=spec.description,
        min_approvals=spec.min_approvals,
        session_ttl=spec.session_ttl,
        invitation_ttl=spec.invitation_ttl,
        members=tuple(members),
        create_time=now,
        # Provisional: the invitations open only once the update is approved (reset then).
        invitation_expire_time=now + spec.invitation_ttl,
    )


def start_update(
    team: Team,
    *,
    description: str,
    approver_ids: Sequence[str],
    min_approvals: int,
    session_ttl: timedelta | None,
    invitation_ttl: timedelta | None,
    session_id: str,
    now: datetime,
    new_invitation_id: Callable[[], str],
    reenroll_approver_ids: Sequence[str] = (),
    new_keys: Sequence[NewKey] = (),
) -> Team:
    """UpdateApprovalTeam: the draft waits for the current team's vote in `session_id`.

    A failed earlier draft (UPDATE_FAILED_*) is replaced by the new one.
    """
    spec = validate_update(
        team,
        description=description,
        approver_ids=approver_ids,
        min_approvals=min_approvals,
        session_ttl=session_ttl,
        invitation_ttl=invitation_ttl,
        reenroll_approver_ids=reenroll_approver_ids,
    )
    require_changeable(team)
    check_new_keys(team, spec, reenroll_approver_ids, new_keys)
    draft = draft_version(
        team,
        spec,
        now=now,
        new_invitation_id=new_invitation_id,
        reenroll_approver_ids=reenroll_approver_ids,
        new_keys=new_keys,
    )
    return replace(
        team,
        state=transition(team.state, TeamState.ACTIVE),
        status=TeamStatus.UPDATE_PENDING_APPROVAL,
        status_message=f"version {draft.version} waits for the team's approval",
        pending=draft,
        update_session_id=session_id,
        revision=team.revision + 1,
        update_time=now,
    )


def _activate(team: Team, draft: TeamVersion, now: datetime) -> Team:
    return replace(
        team,
        state=transition(team.state, TeamState.ACTIVE),
        status=TeamStatus.ACTIVE,
        status_message=f"version {draft.version} is in force",
        current=draft,
        pending=None,
        update_session_id=None,
        revision=team.revision + 1,
        update_time=now,
    )


def _draft(team: Team) -> TeamVersion:
    if team.pending is None:
        raise FailedPrecondition(
            f"approval team {team.team_id} has no draft version", reason=Reason.NO_PENDING_UPDATE
        )
    return team.pending


def apply_approved_update(team: Team, now: datetime) -> Team:
    """The update session was approved: new invitees are invited now; with none, the draft
    takes force at once."""
    _require_status(team, TeamStatus.UPDATE_PENDING_APPROVAL, "apply an approved update")
    draft = replace(_draft(team), invitation_expire_time=now + _draft(team).invitation_ttl)
    if activation_of(draft, now) is Activation.COMPLETE:
        return _activate(team, draft, now)
    return replace(
        team,
        status=TeamStatus.UPDATE_PENDING_ACTIVATION,
        status_message=f"version {draft.version} was approved; waiting for new approvers to accept",
        pending=draft,
        revision=team.revision + 1,
        update_time=now,
    )


def settle_update_activation(team: Team, now: datetime) -> Team:
    """UPDATE_PENDING_ACTIVATION: all accepted -> the draft takes force; a decline or expiry ->
    UPDATE_FAILED_ACTIVATION and the old version stays. Otherwise unchanged."""
    if team.status is not TeamStatus.UPDATE_PENDING_ACTIVATION or team.pending is None:
        return team
    outcome = activation_of(team.pending, now)
    if outcome is Activation.WAITING:
        return team
    if outcome is Activation.COMPLETE:
        return _activate(team, team.pending, now)
    declined = outcome is Activation.DECLINED
    return replace(
        team,
        status=TeamStatus.UPDATE_FAILED_ACTIVATION,
        status_message=(
            "a new approver declined the invitation; the old version stays in force"
            if declined
            else "the new approvers' invitations expired; the old version stays in force"
        ),
        pending=team.pending if declined else expire_invitations(team.pending),
        update_session_id=None,
        revision=team.revision + 1,
        update_time=now,
    )


def fail_update(team: Team, outcome: SessionStatus, now: datetime) -> Team:
    """The update session was rejected, expired or cancelled: the old version stays; the draft
    is kept for reading until the next update replaces it."""
    _require_status(team, TeamStatus.UPDATE_PENDING_APPROVAL, "fail its update")
    return replace(
        team,
        status=TeamStatus.UPDATE_FAILED_APPROVAL,
        status_message=f"the update session ended {outcome.value}; the old version stays in force",
        update_session_id=None,
        revision=team.revision + 1,
        update_time=now,
    )


# --- deletion ---


def start_deletion(
    team: Team, *, pending_window_days: int, session_id: str, now: datetime
) -> tuple[Team, TeamDeletion]:
    """StartTeamDeletion: the team stays ACTIVE until its own vote approves the deletion."""
    if not 0 <= pending_window_days <= MAX_PENDING_WINDOW_DAYS:
        raise InvalidArgument.field(
            "pending_window_days", f"must be between 0 and {MAX_PENDING_WINDOW_DAYS}"
        )
    require_changeable(team)
    deleting = replace(
        team,
        state=transition(team.state, TeamState.ACTIVE),
        status=TeamStatus.DELETE_PENDING_APPROVAL,
        status_message="the deletion waits for the team's approval",
        revision=team.revision + 1,
        update_time=now,
    )
    return deleting, TeamDeletion(team.team_id, session_id, pending_window_days, now)


def approve_deletion(
    team: Team, deletion: TeamDeletion, now: datetime
) -> tuple[Team, TeamDeletion]:
    """The deletion session was approved: DELETING until the window ends; a 0-day window
    deletes at once."""
    _require_status(team, TeamStatus.DELETE_PENDING_APPROVAL, "approve a deletion")
    complete_time = now + timedelta(days=deletion.pending_window_days)
    approved = replace(deletion, approve_time=now, complete_time=complete_time)
    deleting = replace(
        team,
        state=transition(team.state, TeamState.DELETING),
        status=TeamStatus.DELETE_PENDING,
        status_message="deletion approved; the team approves nothing new",
        revision=team.revision + 1,
        update_time=now,
    )
    if deletion.pending_window_days == 0:
        return finish_deletion(deleting, approved, now), approved
    return deleting, approved


def deletion_due(team: Team, deletion: TeamDeletion, now: datetime) -> bool:
    """For the sweeper: a DELETING team whose window has ended."""
    return (
        team.state is TeamState.DELETING
        and deletion.complete_time is not None
        and now >= deletion.complete_time
    )


def finish_deletion(team: Team, deletion: TeamDeletion, now: datetime) -> Team:
    """The window ended: DELETED. The caller ends associations, revokes grants and cancels
    the team's pending sessions TEAM_DELETED in the same transaction."""
    if not deletion_due(team, deletion, now):
        raise FailedPrecondition(
            f"approval team {team.team_id} is {team.state.value}; it is deleted only once "
            "DELETING and its pending window has ended",
            reason=Reason.DELETION_NOT_DUE,
            metadata={"state": team.state.value},
        )
    return replace(
        team,
        state=transition(team.state, TeamState.DELETED),
        status=TeamStatus.DELETED,
        status_message="deleted",
        revision=team.revision + 1,
        update_time=now,
    )


def fail_deletion(team: Team, outcome: SessionStatus, now: datetime) -> Team:
    """The deletion session was rejected, expired or cancelled: the team keeps working."""
    _require_status(team, TeamStatus.DELETE_PENDING_APPROVAL, "fail its deletion")
    return replace(
        team,
        status=TeamStatus.DELETE_FAILED_APPROVAL,
        status_message=f"the deletion session ended {outcome.value}; the team stays ACTIVE",
        revision=team.revision + 1,
        update_time=now,
    )
