"""Passkeys (WebAuthn) as approver keys: their encodings and the checks of an assertion (pure).

An approver key is bytes, whatever signs: 32 raw bytes for an Ed25519 key (the CLI), or a
**passkey key**, the self-describing encoding below, which carries everything an offline verifier
needs (docs/signed-votes.md, "Votes signed with a passkey"). A vote signed with a passkey carries
a **WebAuthn assertion** encoding (authenticator data, client data JSON, signature) where an
Ed25519 vote carries its 64-byte signature. Both encodings are length-prefixed fields (4-byte
big-endian length, then the bytes), the first one a tag, so neither can be mistaken for the
other nor for an Ed25519 key or signature (those are exactly 32 and 64 bytes with no tag).

The signature itself is checked by app/signing.py (cryptography); here, everything around it.
"""

from __future__ import annotations

import base64
import hashlib
import json
from dataclasses import dataclass
from datetime import datetime
from urllib.parse import urlsplit

from airlock_server.domain.errors import FieldViolation, InvalidArgument, Reason

PASSKEY_KEY_TAG = b"airlock.passkey.v1"
ASSERTION_TAG = b"airlock.webauthn-assertion.v1"

# COSE algorithm identifiers (RFC 9053) the server accepts for a passkey.
ES256 = -7
EDDSA = -8
ALGORITHMS = (ES256, EDDSA)

FLAG_USER_PRESENT = 0x01
FLAG_USER_VERIFIED = 0x04
# rpIdHash (32) || flags (1) || signCount (4): the least authenticator data there is.
AUTH_DATA_MIN = 37


def _field(value: bytes) -> bytes:
    return len(value).to_bytes(4, "big") + value


def _fields(data: bytes, tag: bytes, count: int, what: str) -> list[bytes]:
    """The `count` fields after `tag`, or ValueError (the caller says which field was bad)."""
    out: list[bytes] = []
    at = 0
    while at < len(data):
        if at + 4 > len(data):
            raise ValueError(f"a {what} is truncated")
        size = int.from_bytes(data[at : at + 4], "big")
        at += 4
        if at + size > len(data):
            raise ValueError(f"a {what} is truncated")
        out.append(data[at : at + size])
        at += size
    if len(out) != count + 1 or out[0] != tag:
        raise ValueError(f"not a {what} ({tag.decode()})")
    return out[1:]


