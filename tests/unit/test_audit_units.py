"""Pure pieces of the audit work: the chain verifier, type filters, and what a refused call
names as its subjects."""

from __future__ import annotations

from datetime import UTC, datetime

from airlock.v1 import session_service_pb2, vault_service_pb2
from airlock_server.domain.errors import PermissionDenied
from airlock_server.domain.events import (
    GENESIS_HASH,
    ChainVerifier,
    Event,
    NewEvent,
    Problem,
    chain,
    check_checkpoint,
    check_head,
    event_hash,
    type_matches,
)
from airlock_server.domain.principals import SYSTEM
from airlock_server.transport.refusals import denied_subjects

T0 = datetime(2025, 1, 2, tzinfo=UTC)


def _log(n: int) -> list[Event]:
    return chain(0, GENESIS_HASH, [NewEvent(f"t.e{i}", SYSTEM, (), {"i": i}) for i in range(n)], T0)


def _walk(events: list[Event]) -> tuple[int, Problem | None]:
    v = ChainVerifier(1, GENESIS_HASH)
    for e in events:
        found = v.feed(e)
        if found:
            return found.seq, found.problem
    return v.checked, None


def test_verifier_accepts_a_chain_and_names_each_kind_of_damage() -> None:
    log = _log(5)
    assert _walk(log) == (5, None)
    changed = [*log[:2], Event(3, T0, "forged", "system", (), {"i": 2}, log[2].prev_hash,
                               log[2].hash), *log[3:]]  # fmt: skip
    assert _walk(changed) == (3, Problem.HASH_MISMATCH)
    assert _walk([*log[:2], *log[3:]]) == (3, Problem.SEQ_GAP)
    # A consistent event whose prev_hash points elsewhere: re-hashed after a removal.
    e = log[3]
    h = event_hash(4, e.time, e.type, e.actor, e.subjects, e.details, bytes(32))
    rehashed = Event(4, e.time, e.type, e.actor, e.subjects, e.details, bytes(32), h)
    assert _walk([*log[:3], rehashed]) == (4, Problem.CHAIN_BROKEN)


def test_head_and_checkpoint_checks() -> None:
    log = _log(3)
    assert check_head(3, 3) is None
    found = check_head(3, 5)
    assert found is not None
    assert (found.seq, found.problem) == (4, Problem.TRUNCATED)
    assert check_checkpoint(3, log[2].hash, log[2], 3) is None
    mismatch = check_checkpoint(3, bytes(32), log[2], 3)
    assert mismatch is not None
    assert mismatch.problem is Problem.CHECKPOINT_MISMATCH
    truncated = check_checkpoint(9, bytes(32), None, 3)
    assert truncated is not None
    assert (truncated.seq, truncated.problem) == (4, Problem.TRUNCATED)


def test_type_filter_exact_or_family() -> None:
    assert type_matches("", "vote.cast")
    assert type_matches("vote.cast", "vote.cast")
    assert not type_matches("vote", "vote.cast")
    assert type_matches("session.", "session.approved")
    assert not type_matches("session.", "sessions.x")


def test_denied_subjects_come_from_the_request_and_the_error() -> None:
    request = vault_service_pb2.RequestRestoreAccessRequest(
        vault_arn="arn:aws:backup:us-east-1:111122223333:backup-vault:v", comment="secret words"
    )
    error = PermissionDenied("no", metadata={"teamId": "t-1", "principal": "account:1"})
    assert denied_subjects(request, error) == [
        "arn:aws:backup:us-east-1:111122223333:backup-vault:v",
        "team:t-1",
    ]
    cancel = session_service_pb2.CancelSessionRequest(session_id="s-1")
    assert denied_subjects(cancel, PermissionDenied("no")) == ["session:s-1"]
