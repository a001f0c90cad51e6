"""Appending to the hash-chained event log, inside the business transaction."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime

from sqlalchemy import insert, select, text, update
from sqlalchemy.ext.asyncio import AsyncSession

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
    head = await session.scalar(
        select(LogHeadRecord).where(LogHeadRecord.id == 1).with_for_update()
    )
    if head is None:
        raise RuntimeError("the event log has no head row; run `airlock-server migrate`")
    events = chain(head.seq, head.hash, new, now)
    await session.execute(
        insert(EventRecord),
        [
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
        ],
    )
    subjects = [{"subject": s, "seq": e.seq} for e in events for s in dict.fromkeys(e.subjects)]
    if subjects:
        await session.execute(insert(EventSubjectRecord), subjects)
    last = events[-1]
    await session.execute(
        update(LogHeadRecord).where(LogHeadRecord.id == 1).values(seq=last.seq, hash=last.hash)
    )
    if session.get_bind().dialect.name == "postgresql":
        # Delivered at commit to every replica's listener (WatchEvents).
        await session.execute(
            text("SELECT pg_notify(:channel, :seq)"),
            {"channel": NOTIFY_CHANNEL, "seq": str(last.seq)},
        )
    return events


GENESIS = {"id": 1, "seq": 0, "hash": GENESIS_HASH}
