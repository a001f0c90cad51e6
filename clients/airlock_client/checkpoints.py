"""Signed checkpoints of the event log, checked on the client's side (docs/event-log.md).

A checkpoint is kept as a small JSON file; its signature is verified here against the log's
public key, without trusting the server that later answers VerifyLog.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import os
from pathlib import Path
from typing import Any

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from airlock.v1 import event_pb2
from airlock_client import keys

TAG = "airlock.checkpoint.v1"
FORMAT = "airlock.checkpoint.file.v1"


class CheckpointError(Exception):
    """A checkpoint file or a log key that cannot be used."""


def _field(value: bytes) -> bytes:
    return len(value).to_bytes(4, "big") + value


def format_time(t: dt.datetime) -> str:
    return t.astimezone(dt.UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def checkpoint_message(seq: int, hash_: bytes, time: dt.datetime) -> bytes:
    """The signed bytes: tag, seq (decimal), hash (64 lowercase hex), time (RFC 3339, six
    fractional digits, Z), each as a 4-byte big-endian length then the UTF-8 bytes."""
    return b"".join(
        _field(v.encode("utf-8")) for v in (TAG, str(seq), hash_.hex(), format_time(time))
    )


def key_id(public_key: bytes) -> str:
    return hashlib.sha256(public_key).hexdigest()[:16]


def parse_public_key(text: str) -> bytes:
    """The log's 32-byte public key from `text` or the file it names (keys.parse_public_key's
    forms: base64, hex, PEM), as a CheckpointError when it is none of them."""
    try:
        return keys.parse_public_key(text)
    except keys.KeyFileError as exc:
        raise CheckpointError(f"the log public key: {exc}") from exc


def verify_signature(checkpoint: event_pb2.LogCheckpoint, public_key: bytes) -> None:
    """Raises CheckpointError unless `public_key` signed exactly this checkpoint."""
    if len(public_key) != 32:
        raise CheckpointError("the log public key is not 32 bytes")
    time = checkpoint.time.ToDatetime(tzinfo=dt.UTC)
    message = checkpoint_message(checkpoint.seq, checkpoint.hash, time)
    try:
        Ed25519PublicKey.from_public_bytes(public_key).verify(checkpoint.signature, message)
    except (InvalidSignature, ValueError) as exc:
        raise CheckpointError(
            f"the checkpoint's signature does not verify with the log key {key_id(public_key)}"
        ) from exc


def to_document(checkpoint: event_pb2.LogCheckpoint) -> dict[str, Any]:
    return {
        "format": FORMAT,
        "seq": checkpoint.seq,
        "hash": checkpoint.hash.hex(),
        "time": format_time(checkpoint.time.ToDatetime(tzinfo=dt.UTC)),
        "signature": checkpoint.signature.hex(),
        "public_key": checkpoint.public_key.hex(),
        "key_id": checkpoint.key_id,
    }


def from_document(data: dict[str, Any]) -> event_pb2.LogCheckpoint:
    try:
        if data.get("format") != FORMAT:
            raise CheckpointError(f"not a checkpoint file (format {FORMAT} expected)")
        out = event_pb2.LogCheckpoint(
            seq=int(data["seq"]),
            hash=bytes.fromhex(data["hash"]),
            signature=bytes.fromhex(data["signature"]),
            public_key=bytes.fromhex(data["public_key"]),
            key_id=str(data.get("key_id", "")),
        )
        time = dt.datetime.strptime(data["time"], "%Y-%m-%dT%H:%M:%S.%fZ").replace(tzinfo=dt.UTC)
    except (KeyError, TypeError, ValueError) as exc:
        raise CheckpointError(f"the checkpoint file is malformed ({exc})") from exc
    out.time.FromDatetime(time)
    return out


def save(checkpoint: event_pb2.LogCheckpoint, path: str) -> None:
    """A new file (never overwritten): the checkpoint is evidence."""
    text = json.dumps(to_document(checkpoint), indent=2) + "\n"
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
    except FileExistsError as exc:
        raise CheckpointError(f"{path} exists; refusing to overwrite a checkpoint") from exc
    except OSError as exc:
        raise CheckpointError(f"cannot write {path}: {exc.strerror}") from exc
    with os.fdopen(fd, "w", encoding="utf-8") as out:
        out.write(text)


def load(path: str) -> event_pb2.LogCheckpoint:
    try:
        data = json.loads(Path(path).read_text(encoding="utf-8"))
    except OSError as exc:
        raise CheckpointError(f"cannot read {path}: {exc.strerror}") from exc
    except ValueError as exc:
        raise CheckpointError(f"{path} is not JSON") from exc
    if not isinstance(data, dict):
        raise CheckpointError(f"{path} is not a checkpoint file")
    return from_document(data)
