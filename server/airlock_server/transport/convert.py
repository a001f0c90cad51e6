"""Proto messages to domain values and back. No rules here, only shapes."""

from __future__ import annotations

from collections.abc import Mapping
from datetime import UTC, datetime, timedelta

from google.protobuf import duration_pb2, timestamp_pb2

from airlock.v1 import common_pb2, identity_pb2, team_pb2
from airlock_server.app.teams import InvitationView
from airlock_server.domain.errors import InvalidArgument
from airlock_server.domain.health import Activity, ActivityKind
from airlock_server.domain.identities import Account, Approver, Credential
from airlock_server.domain.principals import Principal, PrincipalKind
from airlock_server.domain.team_changes import TeamDeletion
from airlock_server.domain.teams import (
    InvitationState,
    Team,
    TeamMember,
    TeamShare,
    TeamState,
    TeamStatus,
    TeamVersion,
)
from airlock_server.domain.webauthn import decode_passkey_key, is_passkey_key

_KINDS = {
    PrincipalKind.ADMIN: common_pb2.PRINCIPAL_KIND_ADMIN,
    PrincipalKind.ACCOUNT: common_pb2.PRINCIPAL_KIND_ACCOUNT,
    PrincipalKind.APPROVER: common_pb2.PRINCIPAL_KIND_APPROVER,
    PrincipalKind.SERVICE: common_pb2.PRINCIPAL_KIND_SERVICE,
    PrincipalKind.AUDITOR: common_pb2.PRINCIPAL_KIND_AUDITOR,
}
_KINDS_BACK = {v: k for k, v in _KINDS.items()}


_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


def ts(t: datetime | None) -> timestamp_pb2.Timestamp | None:
    """Timestamp.FromDatetime's value (seconds floored, nanos from the microseconds), by exact
    timedelta arithmetic: a fifth of its cost, on every time of every answer."""
    if t is None:
        return None
    since = t - _EPOCH
    return timestamp_pb2.Timestamp(
        seconds=since.days * 86_400 + since.seconds, nanos=since.microseconds * 1000
    )


def from_ts(t: timestamp_pb2.Timestamp) -> datetime:
    return t.ToDatetime(tzinfo=UTC)


def dur(d: timedelta) -> duration_pb2.Duration:
    out = duration_pb2.Duration()
    out.FromTimedelta(d)
    return out


def from_dur(d: duration_pb2.Duration, field: str) -> timedelta | None:
    """None for an unset (zero) duration, so the domain applies its default."""
    if d.seconds == 0 and d.nanos == 0:
        return None
    if d.seconds < 0 or d.nanos < 0:
        raise InvalidArgument.field(field, "must be positive")
    return d.ToTimedelta()


def principal_kind(kind: int, field: str = "principal.kind") -> PrincipalKind:
    try:
        return _KINDS_BACK[kind]  # type: ignore[index]
    except KeyError:
        raise InvalidArgument.field(field, "must name a principal kind") from None


def principal_pb(p: Principal) -> common_pb2.Principal:
    if p.kind is PrincipalKind.SYSTEM:
        return common_pb2.Principal(kind=common_pb2.PRINCIPAL_KIND_SYSTEM)
    return common_pb2.Principal(kind=_KINDS[p.kind], subject=p.subject)


def approver_pb(a: Approver) -> identity_pb2.Approver:
    return identity_pb2.Approver(
        approver_id=a.approver_id,
        display_name=a.display_name,
        email=a.email,
        state=identity_pb2.Approver.STATE_ENABLED
        if a.enabled
        else identity_pb2.Approver.STATE_DISABLED,
        create_time=ts(a.create_time),
        disable_time=ts(a.disable_time),
    )


def account_pb(a: Account) -> identity_pb2.Account:
    return identity_pb2.Account(account_id=a.account_id, name=a.name, create_time=ts(a.create_time))


def credential_pb(c: Credential, now: datetime) -> identity_pb2.Credential:
    if c.revoke_time is not None:
        state = identity_pb2.Credential.STATE_REVOKED
    elif c.expire_time is not None and c.expire_time <= now:
        state = identity_pb2.Credential.STATE_EXPIRED
    else:
        state = identity_pb2.Credential.STATE_ACTIVE
    return identity_pb2.Credential(
        credential_id=c.credential_id,
        principal=principal_pb(c.principal),
        description=c.description,
        state=state,
        create_time=ts(c.create_time),
        expire_time=ts(c.expire_time),
        revoke_time=ts(c.revoke_time),
    )


_INVITATION_STATES = {
    InvitationState.PENDING: team_pb2.Invitation.STATE_PENDING,
    InvitationState.ACCEPTED: team_pb2.Invitation.STATE_ACCEPTED,
    InvitationState.DECLINED: team_pb2.Invitation.STATE_DECLINED,
    InvitationState.EXPIRED: team_pb2.Invitation.STATE_EXPIRED,
    InvitationState.CANCELLED: team_pb2.Invitation.STATE_CANCELLED,
}
INVITATION_STATES_BACK = {v: k for k, v in _INVITATION_STATES.items()}

_TEAM_STATES = {
    TeamState.PENDING: team_pb2.ApprovalTeam.STATE_PENDING,
    TeamState.ACTIVE: team_pb2.ApprovalTeam.STATE_ACTIVE,
    TeamState.INACTIVE: team_pb2.ApprovalTeam.STATE_INACTIVE,
    TeamState.DELETING: team_pb2.ApprovalTeam.STATE_DELETING,
    TeamState.DELETED: team_pb2.ApprovalTeam.STATE_DELETED,
}
TEAM_STATES_BACK = {v: k for k, v in _TEAM_STATES.items()}


