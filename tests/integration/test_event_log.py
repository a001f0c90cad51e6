"""The event log: the database refuses changes, and use cases write a gap-free hash chain."""

from __future__ import annotations

import asyncio

import asyncpg
import pytest
from integration.harness import POSTGRES_ONLY, Harness, HarnessFactory
from sqlalchemy import select, text
from sqlalchemy.exc import DBAPIError
from sqlalchemy.ext.asyncio import AsyncSession

from airlock_server.domain.errors import AlreadyExists
from airlock_server.domain.events import GENESIS_HASH, event_hash
from airlock_server.domain.principals import Principal, PrincipalKind
from airlock_server.persistence.models import EventRecord, LogHeadRecord

pytestmark = pytest.mark.asyncio


async def _write_some_events(app: Harness, admin: Principal) -> None:
    for i in range(3):
        await app.identities.create_approver(admin, f"ann-{i}", f"Ann {i}", "", "")
    await app.identities.register_account(admin, "111122223333", "prod", "")
    await app.identities.issue_credential(
        admin, PrincipalKind.APPROVER, "ann-0", "laptop", None, ""
    )


async def _events(app: Harness) -> list[EventRecord]:
    async with AsyncSession(app.engine) as s:
        return list(await s.scalars(select(EventRecord).order_by(EventRecord.seq)))


async def _snapshot(app: Harness) -> list[tuple[object, ...]]:
    async with app.engine.connect() as conn:
        rows = await conn.execute(text("SELECT seq, type, actor, hash FROM events ORDER BY seq"))
        return [tuple(r) for r in rows]


@pytest.mark.parametrize(
    "statement",
    [
        "UPDATE events SET type = 'forged' WHERE seq = 1",
        "UPDATE events SET details = '{}'",
        "DELETE FROM events WHERE seq = 2",
        "DELETE FROM events",
        "UPDATE event_subjects SET subject = 'forged'",
        "DELETE FROM event_subjects",
        "DELETE FROM log_head",
    ],
)
async def test_database_refuses_changes_to_the_log(
    app: Harness, admin: Principal, statement: str
) -> None:
    await _write_some_events(app, admin)
    before = await _snapshot(app)
    subjects_before = await app.count("event_subjects")
    assert len(before) >= 5

    with pytest.raises(DBAPIError, match="append-only"):
        async with app.engine.begin() as conn:
            await conn.execute(text(statement))

    assert await _snapshot(app) == before
    assert await app.count("event_subjects") == subjects_before
    assert await app.count("log_head") == 1


@pytest.mark.parametrize("backend", POSTGRES_ONLY)
async def test_postgres_refuses_truncate(app: Harness, admin: Principal) -> None:
    await _write_some_events(app, admin)
    before = await _snapshot(app)
    for table in ("events", "event_subjects", "log_head"):
        with pytest.raises(DBAPIError, match="append-only"):
            async with app.engine.begin() as conn:
                await conn.execute(text(f"TRUNCATE {table} CASCADE"))
    assert await _snapshot(app) == before


async def _chain(app: Harness) -> list[EventRecord]:
    """The log's events, checked: seq gap-free from 1, each hash exact and chained to the one
    before, the head row on the last."""
    events = await _events(app)
    assert [e.seq for e in events] == list(range(1, len(events) + 1))
    prev = GENESIS_HASH
    for e in events:
        assert e.prev_hash == prev, f"seq {e.seq} does not point at its predecessor"
        expected = event_hash(e.seq, e.time, e.type, e.actor, e.subjects, e.details, e.prev_hash)
        assert e.hash == expected, f"seq {e.seq} hash does not match its content"
        prev = e.hash
    async with AsyncSession(app.engine) as s:
        head = await s.get(LogHeadRecord, 1)
    assert head is not None
    assert (head.seq, head.hash) == (events[-1].seq, events[-1].hash)
    return events


async def test_use_cases_write_a_gap_free_hash_chain(app: Harness, admin: Principal) -> None:
    await _write_some_events(app, admin)
    events = await _chain(app)
    assert events[0].type == "server.bootstrapped"
    types = [e.type for e in events]
    assert types.count("approver.created") == 3
    assert "account.registered" in types
    assert "credential.issued" in types
    # No secret in the log: events name credentials, never tokens or their hashes.
    for e in events:
        assert "token" not in str(e.details).lower()


async def test_replicas_appending_in_turn_and_at_once_keep_one_chain(
    harnesses: HarnessFactory, app: Harness, admin: Principal
) -> None:
    """PostgreSQL: two processes on one database, one of them the sequencer (the other waits
    for its batches); in turn and at once, one chain, in commit order."""
    other = harnesses()
    for i in range(4):
        await (app if i % 2 else other).identities.create_approver(admin, f"turn-{i}", "T", "", "")
    await asyncio.gather(
        *(
            h.identities.create_approver(admin, f"once-{i}", "O", "", "")
            for i, h in enumerate([app, other] * 4)
        )
    )
    events = await _chain(app)
    assert [e.type for e in events].count("approver.created") == 12


async def test_a_failed_use_case_appends_nothing(app: Harness, admin: Principal) -> None:
    await _write_some_events(app, admin)
    before = await _snapshot(app)
    with pytest.raises(AlreadyExists):
        await app.identities.create_approver(admin, "ann-0", "Ann again", "", "")
    assert await _snapshot(app) == before


@pytest.mark.parametrize("backend", POSTGRES_ONLY)
async def test_postgres_notifies_the_last_seq_at_commit(app: Harness, admin: Principal) -> None:
    """Each committed append notifies `airlock_events` with its last seq (for WatchEvents)."""
    got: asyncio.Queue[str] = asyncio.Queue()
    conn = await asyncpg.connect(app.url)
    try:
        await conn.add_listener("airlock_events", lambda *args: got.put_nowait(args[-1]))
        await app.identities.create_approver(admin, "nora", "Nora", "", "")
        seq = await app.count("events")
        assert await asyncio.wait_for(got.get(), 30) == str(seq)
        assert got.empty()
    finally:
        await conn.close()
