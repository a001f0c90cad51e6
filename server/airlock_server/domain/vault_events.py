"""The events of vaults, their team association and restore access grants, one constructor
per type (docs/event-log.md): the one place each type's shape is written."""

from __future__ import annotations

from airlock_server.domain.events import NewEvent
from airlock_server.domain.principals import SYSTEM, Principal
from airlock_server.domain.session_events import session_subject
from airlock_server.domain.vaults import GrantState, RestoreAccessGrant, Vault


def vault_created(owner: Principal, vault: Vault) -> NewEvent:
    return NewEvent(
        "vault.created",
        owner,
        (vault.vault_arn, f"account:{vault.account_id}"),
        {
            "vault_arn": vault.vault_arn,
            "min_retention_days": vault.min_retention_days,
            "max_retention_days": vault.max_retention_days,
        },
    )


def team_associated(owner: Principal, vault_arn: str, team_id: str) -> NewEvent:
    """The vault's first team, associated at once (no team to vote on it)."""
    return NewEvent(
        "vault.team_associated",
        owner,
        (vault_arn, f"team:{team_id}"),
        {"vault_arn": vault_arn, "team_id": team_id},
    )


def association_change_requested(
    owner: Principal, vault_arn: str, team_id: str, previous_team_id: str, session_id: str
) -> NewEvent:
    """A change of the vault's team (to `team_id`; "" to none) waits for its session."""
    return NewEvent(
        "vault.association_change_requested",
        owner,
        (vault_arn, *((f"team:{team_id}",) if team_id else ()), session_subject(session_id)),
        {
            "vault_arn": vault_arn,
            "team_id": team_id,
            "previous_team_id": previous_team_id,
            "session_id": session_id,
        },
    )


def association_change_decided(
    before: Vault, after: Vault, session_id: str, applied: bool
) -> NewEvent:
    """vault.association_changed when the change was applied, else ..._change_dropped."""
    return NewEvent(
        "vault.association_changed" if applied else "vault.association_change_dropped",
        SYSTEM,
        (before.vault_arn, session_subject(session_id)),
        {
            "vault_arn": before.vault_arn,
            "session_id": session_id,
            "previous_team_id": before.team_id or "",
            "team_id": after.team_id or "",
        },
    )


def team_removed(after: Vault, team_id: str) -> NewEvent:
    """The deleted team `team_id` no longer guards (or is no longer asked to guard) the vault."""
    return NewEvent(
        "vault.team_removed",
        SYSTEM,
        (after.vault_arn, f"team:{team_id}"),
        {
            "vault_arn": after.vault_arn,
            "team_id": team_id,
            "vault_team_id": after.team_id or "",
        },
    )


def grant_requested(requester: Principal, grant: RestoreAccessGrant) -> NewEvent:
    return NewEvent(
        "grant.requested",
        requester,
        (f"grant:{grant.grant_id}", grant.vault_arn, session_subject(grant.session_id)),
        {
            "grant_id": grant.grant_id,
            "vault_arn": grant.vault_arn,
            "account_id": grant.account_id,
            "restore_vault_arn": grant.restore_vault_arn,
            "session_id": grant.session_id,
        },
    )


def grant_revoke_requested(
    requester: Principal, grant_id: str, vault_arn: str, session_id: str
) -> NewEvent:
    return NewEvent(
        "grant.revoke_requested",
        requester,
        (f"grant:{grant_id}", vault_arn, session_subject(session_id)),
        {"grant_id": grant_id, "session_id": session_id},
    )


def grant_decided(kind: str, grant: RestoreAccessGrant, session_id: str) -> NewEvent:
    """A grant moved because a session decided it (grant.available, .failed, .revoked,
    .revoke_dropped): Airlock acting on the outcome."""
    return NewEvent(
        kind,
        SYSTEM,
        (f"grant:{grant.grant_id}", grant.vault_arn, f"account:{grant.account_id}"),
        {"grant_id": grant.grant_id, "session_id": session_id, "state": grant.state.value},
    )


def grant_ended_with_team(ended: RestoreAccessGrant, team_id: str) -> NewEvent:
    """The team guarding the grant's vault was deleted: grant.revoked, or grant.failed."""
    return NewEvent(
        "grant.revoked" if ended.state is GrantState.REVOKED else "grant.failed",
        SYSTEM,
        (f"grant:{ended.grant_id}", ended.vault_arn, f"account:{ended.account_id}"),
        {"grant_id": ended.grant_id, "team_id": team_id, "state": ended.state.value},
    )