def team_status_pb(status: TeamStatus) -> team_pb2.ApprovalTeam.StatusCode.ValueType:
    name = f"STATUS_CODE_{status.value}"
    values = team_pb2.ApprovalTeam.StatusCode
    # ACTIVE, DELETED and the like have nothing more to report than the state itself.
    known = set(values.keys())
    return values.Value(name) if name in known else values.STATUS_CODE_UNSPECIFIED


def team_state_pb(state: TeamState) -> team_pb2.ApprovalTeam.State.ValueType:
    return _TEAM_STATES[state]


ACTIVITY_KINDS = {
    ActivityKind.RESPONDED_TO_INVITATION: team_pb2.ACTIVITY_KIND_INVITATION_RESPONSE,
    ActivityKind.VOTED: team_pb2.ACTIVITY_KIND_VOTE,
    ActivityKind.BASELINED: team_pb2.ACTIVITY_KIND_BASELINE,
}


def activity_kind_pb(a: Activity | None) -> team_pb2.ActivityKind.ValueType:
    return ACTIVITY_KINDS[a.kind] if a else team_pb2.ACTIVITY_KIND_UNSPECIFIED


def passkey_pb(key: bytes | None) -> team_pb2.Passkey | None:
    """The decoded passkey of an enrolled key that is one (None for an Ed25519 key)."""
    if not key or not is_passkey_key(key):
        return None
    try:
        p = decode_passkey_key(key)
    except ValueError:
        return None
    return team_pb2.Passkey(
        rp_id=p.rp_id,
        origin=p.origin,
        algorithm=p.alg,
        credential_id=p.credential_id,
        public_key_der=p.public_key_der,
    )


def _member_pb(m: TeamMember, activity: Mapping[str, Activity]) -> team_pb2.TeamApprover:
    last = activity.get(m.approver_id)
    return team_pb2.TeamApprover(
        passkey=passkey_pb(m.public_key),
        approver_id=m.approver_id,
        invitation_state=_INVITATION_STATES[m.invitation_state],
        invitation_id=m.invitation_id,
        response_time=ts(m.response_time),
        public_key=m.public_key or b"",
        last_activity_kind=activity_kind_pb(last),
        last_activity_time=ts(last.time) if last else None,
    )


def invitation_state_pb(state: InvitationState) -> team_pb2.Invitation.State.ValueType:
    return _INVITATION_STATES[state]


def _version_pb(
    v: TeamVersion, session_id: str | None, activity: Mapping[str, Activity]
) -> team_pb2.TeamVersion:
    return team_pb2.TeamVersion(
        version=v.version,
        description=v.description,
        approvers=[_member_pb(m, activity) for m in v.members],
        min_approvals=v.min_approvals,
        number_of_approvers=len(v.members),
        session_ttl=dur(v.session_ttl),
        invitation_ttl=dur(v.invitation_ttl),
        session_id=session_id or "",
        create_time=ts(v.create_time),
    )


def team_pb(
    t: Team,
    deletion: TeamDeletion | None = None,
    activity: Mapping[str, Activity] | None = None,
) -> team_pb2.ApprovalTeam:
    """The team; `deletion` (its latest deletion request) fills the deletion fields and
    `activity` (each approver's last activity for the team) the approvers' last activity."""
    v = t.current
    activity = activity or {}
    shown = deletion is not None and (
        t.status in (TeamStatus.DELETE_PENDING_APPROVAL, TeamStatus.DELETE_FAILED_APPROVAL)
        or t.state in (TeamState.DELETING, TeamState.DELETED)
    )
    return team_pb2.ApprovalTeam(
        deletion_session_id=deletion.session_id if deletion and shown else "",
        deletion_pending_window_days=deletion.pending_window_days if deletion and shown else 0,
        deletion_complete_time=ts(deletion.complete_time) if deletion and shown else None,
        team_id=t.team_id,
        arn=t.arn,
        name=t.name,
        description=v.description,
        state=_TEAM_STATES[t.state],
        status_code=team_status_pb(t.status),
        status_message=t.status_message,
        min_approvals=v.min_approvals,
        approvers=[_member_pb(m, activity) for m in v.members],
        number_of_approvers=len(v.members),
        session_ttl=dur(v.session_ttl),
        invitation_ttl=dur(v.invitation_ttl),
        invitation_expire_time=ts(
            t.pending.invitation_expire_time if t.pending else v.invitation_expire_time
        ),
        version=v.version,
        etag=t.etag,
        create_time=ts(t.create_time),
        update_time=ts(t.update_time),
        pending_update=_version_pb(t.pending, t.update_session_id, activity) if t.pending else None,
        update_session_id=t.update_session_id or "",
    )


def share_pb(s: TeamShare) -> team_pb2.TeamShare:
    return team_pb2.TeamShare(
        team_id=s.team_id,
        principal=principal_pb(Principal(PrincipalKind(s.principal_kind), s.subject)),
        create_time=ts(s.create_time),
    )


def invitation_pb(view: InvitationView) -> team_pb2.Invitation:
    v, m = view.version, view.member
    return team_pb2.Invitation(
        invitation_id=m.invitation_id,
        team_id=view.team.team_id,
        team_name=view.team.name,
        team_version=v.version,
        approver_id=m.approver_id,
        state=_INVITATION_STATES[m.invitation_state],
        create_time=ts(v.create_time),
        expire_time=ts(v.invitation_expire_time),
        response_time=ts(m.response_time),
        min_approvals=v.min_approvals,
        number_of_approvers=len(v.members),
        approver_ids=list(v.approver_ids),
        team_description=v.description,
    )
