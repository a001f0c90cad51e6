"""AuditService: read, follow and verify the event log; sign its head; record refused calls."""

from __future__ import annotations

import functools
import hashlib
from collections.abc import AsyncGenerator, Sequence
from dataclasses import dataclass

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import (
    Ed25519PrivateKey,
    Ed25519PublicKey,
)
from cryptography.hazmat.primitives.serialization import (
    Encoding,
    NoEncryption,
    PrivateFormat,
    PublicFormat,
)

from airlock_server.app.common import Deps, transact
from airlock_server.app.feed import EventFeed, SharedReads
from airlock_server.app.ports import EventLogReader, EventQuery, EventSignal, UnitOfWork
from airlock_server.app.signing import PUBLIC_KEY_BYTES, SIGNATURE_BYTES
from airlock_server.domain.errors import FieldViolation, InvalidArgument, Reason
from airlock_server.domain.events import (
    GENESIS_HASH,
    ChainVerifier,
    Checkpoint,
    Event,
    Finding,
    Problem,
    SignedHeads,
    call_denied,
    check_checkpoint,
    check_head,
    check_subjects,
    checkpoint_message,
    key_id,
    log_key_missing,
)
from airlock_server.domain.integrity import log_not_authentic, record_not_authentic, row_mac_key
from airlock_server.domain.paging import Page, decode_token, page_of, page_size
from airlock_server.domain.principals import Principal, PrincipalKind, require
from airlock_server.domain.proofs import no_log_key_for_proofs

READERS = (PrincipalKind.ADMIN, PrincipalKind.AUDITOR)
WATCH_BATCH = 500
VERIFY_BATCH = 2000
MAX_TYPE = 64
MAX_SUBJECT = 256


class LogKey:
    """The server's Ed25519 log key: signs the head of every append (and so every checkpoint)
    and keys the MACs of the rows the server decides with (domain/integrity.py)."""

    def __init__(self, private_key: Ed25519PrivateKey) -> None:
        self._private = private_key
        self._public = private_key.public_key()
        self.public_key = self._public.public_bytes(Encoding.Raw, PublicFormat.Raw)
        self.key_id = key_id(self.public_key)
        seed = private_key.private_bytes(Encoding.Raw, PrivateFormat.Raw, NoEncryption())
        self.row_mac_key = row_mac_key(seed)

    def sign(self, message: bytes) -> bytes:
        return self._private.sign(message)

    def verify(self, signature: bytes, message: bytes) -> bool:
        try:
            self._public.verify(signature, message)
        except InvalidSignature:
            return False
        return True


@dataclass(frozen=True)
class Verification:
    ok: bool
    checked: int
    finding: Finding | None
    head: Checkpoint


def _first(*findings: Finding | None) -> Finding | None:
    present = [f for f in findings if f is not None]
    return min(present, key=lambda f: f.seq) if present else None


