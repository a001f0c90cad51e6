"""Row MACs (domain/integrity.py): bound to the table and to every field, unambiguous."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import replace
from datetime import UTC, datetime

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from airlock_server.app.audit import bounded_subjects
from airlock_server.domain.events import (
    GENESIS_HASH,
    Event,
    NewEvent,
    Problem,
    SignedHeads,
    chain,
    check_subjects,
    checkpoint_message,
)
from airlock_server.domain.integrity import row_mac, row_mac_key, same_mac
from airlock_server.domain.principals import Principal, PrincipalKind

KEY = row_mac_key(bytes(range(32)))
WHEN = datetime(2025, 1, 2, 3, 4, 5, 678901, tzinfo=UTC)
SYSTEM = Principal(PrincipalKind.SYSTEM, "")


def test_the_mac_covers_the_table_and_each_field() -> None:
    fields = ("cred-1", "approver", "alice", b"\x01" * 32, WHEN, None)
    mac = row_mac(KEY, "credentials", fields)
    assert same_mac(mac, row_mac(KEY, "credentials", fields))
    assert not same_mac(mac, row_mac(KEY, "team_members", fields))
    for i in range(len(fields)):
        changed = list(fields)
        changed[i] = "x"
        assert not same_mac(mac, row_mac(KEY, "credentials", changed)), i
    assert not same_mac(mac, row_mac(row_mac_key(bytes(32)), "credentials", fields))
    assert not same_mac(mac, None)


def test_no_two_rows_share_an_encoding() -> None:
    pairs = [
        (("ab", "c"), ("a", "bc")),
        ((None,), ("",)),
        (("",), (b"",)),
        ((1,), ("1",)),
        ((WHEN,), ("2025-01-02T03:04:05.678901Z",)),
    ]
    for a, b in pairs:
        assert row_mac(KEY, "t", a) != row_mac(KEY, "t", b), (a, b)


def test_refused_calls_keep_bounded_subjects() -> None:
    long = "arn:aws:backup:eu-west-1:111122223333:backup-vault:" + "v" * 2000
    kept = bounded_subjects(["team:t-1", long, "team:t-1", *[f"session:s-{i}" for i in range(9)]])
    assert len(kept) == 4
    assert kept[0] == "team:t-1"
    assert kept[1].startswith(long[:48])
    assert len(kept[1]) == 48 + len("…sha256:") + 64
    assert all(len(s) <= 128 for s in kept)


def _chain(n: int, signed_at: set[int], key: Ed25519PrivateKey) -> list[Event]:
    events = chain(
        0, GENESIS_HASH, [NewEvent("team.created", SYSTEM, (f"team:{i}",)) for i in range(n)], WHEN
    )
    return [
        replace(e, head_signature=key.sign(checkpoint_message(e.seq, e.hash, e.time)))
        if e.seq in signed_at
        else e
        for e in events
    ]


def _verify(key: Ed25519PrivateKey) -> Callable[[bytes, bytes], bool]:
    def verify(signature: bytes, message: bytes) -> bool:
        try:
            key.public_key().verify(signature, message)
        except InvalidSignature:
            return False
        return True

    return verify


def test_the_first_event_no_signed_head_covers_is_named() -> None:
    key = Ed25519PrivateKey.generate()
    events = _chain(6, {2, 4}, key)
    walk = SignedHeads(1, _verify(key))
    for e in events:
        walk.feed(e)
    finding = walk.finding()
    assert finding is not None
    assert (finding.seq, finding.problem) == (5, Problem.UNSIGNED)
    # Signed by another key: the server did not write seq 1 and 2.
    other = SignedHeads(1, _verify(Ed25519PrivateKey.generate()))
    for e in events:
        other.feed(e)
    assert other.finding() == SignedHeads._unsigned(1, 2)
    # A server without a key checks nothing.
    keyless = SignedHeads(1, None)
    for e in events:
        keyless.feed(e)
    assert keyless.finding() is None


def test_the_subject_index_must_match_the_chain() -> None:
    events = _chain(3, set(), Ed25519PrivateKey.generate())
    rows = [(s, e.seq) for e in events for s in e.subjects]
    assert check_subjects(events, rows) is None
    added = check_subjects(events, [*rows, ("team:x", 2)])
    assert added is not None
    assert (added.seq, added.problem) == (2, Problem.SUBJECTS_MISMATCH)
    removed = check_subjects(events, rows[1:])
    assert removed is not None
    assert removed.seq == 1
