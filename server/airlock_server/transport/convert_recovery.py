"""Proto messages of the recovery flow to domain values and back. Shapes only, no rules."""

from __future__ import annotations

import hashlib

from airlock.v1 import session_pb2, vault_pb2
from airlock_server.app.sessions import SessionView
from airlock_server.domain.errors import InvalidArgument
from airlock_server.domain.sessions import (
    ExecutionStatus,
    KeyChange,
    SessionKind,
    SessionState,
    SessionStatus,
    TeamDraft,
    Vote,
    VoteDecision,
    draft_digest,
)
from airlock_server.domain.vaults import GrantState, RestoreAccessGrant, Vault
from airlock_server.domain.webauthn import decode_assertion, is_assertion
from airlock_server.transport.convert import dur, principal_pb, ts

S = session_pb2.Session

SESSION_STATES = {
    SessionState.PENDING: S.STATE_PENDING,
    SessionState.APPROVED: S.STATE_APPROVED,
    SessionState.FAILED: S.STATE_FAILED,
    SessionState.CANCELLED: S.STATE_CANCELLED,
}
SESSION_STATES_BACK = {v: k for k, v in SESSION_STATES.items()}

STATUS_CODES = {
    SessionStatus.PENDING: S.STATUS_CODE_UNSPECIFIED,
    SessionStatus.APPROVED: S.STATUS_CODE_UNSPECIFIED,
    SessionStatus.REJECTED: S.STATUS_CODE_REJECTED,
    SessionStatus.EXPIRED: S.STATUS_CODE_EXPIRED,
    SessionStatus.CANCELLED_BY_USER: S.STATUS_CODE_CANCELLED_BY_USER,
    SessionStatus.CONFIGURATION_CHANGED: S.STATUS_CODE_CONFIGURATION_CHANGED,
    SessionStatus.TEAM_DELETED: S.STATUS_CODE_TEAM_DELETED,
}

EXECUTION = {
    ExecutionStatus.NONE: S.EXECUTION_STATUS_UNSPECIFIED,
    ExecutionStatus.PENDING: S.EXECUTION_STATUS_PENDING,
    ExecutionStatus.EXECUTED: S.EXECUTION_STATUS_EXECUTED,
    ExecutionStatus.FAILED: S.EXECUTION_STATUS_FAILED,
}
EXECUTION_BACK = {v: k for k, v in EXECUTION.items()}

KINDS = {
    SessionKind.RESTORE_ACCESS: S.KIND_RESTORE_ACCESS,
    SessionKind.REVOKE_RESTORE_ACCESS: S.KIND_REVOKE_RESTORE_ACCESS,
    SessionKind.ASSOCIATE_TEAM: S.KIND_ASSOCIATE_TEAM,
    SessionKind.DISASSOCIATE_TEAM: S.KIND_DISASSOCIATE_TEAM,
    SessionKind.TEAM_UPDATE: S.KIND_TEAM_UPDATE,
    SessionKind.TEAM_DELETION: S.KIND_TEAM_DELETION,
    SessionKind.BASELINE: S.KIND_BASELINE,
    SessionKind.GENERIC: S.KIND_GENERIC,
}
KINDS_BACK = {v: k for k, v in KINDS.items()}

DECISIONS = {
    VoteDecision.APPROVE: session_pb2.VOTE_DECISION_APPROVE,
    VoteDecision.REJECT: session_pb2.VOTE_DECISION_REJECT,
}
DECISIONS_BACK = {v: k for k, v in DECISIONS.items()}

G = vault_pb2.RestoreAccessGrant
GRANT_STATES = {
    GrantState.CREATING: G.STATE_CREATING,
    GrantState.AVAILABLE: G.STATE_AVAILABLE,
    GrantState.FAILED: G.STATE_FAILED,
    GrantState.REVOKED: G.STATE_REVOKED,
}
GRANT_STATES_BACK = {v: k for k, v in GRANT_STATES.items()}


def decision(value: int) -> VoteDecision:
    try:
        return DECISIONS_BACK[value]  # type: ignore[index]
    except KeyError:
        raise InvalidArgument.field("decision", "must be APPROVE or REJECT") from None


def execution_status(value: int) -> ExecutionStatus:
    status = EXECUTION_BACK.get(value)  # type: ignore[call-overload]
    if status not in (ExecutionStatus.EXECUTED, ExecutionStatus.FAILED):
        raise InvalidArgument.field("execution_status", "must be EXECUTED or FAILED")
    assert isinstance(status, ExecutionStatus)
    return status


