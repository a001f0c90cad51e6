"""Vaults, their team association and restore access grants. Pure, stdlib only.

A vault's association changes without approval only the first time; afterwards every change
is a session voted by the team that guards the vault now. A grant is a recovery account's
read-only access to one vault, and lives by its own state table. While another account's grant
is open, the vault is under recovery: its owner can neither change its guard nor revoke that
grant (the owner's account is the one that may be compromised).
"""

from __future__ import annotations

import enum
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field, replace
from datetime import datetime

from airlock_server.domain.errors import (
    AlreadyExists,
    FailedPrecondition,
    FieldViolation,
    InvalidArgument,
    InvalidTransition,
    Reason,
)
from airlock_server.domain.principals import ACCOUNT_ID, NAME
from airlock_server.domain.sessions import MAX_COMMENT
from airlock_server.domain.teams import Team, TeamState

MIN_RETENTION_DAYS = 7
MAX_RETENTION_DAYS = 36500
MAX_TAGS = 50
MAX_TAG_KEY = 128
MAX_TAG_VALUE = 256

REGION = re.compile(r"^[a-z0-9-]{1,32}\Z")
VAULT_ARN = re.compile(
    r"^arn:aws:backup:(?P<region>[^:]*):(?P<account>[^:]*):backup-vault:(?P<name>[^:]*)\Z"
)


@dataclass(frozen=True)
class VaultArn:
    region: str
    account_id: str
    name: str

    def __str__(self) -> str:
        return vault_arn(self.region, self.account_id, self.name)


def vault_arn(region: str, account_id: str, name: str) -> str:
    return f"arn:aws:backup:{region}:{account_id}:backup-vault:{name}"


def parse_vault_arn(arn: str, field: str = "vault_arn") -> VaultArn:
    """Every part is checked, so a parsed ARN names a vault that could exist."""
    match = VAULT_ARN.match(arn)
    if match is None:
        raise InvalidArgument.field(
            field, "must be arn:aws:backup:<region>:<account>:backup-vault:<name>"
        )
    region, account_id, name = match["region"], match["account"], match["name"]
    violations: list[FieldViolation] = []
    if not REGION.match(region):
        violations.append(FieldViolation(field, "the region must match [a-z0-9-]{1,32}"))
    if not ACCOUNT_ID.match(account_id):
        violations.append(FieldViolation(field, "the account id is exactly 12 digits"))
    if not NAME.match(name):
        violations.append(FieldViolation(field, "the vault name must match [a-zA-Z0-9._-]{1,64}"))
    if violations:
        raise InvalidArgument(violations)
    return VaultArn(region, account_id, name)


@dataclass(frozen=True)
class PendingAssociation:
    """A change of association waiting for the current team's vote; team_id None removes it."""

    team_id: str | None
    session_id: str
    create_time: datetime


@dataclass(frozen=True)
class Vault:
    vault_arn: str
    account_id: str
    name: str
    region: str
    min_retention_days: int
    max_retention_days: int
    create_time: datetime
    update_time: datetime
    tags: Mapping[str, str] = field(default_factory=dict)
    team_id: str | None = None
    pending_association: PendingAssociation | None = None