class AuditService:
    def __init__(
        self,
        deps: Deps,
        log: EventLogReader,
        signal: EventSignal,
        key: LogKey | None = None,
        *,
        watch_poll: float = 5.0,
        feed: EventFeed | None = None,
    ) -> None:
        self._deps = deps
        self._log = log
        self._key = key
        self._watch_poll = watch_poll
        # Followers share the process's feed (bootstrap); alone, the service makes its own.
        self.feed = feed or EventFeed(log, signal, watch_poll)
        self._pages: SharedReads[tuple[int, int], list[Event]] = SharedReads()

    @property
    def public_key(self) -> bytes:
        return self._key.public_key if self._key else b""

    # --- refused calls ----------------------------------------------------------------------

    async def record_denial(
        self,
        caller: Principal,
        method: str,
        code: str,
        reason: str,
        subjects: Sequence[str] = (),
    ) -> None:
        """One `call.denied` event in a transaction of its own, after the refused use case
        rolled back. Method, code and reason only: never the request's payload."""

        async def work(uow: UnitOfWork) -> None:
            uow.record(call_denied(caller, method, code, reason, bounded_subjects(subjects)))
            await uow.commit()

        await transact(self._deps, work)

    # --- reading ----------------------------------------------------------------------------

    async def list_events(
        self, caller: Principal, query: EventQuery, after_seq: int, size: int, token: str
    ) -> Page[Event]:
        require(caller, *READERS)
        _check_query(query, after_seq)
        limit = page_size(size)
        fingerprint = {
            "m": "ListEvents",
            "t": query.type,
            "a": query.actor,
            "k": query.actor_kind,
            "s": query.subject,
            "from": query.start_time.isoformat() if query.start_time else "",
            "to": query.end_time.isoformat() if query.end_time else "",
            "after": after_seq,
        }
        cursor = decode_token(token, fingerprint)
        start = after_seq
        if cursor is not None:
            try:
                start = max(start, int(cursor))
            except ValueError as exc:
                raise InvalidArgument.field("page_token", "not a page token of ListEvents") from exc
        rows = await self._log.list_page(query, start, limit + 1)
        if query.subject:
            # event_subjects is an index outside the chain: each event it finds must name the
            # subject in its chained subjects, or the index was written behind our back.
            for e in rows:
                if query.subject not in e.subjects:
                    raise record_not_authentic("event_subjects", f"({query.subject}, {e.seq})")
        return page_of(rows, limit, lambda e: str(e.seq), fingerprint)

    async def watch_events(self, caller: Principal, after_seq: int) -> AsyncGenerator[Event, None]:
        """Replays what is stored after `after_seq`, then follows new events, each once, in
        seq order. Readers only ever see committed events, and seq follows commit order, so a
        follower that asks for seq > last never skips one."""
        require(caller, *READERS)
        if after_seq < 0:
            raise InvalidArgument.field("after_seq", "must not be negative")
        last = after_seq
        # The stored events first, read by this follower alone; then what the shared feed
        # hands out, after reading up to where it started (events committed meanwhile).
        async for event in self._replay(last):
            yield event
            last = event.seq
        subscription = await self.feed.subscribe()
        try:
            if subscription.after > last:
                async for event in self._replay(last, subscription.after):
                    yield event
                    last = event.seq
            while True:
                for event in await subscription.next(self._watch_poll):
                    if event.seq > last:
                        yield event
                        last = event.seq
        finally:
            subscription.close()

    async def _replay(self, after_seq: int, floor: int = 0) -> AsyncGenerator[Event, None]:
        """The stored events after after_seq. Streams replaying the same pages at the same
        time share each read (many clients reconnecting at once). `floor`: the page must be
        read after the event of that seq was committed; a read shared under the same floor
        was started after a subscription at that seq was made, so it was."""
        last = after_seq
        while True:
            read = functools.partial(self._log.list_page, EventQuery(), last, WATCH_BATCH)
            batch = await self._pages.read((last, floor), read)
            for event in batch:
                yield event
                last = event.seq
            if len(batch) < WATCH_BATCH:
                return

    # --- verifying --------------------------------------------------------------------------

    async def verify_log(
        self, caller: Principal, from_seq: int, to_seq: int, checkpoint: Checkpoint | None
    ) -> Verification:
        require(caller, *READERS)
        if from_seq < 0:
            raise InvalidArgument.field("from_seq", "must not be negative")
        if to_seq < 0:
            raise InvalidArgument.field("to_seq", "must not be negative")
        first = from_seq or 1
        if to_seq and to_seq < first:
            raise InvalidArgument.field("to_seq", "must not be less than from_seq")
        if checkpoint is not None:
            _check_signature(checkpoint)

        last_event = await self._log.last()
        last_seq = last_event.seq if last_event else 0
        end = min(to_seq, last_seq) if to_seq else last_seq

        chain_finding: Finding | None = None
        subjects_finding: Finding | None = None
        signed = self._signed_walk(first)
        checked = 0
        prev = GENESIS_HASH
        if first > 1:
            before = await self._log.get(first - 1)
            if before is None:
                chain_finding = Finding(
                    first - 1, Problem.SEQ_GAP, f"seq {first - 1}, before the range, is missing"
                )
            else:
                prev = before.hash
        if chain_finding is None:
            verifier = ChainVerifier(first, prev)
            cursor = first
            while cursor <= end and chain_finding is None:
                batch = await self._log.range(cursor, end, VERIFY_BATCH)
                if not batch:
                    break
                for event in batch:
                    chain_finding = verifier.feed(event)
                    if chain_finding is not None:
                        break
                    signed.feed(event)
                if subjects_finding is None:
                    rows = await self._log.subject_rows(batch[0].seq, batch[-1].seq)
                    subjects_finding = check_subjects(batch, rows)
                cursor = batch[-1].seq + 1
            checked = verifier.checked
            if chain_finding is None and signed.open:
                # The range ends inside a transaction: its signed head comes after it.
                for event in await self._log.range(end + 1, last_seq, VERIFY_BATCH):
                    signed.feed(event)
                    if not signed.open:
                        break
            if chain_finding is None and signed.open and last_event is not None:
                head_row = await self._log.head()
                if head_row is not None:
                    signed.close_at(
                        last_event, head_row.seq, head_row.hash, head_row.time, head_row.signature
                    )

        head_finding = None
        if not to_seq:
            head_finding = check_head(last_seq, await self._log.head_seq())
        checkpoint_finding = None
        if checkpoint is not None:
            stored = await self._log.get(checkpoint.seq) if checkpoint.seq > 0 else None
            if checkpoint.seq > 0:
                checkpoint_finding = check_checkpoint(
                    checkpoint.seq, checkpoint.hash, stored, last_seq
                )
        finding = _first(
            chain_finding, signed.finding(), subjects_finding, head_finding, checkpoint_finding
        )
        head = self._checkpoint_of(last_event)
        return Verification(finding is None, checked, finding, head)

    def _signed_walk(self, first: int) -> SignedHeads:
        key = self._key
        return SignedHeads(first, key.verify if key is not None else None)

    async def checkpoint(self, caller: Principal) -> Checkpoint:
        """The log's head as the server signed it when it appended it: never a signature over
        whatever head the database holds (LOG_NOT_AUTHENTIC when the last event is not one
        the server signed)."""
        require(caller, *READERS)
        if self._key is None:
            raise log_key_missing("sign checkpoints")
        last = await self._log.last()
        checkpoint = self._checkpoint_of(last)
        if last is not None and not checkpoint.signature:
            # A sealed log before its next append: the head row carries the signature.
            head = await self._log.head()
            key = self._key
            if (
                head is not None
                and (head.seq, head.hash) == (last.seq, last.hash)
                and key.verify(head.signature, checkpoint_message(head.seq, head.hash, head.time))
            ):
                return Checkpoint(
                    head.seq, head.hash, head.time, head.signature, key.public_key, key.key_id
                )
            raise log_not_authentic(last.seq)
        return checkpoint

    @property
    def can_sign(self) -> bool:
        return self._key is not None

    async def anchor(self, from_seq: int, last_seq: int) -> tuple[Checkpoint, list[Event]]:
        """The head the server signed when it appended event `last_seq` (the end of that
        transaction) and every event from `from_seq` up to it, for an approval proof
        (docs/approval-proofs.md); FAILED_PRECONDITION LOG_KEY_MISSING when the server has no
        log key, LOG_NOT_AUTHENTIC when no head the key signed covers `last_seq`.

        No caller check: the use case that asks (ExportApprovalProof) has checked its caller.
        The chain ends where the proof's last event's transaction did, so traffic after it
        never enters the proof; nothing is signed now, over whatever the database holds."""
        if self._key is None:
            raise no_log_key_for_proofs()
        chain: list[Event] = []
        cursor = max(from_seq, 1)
        while True:
            batch = await self._log.range(cursor, 0, VERIFY_BATCH)
            if not batch:
                raise log_not_authentic(last_seq)
            for event in batch:
                chain.append(event)
                if event.seq >= last_seq:
                    checkpoint = self._checkpoint_of(event)
                    if checkpoint.signature:
                        return checkpoint, chain
            cursor = batch[-1].seq + 1

    def _checkpoint_of(self, event: Event | None) -> Checkpoint:
        """The event as a checkpoint: signed with the signature the server made when it
        appended it, if it is a transaction's last event and that signature verifies."""
        if event is None:
            return Checkpoint(0, GENESIS_HASH, self._deps.clock())
        key = self._key
        message = checkpoint_message(event.seq, event.hash, event.time)
        if key is None or not event.head_signature or not key.verify(event.head_signature, message):
            return Checkpoint(event.seq, event.hash, event.time)
        return Checkpoint(
            event.seq, event.hash, event.time, event.head_signature, key.public_key, key.key_id
        )


