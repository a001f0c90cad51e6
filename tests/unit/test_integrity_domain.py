"""Row MACs (domain/integrity.py): bound to the table and to every field, unambiguous."""

from __future__ import annotations

from datetime import UTC, datetime

from airlock_server.app.audit import bounded_subjects
from airlock_server.domain.integrity import row_mac, row_mac_key, same_mac

KEY = row_mac_key(bytes(range(32)))
WHEN = datetime(2025, 1, 2, 3, 4, 5, 678901, tzinfo=UTC)


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
