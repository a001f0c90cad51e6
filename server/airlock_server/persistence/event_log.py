"""Appending to the hash-chained event log, inside the business transaction."""

from __future__ import annotations

import asyncio
import contextlib
import functools
from collections.abc import Sequence
from datetime import datetime
from typing import Any

import asyncpg
import structlog
from sqlalchemy import (
    Select,
    String,
    bindparam,
    func,
    insert,
    or_,
    select,
    text,
    update,
)
from sqlalchemy.engine import make_url
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker
from sqlalchemy.sql import Executable

from airlock_server.app.ports import EventQuery
from airlock_server.domain.events import GENESIS_HASH, Event, NewEvent, chain
from airlock_server.persistence.models import EventRecord, EventSubjectRecord, LogHeadRecord

NOTIFY_CHANNEL = "airlock_events"


async def append_events(
    session: AsyncSession, new: Sequence[NewEvent], now: datetime
) -> list[Event]:
    """Lock the head row, chain the events after it, move the head.

    The lock is held to commit, so `seq` is gap-free and in commit order on any number of
    replicas; it is taken last in the transaction to hold it as briefly as possible.
    """
    head = (
        await session.execute(
            select(LogHeadRecord.seq, LogHeadRecord.hash)
            .where(LogHeadRecord.id == 1)
            .with_for_update()
        )
    ).first()
    if head is None:
        raise RuntimeError("the event log has no head row; run `airlock-server migrate`")
    events = chain(head.seq, head.hash, new, now)
    rows = [
        {
            "seq": e.seq,
            "time": e.time,
            "type": e.type,
            "actor": e.actor,
            "subjects": list(e.subjects),
            "details": dict(e.details),
            "prev_hash": e.prev_hash,
            "hash": e.hash,
        }
        for e in events
    ]
    subjects = [{"subject": s, "seq": e.seq} for e in events for s in dict.fromkeys(e.subjects)]
    last = events[-1]
    move_head = (
        update(LogHeadRecord).where(LogHeadRecord.id == 1).values(seq=last.seq, hash=last.hash)
    )
    if session.get_bind().dialect.name == "postgresql":
        # One round trip under the lock: the inserts, the head and the notification (delivered
        # at commit to every replica's listener, WatchEvents) as data-modifying CTEs.
        params: dict[str, object] = {"last_seq": str(last.seq), "seq": last.seq, "hash": last.hash}
        for i, row in enumerate(rows):
            params.update({f"e{i}_{k}": v for k, v in row.items()})
        for i, row in enumerate(subjects):
            params.update({f"s{i}_{k}": v for k, v in row.items()})
        await session.execute(_pg_append(len(rows), len(subjects)), params)
        return events
    await session.execute(insert(EventRecord), rows)
    if subjects:
        await session.execute(insert(EventSubjectRecord), subjects)
    await session.execute(move_head)
    return events


_EVENT_COLUMNS = ("seq", "time", "type", "actor", "subjects", "details", "prev_hash", "hash")
_SUBJECT_COLUMNS = ("subject", "seq")


@functools.lru_cache(maxsize=256)
def _pg_append(n_events: int, n_subjects: int) -> Executable:
    """The PostgreSQL append of n events with n subjects, built once per shape.

    Plain SQL text with typed parameters, not an insert() of several VALUES rows: SQLAlchemy
    cannot cache a multi-row VALUES construct and compiled it again on every append (≈ 1 ms
    of CPU); a text() statement is compiled once per shape and then served from the cache.
    """
    events = EventRecord.__table__.c
    subjects = EventSubjectRecord.__table__.c
    binds = [
        bindparam("seq", type_=events["seq"].type),
        bindparam("hash", type_=events["hash"].type),
    ]
    rows = []
    for i in range(n_events):
        names = [f"e{i}_{c}" for c in _EVENT_COLUMNS]
        binds += [
            bindparam(n, type_=events[c].type) for n, c in zip(names, _EVENT_COLUMNS, strict=True)
        ]
        rows.append("(" + ", ".join(f":{n}" for n in names) + ")")
    sql = (
        f"WITH new_events AS (INSERT INTO events ({', '.join(_EVENT_COLUMNS)}) "
        f"VALUES {', '.join(rows)}), "
        "new_head AS (UPDATE log_head SET seq = :seq, hash = :hash WHERE id = 1)"
    )
    if n_subjects:
        rows = []
        for i in range(n_subjects):
            names = [f"s{i}_{c}" for c in _SUBJECT_COLUMNS]
            binds += [
                bindparam(n, type_=subjects[c].type)
                for n, c in zip(names, _SUBJECT_COLUMNS, strict=True)
            ]
            rows.append("(" + ", ".join(f":{n}" for n in names) + ")")
        sql += (
            f", new_subjects AS (INSERT INTO event_subjects ({', '.join(_SUBJECT_COLUMNS)}) "
            f"VALUES {', '.join(rows)})"
        )
    sql += f" SELECT pg_notify('{NOTIFY_CHANNEL}', :last_seq)"
    binds.append(bindparam("last_seq", type_=String()))
    return text(sql).bindparams(*binds)


