"""Rows <-> domain objects, in one place: how each aggregate is read from its row and what of it
each row's MAC covers (domain/integrity.py). The repositories, `seal` and the tests' re-MAC
helpers all build and check rows with these, so a column added to a MAC is added once."""

from __future__ import annotations

import json
from datetime import datetime, timedelta
from typing import Any

from airlock_server.domain.identities import Account, Approver, Credential
from airlock_server.domain.integrity import RowField, record_not_authentic
from airlock_server.domain.principals import Principal, PrincipalKind
from airlock_server.domain.sessions import (
    DraftMember,
    ExecutionStatus,
    KeyChange,
    Session,
    SessionKind,
    SessionState,
    SessionStatus,
    TeamDraft,
    Vote,
    VoteDecision,
)
from airlock_server.domain.team_changes import TeamDeletion
from airlock_server.domain.teams import TeamShare, TeamVersion
from airlock_server.domain.vaults import (
    GrantState,
    PendingAssociation,
    RestoreAccessGrant,
    Vault,
)
from airlock_server.domain.webauthn import InvitationLink, PasskeyCredential
from airlock_server.persistence.seal import Sealer

# The tables whose rows carry a MAC by the log key (domain/integrity.py).
APPROVERS = "approvers"
ACCOUNTS = "accounts"
CREDENTIALS = "credentials"
TEAMS = "teams"
TEAM_VERSIONS = "team_versions"
TEAM_MEMBERS = "team_members"
TEAM_SHARES = "team_shares"
TEAM_DELETIONS = "team_deletions"
SESSIONS = "sessions"
VOTES = "votes"
GRANTS = "restore_access_grants"
VAULTS = "vaults"


def check(
    sealer: Sealer, table: str, key: str, fields: tuple[RowField, ...], mac: bytes | None
) -> None:
    """A row the server wrote; RECORD_NOT_AUTHENTIC otherwise."""
    if not sealer.authentic(table, key, fields, mac):
        raise record_not_authentic(table, key)


# --- approvers and accounts ---------------------------------------------------------------


def approver_fields(a: Approver) -> tuple[RowField, ...]:
    """What an approver's MAC covers: every column, `enabled` above all (a disabled approver
    re-enabled through SQL is refused)."""
    return (
        a.approver_id,
        a.display_name,
        a.email,
        int(a.enabled),
        a.create_time,
        a.disable_time,
    )


def approver_from_row(r: Any) -> Approver:
    return Approver(
        r.approver_id, r.display_name, r.email, r.enabled, r.create_time, r.disable_time
    )


def account_fields(a: Account) -> tuple[RowField, ...]:
    return (a.account_id, a.name, a.create_time)


def account_from_row(r: Any) -> Account:
    return Account(r.account_id, r.name, r.create_time)


# --- credentials --------------------------------------------------------------------------


def credential_fields(
    credential_id: str,
    kind: str,
    subject: str,
    description: str,
    token_hash: bytes,
    create_time: datetime,
    expire_time: datetime | None,
    revoke_time: datetime | None,
) -> tuple[RowField, ...]:
    """What a credential's MAC covers: every column but the MAC."""
    return (
        credential_id,
        kind,
        subject,
        description,
        bytes(token_hash),
        create_time,
        expire_time,
        revoke_time,
    )


def stored_credential_fields(r: Any) -> tuple[RowField, ...]:
    return credential_fields(
        r.credential_id,
        r.principal_kind,
        r.subject,
        r.description,
        r.token_hash,
        r.create_time,
        r.expire_time,
        r.revoke_time,
    )


def credential_from_row(r: Any) -> Credential:
    return Credential(
        credential_id=r.credential_id,
        principal=Principal(PrincipalKind(r.principal_kind), r.subject),
        description=r.description,
        create_time=r.create_time,
        expire_time=r.expire_time,
        revoke_time=r.revoke_time,
    )


# --- teams: the team row, its versions, their members, its shares -------------------------