def validate_vault(
    *, name: str, min_retention_days: int, max_retention_days: int, tags: Mapping[str, str]
) -> None:
    violations: list[FieldViolation] = []
    if not NAME.match(name):
        violations.append(FieldViolation("name", "must match [a-zA-Z0-9._-]{1,64}"))
    if not MIN_RETENTION_DAYS <= min_retention_days <= MAX_RETENTION_DAYS:
        violations.append(
            FieldViolation(
                "min_retention_days",
                f"must be between {MIN_RETENTION_DAYS} and {MAX_RETENTION_DAYS} days",
            )
        )
    if not MIN_RETENTION_DAYS <= max_retention_days <= MAX_RETENTION_DAYS:
        violations.append(
            FieldViolation(
                "max_retention_days",
                f"must be between {MIN_RETENTION_DAYS} and {MAX_RETENTION_DAYS} days",
            )
        )
    elif max_retention_days < min_retention_days:
        violations.append(
            FieldViolation("max_retention_days", "must not be less than min_retention_days")
        )
    if len(tags) > MAX_TAGS:
        violations.append(FieldViolation("tags", f"at most {MAX_TAGS} tags"))
    for key, value in tags.items():
        if not 1 <= len(key) <= MAX_TAG_KEY:
            violations.append(
                FieldViolation(f"tags[{key!r}]", f"keys are 1 to {MAX_TAG_KEY} characters")
            )
        if len(value) > MAX_TAG_VALUE:
            violations.append(
                FieldViolation(f"tags[{key!r}]", f"values are at most {MAX_TAG_VALUE} characters")
            )
    if violations:
        raise InvalidArgument(violations)


def new_vault(
    *,
    account_id: str,
    name: str,
    region: str,
    min_retention_days: int,
    max_retention_days: int,
    tags: Mapping[str, str] | None,
    now: datetime,
) -> Vault:
    tags = dict(tags or {})
    validate_vault(
        name=name,
        min_retention_days=min_retention_days,
        max_retention_days=max_retention_days,
        tags=tags,
    )
    return Vault(
        vault_arn=vault_arn(region, account_id, name),
        account_id=account_id,
        name=name,
        region=region,
        min_retention_days=min_retention_days,
        max_retention_days=max_retention_days,
        create_time=now,
        update_time=now,
        tags=tags,
    )


# --- association ---


class AssociationPath(enum.Enum):
    """How an association request takes effect."""

    IMMEDIATE = "IMMEDIATE"
    SESSION = "SESSION"


def require_team_can_guard(team: Team) -> None:
    """Only an ACTIVE team guards a vault (sharing with the account is checked by the caller)."""
    if team.state is not TeamState.ACTIVE:
        raise FailedPrecondition(
            f"approval team {team.team_id} is {team.state.value}; only an ACTIVE team can "
            "guard a vault",
            reason=Reason.TEAM_NOT_ACTIVE,
            metadata={"state": team.state.value},
        )


def _require_no_pending_change(vault: Vault) -> None:
    pending = vault.pending_association
    if pending is not None:
        raise FailedPrecondition(
            f"vault {vault.name} has a pending association change (session "
            f"{pending.session_id}); one change at a time",
            reason=Reason.ASSOCIATION_CHANGE_PENDING,
            metadata={"sessionId": pending.session_id},
        )


def plan_association(vault: Vault, team_id: str) -> AssociationPath:
    """First association: at once. Any later one: a session voted by `vault.team_id`."""
    _require_no_pending_change(vault)
    if vault.team_id == team_id:
        raise FailedPrecondition(
            f"vault {vault.name} is already associated with team {team_id}",
            reason=Reason.TEAM_ALREADY_ASSOCIATED,
            metadata={"teamId": team_id},
        )
    return AssociationPath.IMMEDIATE if vault.team_id is None else AssociationPath.SESSION


def plan_disassociation(vault: Vault) -> str:
    """The team that must vote on removing itself; refused when none or a change is pending."""
    _require_no_pending_change(vault)
    if vault.team_id is None:
        raise FailedPrecondition(
            f"vault {vault.name} has no approval team to remove",
            reason=Reason.NO_TEAM_ASSOCIATED,
        )
    return vault.team_id


def associate_now(vault: Vault, team_id: str, now: datetime) -> Vault:
    if plan_association(vault, team_id) is not AssociationPath.IMMEDIATE:
        raise FailedPrecondition(
            f"vault {vault.name} is guarded by team {vault.team_id}; changing it needs that "
            "team's approval",
            reason=Reason.ASSOCIATION_NEEDS_APPROVAL,
            metadata={"teamId": vault.team_id or ""},
        )
    return replace(vault, team_id=team_id, update_time=now)


