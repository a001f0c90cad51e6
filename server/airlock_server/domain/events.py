"""The event log's facts and its hash chain. The encoding is the contract in docs/event-log.md."""

from __future__ import annotations

import enum
import hashlib
import json
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from airlock_server.domain.errors import FailedPrecondition, Reason
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
    # The log key's signature of the head, on the last event of a transaction (b"" otherwise).
    head_signature: bytes = b""

    def canonical(self) -> bytes:
        """The exact bytes its hash covers."""
        return canonical_bytes(
            self.seq,
            self.time,
            self.type,
            self.actor,
            self.subjects,
            self.details,
            self.prev_hash,
        )


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


# --- event types ------------------------------------------------------------------------------

CALL_DENIED = "call.denied"


def call_denied(
    caller: Principal, method: str, code: str, reason: str, subjects: tuple[str, ...]
) -> NewEvent:
    """A refused call: method, code and reason only, never the request's payload."""
    return NewEvent(
        CALL_DENIED, caller, subjects, {"method": method, "code": code, "reason": reason}
    )


# Every type a use case appends, in the order of docs/event-log.md's table. Each is spelled in its
# constructor (the domain's *_events modules); tests/unit/test_event_type_names.py holds them,
# this list and the docs' table together, and tests/integration/test_event_types.py drives each.
# A closed set: the log refuses any other at append (persistence/event_log.py).
EVENT_TYPES: tuple[str, ...] = (
    "server.bootstrapped",
    "approver.created",
    "approver.disabled",
    "account.registered",
    "credential.issued",
    "credential.revoked",
    "team.created",
    "invitation.sent",
    "invitation.link_issued",
    "invitation.accepted",
    "invitation.declined",
    "team.activated",
    "team.activation_failed",
    "team.update_requested",
    "team.update_approved",
    "team.update_failed",
    "team.updated",
    "team.update_activation_failed",
    "team.deletion_requested",
    "team.deletion_approved",
    "team.deletion_failed",
    "team.deleted",
    "team.shared",
    "team.unshared",
    "team.baseline_started",
    "vault.created",
    "vault.team_associated",
    "vault.association_change_requested",
    "vault.association_changed",
    "vault.association_change_dropped",
    "vault.team_removed",
    "session.created",
    "vote.cast",
    "session.approved",
    "session.rejected",
    "session.expired",
    "session.cancelled",
    "session.completed",
    "session.executed",
    "session.execution_failed",
    "grant.requested",
    "grant.available",
    "grant.failed",
    "grant.revoke_requested",
    "grant.revoked",
    "grant.revoke_dropped",
    "notification.endpoint_created",
    "notification.endpoint_updated",
    "notification.endpoint_deleted",
    "notification.dead",
    CALL_DENIED,
)


def family_types(family: str) -> tuple[str, ...]:
    """The known types of a family filter ("team."), sorted; () when it names none."""
    return tuple(sorted(t for t in EVENT_TYPES if t.startswith(family)))


def type_matches(type_filter: str, type_: str) -> bool:
    """ListEvents' type filter: exact, or a family when it ends with '.'."""
    if not type_filter:
        return True
    if type_filter.endswith("."):
        return type_.startswith(type_filter)
    return type_ == type_filter


# --- verifying the chain ---------------------------------------------------------------------


class Problem(enum.Enum):
    HASH_MISMATCH = "HASH_MISMATCH"
    CHAIN_BROKEN = "CHAIN_BROKEN"
    SEQ_GAP = "SEQ_GAP"
    CHECKPOINT_MISMATCH = "CHECKPOINT_MISMATCH"
    TRUNCATED = "TRUNCATED"
    # No head signed by the log key covers the event: the server did not write it.
    UNSIGNED = "UNSIGNED"
    # event_subjects (the subject index) differs from the event's chained subjects.
    SUBJECTS_MISMATCH = "SUBJECTS_MISMATCH"


@dataclass(frozen=True)
class Finding:
    """The first bad seq and what is wrong with it."""

    seq: int
    problem: Problem
    description: str


class ChainVerifier:
    """Feed stored events in ascending seq order; the first finding stops the walk.

    `prev_hash` is the stored hash of the event before `first_seq` (GENESIS_HASH for seq 1).
    """

    def __init__(self, first_seq: int, prev_hash: bytes) -> None:
        self.expected_seq = first_seq
        self.prev_hash = prev_hash
        self.checked = 0

    def feed(self, e: Event) -> Finding | None:
        if e.seq != self.expected_seq:
            return Finding(
                self.expected_seq,
                Problem.SEQ_GAP,
                f"seq {self.expected_seq} is missing (the next stored event is seq {e.seq})",
            )
        recomputed = event_hash(e.seq, e.time, e.type, e.actor, e.subjects, e.details, e.prev_hash)
        if recomputed != e.hash:
            return Finding(
                e.seq,
                Problem.HASH_MISMATCH,
                f"seq {e.seq} was changed: its content hashes to {recomputed.hex()}, "
                f"the stored hash is {e.hash.hex()}",
            )
        if e.prev_hash != self.prev_hash:
            return Finding(
                e.seq,
                Problem.CHAIN_BROKEN,
                f"seq {e.seq} does not point at the stored hash of seq {e.seq - 1} "
                "(an event was removed, inserted or reordered)",
            )
        self.checked += 1
        self.prev_hash = e.hash
        self.expected_seq += 1
        return None