_TEAM_MACED = (
    "team_id",
    "arn",
    "name",
    "state",
    "status",
    "status_message",
    "current_version",
    "pending_version",
    "update_session_id",
    "revision",
    "activation_deadline",
    "create_time",
    "update_time",
)


def team_fields(r: Any) -> tuple[RowField, ...]:
    """What a team's own row's MAC covers, from a row or a dict of its columns: its state and
    which versions are current and pending (a `current_version` rolled back is refused)."""
    values = r if isinstance(r, dict) else r._mapping
    return tuple(values[c] for c in _TEAM_MACED)


def version_fields(team_id: str, v: TeamVersion) -> tuple[RowField, ...]:
    """What a team version's MAC covers: its rules (M, TTLs), immutable once written."""
    return (
        team_id,
        v.version,
        v.description,
        v.min_approvals,
        int(v.session_ttl.total_seconds()),
        int(v.invitation_ttl.total_seconds()),
        v.create_time,
        v.invitation_expire_time,
    )


def version_from_row(r: Any, prefix: str = "") -> TeamVersion:
    """A version without its members, from a team_versions row (or its columns labelled with
    `prefix`, as the team's joined read has them)."""
    return TeamVersion(
        version=getattr(r, prefix + "version"),
        description=getattr(r, prefix + "description"),
        min_approvals=getattr(r, prefix + "min_approvals"),
        session_ttl=timedelta(seconds=getattr(r, prefix + "session_ttl_seconds")),
        invitation_ttl=timedelta(seconds=getattr(r, prefix + "invitation_ttl_seconds")),
        members=(),
        create_time=getattr(r, prefix + "create_time"),
        invitation_expire_time=getattr(r, prefix + "invitation_expire_time"),
    )


def member_fields(
    team_id: str,
    version: int,
    invitation_id: str,
    approver_id: str,
    invitation_state: str,
    response_time: datetime | None,
    public_key: bytes | None,
    approved_key: bytes | None = None,
) -> tuple[RowField, ...]:
    """What a team member row's MAC covers: which team version, which approver, its answer,
    the key it enrolled and, for an invitation bound to one, the key the team approved
    (position only orders the members)."""
    fields: tuple[RowField, ...] = (
        team_id,
        version,
        invitation_id,
        approver_id,
        invitation_state,
        response_time,
        bytes(public_key) if public_key is not None else None,
    )
    return fields if approved_key is None else (*fields, bytes(approved_key))


def check_member(
    sealer: Sealer,
    team_id: str,
    version: int,
    invitation_id: str,
    approver_id: str,
    state: str,
    response_time: datetime | None,
    key: bytes | None,
    mac: bytes | None,
    approved_key: bytes | None = None,
) -> None:
    """A member row the server wrote (its enrolled key above all); RECORD_NOT_AUTHENTIC
    otherwise."""
    fields = member_fields(
        team_id, version, invitation_id, approver_id, state, response_time, key, approved_key
    )
    check(sealer, TEAM_MEMBERS, invitation_id, fields, mac)


def stored_member_fields(r: Any) -> tuple[RowField, ...]:
    return member_fields(
        r.team_id,
        r.version,
        r.invitation_id,
        r.approver_id,
        r.invitation_state,
        r.response_time,
        r.public_key,
        r.approved_key,
    )


def share_fields(
    team_id: str, kind: str, subject: str, create_time: datetime
) -> tuple[RowField, ...]:
    return (team_id, kind, subject, create_time)


def stored_share_fields(r: Any) -> tuple[RowField, ...]:
    return share_fields(r.team_id, r.principal_kind, r.subject, r.create_time)


def checked_share(sealer: Sealer, r: Any) -> TeamShare:
    """A share the server wrote; RECORD_NOT_AUTHENTIC otherwise (a share inserted through
    SQL opens no team to anyone)."""
    key = f"{r.team_id}/{r.principal_kind}:{r.subject}"
    check(sealer, TEAM_SHARES, key, stored_share_fields(r), r.mac)
    return TeamShare(r.team_id, r.principal_kind, r.subject, r.create_time)


