"""Appending to the hash-chained event log, inside the business transaction."""

from __future__ import annotations

import functools
from collections.abc import Sequence
from datetime import datetime

from sqlalchemy import String, bindparam, func, insert, literal, select, update
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.sql import Executable

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
_SUBJECT_COLUMNS = ("subject", "seq")


@functools.lru_cache(maxsize=256)
def _pg_append(n_events: int, n_subjects: int) -> Executable:
    """The PostgreSQL append of n events with n subjects, built once per shape."""
    events = EventRecord.__table__.c
    subjects = EventSubjectRecord.__table__.c
    ctes = [
        insert(EventRecord)
        .values(
            [
                {c: bindparam(f"e{i}_{c}", type_=events[c].type) for c in _EVENT_COLUMNS}
                for i in range(n_events)
            ]
        )
        .cte("new_events"),
        update(LogHeadRecord)
        .where(LogHeadRecord.id == 1)
        .values(seq=bindparam("seq"), hash=bindparam("hash"))
        .cte("new_head"),
    ]
    if n_subjects:
        ctes.append(
            insert(EventSubjectRecord)
            .values(
                [
                    {c: bindparam(f"s{i}_{c}", type_=subjects[c].type) for c in _SUBJECT_COLUMNS}
                    for i in range(n_subjects)
                ]
            )
            .cte("new_subjects")
        )
    return select(
        func.pg_notify(literal(NOTIFY_CHANNEL), bindparam("last_seq", type_=String()))
    ).add_cte(*ctes)


GENESIS = {"id": 1, "seq": 0, "hash": GENESIS_HASH}
