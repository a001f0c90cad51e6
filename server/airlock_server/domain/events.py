"""The event log's facts and its hash chain. The encoding is the contract in docs/event-log.md."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from airlock_server.domain.principals import Principal

GENESIS_HASH = bytes(32)

JsonValue = Any


@dataclass(frozen=True)
class NewEvent:
    """A fact a use case records; the log gives it `seq`, time and hashes at commit."""

    type: str
    actor: Principal
    subjects: tuple[str, ...] = ()
    details: Mapping[str, JsonValue] = field(default_factory=dict)


@dataclass(frozen=True)
class Event:
    seq: int
    time: datetime
    type: str
    actor: str
    subjects: tuple[str, ...]
    details: Mapping[str, JsonValue]
    prev_hash: bytes
    hash: bytes


def format_time(t: datetime) -> str:
    """RFC 3339 in UTC with microseconds: one spelling for one instant."""
    return t.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def canonical_bytes(
    seq: int,
    time: datetime,
    type_: str,
    actor: str,
    subjects: Sequence[str],
    details: Mapping[str, JsonValue],
    prev_hash: bytes,
) -> bytes:
    """UTF-8 JSON, keys sorted, no spaces, non-ASCII kept as is."""
    document = {
        "actor": actor,
        "details": details,
        "prev_hash": prev_hash.hex(),
        "seq": seq,
        "subjects": list(subjects),
        "time": format_time(time),
        "type": type_,
    }
    return json.dumps(
        document, sort_keys=True, separators=(",", ":"), ensure_ascii=False, allow_nan=False
    ).encode("utf-8")


def event_hash(
    seq: int,
    time: datetime,
    type_: str,
    actor: str,
    subjects: Sequence[str],
    details: Mapping[str, JsonValue],
    prev_hash: bytes,
) -> bytes:
    return hashlib.sha256(
        canonical_bytes(seq, time, type_, actor, subjects, details, prev_hash)
    ).digest()


def chain(head_seq: int, head_hash: bytes, new: Sequence[NewEvent], time: datetime) -> list[Event]:
    """Sequence and hash new events after the head, in order."""
    out: list[Event] = []
    prev, seq = head_hash, head_seq
    for e in new:
        seq += 1
        actor = str(e.actor)
        details = dict(e.details)
        h = event_hash(seq, time, e.type, actor, e.subjects, details, prev)
        out.append(Event(seq, time, e.type, actor, e.subjects, details, prev, h))
        prev = h
    return out