def webauthn_pb(signature: bytes) -> session_pb2.WebAuthnAssertion | None:
    """A passkey vote's assertion, decoded (None for an Ed25519 signature)."""
    if not is_assertion(signature):
        return None
    try:
        a = decode_assertion(signature)
    except ValueError:
        return None
    return session_pb2.WebAuthnAssertion(
        authenticator_data=a.authenticator_data,
        client_data_json=a.client_data_json,
        signature=a.signature,
    )


def vote_pb(v: Vote) -> session_pb2.Vote:
    return session_pb2.Vote(
        approver_id=v.approver_id,
        decision=DECISIONS[v.decision],
        comment=v.comment,
        vote_time=ts(v.time),
        signature=v.signature,
        webauthn=webauthn_pb(v.signature),
    )


D = session_pb2.TeamDraft
KEY_CHANGES = {
    KeyChange.KEEPS_KEY: D.KEY_CHANGE_KEEPS_KEY,
    KeyChange.NEW_KEY: D.KEY_CHANGE_NEW_KEY,
    KeyChange.NEW_APPROVER: D.KEY_CHANGE_NEW_APPROVER,
}


def draft_pb(d: TeamDraft | None) -> session_pb2.TeamDraft | None:
    if d is None:
        return None
    return session_pb2.TeamDraft(
        team_id=d.team_id,
        version=d.version,
        description=d.description,
        min_approvals=d.min_approvals,
        session_ttl=dur(d.session_ttl),
        invitation_ttl=dur(d.invitation_ttl),
        members=[
            D.Member(
                approver_id=m.approver_id,
                key_change=KEY_CHANGES[m.change],
                public_key=m.public_key or b"",
                key_fingerprint=(
                    hashlib.sha256(m.public_key).hexdigest()[:16] if m.public_key else ""
                ),
                signed_by_current_key=m.signed_by_current_key,
            )
            for m in d.members
        ],
        draft_sha256=draft_digest(d),
    )


def session_pb(view: SessionView) -> session_pb2.Session:
    s = view.session
    return session_pb2.Session(
        session_id=s.session_id,
        kind=KINDS[s.kind],
        team_id=s.team_id,
        team_version=s.team_version,
        team_name=view.team_name,
        action=s.action,
        protected_resource=s.protected_resource,
        requester=principal_pb(s.requester),
        requester_account_id=s.requester_account_id,
        comment=s.comment,
        metadata=dict(s.metadata),
        min_approvals=s.min_approvals,
        number_of_approvers=s.number_of_approvers,
        approver_ids=list(s.approver_ids),
        votes=[vote_pb(v) for v in s.votes],
        state=SESSION_STATES[s.state],
        status_code=STATUS_CODES[s.status],
        status_message=s.status_message,
        execution_status=EXECUTION[s.execution_status],
        execution_message=s.execution_message,
        create_time=ts(s.create_time),
        expire_time=ts(s.expire_time),
        complete_time=ts(s.complete_time),
        execution_time=ts(s.execution_time),
        approval_count=s.approval_count,
        rejection_count=s.rejection_count,
        team_draft=draft_pb(s.draft),
        excluded_approver_ids=list(s.excluded_approver_ids),
    )


def vault_pb(v: Vault) -> vault_pb2.Vault:
    p = v.pending_association
    return vault_pb2.Vault(
        vault_arn=v.vault_arn,
        account_id=v.account_id,
        name=v.name,
        region=v.region,
        min_retention_days=v.min_retention_days,
        max_retention_days=v.max_retention_days,
        tags=dict(v.tags),
        team_id=v.team_id or "",
        pending_association=vault_pb2.PendingAssociation(
            team_id=p.team_id or "", session_id=p.session_id, create_time=ts(p.create_time)
        )
        if p
        else None,
        create_time=ts(v.create_time),
        update_time=ts(v.update_time),
    )


def grant_pb(g: RestoreAccessGrant) -> vault_pb2.RestoreAccessGrant:
    return vault_pb2.RestoreAccessGrant(
        grant_id=g.grant_id,
        vault_arn=g.vault_arn,
        account_id=g.account_id,
        restore_vault_arn=g.restore_vault_arn,
        restore_vault_name=g.restore_vault_name,
        state=GRANT_STATES[g.state],
        status_message=g.status_message,
        session_id=g.session_id,
        revoke_session_id=g.revoke_session_id or "",
        comment=g.comment,
        create_time=ts(g.create_time),
        update_time=ts(g.update_time),
    )