def deletion_fields(d: TeamDeletion, due_time: datetime | None) -> tuple[RowField, ...]:
    """What a team deletion's MAC covers: every column (its session, window, outcome, due)."""
    return (
        d.session_id,
        d.team_id,
        d.pending_window_days,
        d.request_time,
        d.approve_time,
        d.complete_time,
        due_time,
    )


def deletion_from_row(r: Any) -> TeamDeletion:
    return TeamDeletion(
        team_id=r.team_id,
        session_id=r.session_id,
        pending_window_days=r.pending_window_days,
        request_time=r.request_time,
        approve_time=r.approve_time,
        complete_time=r.complete_time,
    )


# --- sessions and votes -------------------------------------------------------------------


def session_fields(s: Session) -> tuple[RowField, ...]:
    """What a session's MAC covers: every fact its votes and approval rest on (the frozen
    approver set of session_approvers included), and its state."""
    return (
        s.session_id,
        s.kind.value,
        s.team_id,
        s.team_version,
        json.dumps(list(s.approver_ids)),
        s.min_approvals,
        s.requester.kind.value,
        s.requester.subject,
        s.requester_account_id,
        s.action,
        s.protected_resource,
        s.comment,
        json.dumps(dict(s.metadata), sort_keys=True),
        s.create_time,
        s.expire_time,
        s.state.value,
        s.status.value,
        s.status_message,
        s.execution_status.value,
        s.execution_message,
        s.complete_time,
        s.execution_time,
        # A team update's draft (what its votes sign) and the approvers disabled meanwhile.
        json.dumps(draft_to_row(s.draft), sort_keys=True),
        json.dumps(list(s.excluded_approver_ids)),
    )


def session_from_row(r: Any, approver_ids: tuple[str, ...], votes: tuple[Vote, ...]) -> Session:
    """A session from its row and, read apart, its frozen approver set and votes."""
    return Session(
        session_id=r.session_id,
        kind=SessionKind(r.kind),
        team_id=r.team_id,
        team_version=r.team_version,
        approver_ids=approver_ids,
        min_approvals=r.min_approvals,
        requester=Principal(PrincipalKind(r.requester_kind), r.requester_subject),
        requester_account_id=r.requester_account_id,
        action=r.action,
        protected_resource=r.protected_resource,
        comment=r.comment,
        create_time=r.create_time,
        expire_time=r.expire_time,
        metadata=dict(r.session_metadata),
        votes=votes,
        state=SessionState(r.state),
        status=SessionStatus(r.status),
        status_message=r.status_message,
        execution_status=ExecutionStatus(r.execution_status),
        execution_message=r.execution_message,
        complete_time=r.complete_time,
        execution_time=r.execution_time,
        draft=draft_from_row(r.team_draft),
        excluded_approver_ids=tuple(r.excluded_approvers or ()),
    )


def vote_fields(session_id: str, position: int, v: Vote) -> tuple[RowField, ...]:
    return (
        session_id,
        v.approver_id,
        position,
        v.decision.value,
        v.comment,
        v.time,
        bytes(v.signature),
    )


def vote_from_row(r: Any) -> Vote:
    return Vote(r.approver_id, VoteDecision(r.decision), r.comment, r.vote_time, r.signature)


def stored_vote_fields(r: Any) -> tuple[RowField, ...]:
    return vote_fields(r.session_id, r.position, vote_from_row(r))


