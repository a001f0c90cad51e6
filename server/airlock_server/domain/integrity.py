"""What the server writes, authenticated by its log key (docs/event-log.md, "Signed heads" and
"Authenticated rows"): the database is not trusted.

- Every transaction that appends events signs its new head with the log key (the checkpoint
  message of docs/event-log.md, with the head event's own time), and an appender chains only
  after a head signed by that key: a head written by anyone else stops appends
  (`LOG_NOT_AUTHENTIC`).
- The rows the server decides with (credentials, team members with their enrolled keys) carry
  an HMAC-SHA256 keyed from the log key, over the table's name and the row's identity and
  fields; a row whose MAC does not verify is not used (`RECORD_NOT_AUTHENTIC`).
"""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Sequence
from datetime import datetime

from airlock_server.domain.errors import FailedPrecondition, Reason
from airlock_server.domain.events import format_time

ROW_MAC_TAG = b"airlock.row-mac.v1"

RowField = str | bytes | int | datetime | None


def row_mac_key(seed: bytes) -> bytes:
    """The MAC key of rows, derived from the log key's 32-byte seed (never the seed itself)."""
    return hmac.new(seed, ROW_MAC_TAG, hashlib.sha256).digest()


def _encode(value: RowField) -> bytes:
    """One field, length-prefixed and typed, so no two rows share an encoding."""
    if value is None:
        tag, raw = b"n", b""
    elif isinstance(value, bytes):
        tag, raw = b"b", value
    elif isinstance(value, datetime):
        tag, raw = b"t", format_time(value).encode()
    elif isinstance(value, int):
        tag, raw = b"i", str(value).encode()
    else:
        tag, raw = b"s", value.encode("utf-8")
    return tag + len(raw).to_bytes(4, "big") + raw


def row_mac(key: bytes, table: str, fields: Sequence[RowField]) -> bytes:
    """HMAC-SHA256 over the table's name and the row's fields, in the table's fixed order."""
    message = b"".join([_encode(table), *map(_encode, fields)])
    return hmac.digest(key, message, "sha256")


def same_mac(expected: bytes, stored: bytes | None) -> bool:
    return stored is not None and hmac.compare_digest(expected, stored)


def record_not_authentic(table: str, key: str) -> FailedPrecondition:
    """A row the server relies on was not written by it (or was changed since)."""
    return FailedPrecondition(
        f"the {table} row {key} was not written by this server (its MAC does not verify "
        "with the log key): the database was changed behind the server's back; see "
        "docs/threat-model.md",
        reason=Reason.RECORD_NOT_AUTHENTIC,
        metadata={"table": table, "key": key},
    )


def log_not_authentic(seq: int) -> FailedPrecondition:
    """The log's head row is not signed by this server's log key: someone else appended."""
    return FailedPrecondition(
        f"the event log's head (seq {seq}) is not signed by this server's log key: events were "
        "appended behind the server's back, so it appends nothing after them; run VerifyLog "
        "to find the first event the server did not write",
        reason=Reason.LOG_NOT_AUTHENTIC,
        metadata={"seq": str(seq)},
    )
