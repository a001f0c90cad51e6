"""Votes signed with a passkey, checked offline (docs/signed-votes.md, "Votes signed with a
passkey"), with `cryptography` alone: implemented again here from the document (the client never
imports the server).

A passkey key and a WebAuthn assertion are each a list of length-prefixed fields (4-byte
big-endian length, then the bytes) whose first field is a tag.
"""

from __future__ import annotations

import base64
import hashlib
import json
from dataclasses import dataclass

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey
from cryptography.hazmat.primitives.serialization import load_der_public_key

__all__ = [
    "ASSERTION_TAG",
    "PASSKEY_KEY_TAG",
    "Assertion",
    "PasskeyKey",
    "decode_assertion",
    "decode_passkey_key",
    "is_passkey_key",
    "passkey_problem",
]

PASSKEY_KEY_TAG = b"airlock.passkey.v1"
ASSERTION_TAG = b"airlock.webauthn-assertion.v1"
ES256, EDDSA = -7, -8


@dataclass(frozen=True)
class PasskeyKey:
    rp_id: str
    origin: str
    alg: int
    credential_id: bytes
    public_key_der: bytes


@dataclass(frozen=True)
class Assertion:
    authenticator_data: bytes
    client_data_json: bytes
    signature: bytes


def _fields(data: bytes, tag: bytes, count: int, what: str) -> list[bytes]:
    out: list[bytes] = []
    at = 0
    while at < len(data):
        size = int.from_bytes(data[at : at + 4], "big")
        if at + 4 + size > len(data):
            raise ValueError(f"a {what} is truncated")
        out.append(data[at + 4 : at + 4 + size])
        at += 4 + size
    if len(out) != count + 1 or out[0] != tag:
        raise ValueError(f"not a {what}")
    return out[1:]


def is_passkey_key(key: bytes) -> bool:
    return key[4 : 4 + len(PASSKEY_KEY_TAG)] == PASSKEY_KEY_TAG


def decode_passkey_key(key: bytes) -> PasskeyKey:
    rp_id, origin, alg, credential_id, der = _fields(key, PASSKEY_KEY_TAG, 5, "passkey key")
    number = int(alg.decode("ascii"))
    if number not in (ES256, EDDSA):
        raise ValueError(f"passkey algorithm {number} is neither ES256 (-7) nor EdDSA (-8)")
    return PasskeyKey(rp_id.decode("utf-8"), origin.decode("utf-8"), number, credential_id, der)


def decode_assertion(data: bytes) -> Assertion:
    auth, client, signature = _fields(data, ASSERTION_TAG, 3, "WebAuthn assertion")
    return Assertion(auth, client, signature)


def _b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def passkey_problem(key: bytes, signature: bytes, challenge: bytes) -> str | None:
    """Why `signature` (an assertion encoding) is not the passkey `key`'s assertion over
    exactly `challenge`, or None when it is."""
    try:
        pk = decode_passkey_key(key)
        a = decode_assertion(signature)
        client = json.loads(a.client_data_json.decode("utf-8"))
    except (ValueError, UnicodeDecodeError) as exc:
        return f"malformed: {exc}"
    if not isinstance(client, dict) or client.get("type") != "webauthn.get":
        return "the client data is not of an assertion (webauthn.get)"
    if client.get("challenge") != _b64url(challenge):
        return "the assertion is over another challenge (another request or decision)"
    if client.get("origin") != pk.origin:
        return f"the assertion was made on origin {client.get('origin')!r}, not {pk.origin}"
    if client.get("crossOrigin") is True:
        return "the assertion was made in a cross-origin frame"
    auth = a.authenticator_data
    if len(auth) < 37 or auth[:32] != hashlib.sha256(pk.rp_id.encode("utf-8")).digest():
        return f"the authenticator data is not for RP id {pk.rp_id}"
    if auth[32] & 0x05 != 0x05:
        return "the authenticator did not verify the user (flags UP and UV)"
    message = auth + hashlib.sha256(a.client_data_json).digest()
    try:
        public = load_der_public_key(pk.public_key_der)
        if pk.alg == ES256 and isinstance(public, ec.EllipticCurvePublicKey):
            if not isinstance(public.curve, ec.SECP256R1):
                return "an ES256 passkey key is not on P-256"
            public.verify(a.signature, message, ec.ECDSA(hashes.SHA256()))
        elif pk.alg == EDDSA and isinstance(public, Ed25519PublicKey):
            public.verify(a.signature, message)
        else:
            return "the passkey's public key does not match its algorithm"
    except (InvalidSignature, ValueError):
        return "the passkey's signature does not verify"
    return None
