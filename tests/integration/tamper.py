"""What an attacker with the database's password does to the event log, for tests.

Import it as `from integration.tamper import ...`. Each helper works on SQLite and PostgreSQL;
`drop_guards` first removes the triggers migration 0002 made (nothing else can change the log).
"""

from __future__ import annotations

from sqlalchemy import delete, select, text, update
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession

from airlock_server.domain.events import event_hash
from airlock_server.persistence.models import EventRecord, EventSubjectRecord, LogHeadRecord

LOG_TABLES = ("events", "event_subjects", "log_head")


async def drop_guards(engine: AsyncEngine) -> None:
    async with engine.begin() as conn:
        if engine.dialect.name == "postgresql":
            rows = await conn.execute(
                text(
                    "SELECT tgname, relname FROM pg_trigger JOIN pg_class ON pg_class.oid = "
                    "tgrelid WHERE NOT tgisinternal AND relname IN "
                    "('events', 'event_subjects', 'log_head')"
                )
            )
            for name, table in list(rows):
                await conn.execute(text(f'DROP TRIGGER "{name}" ON "{table}"'))
        else:
            rows = await conn.execute(
                text(
                    "SELECT name FROM sqlite_master WHERE type = 'trigger' AND tbl_name IN "
                    "('events', 'event_subjects', 'log_head')"
                )
            )
            for (name,) in list(rows):
                await conn.execute(text(f'DROP TRIGGER "{name}"'))


async def change_one_byte(engine: AsyncEngine, seq: int) -> None:
    """The last character of the event's type, upper-cased: one byte of its content."""
    async with AsyncSession(engine) as s, s.begin():
        record = await s.get(EventRecord, seq)
        assert record is not None
        changed = record.type[:-1] + record.type[-1].upper()
        assert changed != record.type
        await s.execute(update(EventRecord).where(EventRecord.seq == seq).values(type=changed))


async def delete_event(engine: AsyncEngine, seq: int) -> None:
    async with AsyncSession(engine) as s, s.begin():
        await s.execute(delete(EventSubjectRecord).where(EventSubjectRecord.seq == seq))
        await s.execute(delete(EventRecord).where(EventRecord.seq == seq))


async def swap_events(engine: AsyncEngine, a: int, b: int) -> None:
    """Every column but seq exchanged between two rows: the two events change places."""
    columns = ("time", "type", "actor", "subjects", "details", "prev_hash", "hash")
    async with AsyncSession(engine) as s, s.begin():
        ra, rb = await s.get(EventRecord, a), await s.get(EventRecord, b)
        assert ra is not None
        assert rb is not None
        va = {c: getattr(ra, c) for c in columns}
        vb = {c: getattr(rb, c) for c in columns}
        await s.execute(update(EventRecord).where(EventRecord.seq == a).values(**vb))
        await s.execute(update(EventRecord).where(EventRecord.seq == b).values(**va))


async def truncate_after(engine: AsyncEngine, seq: int, *, move_head: bool) -> None:
    """Remove every event after `seq`; with move_head, also rewrite the head row to match."""
    async with AsyncSession(engine) as s, s.begin():
        await s.execute(delete(EventSubjectRecord).where(EventSubjectRecord.seq > seq))
        await s.execute(delete(EventRecord).where(EventRecord.seq > seq))
        if move_head:
            last = await s.get(EventRecord, seq)
            assert last is not None
            await s.execute(
                update(LogHeadRecord).where(LogHeadRecord.id == 1).values(seq=seq, hash=last.hash)
            )


async def rewrite_from(engine: AsyncEngine, seq: int) -> None:
    """Change one event and recompute every hash after it: a consistent, forged chain that
    only a checkpoint kept elsewhere reveals."""
    async with AsyncSession(engine) as s, s.begin():
        records = list(
            await s.scalars(
                select(EventRecord).where(EventRecord.seq >= seq).order_by(EventRecord.seq)
            )
        )
        before = await s.get(EventRecord, seq - 1)
        prev = before.hash if before is not None else bytes(32)
        for i, r in enumerate(records):
            type_ = r.type + "x" if i == 0 else r.type
            h = event_hash(r.seq, r.time, type_, r.actor, r.subjects, r.details, prev)
            await s.execute(
                update(EventRecord)
                .where(EventRecord.seq == r.seq)
                .values(type=type_, prev_hash=prev, hash=h)
            )
            prev = h
        await s.execute(update(LogHeadRecord).where(LogHeadRecord.id == 1).values(hash=prev))
