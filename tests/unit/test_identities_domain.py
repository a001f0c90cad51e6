"""Approvers, accounts, credentials and principals: validation and the checks of every use case."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from airlock_server.domain.errors import InvalidArgument, PermissionDenied
from airlock_server.domain.identities import (
    MAX_DESCRIPTION,
    MAX_DISPLAY_NAME,
    Credential,
    validate_account,
    validate_approver,
    validate_description,
)
from airlock_server.domain.principals import (
    SYSTEM,
    Principal,
    PrincipalKind,
    require,
    require_admin,
    validate_principal,
)

T0 = datetime(2025, 1, 1, tzinfo=UTC)
ACCOUNT = "123456789012"


def fields(err: InvalidArgument) -> list[str]:
    return [v.field for v in err.violations]


# --- approvers -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("approver_id", "display_name", "email"),
    [
        ("alice", "Alice Liddell", "alice@example.com"),
        ("bob.smith-2_x", "B", ""),
        ("x" * 64, "d" * MAX_DISPLAY_NAME, "a@b"),
    ],
)
def test_valid_approver(approver_id: str, display_name: str, email: str) -> None:
    validate_approver(approver_id, display_name, email)


@pytest.mark.parametrize(
    ("approver_id", "display_name", "email", "expected"),
    [
        ("", "Alice", "", ["approver_id"]),
        ("has space", "Alice", "", ["approver_id"]),
        ("x" * 65, "Alice", "", ["approver_id"]),
        ("alice\n", "Alice", "", ["approver_id"]),
        ("alice", "", "", ["display_name"]),
        ("alice", "   ", "", ["display_name"]),
        ("alice", "d" * (MAX_DISPLAY_NAME + 1), "", ["display_name"]),
        ("alice", "Alice", "not-an-email", ["email"]),
        ("alice", "Alice", "two@@example.com", ["email"]),
        ("alice", "Alice", "sp ace@example.com", ["email"]),
        ("alice", "Alice", "alice@example.com\n", ["email"]),
        ("", "", "nope", ["approver_id", "display_name", "email"]),
    ],
    ids=repr,
)
def test_invalid_approver(
    approver_id: str, display_name: str, email: str, expected: list[str]
) -> None:
    with pytest.raises(InvalidArgument) as caught:
        validate_approver(approver_id, display_name, email)
    assert fields(caught.value) == expected


# --- accounts ------------------------------------------------------------------------------


def test_valid_account() -> None:
    validate_account(ACCOUNT, "prod-backups")


@pytest.mark.parametrize(
    ("account_id", "name", "expected"),
    [
        ("12345678901", "prod", ["account_id"]),
        ("1234567890123", "prod", ["account_id"]),
        ("12345678901a", "prod", ["account_id"]),
        (ACCOUNT + "\n", "prod", ["account_id"]),
        ("", "prod", ["account_id"]),
        (ACCOUNT, "", ["name"]),
        (ACCOUNT, "has space", ["name"]),
        ("x", "y" * 65, ["account_id", "name"]),
    ],
    ids=repr,
)
def test_invalid_account(account_id: str, name: str, expected: list[str]) -> None:
    with pytest.raises(InvalidArgument) as caught:
        validate_account(account_id, name)
    assert fields(caught.value) == expected


def test_description_limit() -> None:
    validate_description("d" * MAX_DESCRIPTION)
    with pytest.raises(InvalidArgument) as caught:
        validate_description("d" * (MAX_DESCRIPTION + 1))
    assert fields(caught.value) == ["description"]
    with pytest.raises(InvalidArgument) as caught:
        validate_description("d" * 300, field="credential.description")
    assert fields(caught.value) == ["credential.description"]


# --- credentials ---------------------------------------------------------------------------


def credential(
    expire_time: datetime | None = None, revoke_time: datetime | None = None
) -> Credential:
    return Credential(
        "cred-1",
        Principal(PrincipalKind.ACCOUNT, ACCOUNT),
        "ci",
        T0,
        expire_time=expire_time,
        revoke_time=revoke_time,
    )


def test_open_ended_credential_is_usable_forever() -> None:
    c = credential()
    assert c.usable_at(T0)
    assert c.usable_at(T0 + timedelta(days=3650))


def test_expiring_credential() -> None:
    c = credential(expire_time=T0 + timedelta(hours=1))
    assert c.usable_at(T0)
    assert c.usable_at(T0 + timedelta(minutes=59, seconds=59))
    assert not c.usable_at(T0 + timedelta(hours=1))
    assert not c.usable_at(T0 + timedelta(days=1))


@pytest.mark.parametrize("expire_time", [None, T0 + timedelta(days=1)])
def test_revoked_credential_is_never_usable(expire_time: datetime | None) -> None:
    c = credential(expire_time=expire_time, revoke_time=T0 + timedelta(minutes=5))
    assert not c.usable_at(T0)
    assert not c.usable_at(T0 + timedelta(minutes=10))


# --- principals ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("kind", "subject"),
    [
        (PrincipalKind.ADMIN, ""),
        (PrincipalKind.ADMIN, "ops-team"),
        (PrincipalKind.ACCOUNT, ACCOUNT),
        (PrincipalKind.APPROVER, "alice"),
        (PrincipalKind.SERVICE, "backup-orchestrator"),
        (PrincipalKind.AUDITOR, ""),
        (PrincipalKind.AUDITOR, "compliance"),
    ],
)
def test_valid_principal(kind: PrincipalKind, subject: str) -> None:
    assert validate_principal(kind, subject) == Principal(kind, subject)


@pytest.mark.parametrize(
    ("kind", "subject"),
    [
        (PrincipalKind.ACCOUNT, ""),
        (PrincipalKind.ACCOUNT, "12345"),
        (PrincipalKind.ACCOUNT, "alice"),
        (PrincipalKind.ACCOUNT, ACCOUNT + "\n"),
        (PrincipalKind.APPROVER, ""),
        (PrincipalKind.APPROVER, "has space"),
        (PrincipalKind.SERVICE, ""),
        (PrincipalKind.SERVICE, "x" * 65),
        (PrincipalKind.ADMIN, "bad subject"),
        (PrincipalKind.AUDITOR, "bad/subject"),
    ],
    ids=repr,
)
def test_invalid_principal_subject(kind: PrincipalKind, subject: str) -> None:
    with pytest.raises(InvalidArgument) as caught:
        validate_principal(kind, subject, field="grantee")
    assert fields(caught.value) == ["grantee.subject"]


@pytest.mark.parametrize("subject", ["", "system", "anything"])
def test_system_principal_is_refused(subject: str) -> None:
    with pytest.raises(InvalidArgument) as caught:
        validate_principal(PrincipalKind.SYSTEM, subject)
    assert fields(caught.value) == ["principal.kind"]


def test_principal_str() -> None:
    assert str(Principal(PrincipalKind.ACCOUNT, ACCOUNT)) == f"account:{ACCOUNT}"
    assert str(Principal(PrincipalKind.ADMIN, "")) == "admin"
    assert str(SYSTEM) == "system"


def test_principal_predicates() -> None:
    admin = Principal(PrincipalKind.ADMIN, "")
    account = Principal(PrincipalKind.ACCOUNT, ACCOUNT)
    assert admin.is_admin
    assert not account.is_admin
    assert account.is_account(ACCOUNT)
    assert not account.is_account("210987654321")
    assert not Principal(PrincipalKind.SERVICE, ACCOUNT).is_account(ACCOUNT)


@pytest.mark.parametrize("kind", list(PrincipalKind))
def test_require_admin(kind: PrincipalKind) -> None:
    p = Principal(kind, "x")
    if kind is PrincipalKind.ADMIN:
        require_admin(p)
        return
    with pytest.raises(PermissionDenied) as caught:
        require_admin(p)
    assert caught.value.reason == "PERMISSION_DENIED"
    assert caught.value.metadata == {"principalKind": kind.value, "allowed": "admin"}


@pytest.mark.parametrize("kind", list(PrincipalKind))
def test_require_denies_by_default(kind: PrincipalKind) -> None:
    allowed = (PrincipalKind.ACCOUNT, PrincipalKind.SERVICE)
    p = Principal(kind, "x")
    if kind in allowed:
        require(p, *allowed)
    else:
        with pytest.raises(PermissionDenied) as caught:
            require(p, *allowed)
        assert caught.value.metadata["allowed"] == "account, service"
    with pytest.raises(PermissionDenied):
        require(p)
