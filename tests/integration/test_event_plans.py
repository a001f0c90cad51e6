"""ListEvents' pages stay the same size of work as the log grows: on a log of 20,000 events,
each filter's page is an ordered range of the index made for it, with no sort and no scan of the
table, and (PostgreSQL, EXPLAIN ANALYZE) it reads rows in proportion to the page, not to the log.
Asserted from the plans of the statements the reader sends, not from timings."""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from sqlalchemy import event, insert, text, update
from sqlalchemy.ext.asyncio import AsyncEngine

from airlock_server.app.ports import EventQuery
from airlock_server.domain.events import GENESIS_HASH, Event, NewEvent, chain
from airlock_server.domain.principals import SYSTEM, Principal, PrincipalKind
from airlock_server.persistence.db import create_engine, session_factory
from airlock_server.persistence.event_log import event_row
from airlock_server.persistence.events import SqlEventLogReader
from airlock_server.persistence.models import EventRecord, EventSubjectRecord, LogHeadRecord

pytestmark = pytest.mark.asyncio

EVENTS = 20_000
T0 = datetime(2026, 1, 1, tzinfo=UTC)
PAGE = 51  # ListEvents asks for its page size + 1
# Rows a page may read (index entries and table rows, all nodes): a few pages' worth. A plan in
# proportion to the log reads thousands here.
MAX_ROWS_READ = 12 * PAGE


# One event in 1,000 each: the rare type, family and actor kind of the filters below.
RARE = {
    0: ("team.created", Principal(PrincipalKind.ADMIN, "ops")),
    1: ("team.activated", SYSTEM),
    2: ("call.denied", Principal(PrincipalKind.AUDITOR, "au")),
}
COMMON = ("vote.cast", "vote.cast", "session.created", "session.approved", "grant.requested")


def _new(i: int) -> NewEvent:
    type_, actor = RARE.get(i % 1000, (COMMON[i % 5], Principal(PrincipalKind.APPROVER, "a")))
    return NewEvent(type_, actor, (f"session:s-{i // 5}", f"team:t-{i % 50}"), {"i": i})


def _log() -> Iterator[list[Event]]:
    """A valid chain in chunks, each event a millisecond after the one before."""
    seq, prev = 0, GENESIS_HASH
    while seq < EVENTS:
        chunk: list[Event] = []
        for i in range(seq, min(seq + 5000, EVENTS)):
            chunk += chain(i, prev, [_new(i)], T0 + timedelta(milliseconds=i))
            prev = chunk[-1].hash
        seq = chunk[-1].seq
        yield chunk


async def _fill(engine: AsyncEngine) -> None:
    async with engine.begin() as conn:
        for events in _log():
            await conn.execute(insert(EventRecord), [event_row(e) for e in events])
            await conn.execute(
                insert(EventSubjectRecord),
                [{"subject": s, "seq": e.seq} for e in events for s in e.subjects],
            )
            last = events[-1]
        await conn.execute(
            update(LogHeadRecord)
            .where(LogHeadRecord.id == 1)
            .values(seq=last.seq, hash=last.hash, time=last.time)
        )
    if engine.dialect.name == "postgresql":
        # As autovacuum would: the planner's statistics (committed, or they are rolled back).
        async with engine.begin() as conn:
            await conn.execute(text("ANALYZE events"))
            await conn.execute(text("ANALYZE event_subjects"))


