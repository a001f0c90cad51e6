"""Appending to the hash-chained event log, inside the business transaction."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Sequence
from dataclasses import replace
from datetime import datetime
from typing import Any

import asyncpg
import structlog
from sqlalchemy import (
    bindparam,
    insert,
    select,
    update,
)
from sqlalchemy.engine import Row, make_url
from sqlalchemy.ext.asyncio import AsyncSession

from airlock_server.domain.events import (
    EVENT_TYPES,
    GENESIS_HASH,
    Event,
    NewEvent,
    chain,
)
from airlock_server.domain.integrity import log_not_authentic
from airlock_server.persistence.models import (
    EventRecord,
    LogHeadRecord,
)
from airlock_server.persistence.seal import Sealer

NOTIFY_CHANNEL = "airlock_events"


def event_row(e: Event) -> dict[str, Any]:
    """The events table's row of a chained event (the bench's bulk fill writes the same)."""
    return {
        "seq": e.seq,
        "time": e.time,
        "type": e.type,
        "actor": e.actor,
        "subjects": list(e.subjects),
        "details": dict(e.details),
        "prev_hash": e.prev_hash,
        "hash": e.hash,
        "head_signature": e.head_signature or None,
    }


async def append_events(
    session: AsyncSession,
    new: Sequence[NewEvent],
    now: datetime,
    sealer: Sealer | None = None,
) -> list[Event]:
    """Lock the head row, check it is ours, chain the events after it, sign and move the head.
    SQLite's append, in the use case's transaction (one writer at a time anyway); PostgreSQL's
    use cases commit their events unsequenced instead (persistence/sequencer.py), whose batch
    write also notifies the replicas' listeners: this append notifies no one.

    With a log key (`sealer.keyed`) the head row must carry this key's signature (or be the
    genesis): a head someone else wrote is refused (FAILED_PRECONDITION LOG_NOT_AUTHENTIC), so
    the server never chains, and so never signs, after events it did not append. The new head
    is signed once per transaction (Ed25519, the checkpoint message with the last event's seq,
    hash and time), kept on that event's row and on the head row.

    The lock is held to commit, so `seq` is gap-free and in commit order on any number of
    replicas; it is taken last in the transaction to hold it as briefly as possible.

    `time` is `now`, or the last event's time when that is later (`now` was read before the
    lock was waited for, or on a replica whose clock is behind): time never decreases along
    seq, which lets ListEvents turn a time range into a range of seq.
    """
    unknown = sorted({e.type for e in new}.difference(EVENT_TYPES))
    if unknown:
        # The log's types are a closed set (docs/event-log.md). A programming error, caught by
        # any test of the use case.
        raise ValueError(f"event types {unknown} are not in EVENT_TYPES (domain/events.py)")
    sealer = sealer or _UNSEALED
    head = (await session.execute(_LOCKED_HEAD)).first()
    if head is None:
        raise RuntimeError("the event log has no head row; run `airlock-server migrate`")
    if not sealer.head_is_ours(head.seq, head.hash, head.time, head.signature):
        raise log_not_authentic(head.seq)
    events = _chained(head.seq, head.hash, head.time, new, now, sealer)
    # Fixed statements, the rows an executemany: one compiled statement whatever the count.
    await session.execute(_INSERT_EVENTS, [event_row(e) for e in events])
    subjects = _subject_rows(events)
    if subjects:
        await session.execute(_INSERT_SUBJECTS, subjects)
    await session.execute(_MOVE_HEAD, head_params(events))
    return events


_LOCKED_HEAD = (
    select(LogHeadRecord.seq, LogHeadRecord.hash, LogHeadRecord.time, LogHeadRecord.signature)
    .where(LogHeadRecord.id == 1)
    .with_for_update()
)
# Core tables, not the mapped classes: an ORM bulk insert is the heavier path.
_TABLES = EventRecord.metadata.tables
_INSERT_EVENTS = insert(_TABLES["events"])
_INSERT_SUBJECTS = insert(_TABLES["event_subjects"])
_MOVE_HEAD = (
    update(_TABLES["log_head"])
    .where(_TABLES["log_head"].c.id == 1)
    .values(
        seq=bindparam("head_seq"),
        hash=bindparam("head_hash"),
        time=bindparam("head_time"),
        signature=bindparam("head_signature"),
    )
)


def head_params(events: Sequence[Event]) -> dict[str, object]:
    """The head after the events, as the appends' statements bind it."""
    last = events[-1]
    return {
        "head_seq": last.seq,
        "head_hash": last.hash,
        "head_time": last.time,
        "head_signature": last.head_signature or None,
    }


