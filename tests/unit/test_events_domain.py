"""The event log's canonical encoding and its hash chain (docs/event-log.md)."""

from __future__ import annotations

import hashlib
import itertools
import json
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

import pytest

from airlock_server.domain.events import (
    GENESIS_HASH,
    NewEvent,
    canonical_bytes,
    chain,
    event_hash,
    format_time,
)
from airlock_server.domain.principals import SYSTEM, Principal, PrincipalKind

T0 = datetime(2025, 1, 2, 3, 4, 5, 678901, tzinfo=UTC)
ADMIN = Principal(PrincipalKind.ADMIN, "")

BASE: dict[str, Any] = {
    "seq": 7,
    "time": T0,
    "type_": "team.created",
    "actor": "admin",
    "subjects": ["team-1", "approver:alice"],
    "details": {"name": "guardians", "min_approvals": 2, "approvers": ["alice", "bob"]},
    "prev_hash": bytes(range(32)),
}

# Computed once from BASE and written down: any change to the encoding breaks this test, and
# every verifier of every log already written would break with it.
BASE_CANONICAL = (
    '{"actor":"admin","details":{"approvers":["alice","bob"],"min_approvals":2,'
    '"name":"guardians"},"prev_hash":"000102030405060708090a0b0c0d0e0f101112131415161718191a1b1c1d1e1f",'
    '"seq":7,"subjects":["team-1","approver:alice"],"time":"2025-01-02T03:04:05.678901Z",'
    '"type":"team.created"}'
)
BASE_HASH_HEX = "b94fe36406bb9fea0ece97464c0cd66318984ff03697dfce2010fd4284430945"


def test_canonical_bytes_fixed_vector() -> None:
    assert canonical_bytes(**BASE).decode("utf-8") == BASE_CANONICAL


def test_event_hash_fixed_vector() -> None:
    assert event_hash(**BASE).hex() == BASE_HASH_HEX
    assert event_hash(**BASE) == hashlib.sha256(canonical_bytes(**BASE)).digest()


def test_canonical_bytes_is_deterministic() -> None:
    assert canonical_bytes(**BASE) == canonical_bytes(**BASE)
    shuffled = dict(BASE, details=dict(reversed(list(BASE["details"].items()))))
    assert canonical_bytes(**shuffled) == canonical_bytes(**BASE)


def test_canonical_bytes_sorts_keys_at_every_depth_and_has_no_spaces() -> None:
    raw = canonical_bytes(**dict(BASE, details={"z": {"b": 1, "a": 2}, "a": [{"y": 1, "x": 2}]}))
    text = raw.decode("utf-8")
    assert " " not in text
    assert text == json.dumps(json.loads(text), sort_keys=True, separators=(",", ":"))
    top = list(json.loads(text))
    assert top == sorted(top)


def test_non_ascii_is_kept_as_utf8() -> None:
    raw = canonical_bytes(**dict(BASE, details={"comment": "café ✓"}))
    assert "café ✓".encode() in raw
    assert b"\\u" not in raw


def test_nan_is_refused() -> None:
    with pytest.raises(ValueError, match="JSON"):
        canonical_bytes(**dict(BASE, details={"x": float("nan")}))


def test_one_instant_has_one_spelling() -> None:
    plus_two = timezone(timedelta(hours=2))
    same_instant = T0.astimezone(plus_two)
    assert format_time(same_instant) == format_time(T0) == "2025-01-02T03:04:05.678901Z"
    assert canonical_bytes(**dict(BASE, time=same_instant)) == canonical_bytes(**BASE)
    assert format_time(datetime(2025, 1, 1, tzinfo=UTC)) == "2025-01-01T00:00:00.000000Z"


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("seq", 8),
        ("time", T0 + timedelta(microseconds=1)),
        ("type_", "team.deleted"),
        ("actor", "account:123456789012"),
        ("subjects", ["team-1"]),
        ("subjects", ["approver:alice", "team-1"]),
        ("details", {"name": "guardians", "min_approvals": 3, "approvers": ["alice", "bob"]}),
        ("details", {}),
        ("prev_hash", bytes(32)),
    ],
)
def test_changing_any_field_changes_the_hash(field: str, value: object) -> None:
    assert event_hash(**dict(BASE, **{field: value})) != event_hash(**BASE)


NEW = [
    NewEvent("approver.created", ADMIN, ("approver:alice",), {"display_name": "Alice"}),
    NewEvent("approver.created", ADMIN, ("approver:bob",), {"display_name": "Bob"}),
    NewEvent("team.activated", SYSTEM, ("team-1",)),
]


def test_chain_from_genesis_links_prev_hash_to_hash() -> None:
    events = chain(0, GENESIS_HASH, NEW, T0)
    assert [e.seq for e in events] == [1, 2, 3]
    assert events[0].prev_hash == GENESIS_HASH == bytes(32)
    for before, after in itertools.pairwise(events):
        assert after.prev_hash == before.hash
    for e in events:
        assert e.time == T0
        assert e.hash == event_hash(
            e.seq, e.time, e.type, e.actor, e.subjects, e.details, e.prev_hash
        )
    assert [e.actor for e in events] == ["admin", "admin", "system"]
    assert [e.type for e in events] == [n.type for n in NEW]
    assert events[2].details == {}


def test_chain_continues_after_a_head() -> None:
    first = chain(0, GENESIS_HASH, NEW[:1], T0)
    rest = chain(first[-1].seq, first[-1].hash, NEW[1:], T0)
    whole = chain(0, GENESIS_HASH, NEW, T0)
    assert [*first, *rest] == whole


def test_chain_of_nothing() -> None:
    assert chain(5, bytes(32), [], T0) == []


def test_chain_depends_on_order_and_head() -> None:
    forward = chain(0, GENESIS_HASH, NEW, T0)
    backward = chain(0, GENESIS_HASH, list(reversed(NEW)), T0)
    assert forward[-1].hash != backward[-1].hash
    other_head = chain(0, b"\x01" * 32, NEW, T0)
    assert all(a.hash != b.hash for a, b in zip(forward, other_head, strict=True))


def test_details_are_copied_not_shared() -> None:
    details: dict[str, Any] = {"k": "v"}
    [event] = chain(0, GENESIS_HASH, [NewEvent("x", ADMIN, (), details)], T0)
    details["k"] = "changed"
    assert event.details == {"k": "v"}