def request_association_change(
    vault: Vault, team_id: str | None, session_id: str, now: datetime
) -> Vault:
    """Record the pending change (to `team_id`, or removal when None) and its session."""
    if team_id is None:
        plan_disassociation(vault)
    elif plan_association(vault, team_id) is AssociationPath.IMMEDIATE:
        raise FailedPrecondition(
            f"vault {vault.name} has no team yet; associate it directly",
            reason=Reason.NO_TEAM_ASSOCIATED,
        )
    return replace(
        vault,
        pending_association=PendingAssociation(team_id, session_id, now),
        update_time=now,
    )


def _pending_for(vault: Vault, session_id: str) -> PendingAssociation:
    pending = vault.pending_association
    if pending is None or pending.session_id != session_id:
        raise FailedPrecondition(
            f"vault {vault.name} has no pending association change of session {session_id}",
            reason=Reason.NO_PENDING_ASSOCIATION_CHANGE,
        )
    return pending


def apply_association_change(vault: Vault, session_id: str, now: datetime) -> Vault:
    """The current team approved: the change takes effect."""
    pending = _pending_for(vault, session_id)
    return replace(vault, team_id=pending.team_id, pending_association=None, update_time=now)


def drop_association_change(vault: Vault, session_id: str, now: datetime) -> Vault:
    """The session failed or was cancelled: the vault keeps its team."""
    _pending_for(vault, session_id)
    return replace(vault, pending_association=None, update_time=now)


def on_team_deleted(vault: Vault, team_id: str, now: datetime) -> Vault:
    """A deleted team guards nothing and is nobody's future team; its sessions are cancelled."""
    team = None if vault.team_id == team_id else vault.team_id
    pending = vault.pending_association
    if pending is not None and (vault.team_id == team_id or pending.team_id == team_id):
        pending = None
    if team == vault.team_id and pending == vault.pending_association:
        return vault
    return replace(vault, team_id=team, pending_association=pending, update_time=now)


# --- restore access grants ---


class GrantState(enum.Enum):
    CREATING = "CREATING"
    AVAILABLE = "AVAILABLE"
    FAILED = "FAILED"
    REVOKED = "REVOKED"


# The grant state table. AVAILABLE -> REVOKED only after an approved revoke session or the
# team's deletion; FAILED and REVOKED are final.
ALLOWED_TRANSITIONS: Mapping[GrantState, frozenset[GrantState]] = {
    GrantState.CREATING: frozenset({GrantState.AVAILABLE, GrantState.FAILED}),
    GrantState.AVAILABLE: frozenset({GrantState.REVOKED}),
    GrantState.FAILED: frozenset(),
    GrantState.REVOKED: frozenset(),
}
OPEN_GRANT_STATES = frozenset({GrantState.CREATING, GrantState.AVAILABLE})


def transition(current: GrantState, target: GrantState) -> GrantState:
    if target not in ALLOWED_TRANSITIONS[current]:
        raise InvalidTransition("restore access grant", current.value, target.value)
    return target


@dataclass(frozen=True)
class RestoreAccessGrant:
    grant_id: str
    vault_arn: str
    account_id: str
    restore_vault_name: str
    restore_vault_arn: str
    state: GrantState
    status_message: str
    session_id: str
    comment: str
    create_time: datetime
    update_time: datetime
    revoke_session_id: str | None = None

    @property
    def grants_access(self) -> bool:
        """What CheckAccess answers: a pending revocation does not end access."""
        return self.state is GrantState.AVAILABLE


_SUFFIX_CHARS = re.compile(r"[^a-zA-Z0-9]")


def default_restore_vault_name(source_name: str, grant_id: str) -> str:
    """Derived from the source vault's name (as AWS does), made unique by the grant id."""
    suffix = _SUFFIX_CHARS.sub("", grant_id)[:8] or "0"
    return f"{source_name[: 64 - len('-restore-') - len(suffix)]}-restore-{suffix}"


