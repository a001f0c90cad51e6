"""A passkey authenticator in software, for tests: real keys (cryptography), real CBOR, the
JSON a browser's `credential.toJSON()` gives (WebAuthn Level 3). It plays the device a browser
talks to, the way Chromium's virtual authenticator does, without a browser.

Import it as `from integration.passkey_device import Authenticator`.
"""

from __future__ import annotations

import hashlib
import json
import secrets
from dataclasses import dataclass, field
from typing import Any

import cbor2
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from airlock_server.domain.webauthn import b64url, from_b64url

ES256, EDDSA = -7, -8
UP, UV, AT = 0x01, 0x04, 0x40


@dataclass
class Credential:
    credential_id: bytes
    key: ec.EllipticCurvePrivateKey | Ed25519PrivateKey
    alg: int
    rp_id: str
    user_id: bytes
    counter: int = 0

    def cose(self) -> bytes:
        if isinstance(self.key, Ed25519PrivateKey):
            x = self.key.public_key().public_bytes_raw()
            return cbor2.dumps({1: 1, 3: EDDSA, -1: 6, -2: x})
        numbers = self.key.public_key().public_numbers()
        return cbor2.dumps(
            {
                1: 2,
                3: ES256,
                -1: 1,
                -2: numbers.x.to_bytes(32, "big"),
                -3: numbers.y.to_bytes(32, "big"),
            }
        )

    def sign(self, message: bytes) -> bytes:
        if isinstance(self.key, Ed25519PrivateKey):
            return self.key.sign(message)
        return self.key.sign(message, ec.ECDSA(hashes.SHA256()))


@dataclass
class Authenticator:
    """One device. `alg`: ES256 or EdDSA for new passkeys; `counts`: whether it keeps a
    signature counter (some platform passkeys always say 0)."""

    origin: str
    alg: int = ES256
    counts: bool = True
    credentials: dict[bytes, Credential] = field(default_factory=dict)

    def create(self, options_json: str, *, origin: str | None = None) -> str:
        """navigator.credentials.create() with these creation options, as toJSON()."""
        options = json.loads(options_json)
        rp_id = options["rp"]["id"]
        algs = [p["alg"] for p in options["pubKeyCredParams"]]
        assert self.alg in algs, f"the server does not offer {self.alg}"
        key: ec.EllipticCurvePrivateKey | Ed25519PrivateKey = (
            Ed25519PrivateKey.generate()
            if self.alg == EDDSA
            else ec.generate_private_key(ec.SECP256R1())
        )
        cred = Credential(
            secrets.token_bytes(16), key, self.alg, rp_id, from_b64url(options["user"]["id"])
        )
        self.credentials[cred.credential_id] = cred
        client = self._client_data("webauthn.create", options["challenge"], origin)
        auth = (
            hashlib.sha256(rp_id.encode()).digest()
            + bytes([UP | UV | AT])
            + cred.counter.to_bytes(4, "big")
            + bytes(16)  # AAGUID: none
            + len(cred.credential_id).to_bytes(2, "big")
            + cred.credential_id
            + cred.cose()
        )
        attestation = cbor2.dumps({"fmt": "none", "attStmt": {}, "authData": auth})
        return json.dumps(
            {
                "id": b64url(cred.credential_id),
                "rawId": b64url(cred.credential_id),
                "type": "public-key",
                "response": {
                    "clientDataJSON": b64url(client),
                    "attestationObject": b64url(attestation),
                    "transports": ["internal"],
                },
                "authenticatorAttachment": "platform",
                "clientExtensionResults": {},
            }
        )

    def get(
        self,
        options_json: str,
        *,
        credential_id: bytes | None = None,
        origin: str | None = None,
        flags: int = UP | UV,
        rp_id: str | None = None,
    ) -> str:
        """navigator.credentials.get() with these request options, as toJSON()."""
        options = json.loads(options_json)
        allowed = [from_b64url(c["id"]) for c in options.get("allowCredentials") or []]
        if credential_id is None:
            candidates = [c for c in self.credentials if not allowed or c in allowed]
            assert candidates, "no passkey of this device is allowed"
            credential_id = candidates[-1]
        cred = self.credentials[credential_id]
        if self.counts:
            cred.counter += 1
        client = self._client_data("webauthn.get", options["challenge"], origin)
        auth = (
            hashlib.sha256((rp_id or cred.rp_id).encode()).digest()
            + bytes([flags])
            + cred.counter.to_bytes(4, "big")
        )
        signature = cred.sign(auth + hashlib.sha256(client).digest())
        return json.dumps(
            {
                "id": b64url(credential_id),
                "rawId": b64url(credential_id),
                "type": "public-key",
                "response": {
                    "clientDataJSON": b64url(client),
                    "authenticatorData": b64url(auth),
                    "signature": b64url(signature),
                    "userHandle": b64url(cred.user_id),
                },
                "authenticatorAttachment": "platform",
                "clientExtensionResults": {},
            }
        )

    def _client_data(self, kind: str, challenge: str, origin: str | None) -> bytes:
        document: dict[str, Any] = {
            "type": kind,
            "challenge": challenge,
            "origin": origin or self.origin,
            "crossOrigin": False,
        }
        return json.dumps(document, separators=(",", ":")).encode()
