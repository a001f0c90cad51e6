"""Signature checks on what approvers sign. The private key never reaches the server.

An approver key is either an Ed25519 key (32 raw bytes, the CLI) or a passkey key
(domain/webauthn.py): then the "signature" is a WebAuthn assertion whose challenge is the signed
message (docs/signed-votes.md, "Votes signed with a passkey").
"""

from __future__ import annotations

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey
from cryptography.hazmat.primitives.serialization import load_der_public_key

from airlock_server.domain.errors import FieldViolation, InvalidArgument, Reason
from airlock_server.domain.webauthn import (
    ES256,
    Assertion,
    PasskeyKey,
    bad_assertion,
    check_assertion,
    decode_assertion,
    decode_passkey_key,
    is_passkey_key,
)

PUBLIC_KEY_BYTES = 32
SIGNATURE_BYTES = 64


def check_public_key(public_key: bytes, field: str = "public_key") -> Ed25519PublicKey:
    if len(public_key) != PUBLIC_KEY_BYTES:
        raise InvalidArgument.field(field, "an Ed25519 public key is 32 raw bytes")
    try:
        return Ed25519PublicKey.from_public_bytes(public_key)
    except ValueError as exc:
        raise InvalidArgument.field(field, "not an Ed25519 public key") from exc


def _bad(field: str) -> InvalidArgument:
    return InvalidArgument(
        [FieldViolation(field, "the signature does not verify with the public key")],
        reason=Reason.BAD_SIGNATURE,
    )


def passkey_signature_ok(key: PasskeyKey, assertion: Assertion) -> bool:
    """The passkey's signature over authenticatorData || SHA-256(clientDataJSON)."""
    try:
        public = load_der_public_key(key.public_key_der)
        if key.alg == ES256 and isinstance(public, ec.EllipticCurvePublicKey):
            if not isinstance(public.curve, ec.SECP256R1):
                return False
            public.verify(assertion.signature, assertion.signed_message, ec.ECDSA(hashes.SHA256()))
            return True
        if isinstance(public, Ed25519PublicKey) and key.alg != ES256:
            public.verify(assertion.signature, assertion.signed_message)
            return True
    except (InvalidSignature, ValueError):
        return False
    return False


def verify_passkey(
    public_key: bytes, signature: bytes, challenge: bytes, field: str
) -> tuple[PasskeyKey, Assertion]:
    """A WebAuthn assertion over exactly `challenge` by the passkey `public_key` (everything but
    the signature counter, which needs the stored one); the decoded key and assertion."""
    try:
        key = decode_passkey_key(public_key)
    except ValueError as exc:
        raise InvalidArgument.field("public_key", str(exc)) from exc
    try:
        assertion = decode_assertion(signature)
    except ValueError as exc:
        raise bad_assertion(field, f"{exc}; a passkey signs with a WebAuthn assertion") from exc
    check_assertion(key, assertion, challenge, field)
    if not passkey_signature_ok(key, assertion):
        raise _bad(field)
    return key, assertion


def verify(public_key: bytes, signature: bytes, message: bytes, field: str) -> None:
    if is_passkey_key(public_key):
        verify_passkey(public_key, signature, message, field)
        return
    key = check_public_key(public_key)
    if len(signature) != SIGNATURE_BYTES:
        raise InvalidArgument.field(field, "an Ed25519 signature is 64 raw bytes")
    try:
        key.verify(signature, message)
    except InvalidSignature as exc:
        raise _bad(field) from exc
