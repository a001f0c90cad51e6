"""The events of approvers, accounts and credentials, one constructor per type
(docs/event-log.md): the one place each type's shape is written."""

from __future__ import annotations

from collections.abc import Sequence

from airlock_server.domain.events import NewEvent
from airlock_server.domain.principals import Principal


def server_bootstrapped(admin: Principal, credential_id: str) -> NewEvent:
    """The first admin's credential, issued by the server to itself."""
    return NewEvent(
        "server.bootstrapped",
        admin,
        (f"credential:{credential_id}",),
        {"credential_id": credential_id},
    )


def approver_created(admin: Principal, approver_id: str) -> NewEvent:
    return NewEvent(
        "approver.created",
        admin,
        (f"approver:{approver_id}",),
        {"approver_id": approver_id},
    )


def approver_disabled(
    admin: Principal,
    approver_id: str,
    revoked_credential_ids: Sequence[str],
    excluded_from_session_ids: Sequence[str],
) -> NewEvent:
    return NewEvent(
        "approver.disabled",
        admin,
        (
            f"approver:{approver_id}",
            *(f"credential:{c}" for c in revoked_credential_ids),
            *(f"session:{sid}" for sid in excluded_from_session_ids),
        ),
        {
            "approver_id": approver_id,
            "revoked_credential_ids": revoked_credential_ids,
            "excluded_from_session_ids": excluded_from_session_ids,
        },
    )


def account_registered(admin: Principal, account_id: str, name: str) -> NewEvent:
    return NewEvent(
        "account.registered",
        admin,
        (f"account:{account_id}",),
        {"account_id": account_id, "name": name},
    )


def credential_issued(admin: Principal, credential_id: str, principal: Principal) -> NewEvent:
    return NewEvent(
        "credential.issued",
        admin,
        (f"credential:{credential_id}", str(principal)),
        {"credential_id": credential_id, "principal": str(principal)},
    )


def credential_revoked(admin: Principal, credential_id: str, principal: Principal) -> NewEvent:
    """One credential of `principal` revoked (by itself, or with its disabled approver)."""
    return NewEvent(
        "credential.revoked",
        admin,
        (f"credential:{credential_id}", str(principal)),
        {"credential_id": credential_id},
    )