def validate_restore_request(restore_vault_name: str, comment: str) -> None:
    violations: list[FieldViolation] = []
    if restore_vault_name and not NAME.match(restore_vault_name):
        violations.append(FieldViolation("restore_vault_name", "must match [a-zA-Z0-9._-]{1,64}"))
    if len(comment) > MAX_COMMENT:
        violations.append(FieldViolation("comment", f"at most {MAX_COMMENT} characters"))
    if violations:
        raise InvalidArgument(violations)


def open_grant(
    grants: Iterable[RestoreAccessGrant], vault_arn: str, account_id: str
) -> RestoreAccessGrant | None:
    """The (vault, account) pair's open grant, CREATING or AVAILABLE, if any."""
    return next(
        (
            g
            for g in grants
            if g.vault_arn == vault_arn
            and g.account_id == account_id
            and g.state in OPEN_GRANT_STATES
        ),
        None,
    )


def require_no_open_grant(
    grants: Iterable[RestoreAccessGrant], vault_arn: str, account_id: str
) -> None:
    """One open request per (vault, account); a retry with the same request_id never gets here."""
    existing = open_grant(grants, vault_arn, account_id)
    if existing is not None:
        raise AlreadyExists("restore access grant", existing.grant_id)


def new_grant(
    *,
    grant_id: str,
    vault: Vault,
    account_id: str,
    restore_vault_name: str,
    session_id: str,
    comment: str,
    now: datetime,
) -> RestoreAccessGrant:
    """A CREATING grant; the restore vault lives in the recovery account, same region."""
    validate_restore_request(restore_vault_name, comment)
    if not ACCOUNT_ID.match(account_id):
        raise InvalidArgument.field("account_id", "an account id is exactly 12 digits")
    name = restore_vault_name or default_restore_vault_name(vault.name, grant_id)
    return RestoreAccessGrant(
        grant_id=grant_id,
        vault_arn=vault.vault_arn,
        account_id=account_id,
        restore_vault_name=name,
        restore_vault_arn=vault_arn(vault.region, account_id, name),
        state=GrantState.CREATING,
        status_message="waiting for the team's approval",
        session_id=session_id,
        comment=comment,
        create_time=now,
        update_time=now,
    )


def _moved(
    grant: RestoreAccessGrant, target: GrantState, message: str, now: datetime
) -> RestoreAccessGrant:
    return replace(
        grant,
        state=transition(grant.state, target),
        status_message=message,
        update_time=now,
    )


def approve_grant(grant: RestoreAccessGrant, now: datetime) -> RestoreAccessGrant:
    return _moved(grant, GrantState.AVAILABLE, "approved by the team", now)


def fail_grant(grant: RestoreAccessGrant, message: str, now: datetime) -> RestoreAccessGrant:
    """The request's session failed or was cancelled; `message` says which."""
    return _moved(grant, GrantState.FAILED, message, now)


def request_revoke(
    grant: RestoreAccessGrant, revoke_session_id: str, now: datetime
) -> RestoreAccessGrant:
    """Open a revocation; access continues until the team approves it."""
    if grant.state is not GrantState.AVAILABLE:
        raise FailedPrecondition(
            f"restore access grant {grant.grant_id} is {grant.state.value}; only an AVAILABLE "
            "grant can be revoked",
            reason=Reason.GRANT_NOT_AVAILABLE,
            metadata={"state": grant.state.value},
        )
    if grant.revoke_session_id is not None:
        raise FailedPrecondition(
            f"restore access grant {grant.grant_id} already has a pending revocation (session "
            f"{grant.revoke_session_id})",
            reason=Reason.REVOKE_PENDING,
            metadata={"sessionId": grant.revoke_session_id},
        )
    return replace(grant, revoke_session_id=revoke_session_id, update_time=now)


