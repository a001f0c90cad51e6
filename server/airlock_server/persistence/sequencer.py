"""PostgreSQL: the log's sequencer (issue 11; the Trillian design).

A use case's transaction does not touch the log's head: its events are inserted into
`unsequenced_events` (one statement, MACed rows, with their planned notifications) and commit
with the rest of its work, in parallel with every other request. One sequencer per database
(a session advisory lock; any replica's takes over when the holder's connection dies) then,
in batches of two statements: reads the head (and checks the log key signed it) and the oldest
committed unsequenced events in id order; checks their MACs, gives them seq, prev_hash and hash
after the head (time never decreasing along seq), signs the head after each transaction's last
event and the batch's; then, in one statement (atomic on its own), moves the head from the head
it read, inserts the events, their subject rows and their notifications, deletes what it
sequenced and notifies `airlock_events`.

Order: a use case inserts its events as the last statement before its COMMIT, so a
transaction that read what another committed inserts after it, and its ids are larger: id
order never puts an event before one it depends on, and the sequencer only ever sees committed
rows, in one batch or the next. `seq` is gap-free and the chain has no fork: a batch writes
only if the head is still the one it chained after (the head row's lock, taken by that
statement, orders two sequencers that race).

A use case's commit waits until its events are sequenced (`Sequencer.expect`): what a caller
reads after an answer (ListEvents, a proof, the notifications) holds its events, as when it
appended them itself; no request waits on another's round trips, they share the sequencer's.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import secrets
import threading
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, replace
from datetime import datetime
from typing import Any

import structlog
from sqlalchemy import (
    JSON,
    BigInteger,
    LargeBinary,
    Row,
    bindparam,
    func,
    select,
    text,
)
from sqlalchemy.dialects import postgresql
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine, AsyncSession

from airlock_server.domain.events import EVENT_TYPES, Event, NewEvent, event_hash, format_time
from airlock_server.domain.integrity import RowField, log_not_authentic
from airlock_server.domain.notifications import Channel
from airlock_server.persistence.db import create_engine, is_outage
from airlock_server.persistence.event_log import NOTIFY_CHANNEL, event_subjects, head_params
from airlock_server.persistence.models import LogHeadRecord, UnsequencedEventRecord, UTCDateTime
from airlock_server.persistence.notifications import notification_rows
from airlock_server.persistence.seal import Sealer

log = structlog.get_logger("airlock.events")

# The advisory lock of the one sequencer of a database ("airlock" in ASCII).
SEQUENCER_LOCK = 0x6169726C6F636B
# A use case committed events: the sequencer (maybe another replica) has work.
PENDING_CHANNEL = "airlock_unsequenced"
BATCH = 1000
# How long a commit waits for its events' seq before answering anyway (its events are
# committed and will be sequenced when a sequencer can; the answer does not depend on them).
WAIT_FOR_SEQ = 10.0
# A sequencer's look at the table without being told, and a follower's bid for the lock.
POLL = 1.0
RETRY_FIRST = 0.05
RETRY_CAP = 2.0

_Q = UnsequencedEventRecord
TABLE = "unsequenced_events"

# A planned notice of one event: its kind and its [channel, target, data] targets.
PlannedNotice = dict[str, Any]


def planned_notice(kind: str, targets: Sequence[tuple[Channel, str, dict[str, Any]]]) -> Any:
    return {"kind": kind, "targets": [[c.value, t, d] for c, t, d in targets]}


def _canonical(value: Any) -> str:
    return json.dumps(value, sort_keys=True, separators=(",", ":"))


def _fields(
    txn: bytes,
    position: int,
    time_: datetime,
    type_: str,
    actor: str,
    subjects: Sequence[str],
    details: Any,
    notice: Any,
) -> list[RowField]:
    return [
        txn,
        position,
        time_,
        type_,
        actor,
        _canonical(list(subjects)),
        _canonical(details),
        _canonical(notice),
    ]


def origin_of(txn: bytes, position: int) -> bytes:
    return txn + position.to_bytes(4, "big")


async def enqueue(
    session: AsyncSession,
    new: Sequence[NewEvent],
    now: datetime,
    sealer: Sealer,
    notices: Sequence[PlannedNotice | None],
) -> list[int]:
    """Insert a use case's events, unsequenced (its last statement before COMMIT): their ids.

    The same statement reads the head (unlocked): one the log key did not sign refuses the use
    case (FAILED_PRECONDITION LOG_NOT_AUTHENTIC, nothing committed), as an append did; the
    sequencer checks it again before every batch."""
    unknown = sorted({e.type for e in new}.difference(EVENT_TYPES))
    if unknown:
        # The log's types are a closed set (docs/event-log.md), as append_events checks.
        raise ValueError(f"event types {unknown} are not in EVENT_TYPES (domain/events.py)")
    txn = secrets.token_bytes(16)
    columns: dict[str, list[Any]] = {
        "types": [],
        "actors": [],
        "subjects": [],
        "details": [],
        "notices": [],
        "macs": [],
    }
    for position, (e, notice) in enumerate(zip(new, notices, strict=True)):
        actor = str(e.actor)
        details = dict(e.details)
        subjects = list(e.subjects)
        columns["types"].append(e.type)
        columns["actors"].append(actor)
        # As the JSON columns' own serializer writes them (`null` for no notice).
        columns["subjects"].append(json.dumps(subjects))
        columns["details"].append(json.dumps(details))
        columns["notices"].append(json.dumps(notice))
        columns["macs"].append(
            sealer.mac(TABLE, _fields(txn, position, now, e.type, actor, subjects, details, notice))
            if sealer.keyed
            else None
        )
    found = (await session.execute(_ENQUEUE, {"txn": txn, "time": now, **columns})).one()
    if not sealer.head_is_ours(found.seq, found.hash, found.time, found.signature):
        raise log_not_authentic(found.seq)
    return list(found.ids)


_QUEUE_COLUMNS = (
    "txn",
    "position",
    "time",
    "type",
    "actor",
    "subjects",
    "details",
    "notice",
    "mac",
)

_HEAD = LogHeadRecord.__table__.c

# The insert of a transaction's unsequenced events and the read of the head, one statement
# whatever their number: the columns travel as arrays (one text, compiled once by SQLAlchemy
# and prepared once per connection by asyncpg; a VALUES list was a new statement per count).
# `position` is the row's place in the arrays, inserted in that order (ids follow it).
_ENQUEUE = (
    text(
        f"WITH q AS (INSERT INTO {TABLE} ({', '.join(_QUEUE_COLUMNS)}) "
        "SELECT CAST(:txn AS bytea), CAST(u.ord - 1 AS integer), CAST(:time AS timestamptz), "
        "u.type, u.actor, CAST(u.subjects AS json), CAST(u.details AS json), "
        "CAST(u.notice AS json), u.mac "
        "FROM unnest(CAST(:types AS text[]), CAST(:actors AS text[]), "
        "CAST(:subjects AS text[]), CAST(:details AS text[]), CAST(:notices AS text[]), "
        "CAST(:macs AS bytea[])) WITH ORDINALITY "
        "AS u(type, actor, subjects, details, notice, mac, ord) ORDER BY u.ord "
        "RETURNING id) "
        "SELECT seq, hash, time, signature, ARRAY(SELECT id FROM q ORDER BY id) AS ids "
        "FROM log_head WHERE id = 1"
    )
    .bindparams(
        bindparam("txn", type_=LargeBinary()),
        bindparam("time", type_=UTCDateTime()),
        bindparam("macs", type_=postgresql.ARRAY(LargeBinary())),
    )
    .columns(
        seq=_HEAD["seq"].type,
        hash=_HEAD["hash"].type,
        time=_HEAD["time"].type,
        signature=_HEAD["signature"].type,
        ids=postgresql.ARRAY(BigInteger()),
    )
)


@dataclass(frozen=True)
class Batch:
    ids: list[int]  # the unsequenced rows it removed (sequenced, or copies of sequenced ones)
    events: list[Event]


_HEAD_AND_QUEUE = text(
    # One read, no lock: the head and the oldest unsequenced rows, each with whether an event
    # already came from it. The write below moves the head only from this head.
    "SELECT h.seq AS head_seq, h.hash AS head_hash, h.time AS head_time, "
    "h.signature AS head_signature, q.id, q.txn, q.position, q.time, q.type, q.actor, "
    "q.subjects, q.details, q.notice, q.mac, "
    "EXISTS (SELECT FROM events e WHERE e.origin = q.txn || int4send(q.position)) AS sequenced "
    f"FROM log_head h LEFT JOIN LATERAL (SELECT * FROM {TABLE} ORDER BY id LIMIT :limit) q "
    "ON true WHERE h.id = 1 ORDER BY q.id"
).columns(
    head_seq=BigInteger(),
    head_hash=LargeBinary(),
    head_time=UTCDateTime(),
    head_signature=LargeBinary(),
    time=UTCDateTime(),
    subjects=JSON(),
    details=JSON(),
    notice=JSON(),
)

_REST_OF = (
    text(
        "SELECT q.*, EXISTS (SELECT FROM events e WHERE e.origin = q.txn || int4send(q.position)) "
        f"AS sequenced FROM {TABLE} q WHERE q.txn = ANY(:txns) AND q.id > :after ORDER BY q.id"
    )
    .bindparams(bindparam("txns", type_=postgresql.ARRAY(LargeBinary())))
    .columns(
        time=UTCDateTime(),
        subjects=JSON(),
        details=JSON(),
        notice=JSON(),
    )
)

_WRITE = text(
    # One statement, so atomic without a transaction around it: the head moves only from the
    # head read (another sequencer's batch in between makes it write nothing), and the events,
    # their subject rows and notifications are inserted and the rows deleted only if it did.
    "WITH new_head AS (UPDATE log_head SET seq = :head_seq, hash = :head_hash, "
    "time = :head_time, signature = :head_signature "
    "WHERE id = 1 AND seq = :known_seq AND hash = :known_hash "
    "RETURNING 1), "
    "new_events AS (INSERT INTO events (seq, time, type, actor, subjects, details, prev_hash, "
    "hash, head_signature, origin) SELECT (e->>'seq')::bigint, (e->>'time')::timestamptz, "
    "e->>'type', e->>'actor', e->'subjects', e->'details', decode(e->>'prev_hash', 'hex'), "
    "decode(e->>'hash', 'hex'), decode(e->>'head_signature', 'hex'), "
    "decode(e->>'origin', 'hex') FROM json_array_elements(CAST(:events AS json)) e "
    "WHERE EXISTS (SELECT FROM new_head)), "
    "new_subjects AS (INSERT INTO event_subjects (subject, seq) "
    "SELECT s->>0, (s->>1)::bigint FROM json_array_elements(CAST(:subjects AS json)) s "
    "WHERE EXISTS (SELECT FROM new_head)), "
    "new_notifications AS (INSERT INTO notifications (notification_id, dedupe_key, kind, "
    "channel, target, event_seq, data, state, attempts, next_attempt_time, lease, "
    "create_time, deliver_time) SELECT n->>'notification_id', n->>'dedupe_key', n->>'kind', "
    "n->>'channel', n->>'target', (n->>'event_seq')::bigint, n->'data', n->>'state', "
    "(n->>'attempts')::int, (n->>'next_attempt_time')::timestamptz, NULL, "
    "(n->>'create_time')::timestamptz, NULL "
    "FROM json_array_elements(CAST(:notifications AS json)) n "
    "WHERE EXISTS (SELECT FROM new_head) ON CONFLICT (dedupe_key) DO NOTHING), "
    f"gone AS (DELETE FROM {TABLE} WHERE id = ANY(:removed) AND EXISTS (SELECT FROM new_head)) "
    f"SELECT count(pg_notify('{NOTIFY_CHANNEL}', :last_seq)) FROM new_head"
).bindparams(
    bindparam("head_time", type_=UTCDateTime()),
    bindparam("head_hash", type_=LargeBinary()),
    bindparam("head_signature", type_=LargeBinary()),
    bindparam("known_hash", type_=LargeBinary()),
    bindparam("removed", type_=postgresql.ARRAY(BigInteger())),
)

_DROP = text(f"DELETE FROM {TABLE} WHERE id = ANY(:removed)").bindparams(
    bindparam("removed", type_=postgresql.ARRAY(BigInteger()))
)


async def sequence_batch(
    conn: AsyncConnection | AsyncSession, sealer: Sealer, limit: int = BATCH
) -> Batch | None:
    """One batch: two statements, in the caller's transaction or each its own (autocommit).
    None when nothing was waiting; an empty batch when another sequencer moved the head
    meanwhile (nothing written: try again)."""
    rows = list((await conn.execute(_HEAD_AND_QUEUE, {"limit": limit})).all())
    if not rows:
        raise RuntimeError("the event log has no head row; run `airlock-server migrate`")
    head = rows[0]
    # Never chain (and so never sign) after a head this key did not sign.
    if not sealer.head_is_ours(head.head_seq, head.head_hash, head.head_time, head.head_signature):
        raise log_not_authentic(head.head_seq)
    rows = [r for r in rows if r.id is not None]
    if not rows:
        return None
    if len(rows) == limit:
        # A transaction's events together: the rest of those the limit cut.
        rows += (
            await conn.execute(
                _REST_OF, {"txns": list({r.txn for r in rows}), "after": rows[-1].id}
            )
        ).all()
    # Each transaction's events in a row, transactions in the order of their first id.
    first: dict[bytes, int] = {}
    for r in rows:
        first.setdefault(r.txn, r.id)
    rows.sort(key=lambda r: (first[r.txn], r.position))
    authentic = [r for r in rows if _authentic(sealer, r)]
    copies = [r.id for r in authentic if r.sequenced]
    if copies:
        # A copy of a row already sequenced (replayed by someone with the database): dropped.
        log.error("events.unsequenced_copy_dropped", count=len(copies))
    todo = [r for r in authentic if not r.sequenced]
    if not todo:
        if not copies:
            return None
        await conn.execute(_DROP, {"removed": copies})
        return Batch(copies, [])
    events = _chained(head, todo, sealer)
    removed = copies + [r.id for r in todo]
    moved = await conn.scalar(_WRITE, _write_params(todo, events, head, removed))
    if not moved:
        return Batch([], [])  # another sequencer's batch came first: nothing written
    return Batch(removed, events)


def _write_params(
    rows: Sequence[Row[Any]], events: Sequence[Event], head: Row[Any], removed: list[int]
) -> dict[str, object]:
    notifications = []
    for r, e in zip(rows, events, strict=True):
        if r.notice:
            targets = [(Channel(c), t, d) for c, t, d in r.notice["targets"]]
            for n in notification_rows(targets, r.notice["kind"], f"e{e.seq}", e.seq, r.time):
                notifications.append(
                    {
                        **n,
                        "next_attempt_time": format_time(r.time),
                        "create_time": format_time(r.time),
                    }
                )
    last = events[-1]
    return {
        **head_params(events),
        "known_seq": head.head_seq,
        "known_hash": head.head_hash,
        "events": json.dumps(
            [
                {
                    "seq": e.seq,
                    "time": format_time(e.time),
                    "type": e.type,
                    "actor": e.actor,
                    "subjects": list(e.subjects),
                    "details": e.details,
                    "prev_hash": e.prev_hash.hex(),
                    "hash": e.hash.hex(),
                    "head_signature": e.head_signature.hex() if e.head_signature else None,
                    "origin": origin_of(r.txn, r.position).hex(),
                }
                for r, e in zip(rows, events, strict=True)
            ]
        ),
        "subjects": json.dumps([[s, e.seq] for e in events for s in event_subjects(e)]),
        "notifications": json.dumps(notifications),
        "removed": removed,
        "last_seq": str(last.seq),
    }


def unsequenced_fields(r: Any) -> list[RowField]:
    """The fields an unsequenced row's MAC covers, from a row of the table."""
    return _fields(r.txn, r.position, r.time, r.type, r.actor, r.subjects, r.details, r.notice)