GENESIS = {"id": 1, "seq": 0, "hash": GENESIS_HASH}


log = structlog.get_logger("airlock.events")


def to_event(r: EventRecord) -> Event:
    return Event(
        r.seq, r.time, r.type, r.actor, tuple(r.subjects), dict(r.details), r.prev_hash, r.hash
    )


class SqlEventLogReader:
    """Reads committed events, each call in a short read-only transaction of its own."""

    def __init__(self, sessions: async_sessionmaker[AsyncSession]) -> None:
        self._sessions = sessions

    async def _all(self, stmt: Select[Any]) -> list[Event]:
        async with self._sessions() as s:
            return [to_event(r) for r in await s.scalars(stmt)]

    async def list_page(self, query: EventQuery, after_seq: int, limit: int) -> list[Event]:
        stmt = select(EventRecord).where(EventRecord.seq > after_seq)
        if query.subject:
            # The (subject, seq) primary key of event_subjects serves this in seq order.
            stmt = stmt.join(
                EventSubjectRecord,
                (EventSubjectRecord.seq == EventRecord.seq)
                & (EventSubjectRecord.subject == query.subject),
            )
        if query.type.endswith("."):
            stmt = stmt.where(EventRecord.type.startswith(query.type, autoescape=True))
        elif query.type:
            stmt = stmt.where(EventRecord.type == query.type)
        if query.actor:
            stmt = stmt.where(EventRecord.actor == query.actor)
        if query.actor_kind:
            stmt = stmt.where(
                or_(
                    EventRecord.actor == query.actor_kind,
                    EventRecord.actor.startswith(query.actor_kind + ":", autoescape=True),
                )
            )
        if query.start_time is not None:
            stmt = stmt.where(EventRecord.time >= query.start_time)
        if query.end_time is not None:
            stmt = stmt.where(EventRecord.time < query.end_time)
        return await self._all(stmt.order_by(EventRecord.seq).limit(limit))

    async def range(self, from_seq: int, to_seq: int, limit: int) -> list[Event]:
        stmt = select(EventRecord).where(EventRecord.seq >= from_seq)
        if to_seq:
            stmt = stmt.where(EventRecord.seq <= to_seq)
        return await self._all(stmt.order_by(EventRecord.seq).limit(limit))

    async def get(self, seq: int) -> Event | None:
        found = await self._all(select(EventRecord).where(EventRecord.seq == seq))
        return found[0] if found else None

    async def last(self) -> Event | None:
        async with self._sessions() as s:
            top = await s.scalar(select(func.max(EventRecord.seq)))
        return await self.get(int(top)) if top is not None else None

    async def head_seq(self) -> int:
        async with self._sessions() as s:
            value = await s.scalar(select(LogHeadRecord.seq).where(LogHeadRecord.id == 1))
        return int(value or 0)


class PollSignal:
    """SQLite (one file, no notifications): followers look again every `interval` seconds."""

    def __init__(self, interval: float = 0.25) -> None:
        self._interval = interval

    async def wait(self, after_seq: int, within: float) -> None:
        await asyncio.sleep(min(self._interval, within))

    async def close(self) -> None:
        return None


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
