"""Ed25519 checks on what approvers sign. The private key never reaches the server."""

from __future__ import annotations

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from airlock_server.domain.errors import FieldViolation, InvalidArgument, Reason

PUBLIC_KEY_BYTES = 32
SIGNATURE_BYTES = 64


def check_public_key(public_key: bytes, field: str = "public_key") -> Ed25519PublicKey:
    if len(public_key) != PUBLIC_KEY_BYTES:
        raise InvalidArgument.field(field, "an Ed25519 public key is 32 raw bytes")
    try:
        return Ed25519PublicKey.from_public_bytes(public_key)
    except ValueError as exc:
        raise InvalidArgument.field(field, "not an Ed25519 public key") from exc


def verify(public_key: bytes, signature: bytes, message: bytes, field: str) -> None:
    key = check_public_key(public_key)
    if len(signature) != SIGNATURE_BYTES:
        raise InvalidArgument.field(field, "an Ed25519 signature is 64 raw bytes")
    try:
        key.verify(signature, message)
    except InvalidSignature as exc:
        raise InvalidArgument(
            [FieldViolation(field, "the signature does not verify with the public key")],
            reason=Reason.BAD_SIGNATURE,
        ) from exc