def draft_to_row(draft: TeamDraft | None) -> dict[str, Any] | None:
    """A session's team draft as its JSON column holds it (keys hex, TTLs in seconds)."""
    if draft is None:
        return None
    return {
        "team_id": draft.team_id,
        "version": draft.version,
        "description": draft.description,
        "min_approvals": draft.min_approvals,
        "session_ttl_seconds": int(draft.session_ttl.total_seconds()),
        "invitation_ttl_seconds": int(draft.invitation_ttl.total_seconds()),
        "members": [
            {
                "approver_id": m.approver_id,
                "change": m.change.value,
                "public_key": m.public_key.hex() if m.public_key else None,
                "signed_by_current_key": m.signed_by_current_key,
            }
            for m in draft.members
        ],
    }


def draft_from_row(row: dict[str, Any] | None) -> TeamDraft | None:
    if row is None:
        return None
    return TeamDraft(
        team_id=row["team_id"],
        version=row["version"],
        description=row["description"],
        min_approvals=row["min_approvals"],
        session_ttl=timedelta(seconds=row["session_ttl_seconds"]),
        invitation_ttl=timedelta(seconds=row["invitation_ttl_seconds"]),
        members=tuple(
            DraftMember(
                approver_id=m["approver_id"],
                change=KeyChange(m["change"]),
                public_key=bytes.fromhex(m["public_key"]) if m["public_key"] else None,
                signed_by_current_key=m["signed_by_current_key"],
            )
            for m in row["members"]
        ),
    )


# --- vaults and restore access grants -----------------------------------------------------


def vault_fields(v: Vault) -> tuple[RowField, ...]:
    """What a vault's MAC covers: its owner, its rules and its team association (and a
    pending change of it)."""
    p = v.pending_association
    return (
        v.vault_arn,
        v.account_id,
        v.name,
        v.region,
        v.min_retention_days,
        v.max_retention_days,
        json.dumps(dict(v.tags), sort_keys=True),
        v.create_time,
        v.update_time,
        v.team_id,
        p.team_id if p else None,
        p.session_id if p else None,
        p.create_time if p else None,
    )


def vault_from_row(r: Any) -> Vault:
    pending = (
        PendingAssociation(r.pending_team_id, r.pending_session_id, r.pending_create_time)
        if r.pending_session_id is not None and r.pending_create_time is not None
        else None
    )
    return Vault(
        vault_arn=r.vault_arn,
        account_id=r.account_id,
        name=r.name,
        region=r.region,
        min_retention_days=r.min_retention_days,
        max_retention_days=r.max_retention_days,
        create_time=r.create_time,
        update_time=r.update_time,
        tags=dict(r.tags),
        team_id=r.team_id,
        pending_association=pending,
    )


def grant_fields(g: RestoreAccessGrant) -> tuple[RowField, ...]:
    return (
        g.grant_id,
        g.vault_arn,
        g.account_id,
        g.restore_vault_name,
        g.restore_vault_arn,
        g.state.value,
        g.status_message,
        g.session_id,
        g.revoke_session_id,
        g.comment,
        g.create_time,
        g.update_time,
    )


def grant_from_row(r: Any) -> RestoreAccessGrant:
    return RestoreAccessGrant(
        grant_id=r.grant_id,
        vault_arn=r.vault_arn,
        account_id=r.account_id,
        restore_vault_name=r.restore_vault_name,
        restore_vault_arn=r.restore_vault_arn,
        state=GrantState(r.state),
        status_message=r.status_message,
        session_id=r.session_id,
        comment=r.comment,
        create_time=r.create_time,
        update_time=r.update_time,
        revoke_session_id=r.revoke_session_id,
    )


def passkey_from_row(r: Any) -> PasskeyCredential:
    return PasskeyCredential(
        credential_id=r.credential_id,
        approver_id=r.approver_id,
        team_id=r.team_id,
        invitation_id=r.invitation_id,
        public_key=r.public_key,
        cose_public_key=r.cose_public_key,
        sign_count=r.sign_count,
        create_time=r.create_time,
        last_used_time=r.last_used_time,
    )


def link_from_row(r: Any) -> InvitationLink:
    return InvitationLink(r.token_sha256, r.invitation_id, r.create_time, r.spent_time)
