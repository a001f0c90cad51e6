"""The client's second implementation of the event log encoding (the proof verifier's) agrees
with the server's on the test vector of docs/event-log.md."""

from __future__ import annotations

from datetime import UTC, datetime

from airlock_client.proof import event_hash
from airlock_server.domain.events import event_hash as server_event_hash


def test_both_event_encodings_agree_on_the_documented_vector() -> None:
    details = {"name": "guardians", "min_approvals": 2, "approvers": ["alice", "bob"]}
    subjects = ["team-1", "approver:alice"]
    prev = bytes(range(32))
    expected = "b94fe36406bb9fea0ece97464c0cd66318984ff03697dfce2010fd4284430945"
    client = event_hash(
        seq=7,
        time="2025-01-02T03:04:05.678901Z",
        type_="team.created",
        actor="admin",
        subjects=subjects,
        details=details,
        prev_hash=prev.hex(),
    )
    server = server_event_hash(
        7,
        datetime(2025, 1, 2, 3, 4, 5, 678901, tzinfo=UTC),
        "team.created",
        "admin",
        subjects,
        details,
        prev,
    ).hex()
    assert client == server == expected