def _require_revoke_session(grant: RestoreAccessGrant, session_id: str) -> None:
    if grant.revoke_session_id != session_id:
        raise FailedPrecondition(
            f"restore access grant {grant.grant_id} has no pending revocation of session "
            f"{session_id}",
            reason=Reason.NO_PENDING_REVOKE,
        )


def revoke(grant: RestoreAccessGrant, session_id: str, now: datetime) -> RestoreAccessGrant:
    """The revoke session was approved: access ends."""
    _require_revoke_session(grant, session_id)
    return _moved(grant, GrantState.REVOKED, "revoked with the team's approval", now)


def drop_revoke(grant: RestoreAccessGrant, session_id: str, now: datetime) -> RestoreAccessGrant:
    """The revoke session failed or was cancelled: the grant stays AVAILABLE."""
    _require_revoke_session(grant, session_id)
    return replace(grant, revoke_session_id=None, update_time=now)


def end_with_team(grant: RestoreAccessGrant, now: datetime) -> RestoreAccessGrant:
    """The vault's team was deleted: open grants end (AVAILABLE revoked, CREATING failed)."""
    if grant.state is GrantState.AVAILABLE:
        return replace(
            _moved(grant, GrantState.REVOKED, "the approval team was deleted", now),
            revoke_session_id=None,
        )
    if grant.state is GrantState.CREATING:
        return _moved(grant, GrantState.FAILED, "the approval team was deleted", now)
    return grant


# --- a recovery in progress freezes the vault's guard against its owner ---
#
# The owner's account is the one that may be compromised: while another account's restore
# access is requested or granted, the owner cannot change what guards the vault nor revoke
# that access. The admin may still ask for a revocation, which the team votes on.


def is_recovery(vault: Vault, grant: RestoreAccessGrant) -> bool:
    """An open grant (CREATING or AVAILABLE, revocation pending or not) of this vault
    requested by an account other than the vault's owner."""
    return (
        grant.vault_arn == vault.vault_arn
        and grant.account_id != vault.account_id
        and grant.state in OPEN_GRANT_STATES
    )


def recovery_in_progress(
    vault: Vault, grants: Iterable[RestoreAccessGrant]
) -> RestoreAccessGrant | None:
    """The oldest recovery of `vault` among `grants`, if any (oldest: a stable answer)."""
    found = [g for g in grants if is_recovery(vault, g)]
    return min(found, key=lambda g: (g.create_time, g.grant_id)) if found else None


def _under_recovery(
    vault: Vault, grant: RestoreAccessGrant, consequence: str
) -> FailedPrecondition:
    return FailedPrecondition(
        f"vault {vault.name} is under recovery: restore access grant {grant.grant_id} of "
        f"another account is {grant.state.value}; {consequence}",
        reason=Reason.VAULT_UNDER_RECOVERY,
        metadata={
            "vaultArn": vault.vault_arn,
            "grantId": grant.grant_id,
            "state": grant.state.value,
        },
    )


def require_guard_unfrozen(vault: Vault, grants: Iterable[RestoreAccessGrant]) -> None:
    """The owner's change of the guard (another team, none, or a team for a vault whose team
    was removed) waits for the end of every recovery in progress: otherwise a team removal the
    approvers were talked into would let the owner pick the next guard without a vote."""
    grant = recovery_in_progress(vault, grants)
    if grant is not None:
        raise _under_recovery(
            vault, grant, "its owner cannot change the approval team until that grant ends"
        )


def require_owner_may_revoke(vault: Vault, grant: RestoreAccessGrant) -> None:
    """The owner revokes only grants its own account requested; another account's open grant
    is a recovery in progress. Not applied to the admin."""
    if is_recovery(vault, grant):
        raise _under_recovery(
            vault, grant, "its owner cannot revoke it (the admin can ask the team to)"
        )