# A refused caller chooses what its request names: each subject of `call.denied` is kept whole
# up to this length, longer ones as a prefix and their SHA-256, and at most this many.
DENIED_SUBJECT_CHARS = 128
DENIED_SUBJECT_PREFIX = 48
DENIED_SUBJECTS = 4


def bounded_subjects(subjects: Sequence[str]) -> tuple[str, ...]:
    """The bounded subjects of a `call.denied` event (docs/event-log.md): a flood of refusals
    with long resources cannot grow each event beyond a few hundred bytes."""
    out: list[str] = []
    for s in subjects:
        if not s:
            continue
        if len(s) > DENIED_SUBJECT_CHARS:
            digest = hashlib.sha256(s.encode("utf-8")).hexdigest()
            s = f"{s[:DENIED_SUBJECT_PREFIX]}…sha256:{digest}"
        if s not in out:
            out.append(s)
        if len(out) == DENIED_SUBJECTS:
            break
    return tuple(out)


def _check_query(query: EventQuery, after_seq: int) -> None:
    if after_seq < 0:
        raise InvalidArgument.field("after_seq", "must not be negative")
    if len(query.type) > MAX_TYPE:
        raise InvalidArgument.field("type", f"at most {MAX_TYPE} characters")
    if len(query.subject) > MAX_SUBJECT:
        raise InvalidArgument.field("subject", f"at most {MAX_SUBJECT} characters")
    if query.start_time and query.end_time and query.end_time <= query.start_time:
        raise InvalidArgument.field("end_time", "must be after start_time")