def b64url(data: bytes) -> str:
    """base64url without padding, as WebAuthn writes challenges and ids."""
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def from_b64url(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


@dataclass(frozen=True)
class RelyingParty:
    """The portal as WebAuthn sees it: the RP id (a host name) and the origin pages run on."""

    rp_id: str
    origin: str
    name: str = "Airlock"

    @classmethod
    def from_origin(cls, origin: str, rp_id: str = "") -> RelyingParty:
        parts = urlsplit(origin)
        if (
            parts.scheme not in ("http", "https")
            or not parts.hostname
            or parts.path not in ("", "/")
        ):
            raise ValueError(f"the portal origin {origin!r} is not scheme://host[:port]")
        return cls(rp_id=rp_id or parts.hostname, origin=f"{parts.scheme}://{parts.netloc}")


@dataclass(frozen=True)
class PasskeyKey:
    """A passkey enrolled as an approver key."""

    rp_id: str
    origin: str
    alg: int  # COSE: -7 ES256 (ECDSA P-256, SHA-256), -8 EdDSA (Ed25519)
    credential_id: bytes
    public_key_der: bytes  # SubjectPublicKeyInfo, DER

    def encode(self) -> bytes:
        return b"".join(
            _field(v)
            for v in (
                PASSKEY_KEY_TAG,
                self.rp_id.encode("utf-8"),
                self.origin.encode("utf-8"),
                str(self.alg).encode("ascii"),
                self.credential_id,
                self.public_key_der,
            )
        )


def is_passkey_key(key: bytes) -> bool:
    return key[4 : 4 + len(PASSKEY_KEY_TAG)] == PASSKEY_KEY_TAG


def decode_passkey_key(key: bytes) -> PasskeyKey:
    """ValueError if `key` is not a well-formed passkey key."""
    rp_id, origin, alg, credential_id, der = _fields(key, PASSKEY_KEY_TAG, 5, "passkey key")
    try:
        number = int(alg.decode("ascii"))
    except (UnicodeDecodeError, ValueError) as exc:
        raise ValueError("a passkey key's algorithm is not a number") from exc
    if number not in ALGORITHMS:
        raise ValueError(f"a passkey key's algorithm {number} is not ES256 (-7) or EdDSA (-8)")
    if not credential_id or not der:
        raise ValueError("a passkey key has no credential id or no public key")
    return PasskeyKey(rp_id.decode("utf-8"), origin.decode("utf-8"), number, credential_id, der)


@dataclass(frozen=True)
class Assertion:
    """A WebAuthn assertion: what a passkey signed, and its signature."""

    authenticator_data: bytes
    client_data_json: bytes
    signature: bytes

    def encode(self) -> bytes:
        return b"".join(
            _field(v)
            for v in (
                ASSERTION_TAG,
                self.authenticator_data,
                self.client_data_json,
                self.signature,
            )
        )

    @property
    def signed_message(self) -> bytes:
        """What the passkey signs: authenticatorData || SHA-256(clientDataJSON)."""
        return self.authenticator_data + hashlib.sha256(self.client_data_json).digest()

    @property
    def sign_count(self) -> int:
        return int.from_bytes(self.authenticator_data[33:37], "big")


def is_assertion(signature: bytes) -> bool:
    return signature[4 : 4 + len(ASSERTION_TAG)] == ASSERTION_TAG


def decode_assertion(data: bytes) -> Assertion:
    """ValueError if `data` is not a well-formed assertion encoding."""
    auth, client, sig = _fields(data, ASSERTION_TAG, 3, "WebAuthn assertion")
    return Assertion(auth, client, sig)


def bad_assertion(field: str, why: str) -> InvalidArgument:
    """An assertion that does not prove what it should: BAD_SIGNATURE on `field`."""
    return InvalidArgument([FieldViolation(field, why)], reason=Reason.BAD_SIGNATURE)


def check_assertion(
    key: PasskeyKey, assertion: Assertion, challenge: bytes, field: str = "signature"
) -> None:
    """Everything but the signature (app/signing.py checks it): the client data is a `get` over
    exactly `challenge` at the key's origin, the authenticator data is for the key's RP id, with
    the user present and verified. Any failure is BAD_SIGNATURE on `field`."""
    try:
        client = json.loads(assertion.client_data_json.decode("utf-8"))
    except (UnicodeDecodeError, ValueError) as exc:
        raise bad_assertion(field, "the client data is not JSON") from exc
    if not isinstance(client, dict):
        raise bad_assertion(field, "the client data is not a JSON object")
    if client.get("type") != "webauthn.get":
        raise bad_assertion(field, "the client data is not of an assertion (webauthn.get)")
    if client.get("challenge") != b64url(challenge):
        raise bad_assertion(field, "the assertion is over another challenge")
    if client.get("origin") != key.origin:
        raise bad_assertion(field, f"the assertion was made on another origin than {key.origin}")
    if client.get("crossOrigin") is True:
        raise bad_assertion(field, "the assertion was made in a cross-origin frame")
    auth = assertion.authenticator_data
    if len(auth) < AUTH_DATA_MIN:
        raise bad_assertion(field, "the authenticator data is too short")
    if auth[:32] != hashlib.sha256(key.rp_id.encode("utf-8")).digest():
        raise bad_assertion(field, f"the assertion is for another RP id than {key.rp_id}")
    flags = auth[32]
    if not flags & FLAG_USER_PRESENT or not flags & FLAG_USER_VERIFIED:
        raise bad_assertion(field, "the authenticator did not verify the user (UP and UV)")


def counter_moved(stored: int, seen: int) -> bool:
    """The signature counter check (WebAuthn §7.2 step 21): a counter that did not increase
    means a cloned authenticator, unless the authenticator keeps none (both zero)."""
    return (stored == 0 and seen == 0) or seen > stored


@dataclass(frozen=True)
class PasskeyCredential:
    """A passkey an approver enrolled through an invitation of a team."""

    credential_id: str  # base64url, as the browser names it
    approver_id: str
    team_id: str
    invitation_id: str
    public_key: bytes  # the passkey key encoding: what the team member enrolled
    cose_public_key: bytes
    sign_count: int
    create_time: datetime
    last_used_time: datetime | None = None


@dataclass(frozen=True)
class InvitationLink:
    """A one-time invitation link, known by the SHA-256 of its token."""

    token_sha256: str
    invitation_id: str
    create_time: datetime
    spent_time: datetime | None = None


def token_digest(token: str) -> str:
    """How a secret (a link token, a challenge) is stored: its SHA-256, hex."""
    return hashlib.sha256(token.encode("utf-8")).hexdigest()


# An invitation email's data names its one-time link by this nonce, not by the link itself:
# the token is derived from it with the log key when the email is sent (persistence/passkeys.py),
# so the outbox a database reader sees holds no usable link.
INVITATION_LINK_NONCE = "invitation_link_nonce"


def invite_url(portal_url: str, token: str) -> str:
    """The portal page of a one-time invitation link."""
    return f"{portal_url.rstrip('/')}/invite/{token}"