MIDDLE = T0 + timedelta(milliseconds=EVENTS // 2)
END = T0 + timedelta(milliseconds=EVENTS - 10)
# A prefix of two parts: no type of the log has one; its page is the range of "team", empty.
NO_TYPE = EventQuery(type="team.update.")
# Each filter the bench runs, and the index its page must walk (None: pk_events may do, when
# most events match: a walk of it stops after a few pages' worth of rows).
FILTERS: list[tuple[EventQuery, str | None]] = [
    (EventQuery(), "pk_events"),
    (EventQuery(type="vote.cast"), None),
    (EventQuery(type="team.created"), "ix_events_type_seq"),
    (EventQuery(type="session."), None),
    (EventQuery(type="team."), "ix_events_family_seq"),
    (NO_TYPE, "ix_events_family_seq"),
    (EventQuery(actor_kind="auditor"), "ix_events_actor_kind_seq"),
    (EventQuery(actor="admin:ops"), "ix_events_actor_seq"),
    (EventQuery(subject="team:t-7"), "pk_event_subjects"),
    (EventQuery(start_time=MIDDLE, end_time=END), "ix_events_time_seq"),
    (EventQuery(start_time=MIDDLE, end_time=END, type="team."), "ix_events_family_seq"),
    (EventQuery(start_time=MIDDLE, subject="session:s-2100"), "pk_event_subjects"),
]


def _nodes(plan: dict[str, Any]) -> Iterator[dict[str, Any]]:
    yield plan
    for child in plan.get("Plans", []):
        yield from _nodes(child)


async def _postgres_plan(engine: AsyncEngine, sent: list[tuple[str, Any]]) -> list[str]:
    """The reader's statements replayed in one transaction (its planning settings with them),
    each SELECT of events explained as it ran: the problems found."""
    problems: list[str] = []
    async with engine.connect() as conn:
        for statement, params in sent:
            if "FROM events" not in statement and "FROM event_subjects" not in statement:
                await conn.exec_driver_sql(statement, params)  # set_config, log_head
                continue
            explained = await conn.exec_driver_sql(
                "EXPLAIN (ANALYZE, FORMAT JSON) " + statement, params
            )
            document = explained.scalar_one()
            plan = (json.loads(document) if isinstance(document, str) else document)[0]["Plan"]
            nodes = list(_nodes(plan))
            kinds = {n["Node Type"] for n in nodes}
            if kinds & {"Seq Scan", "Sort", "Incremental Sort", "Merge Join", "Hash Join"}:
                problems.append(f"{sorted(kinds)}")
            read = sum(
                (n.get("Actual Rows", 0) + n.get("Rows Removed by Filter", 0))
                * n.get("Actual Loops", 1)
                for n in nodes
                if "Scan" in n["Node Type"]
            )
            if read > MAX_ROWS_READ:
                problems.append(f"{read} rows read")
            problems += [f"uses {n['Index Name']}" for n in nodes if "Index Name" in n]
        await conn.rollback()
    return problems


async def _sqlite_plan(engine: AsyncEngine, sent: list[tuple[str, Any]]) -> list[str]:
    problems: list[str] = []
    async with engine.connect() as conn:
        for statement, params in sent:
            if "FROM events" not in statement and "FROM event_subjects" not in statement:
                continue
            plan = await conn.exec_driver_sql("EXPLAIN QUERY PLAN " + statement, params)
            for row in plan:
                detail = str(row._mapping["detail"])
                if detail.startswith("SCAN") or "TEMP B-TREE" in detail:
                    problems.append(detail)
                if " INDEX " in detail:
                    problems.append("uses " + detail.split(" INDEX ")[1].split(" ")[0])
    return problems


async def test_each_filter_walks_its_index_in_seq_order_and_stops_at_the_page(
    database_url: str,
) -> None:
    engine = create_engine(database_url)
    sent: list[tuple[str, Any]] = []

    @event.listens_for(engine.sync_engine, "before_cursor_execute")
    def _sent(_conn: Any, _cursor: Any, statement: str, params: Any, *_: Any) -> None:
        sent.append((statement, params))

    try:
        await _fill(engine)
        reader = SqlEventLogReader(session_factory(engine))
        postgres = engine.dialect.name == "postgresql"
        for query, index in FILTERS:
            # The first page, and one from the middle of the log (its bounds must bound every
            # index the plan walks, not only the one it orders by).
            for after in (0, EVENTS // 2):
                sent.clear()
                page = await reader.list_page(query, after, PAGE)
                assert bool(page) == (query != NO_TYPE), (query, after)
                assert [e.seq for e in page] == sorted(e.seq for e in page)
                statements = list(sent)
                if postgres:
                    found = await _postgres_plan(engine, statements)
                else:
                    found = await _sqlite_plan(engine, statements)
                problems = [p for p in found if not p.startswith("uses ")]
                assert problems == [], (query, after, found)
                used = {p.removeprefix("uses ") for p in found if p.startswith("uses ")}
                if index is not None:
                    expected = index
                    if not postgres:
                        expected = {
                            "pk_events": "sqlite_autoindex_events_1",
                            "pk_event_subjects": "sqlite_autoindex_event_subjects_1",
                        }.get(index, index)
                    assert expected in used, (query, after, found)
    finally:
        await engine.dispose()
