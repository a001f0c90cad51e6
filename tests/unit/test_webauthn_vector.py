"""Votes signed with a passkey: the test vector of docs/signed-votes.md ("Votes signed with a
passkey"), checked by the server (py_webauthn for the registration, domain/webauthn.py and
app/signing.py for the vote) and by the offline verifier (clients/airlock_client/webauthn.py,
cryptography only); then every way an assertion can fail to prove the vote."""

from __future__ import annotations

import hashlib
import json
import re
from pathlib import Path

import pytest
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat
from webauthn import verify_registration_response

from airlock_client import webauthn as offline
from airlock_server.app import signing
from airlock_server.app.passkeys import passkey_key_of
from airlock_server.domain.errors import InvalidArgument, Reason
from airlock_server.domain.webauthn import (
    Assertion,
    PasskeyKey,
    RelyingParty,
    b64url,
    counter_moved,
    decode_assertion,
    decode_passkey_key,
    is_assertion,
    is_passkey_key,
)

DOC = Path(__file__).resolve().parents[2] / "docs" / "signed-votes.md"
RP = RelyingParty.from_origin("http://localhost:8080")
PRIVATE = ec.derive_private_key(int.from_bytes(bytes(range(1, 33)), "big"), ec.SECP256R1())
CREDENTIAL_ID = bytes(range(0xA0, 0xB0))


def _doc(label: str) -> str:
    match = re.search(rf"^{re.escape(label)}:\s*(\S+)$", DOC.read_text(), re.MULTILINE)
    assert match, f"{label!r} not found in {DOC}"
    return match.group(1)


def _hex(label: str) -> bytes:
    return bytes.fromhex(_doc(label))


APPROVE = bytes.fromhex(_doc("approve digest"))
REJECT = bytes.fromhex(_doc("reject digest"))


def test_the_registration_gives_the_documented_passkey_key() -> None:
    client = _doc("registration client data").encode()
    credential = {
        "id": b64url(CREDENTIAL_ID),
        "rawId": b64url(CREDENTIAL_ID),
        "type": "public-key",
        "response": {
            "clientDataJSON": b64url(client),
            "attestationObject": b64url(_hex("attestation object")),
        },
        "clientExtensionResults": {},
    }
    verified = verify_registration_response(
        credential=json.dumps(credential),
        expected_challenge=bytes(range(0x40, 0x60)),
        expected_rp_id=RP.rp_id,
        expected_origin=RP.origin,
        require_user_verification=True,
    )
    assert verified.credential_id == CREDENTIAL_ID
    assert verified.credential_public_key == _hex("cose public key")
    key = passkey_key_of(RP, verified.credential_id, verified.credential_public_key)
    assert key.encode() == _hex("passkey key")
    assert key.public_key_der == PRIVATE.public_key().public_bytes(
        Encoding.DER, PublicFormat.SubjectPublicKeyInfo
    )
    assert hashlib.sha256(key.encode()).hexdigest()[:16] == "07ada5a636917f3a"


def test_the_documented_vote_is_a_deterministic_es256_assertion_over_the_digest() -> None:
    client = _doc("assertion client data").encode()
    auth = _hex("authenticator data")
    assert json.loads(client)["challenge"] == b64url(APPROVE)
    assert auth == hashlib.sha256(b"localhost").digest() + b"\x05" + (1).to_bytes(4, "big")
    signature = PRIVATE.sign(
        auth + hashlib.sha256(client).digest(),
        ec.ECDSA(hashes.SHA256(), deterministic_signing=True),
    )
    assert signature == _hex("passkey signature")
    assert Assertion(auth, client, signature).encode() == _hex("passkey vote")


def test_server_and_offline_verifier_accept_the_vector_and_nothing_else() -> None:
    key, vote = _hex("passkey key"), _hex("passkey vote")
    assert is_passkey_key(key)
    assert is_assertion(vote)
    assert not is_passkey_key(bytes(32))
    assert not is_assertion(bytes(64))
    signing.verify(key, vote, APPROVE, "signature")
    assert offline.passkey_problem(key, vote, APPROVE) is None
    # The REJECT digest is another challenge.
    with pytest.raises(InvalidArgument) as err:
        signing.verify(key, vote, REJECT, "signature")
    assert err.value.reason is Reason.BAD_SIGNATURE
    assert offline.passkey_problem(key, vote, REJECT) is not None
    # The same key bound to another RP id or origin.
    decoded = decode_passkey_key(key)
    for other in (
        PasskeyKey("example.com", decoded.origin, -7, CREDENTIAL_ID, decoded.public_key_der),
        PasskeyKey("localhost", "http://localhost:9090", -7, CREDENTIAL_ID, decoded.public_key_der),
    ):
        with pytest.raises(InvalidArgument):
            signing.verify(other.encode(), vote, APPROVE, "signature")
        assert offline.passkey_problem(other.encode(), vote, APPROVE) is not None