def _authentic(sealer: Sealer, r: Row[Any]) -> bool:
    if not sealer.keyed:
        return True  # a keyless server trusts its database
    if sealer.authentic(TABLE, str(r.id), unsequenced_fields(r), r.mac):
        return True
    # Left where it is, never signed: not ours (a forgery, or a replica with another key).
    log.error("events.unsequenced_not_authentic", id=r.id)
    return False


def _chained(head: Row[Any], rows: Sequence[Row[Any]], sealer: Sealer) -> list[Event]:
    """The rows as events after the head; the head signed after each transaction's last
    event (as when each transaction appended its own) and after the batch's."""
    events: list[Event] = []
    seq, prev, last_time = int(head.head_seq), bytes(head.head_hash), head.head_time
    for i, r in enumerate(rows):
        seq += 1
        t = r.time if last_time is None or r.time > last_time else last_time
        subjects = tuple(r.subjects)
        details = dict(r.details)
        h = event_hash(seq, t, r.type, r.actor, subjects, details, prev)
        event = Event(seq, t, r.type, r.actor, subjects, details, prev, h)
        if i == len(rows) - 1 or rows[i + 1].txn != r.txn:
            event = replace(event, head_signature=sealer.sign_head(seq, h, t) or b"")
        events.append(event)
        prev, last_time = h, t
    return events


