"""A passkey's signature counter, checked and moved in the transaction of each use."""

from __future__ import annotations

from datetime import datetime

from airlock_server.app.ports import UnitOfWork
from airlock_server.domain.errors import PermissionDenied, Reason
from airlock_server.domain.webauthn import (
    PasskeyCredential,
    b64url,
    counter_moved,
    decode_assertion,
    decode_passkey_key,
)


def not_enrolled(approver_id: str) -> PermissionDenied:
    return PermissionDenied(
        "this passkey is not an enrolled key of the approver",
        reason=Reason.PASSKEY_NOT_ENROLLED,
        metadata={"approverId": approver_id},
    )


async def count_use(
    uow: UnitOfWork, passkey: PasskeyCredential, sign_count: int, now: datetime
) -> None:
    """Refuse an assertion whose counter did not move (a replay, or a cloned authenticator);
    else store the new counter."""
    if not counter_moved(passkey.sign_count, sign_count):
        raise PermissionDenied(
            "the passkey's signature counter did not increase: a replayed assertion or a "
            "cloned authenticator",
            reason=Reason.PASSKEY_COUNTER_NOT_INCREASED,
            metadata={"approverId": passkey.approver_id},
        )
    await uow.passkeys.used(passkey.credential_id, sign_count, now)


async def count_vote(
    uow: UnitOfWork, public_key: bytes, signature: bytes, approver_id: str, now: datetime
) -> None:
    """After a vote's assertion verified with the enrolled passkey `public_key`: its counter."""
    credential_id = b64url(decode_passkey_key(public_key).credential_id)
    passkey = await uow.passkeys.get(credential_id, for_update=True)
    if passkey is None or passkey.approver_id != approver_id or passkey.public_key != public_key:
        raise not_enrolled(approver_id)
    await count_use(uow, passkey, decode_assertion(signature).sign_count, now)