def _assertion(
    auth_flags: int = 0x05,
    kind: str = "webauthn.get",
    origin: str = RP.origin,
    challenge: bytes = APPROVE,
    rp_id: str = "localhost",
    cross_origin: bool = False,
) -> bytes:
    client = json.dumps(
        {
            "type": kind,
            "challenge": b64url(challenge),
            "origin": origin,
            "crossOrigin": cross_origin,
        }
    ).encode()
    auth = hashlib.sha256(rp_id.encode()).digest() + bytes([auth_flags]) + (7).to_bytes(4, "big")
    signature = PRIVATE.sign(auth + hashlib.sha256(client).digest(), ec.ECDSA(hashes.SHA256()))
    return Assertion(auth, client, signature).encode()


@pytest.mark.parametrize(
    "forged",
    [
        pytest.param({"auth_flags": 0x01}, id="user-not-verified"),
        pytest.param({"auth_flags": 0x04}, id="user-not-present"),
        pytest.param({"kind": "webauthn.create"}, id="a-registration"),
        pytest.param({"origin": "https://evil.example"}, id="another-origin"),
        pytest.param({"challenge": REJECT}, id="another-challenge"),
        pytest.param({"rp_id": "evil.example"}, id="another-rp-id"),
        pytest.param({"cross_origin": True}, id="cross-origin-frame"),
    ],
)
def test_each_check_refuses(forged: dict[str, object]) -> None:
    key = _hex("passkey key")
    vote = _assertion(**forged)  # type: ignore[arg-type]
    with pytest.raises(InvalidArgument) as err:
        signing.verify(key, vote, APPROVE, "signature")
    assert err.value.reason is Reason.BAD_SIGNATURE
    assert offline.passkey_problem(key, vote, APPROVE) is not None


def test_a_signature_over_other_bytes_or_an_altered_assertion_is_refused() -> None:
    key = _hex("passkey key")
    good = decode_assertion(_assertion())
    signing.verify(key, good.encode(), APPROVE, "signature")
    for altered in (
        Assertion(good.authenticator_data[:-1] + b"\x08", good.client_data_json, good.signature),
        Assertion(good.authenticator_data, good.client_data_json + b" ", good.signature),
        Assertion(good.authenticator_data, good.client_data_json, good.signature[:-1] + b"\x00"),
    ):
        with pytest.raises(InvalidArgument):
            signing.verify(key, altered.encode(), APPROVE, "signature")
        assert offline.passkey_problem(key, altered.encode(), APPROVE) is not None
    # An Ed25519 signature where the key is a passkey, and the other way round.
    with pytest.raises(InvalidArgument):
        signing.verify(key, bytes(64), APPROVE, "signature")
    ed = Ed25519PrivateKey.generate()
    with pytest.raises(InvalidArgument):
        signing.verify(ed.public_key().public_bytes_raw(), good.encode(), APPROVE, "signature")


def test_an_eddsa_passkey() -> None:
    private = Ed25519PrivateKey.generate()
    der = private.public_key().public_bytes(Encoding.DER, PublicFormat.SubjectPublicKeyInfo)
    key = PasskeyKey("localhost", RP.origin, -8, b"\x01" * 16, der).encode()
    client = json.dumps(
        {"type": "webauthn.get", "challenge": b64url(APPROVE), "origin": RP.origin}
    ).encode()
    auth = hashlib.sha256(b"localhost").digest() + b"\x05" + bytes(4)
    vote = Assertion(auth, client, private.sign(auth + hashlib.sha256(client).digest())).encode()
    signing.verify(key, vote, APPROVE, "signature")
    assert offline.passkey_problem(key, vote, APPROVE) is None
    # An ES256 label on an Ed25519 key does not verify.
    mislabelled = PasskeyKey("localhost", RP.origin, -7, b"\x01" * 16, der).encode()
    with pytest.raises(InvalidArgument):
        signing.verify(mislabelled, vote, APPROVE, "signature")


def test_malformed_encodings_are_refused() -> None:
    key = _hex("passkey key")
    for bad in (key[:-1], key + b"\x00", key.replace(b"-7", b"-9")):
        with pytest.raises(ValueError, match="passkey"):
            decode_passkey_key(bad)
        with pytest.raises(ValueError, match="passkey"):
            offline.decode_passkey_key(bad)
    vote = _hex("passkey vote")
    with pytest.raises(ValueError, match="assertion"):
        decode_assertion(vote[:-3])
    with pytest.raises(InvalidArgument):
        signing.verify(key, vote[:-3], APPROVE, "signature")


def test_the_counter_rule() -> None:
    assert counter_moved(0, 0)  # an authenticator without a counter
    assert counter_moved(4, 5)
    assert not counter_moved(5, 5)
    assert not counter_moved(5, 4)
    assert not counter_moved(3, 0)


def test_relying_party_from_origin() -> None:
    assert RelyingParty.from_origin("https://airlock.example.com:8443/") == RelyingParty(
        "airlock.example.com", "https://airlock.example.com:8443"
    )
    assert RelyingParty.from_origin("http://localhost:8080", "example.com").rp_id == "example.com"
    for bad in ("localhost:8080", "ftp://x", "https://x/portal"):
        with pytest.raises(ValueError, match="origin"):
            RelyingParty.from_origin(bad)
