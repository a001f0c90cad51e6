"""Who calls: the principal kinds of the design and the checks every use case starts with."""

from __future__ import annotations

import enum
import re
from dataclasses import dataclass

from airlock_server.domain.errors import DomainError, InvalidArgument, NotFound, PermissionDenied


class PrincipalKind(enum.Enum):
    ADMIN = "admin"
    ACCOUNT = "account"
    APPROVER = "approver"
    SERVICE = "service"
    AUDITOR = "auditor"
    # Airlock itself, acting on a rule (expiry, quorum); no credential is ever issued for it.
    SYSTEM = "system"


ACCOUNT_ID = re.compile(r"^[0-9]{12}\Z")
NAME = re.compile(r"^[a-zA-Z0-9._-]{1,64}\Z")


@dataclass(frozen=True)
class Principal:
    kind: PrincipalKind
    subject: str

    def __str__(self) -> str:
        return f"{self.kind.value}:{self.subject}" if self.subject else self.kind.value

    @property
    def is_admin(self) -> bool:
        return self.kind is PrincipalKind.ADMIN

    def is_account(self, account_id: str) -> bool:
        return self.kind is PrincipalKind.ACCOUNT and self.subject == account_id


SYSTEM = Principal(PrincipalKind.SYSTEM, "")


def validate_principal(kind: PrincipalKind, subject: str, field: str = "principal") -> Principal:
    """The subject's shape depends on the kind: 12 digits for accounts, a name otherwise."""
    if kind is PrincipalKind.SYSTEM:
        raise InvalidArgument.field(f"{field}.kind", "not a kind a caller can have")
    if kind is PrincipalKind.ACCOUNT:
        if not ACCOUNT_ID.match(subject):
            raise InvalidArgument.field(f"{field}.subject", "an account id is exactly 12 digits")
    elif kind in (PrincipalKind.APPROVER, PrincipalKind.SERVICE):
        if not NAME.match(subject):
            raise InvalidArgument.field(f"{field}.subject", "must match [a-zA-Z0-9._-]{1,64}")
    elif subject and not NAME.match(subject):
        raise InvalidArgument.field(f"{field}.subject", "must match [a-zA-Z0-9._-]{1,64}")
    return Principal(kind, subject)


def require(principal: Principal, *kinds: PrincipalKind) -> None:
    """Deny by default: only the named kinds pass."""
    if principal.kind not in kinds:
        allowed = ", ".join(k.value for k in kinds)
        raise PermissionDenied(
            f"{_article(principal.kind.value)} {principal.kind.value} credential may not do this "
            f"(allowed: {allowed})",
            metadata={"principalKind": principal.kind.value, "allowed": allowed},
        )


def _article(word: str) -> str:
    return "an" if word[:1] in "aeiou" else "a"


def sees_everything(principal: Principal) -> bool:
    """Admin and auditor read every object: for them an id names something or nothing."""
    return principal.kind in (PrincipalKind.ADMIN, PrincipalKind.AUDITOR)


def missing_or_denied(
    principal: Principal, missing: NotFound, denied: PermissionDenied, *, own: bool = False
) -> DomainError:
    """What a caller learns about an id that names nothing (AIP-211, AIP-193).

    A caller who could not see the object were it there gets `denied`, the very error an
    existing object it may not see answers, so no id can be probed. Admin and auditor, who see
    everything, get `missing`; so does a caller whose permission the id itself decides (`own`:
    a vault ARN in the caller's own account).
    """
    return missing if own or sees_everything(principal) else denied


def require_admin(principal: Principal) -> None:
    require(principal, PrincipalKind.ADMIN)