class Sequencer:
    """One per process on PostgreSQL: the sequencer when it holds the lock, else a follower
    that waits for the holder's batches (and bids for the lock every POLL seconds).

    It runs in a thread of its own, on its own event loop and connection: its two round trips
    per batch do not queue behind the requests' turns of the server's loop (under load, a
    turn of the loop is tens of ms, and every request waits for the batch).

    A unit of work (on the server's loop): `expect(ids)` before its COMMIT (a batch right
    after it may take them), `committed(ids)` after it (or `forget(ids)` if it failed), then
    `wait(futures)`."""

    def __init__(self, database_url: str, sealer: Sealer, *, batch: int = BATCH) -> None:
        self._url = database_url
        self._sealer = sealer
        self._batch = batch
        # The server's loop: the waiters' futures, resolved there.
        self._main: asyncio.AbstractEventLoop | None = None
        self._waiters: dict[int, asyncio.Future[None]] = {}
        # Waited-for rows known committed: only these may be found gone by a look at the table
        # (a row not yet committed is not seen either). Shared with the thread: `_lock`.
        self._lock = threading.Lock()
        self._committed: set[int] = set()
        self._told = False  # a local commit the holder (maybe elsewhere) was not told of
        # The sequencer's thread, its loop and what wakes it.
        self._thread: threading.Thread | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._wake: asyncio.Event | None = None
        self._closed = False
        self.leading = False
        self.batches = 0  # for tests and metrics

    # --- what a unit of work calls (the server's loop) ---------------------------------------

    def expect(self, ids: Iterable[int]) -> list[asyncio.Future[None]]:
        loop = asyncio.get_running_loop()
        futures = []
        for i in ids:
            future = self._waiters.get(i)
            if future is None:
                future = self._waiters[i] = loop.create_future()
            futures.append(future)
        return futures

    def forget(self, ids: Iterable[int]) -> None:
        """The COMMIT failed (or its outcome is unknown): nobody waits for these."""
        for i in ids:
            future = self._waiters.pop(i, None)
            if future is not None and not future.done():
                future.cancel()

    def committed(self, ids: Iterable[int]) -> None:
        """These rows are committed: sequence them (or have them sequenced) now."""
        with self._lock:
            self._committed.update(i for i in ids if i in self._waiters)
            self._told = False
        self._main = asyncio.get_running_loop()  # where the waiters' futures live
        self._start()
        self._poke()

    async def wait(self, futures: Sequence[asyncio.Future[None]]) -> None:
        if not futures:
            return
        _, pending = await asyncio.wait(futures, timeout=WAIT_FOR_SEQ)
        if pending:
            log.warning("events.sequencing_late", waiting=len(pending), after_s=WAIT_FOR_SEQ)

    def start(self) -> None:
        """In the serving loop: bid for the lock now (rows a dead process left committed are
        sequenced without waiting for a commit here)."""
        self._start()

    def _start(self) -> None:
        if self._closed or (self._thread is not None and self._thread.is_alive()):
            return
        self._main = asyncio.get_running_loop()
        self._thread = threading.Thread(target=self._thread_main, name="airlock-sequencer")
        self._thread.daemon = True
        self._thread.start()

    def _poke(self) -> None:
        loop = self._loop
        if loop is not None:
            with contextlib.suppress(RuntimeError):  # its loop just closed
                loop.call_soon_threadsafe(self._heard)

    def _resolved(self, ids: list[int]) -> None:
        """On the server's loop: these rows are in the log."""
        with self._lock:
            self._committed.difference_update(ids)
        for i in ids:
            future = self._waiters.pop(i, None)
            if future is not None and not future.done():
                future.set_result(None)

    async def close(self) -> None:
        """Stop (after the batch in hand) and let the lock go."""
        self._closed = True
        thread = self._thread
        if thread is not None:
            self._poke()
            await asyncio.to_thread(thread.join, 10.0)
        for future in self._waiters.values():
            if not future.done():
                future.cancel()
        self._waiters.clear()
        with self._lock:
            self._committed.clear()

    # --- the sequencer's thread ----------------------------------------------------------------

    def _thread_main(self) -> None:
        loop = asyncio.new_event_loop()
        try:
            loop.run_until_complete(self._run(loop))
        finally:
            self._loop = None
            loop.close()

    def _tell(self, ids: list[int]) -> None:
        main = self._main
        if ids and main is not None:
            with contextlib.suppress(RuntimeError):  # the server's loop is gone
                main.call_soon_threadsafe(self._resolved, ids)

    async def _run(self, loop: asyncio.AbstractEventLoop) -> None:
        self._wake = asyncio.Event()
        self._loop = loop
        delay = RETRY_FIRST
        engine: AsyncEngine | None = None
        try:
            while not self._closed:
                try:
                    if engine is None:
                        engine = create_engine(self._url, pool_size=1)
                    async with engine.connect() as conn:
                        # Each statement its own transaction: a batch is two (sequence_batch).
                        await conn.execution_options(isolation_level="AUTOCOMMIT")
                        await self._serve(conn)
                    delay = RETRY_FIRST
                except Exception as exc:  # the sequencer outlives any connection
                    self.leading = False
                    level = log.warning if is_outage(exc) else log.error
                    level("events.sequencer_failed", error=f"{type(exc).__name__}: {exc}")
                    if engine is not None:
                        with contextlib.suppress(Exception):
                            await engine.dispose()
                        engine = None
                    await self._sleep(delay)
                    delay = min(delay * 2, RETRY_CAP)
        finally:
            self.leading = False
            if engine is not None:
                with contextlib.suppress(Exception):
                    await engine.dispose()

    async def _serve(self, conn: AsyncConnection) -> None:
        """Follow, bidding for the lock every POLL; once it is ours, sequence (until the
        connection is lost: the lock goes with it)."""
        raw = (await conn.get_raw_connection()).driver_connection
        assert raw is not None
        listening = False
        bid_at = 0.0
        while not self._closed:
            if time.monotonic() >= bid_at:
                bid_at = time.monotonic() + POLL
                if await conn.scalar(select(func.pg_try_advisory_lock(SEQUENCER_LOCK))):
                    break
                if not listening:
                    # A follower learns of the holder's batches (its own commits' seq).
                    await raw.add_listener(NOTIFY_CHANNEL, self._heard)
                    listening = True
            await self._follow(conn)
            await self._sleep(POLL)
        else:
            return
        if listening:
            await raw.remove_listener(NOTIFY_CHANNEL, self._heard)
        await raw.add_listener(PENDING_CHANNEL, self._heard)
        self.leading = True
        log.info("events.sequencing", lock=SEQUENCER_LOCK)
        while not self._closed:
            assert self._wake is not None
            self._wake.clear()
            if await self._sequence(conn) is None:
                # Waiters whose rows another sequencer took (before this one led).
                await self._settle(conn)
                await self._sleep(POLL)

    async def _sequence(self, conn: AsyncConnection) -> Batch | None:
        try:
            batch = await sequence_batch(conn, self._sealer, self._batch)
        except IntegrityError:
            # A copy of a sequenced row inserted between the check and the insert: next batch.
            return None
        if batch is not None and batch.ids:
            self.batches += 1
            self._tell(batch.ids)
        return batch

    async def _follow(self, conn: AsyncConnection) -> None:
        """Tell the holder of local commits; resolve the waiters whose rows are gone."""
        with self._lock:
            tell = bool(self._committed) and not self._told
            self._told = True
        if tell:
            await conn.execute(select(func.pg_notify(PENDING_CHANNEL, "")))
        await self._settle(conn)

    async def _settle(self, conn: AsyncConnection) -> None:
        with self._lock:
            asked = list(self._committed)
        if not asked:
            return
        left = set(await conn.scalars(select(_Q.id).where(_Q.id.in_(asked))))
        self._tell([i for i in asked if i not in left])

    def _heard(self, *_args: Any) -> None:
        if self._wake is not None:
            self._wake.set()

    async def _sleep(self, at_most: float) -> None:
        assert self._wake is not None
        if self._closed:
            return
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._wake.wait(), at_most)
        self._wake.clear()


async def sequence_pending(session: AsyncSession, sealer: Sealer, ids: Sequence[int]) -> None:
    """Without a Sequencer (a unit of work wired by hand): sequence in batches, in the
    session's own transactions, until the given rows are in the log."""
    wanted = set(ids)
    give_up = time.monotonic() + WAIT_FOR_SEQ
    while wanted and time.monotonic() < give_up:
        try:
            batch = await sequence_batch(session, sealer)
            await session.commit()
        except BaseException:
            await session.rollback()
            raise
        if batch is None:
            left = set(await session.scalars(select(_Q.id).where(_Q.id.in_(wanted))))
            await session.commit()
            if not left:
                return
            await asyncio.sleep(RETRY_FIRST)  # taken by a sequencer, not committed yet
            continue
        wanted.difference_update(batch.ids)