class SignedHeads:
    """Feed events in ascending seq order (after the chain verified them): every event must be
    covered by a head the log key signed, on the last event of the transaction that appended
    it, at or after it. The first event not covered is the first the server did not write.

    `verify(signature, message)` checks a signature with the server's log key; None (a server
    without a key) checks nothing."""

    def __init__(self, first_seq: int, verify: Callable[[bytes, bytes], bool] | None) -> None:
        self._verify = verify
        self._first_uncovered: int | None = None
        self._bad: Finding | None = None
        self._next = first_seq

    @property
    def open(self) -> bool:
        """Events fed since the last signed head (the walk may go on to find it)."""
        return self._verify is not None and self._bad is None and self._first_uncovered is not None

    def feed(self, e: Event) -> None:
        if self._verify is None or self._bad is not None:
            return
        if self._first_uncovered is None:
            self._first_uncovered = e.seq
        if e.head_signature and self._verify(
            e.head_signature, checkpoint_message(e.seq, e.hash, e.time)
        ):
            self._first_uncovered = None
        elif e.head_signature:
            # A signature that does not verify ends a transaction the server did not write.
            self._bad = self._unsigned(self._first_uncovered, e.seq)

    def close_at(
        self, last: Event, head_seq: int, head_hash: bytes, head_time: datetime, signature: bytes
    ) -> None:
        """The head row's signature covers the events fed so far when it names the last of
        them (a log sealed by the operator, `airlock-server seal`, before its next append)."""
        if not self.open or self._verify is None or not signature:
            return
        if (head_seq, head_hash) != (last.seq, last.hash):
            return
        if self._verify(signature, checkpoint_message(head_seq, head_hash, head_time)):
            self._first_uncovered = None

    def finding(self) -> Finding | None:
        if self._bad is not None:
            return self._bad
        if self._verify is not None and self._first_uncovered is not None:
            return self._unsigned(self._first_uncovered, None)
        return None

    @staticmethod
    def _unsigned(seq: int, bad_signature_at: int | None) -> Finding:
        why = (
            f"the head signature on seq {bad_signature_at} does not verify with the log key"
            if bad_signature_at is not None
            else "no later head is signed by the log key"
        )
        return Finding(
            seq,
            Problem.UNSIGNED,
            f"seq {seq} was not written by this server: {why} (the first event the server "
            "did not append)",
        )


def check_subjects(events: Sequence[Event], rows: Sequence[tuple[str, int]]) -> Finding | None:
    """The subject index rows of `events`' seq range against each event's chained subjects."""
    stored: dict[int, set[str]] = {}
    for subject, seq in rows:
        stored.setdefault(seq, set()).add(subject)
    for e in events:
        found = stored.pop(e.seq, set())
        expected = set(e.subjects)
        if found != expected:
            extra, missing = sorted(found - expected), sorted(expected - found)
            return Finding(
                e.seq,
                Problem.SUBJECTS_MISMATCH,
                f"the subject index of seq {e.seq} differs from its chained subjects "
                f"(added {extra}, removed {missing})",
            )
    if stored:
        seq = min(stored)
        return Finding(
            seq,
            Problem.SUBJECTS_MISMATCH,
            f"the subject index names seq {seq}, which is not in the log",
        )
    return None


def check_head(last_seq: int, head_seq: int) -> Finding | None:
    """The log's head row says the log reached `head_seq`; the stored events end at `last_seq`."""
    if head_seq > last_seq:
        return Finding(
            last_seq + 1,
            Problem.TRUNCATED,
            f"seq {last_seq + 1} to {head_seq} are missing: the log ends at seq {last_seq} "
            f"but its head row says {head_seq} (truncated)",
        )
    return None


def check_checkpoint(
    checkpoint_seq: int, checkpoint_hash: bytes, stored: Event | None, last_seq: int
) -> Finding | None:
    """A checkpoint kept elsewhere against the stored event at its seq."""
    if stored is None:
        if checkpoint_seq > last_seq:
            return Finding(
                last_seq + 1,
                Problem.TRUNCATED,
                f"seq {last_seq + 1} to {checkpoint_seq} are missing: the log ends at seq "
                f"{last_seq}, before the checkpoint's seq {checkpoint_seq} (truncated)",
            )
        return Finding(
            checkpoint_seq,
            Problem.SEQ_GAP,
            f"seq {checkpoint_seq} of the checkpoint is missing",
        )
    if stored.hash != checkpoint_hash:
        return Finding(
            checkpoint_seq,
            Problem.CHECKPOINT_MISMATCH,
            f"the checkpoint says seq {checkpoint_seq} has hash {checkpoint_hash.hex()}, "
            f"the stored event has {stored.hash.hex()}",
        )
    return None


# --- signed checkpoints (docs/event-log.md) ---------------------------------------------------

CHECKPOINT_TAG = "airlock.checkpoint.v1"


@dataclass(frozen=True)
class Checkpoint:
    seq: int
    hash: bytes
    time: datetime
    signature: bytes = b""
    public_key: bytes = b""
    key_id: str = ""


def _field(value: bytes) -> bytes:
    return len(value).to_bytes(4, "big") + value


def checkpoint_message(seq: int, hash_: bytes, time: datetime) -> bytes:
    """What the log key signs: four length-prefixed fields (tag, seq, hash hex, time)."""
    return b"".join(
        _field(v.encode("utf-8"))
        for v in (CHECKPOINT_TAG, str(seq), hash_.hex(), format_time(time))
    )


def key_id(public_key: bytes) -> str:
    """The first 16 hex digits of SHA-256(public key)."""
    return hashlib.sha256(public_key).hexdigest()[:16]


def log_key_missing(cannot: str) -> FailedPrecondition:
    """The refusal of anything that needs the log key (GetLogCheckpoint, ExportApprovalProof)
    on a server that has none; `cannot` says what it cannot do without it."""
    return FailedPrecondition(
        f"this server has no log key, so it cannot {cannot}; create one with "
        "`airlock-server log-key` (AIRLOCK_LOG_KEY_FILE) and restart it",
        reason=Reason.LOG_KEY_MISSING,
    )