def _chained(
    seq: int,
    hash_: bytes,
    time: datetime | None,
    new: Sequence[NewEvent],
    now: datetime,
    sealer: Sealer,
) -> list[Event]:
    """The events chained after the head, the last one carrying the signed new head."""
    if time is not None and time > now:
        now = time
    events = chain(seq, hash_, new, now)
    last = events[-1]
    signature = sealer.sign_head(last.seq, last.hash, last.time)
    if signature is not None:
        events[-1] = replace(last, head_signature=signature)
    return events


def _subject_rows(events: Sequence[Event]) -> list[dict[str, Any]]:
    return [{"subject": s, "seq": e.seq} for e in events for s in event_subjects(e)]


_UNSEALED = Sealer()


def event_subjects(e: Event) -> list[str]:
    """The event_subjects rows of an event: derived from its chained subjects, each once
    (VerifyLog checks the table against this)."""
    return list(dict.fromkeys(e.subjects))


GENESIS = {"id": 1, "seq": 0, "hash": GENESIS_HASH}


log = structlog.get_logger("airlock.events")


def to_event(r: EventRecord | Row[Any]) -> Event:
    """An event of its row: the mapped record, or a row of the events table's columns."""
    return Event(
        r.seq,
        r.time,
        r.type,
        r.actor,
        tuple(r.subjects),
        dict(r.details),
        r.prev_hash,
        r.hash,
        r.head_signature or b"",
    )


class PollSignal:
    """SQLite (one file, no notifications): a commit in this process wakes followers at once
    (`committed`, called by the unit of work); other processes' commits are seen by looking
    again every `interval` seconds."""

    def __init__(self, interval: float = 0.25) -> None:
        self._interval = interval
        self._latest = 0
        self._wakeup: asyncio.Event | None = None

    def committed(self, seq: int) -> None:
        self._latest = max(self._latest, seq)
        if self._wakeup is not None:
            self._wakeup.set()
        self._wakeup = None

    async def wait(self, after_seq: int, within: float) -> None:
        if self._latest > after_seq:
            return
        if self._wakeup is None:
            self._wakeup = asyncio.Event()
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._wakeup.wait(), min(self._interval, within))

    async def close(self) -> None:
        self.committed(self._latest)


class PgListenSignal:
    """PostgreSQL: one LISTEN connection per server process, shared by every follower.

    Appenders `pg_notify('airlock_events', seq)` in their transaction, so the notification
    arrives at commit, from every replica. Followers wait on an asyncio.Event that each
    notification sets (and replaces); the caller's `within` is the slow safety poll, and a lost
    connection falls back to it until the next wait reconnects.
    """

    def __init__(self, database_url: str) -> None:
        self._dsn = (
            make_url(database_url)
            .set(drivername="postgresql")
            .render_as_string(hide_password=False)
        )
        self._conn: asyncpg.Connection | None = None
        self._latest = 0
        self._wakeup: asyncio.Event | None = None
        self._connecting: asyncio.Lock | None = None
        self._closed = False

    @property
    def listening(self) -> bool:
        return self._conn is not None and not self._conn.is_closed()

    def _notify(self, _conn: Any, _pid: int, _channel: str, payload: str) -> None:
        with contextlib.suppress(ValueError):
            self._latest = max(self._latest, int(payload))
        self._wake()

    def _wake(self) -> None:
        if self._wakeup is not None:
            self._wakeup.set()
        self._wakeup = asyncio.Event()

    def _lost(self, _conn: Any) -> None:
        self._conn = None
        self._wake()

    async def _connect(self) -> bool:
        """True when a new connection was made (notifications before it were not seen)."""
        if self._conn is not None and not self._conn.is_closed():
            return False
        if self._connecting is None:
            self._connecting = asyncio.Lock()
        async with self._connecting:
            if self._conn is not None and not self._conn.is_closed():
                return False
            conn = await asyncpg.connect(self._dsn)
            await conn.add_listener(NOTIFY_CHANNEL, self._notify)
            conn.add_termination_listener(self._lost)
            self._conn = conn
            log.info("events.listening", channel=NOTIFY_CHANNEL)
            return True

    async def wait(self, after_seq: int, within: float) -> None:
        if self._closed:
            await asyncio.sleep(within)
            return
        try:
            if await self._connect():
                return
        except (OSError, asyncpg.PostgresError) as exc:
            log.warning("events.listen_failed", error=f"{type(exc).__name__}: {exc}")
            await asyncio.sleep(min(within, 1.0))
            return
        if self._latest > after_seq:
            return
        if self._wakeup is None:
            self._wakeup = asyncio.Event()
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._wakeup.wait(), within)

    async def close(self) -> None:
        self._closed = True
        conn, self._conn = self._conn, None
        if conn is not None:
            with contextlib.suppress(Exception):
                await conn.close()
        self._wake()
