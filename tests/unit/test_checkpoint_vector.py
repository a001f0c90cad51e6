"""The checkpoint encoding matches docs/event-log.md, on the server's and the client's side."""

from __future__ import annotations

import re
from datetime import UTC, datetime
from pathlib import Path

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat
from google.protobuf import timestamp_pb2

from airlock.v1 import event_pb2
from airlock_client import checkpoints
from airlock_server.app.audit import LogKey
from airlock_server.domain.events import checkpoint_message, key_id

DOC = Path(__file__).resolve().parents[2] / "docs" / "event-log.md"
SEQ, HASH, TIME = 42, bytes(range(32)), datetime(2025, 1, 2, 3, 4, 5, 678901, tzinfo=UTC)
SEED = bytes(range(32, 64))


def documented(label: str) -> str:
    match = re.search(rf"^{re.escape(label)}:\s*([0-9a-f]+)$", DOC.read_text(), re.MULTILINE)
    assert match, f"{label} is missing from {DOC}"
    return match.group(1)


def test_message_matches_the_documented_vector() -> None:
    expected = documented("message (hex)")
    assert checkpoint_message(SEQ, HASH, TIME).hex() == expected
    assert checkpoints.checkpoint_message(SEQ, HASH, TIME).hex() == expected


def test_signature_and_key_id_match_the_documented_vector() -> None:
    key = LogKey(Ed25519PrivateKey.from_private_bytes(SEED))
    assert key.public_key.hex() == documented("public key")
    assert key.key_id == key_id(key.public_key) == documented("key id")
    signature = key.sign(checkpoint_message(SEQ, HASH, TIME))
    assert signature.hex() == documented("signature")


def _checkpoint(signature: bytes) -> event_pb2.LogCheckpoint:
    ts = timestamp_pb2.Timestamp()
    ts.FromDatetime(TIME)
    public = (
        Ed25519PrivateKey.from_private_bytes(SEED)
        .public_key()
        .public_bytes(Encoding.Raw, PublicFormat.Raw)
    )
    return event_pb2.LogCheckpoint(
        seq=SEQ, hash=HASH, time=ts, signature=signature, public_key=public, key_id="x"
    )


def test_client_verifies_and_round_trips_a_checkpoint(tmp_path: Path) -> None:
    good = _checkpoint(bytes.fromhex(documented("signature")))
    checkpoints.verify_signature(good, good.public_key)
    path = str(tmp_path / "cp.json")
    checkpoints.save(good, path)
    assert checkpoints.load(path) == good
    with pytest.raises(checkpoints.CheckpointError, match="overwrite"):
        checkpoints.save(good, path)
    forged = _checkpoint(good.signature)
    forged.seq = SEQ + 1
    with pytest.raises(checkpoints.CheckpointError, match="does not verify"):
        checkpoints.verify_signature(forged, good.public_key)
    other = Ed25519PrivateKey.generate().public_key().public_bytes(Encoding.Raw, PublicFormat.Raw)
    with pytest.raises(checkpoints.CheckpointError):
        checkpoints.verify_signature(good, other)


def test_public_keys_parse_from_hex_base64_or_a_file(tmp_path: Path) -> None:
    raw = bytes(range(32))
    import base64

    assert checkpoints.parse_public_key(raw.hex()) == raw
    assert checkpoints.parse_public_key(base64.b64encode(raw).decode()) == raw
    f = tmp_path / "log.pub"
    f.write_text(raw.hex() + "\n")
    assert checkpoints.parse_public_key(str(f)) == raw
    with pytest.raises(checkpoints.CheckpointError):
        checkpoints.parse_public_key("abcd")