def _check_signature(checkpoint: Checkpoint) -> None:
    """A checkpoint that carries a signature must verify with the key it names."""
    if checkpoint.seq < 0:
        raise InvalidArgument.field("checkpoint.seq", "must not be negative")
    if len(checkpoint.hash) != 32:
        raise InvalidArgument.field("checkpoint.hash", "a SHA-256 hash is 32 bytes")
    if not checkpoint.signature:
        return
    # Lengths first: a key or signature of the wrong size is malformed input, named as such.
    if len(checkpoint.public_key) != PUBLIC_KEY_BYTES:
        raise InvalidArgument.field("checkpoint.public_key", "an Ed25519 public key is 32 bytes")
    if len(checkpoint.signature) != SIGNATURE_BYTES:
        raise InvalidArgument.field("checkpoint.signature", "an Ed25519 signature is 64 bytes")
    try:
        key = Ed25519PublicKey.from_public_bytes(checkpoint.public_key)
        key.verify(
            checkpoint.signature,
            checkpoint_message(checkpoint.seq, checkpoint.hash, checkpoint.time),
        )
    except (ValueError, InvalidSignature) as exc:
        raise InvalidArgument(
            [FieldViolation("checkpoint.signature", "does not verify with checkpoint.public_key")],
            reason=Reason.BAD_SIGNATURE,
        ) from exc
