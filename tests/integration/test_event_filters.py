"""ListEvents' filters on SQLite and PostgreSQL: every filter, alone and combined, paged by seq,
gives what a plain walk of the whole log gives; time never decreases along seq; the log takes
only the known event types; migration 0006 carries an existing log over."""

from __future__ import annotations

import itertools
import random
from datetime import UTC, datetime, timedelta

import pytest
from integration.harness import Harness
from sqlalchemy import insert, select, text

from airlock_server.app.audit import AuditService
from airlock_server.app.ports import EventQuery
from airlock_server.domain.events import Event, NewEvent, family_types, type_matches
from airlock_server.domain.principals import SYSTEM, Principal, PrincipalKind
from airlock_server.persistence.db import create_engine, session_factory
from airlock_server.persistence.events import SqlEventLogReader
from airlock_server.persistence.migrate import upgrade
from airlock_server.persistence.models import ActorKind, EventRecord, LogHeadRecord

pytestmark = pytest.mark.asyncio

READER = Principal(PrincipalKind.AUDITOR, "filters")
ADMIN = Principal(PrincipalKind.ADMIN, "ops")
AUDITOR = Principal(PrincipalKind.AUDITOR, "compliance")
ACCOUNT = Principal(PrincipalKind.ACCOUNT, "111122223333")
# (type, actor): the team. family spread over several types and interleaved with the rest.
KINDS = [
    ("vote.cast", Principal(PrincipalKind.APPROVER, "ann")),
    ("vote.cast", Principal(PrincipalKind.APPROVER, "bob")),
    ("session.created", ACCOUNT),
    ("session.approved", SYSTEM),
    ("session.expired", SYSTEM),
    ("team.created", ADMIN),
    ("team.activated", SYSTEM),
    ("team.shared", ADMIN),
    ("team.deleted", SYSTEM),
    ("grant.requested", ACCOUNT),
    ("call.denied", AUDITOR),
    ("call.denied", Principal(PrincipalKind.AUDITOR, "")),
]


async def _fill(app: Harness, transactions: int) -> list[Event]:
    """Transactions of 1-3 events through the unit of work; the clock moves by 0, 1 s or 1 min,
    and now and then back by 30 s (a replica whose clock is behind)."""
    rnd = random.Random(4)
    for n in range(transactions):
        step = rnd.choice([timedelta(0), timedelta(seconds=1), timedelta(minutes=1)])
        app.clock.advance(timedelta(seconds=-30) if n % 9 == 8 else step)
        async with app.deps.uow() as uow:
            for _ in range(rnd.randint(1, 3)):
                type_, actor = rnd.choice(KINDS)
                subjects = (f"team:t-{rnd.randint(0, 3)}", f"session:s-{n}")
                uow.record(NewEvent(type_, actor, subjects, {"n": n}))
            await uow.commit()
    return await _read(app.audit, EventQuery(), 1000)


async def _read(audit: AuditService, query: EventQuery, size: int, after: int = 0) -> list[Event]:
    """Every page, following the tokens."""
    out: list[Event] = []
    token = ""
    while True:
        page = await audit.list_events(READER, query, after, size, token)
        assert len(page.items) <= size
        out.extend(page.items)
        token = page.next_page_token
        if not token:
            return out


def _expected(log: list[Event], q: EventQuery, after: int = 0) -> list[int]:
    """The filters' meaning (docs/event-log.md), walking the whole log."""
    return [
        e.seq
        for e in log
        if e.seq > after
        and type_matches(q.type, e.type)
        and (not q.actor or e.actor == q.actor)
        and (not q.actor_kind or e.actor.split(":", 1)[0] == q.actor_kind)
        and (not q.subject or q.subject in e.subjects)
        and (q.start_time is None or e.time >= q.start_time)
        and (q.end_time is None or e.time < q.end_time)
    ]


async def test_time_never_decreases_along_seq(app: Harness) -> None:
    log = await _fill(app, 30)
    assert [e.seq for e in log] == list(range(1, len(log) + 1))
    assert all(a.time <= b.time for a, b in itertools.pairwise(log))
    async with app.engine.connect() as conn:
        head = (await conn.execute(select(LogHeadRecord.seq, LogHeadRecord.time))).one()
    assert (head.seq, head.time) == (log[-1].seq, log[-1].time)

    # A clock an hour behind the log: the event takes the last event's time, not the clock's.
    app.clock.advance(timedelta(hours=-1))
    async with app.deps.uow() as uow:
        uow.record(NewEvent("team.created", ADMIN, ("team:late",)))
        await uow.commit()
    late = (await _read(app.audit, EventQuery(subject="team:late"), 5))[0]
    assert late.seq == log[-1].seq + 1
    assert late.time == log[-1].time
    assert app.clock() < late.time


async def test_every_filter_pages_like_a_walk_of_the_log(app: Harness) -> None:
    log = await _fill(app, 60)
    times = sorted({e.time for e in log})
    assert len(times) > 10  # ties and distinct times both present
    mid, late = times[len(times) // 3], times[2 * len(times) // 3]
    between = mid + (times[len(times) // 3 + 1] - mid) / 2  # no event has this time
    queries = [
        EventQuery(),
        EventQuery(type="vote.cast"),
        EventQuery(type="team."),  # a family of four stored types (and others never stored)
        EventQuery(type="session."),
        EventQuery(type="call.denied"),
        EventQuery(actor="approver:ann"),
        EventQuery(actor="auditor"),  # the kind without a subject is an actor of its own
        EventQuery(actor_kind="auditor"),
        EventQuery(actor_kind="system"),
        EventQuery(actor_kind="account"),
        EventQuery(actor_kind="service"),  # none
        EventQuery(subject="team:t-2"),
        EventQuery(start_time=mid),  # inclusive of every event at exactly `mid`
        EventQuery(end_time=mid),  # exclusive of them
        EventQuery(start_time=mid, end_time=late),
        EventQuery(start_time=between, end_time=late),
        EventQuery(start_time=times[-1]),
        EventQuery(start_time=times[-1] + timedelta(seconds=1)),  # after the last event
        EventQuery(end_time=times[0]),  # before the first
        EventQuery(type="team.", start_time=mid, end_time=late),
        EventQuery(type="team.", actor_kind="system"),
        EventQuery(type="team.", subject="team:t-1", start_time=between),
        EventQuery(type="session.", actor="account:111122223333", end_time=late),
        EventQuery(actor_kind="auditor", start_time=mid, end_time=late),
        EventQuery(actor_kind="admin", subject="team:t-0"),
        EventQuery(type="vote.cast", actor_kind="approver", subject="team:t-3", start_time=mid),
    ]
    for q in queries:
        want = _expected(log, q)
        for size in (1, 2, 7, 100):
            assert [e.seq for e in await _read(app.audit, q, size)] == want, (q, size)
        # after_seq inside the range, on a page boundary or not.
        after = want[len(want) // 2] if want else 0
        assert [e.seq for e in await _read(app.audit, q, 3, after)] == _expected(log, q, after)
    # The families of the test cover several types each, and something was found for most.
    assert len(family_types("team.")) > 4
    assert sum(bool(_expected(log, q)) for q in queries) >= len(queries) - 4


async def test_a_family_of_no_known_type_still_matches_by_prefix(app: Harness) -> None:
    log = await _fill(app, 10)
    assert family_types("tea%.") == ()
    # LIKE's wildcards in the filter are literal characters: "tea%." is not "team.".
    assert await _read(app.audit, EventQuery(type="tea%."), 10) == []
    assert await _read(app.audit, EventQuery(type="nosuch."), 10) == []
    assert await _read(app.audit, EventQuery(type="team"), 10) == []
    teams = await _read(app.audit, EventQuery(type="team."), 10)
    assert [e.seq for e in teams] == _expected(log, EventQuery(type="team."))


async def test_the_log_refuses_an_unknown_event_type(app: Harness) -> None:
    await _fill(app, 3)
    before = await app.count("events")
    async with app.deps.uow() as uow:
        uow.record(NewEvent("team.created", ADMIN, ("team:x",)))
        uow.record(NewEvent("team.renamed", ADMIN, ("team:x",)))
        with pytest.raises(ValueError, match=r"\['team\.renamed'\]"):
            await uow.commit()
    assert await app.count("events") == before


async def test_the_actor_kind_index_is_the_queries_expression(app: Harness) -> None:
    """Both databases use an expression index only for the same expression: the one the
    queries render (persistence/models.py ActorKind) is the one migration 0006 created."""
    async with app.engine.connect() as conn:
        if app.backend == "sqlite":
            ddl = await conn.scalar(
                text("SELECT sql FROM sqlite_master WHERE name = 'ix_events_actor_kind_seq'")
            )
        else:
            ddl = await conn.scalar(
                text("SELECT indexdef FROM pg_indexes WHERE indexname = 'ix_events_actor_kind_seq'")
            )
        rendered = str(ActorKind(EventRecord.__table__.c["actor"]).compile(dialect=conn.dialect))
    assert ddl is not None
    if app.backend == "sqlite":
        assert f"({rendered.replace('events.actor', 'actor')}, seq)" in ddl
    else:
        # PostgreSQL writes the expression back in its own spelling.
        assert "(split_part((actor)::text, ':'::text, 1), seq)" in ddl
        assert rendered == "split_part(events.actor, ':', 1)"


async def test_migration_0006_keeps_the_head_time_of_an_existing_log(
    empty_database_url: str,
) -> None:
    await upgrade(empty_database_url, "0005")
    times = [datetime(2026, 1, 2, 3, 4, 5, 678899 + i, tzinfo=UTC) for i in range(3)]
    engine = create_engine(empty_database_url)
    try:
        async with engine.begin() as conn:
            # The events table is as 0005 left it; log_head has no time yet (text, not the model).
            await conn.execute(
                insert(EventRecord),
                [
                    {
                        "seq": seq,
                        "time": t,
                        "type": "team.created",
                        "actor": "admin",
                        "subjects": [],
                        "details": {},
                        "prev_hash": bytes(32),
                        "hash": bytes(32),
                    }
                    for seq, t in enumerate(times, start=1)
                ],
            )
            await conn.execute(text("UPDATE log_head SET seq = 3"))
        await upgrade(empty_database_url)
        async with engine.connect() as conn:
            head = (await conn.execute(select(LogHeadRecord.seq, LogHeadRecord.time))).one()
            last = await conn.scalar(select(EventRecord.time).where(EventRecord.seq == 3))
    finally:
        await engine.dispose()
    assert head.seq == 3
    assert head.time == last == times[-1]


async def test_a_time_range_is_exact_over_events_older_than_0006(empty_database_url: str) -> None:
    """Events appended before 0006 may be out of time order (the clock was read before the
    lock; replicas' clocks differ): a time range still returns each event whose time is in it."""
    await upgrade(empty_database_url, "0005")
    t0 = datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC)
    offsets = [0, 5, 3, 6, 1, 4]  # seconds, by seq 1..6: out of order
    engine = create_engine(empty_database_url)

    def row(seq: int, t: datetime) -> dict[str, object]:
        return {
            "seq": seq,
            "time": t,
            "type": "team.created",
            "actor": "admin",
            "subjects": [],
            "details": {},
            "prev_hash": bytes(32),
            "hash": bytes(32),
        }

    try:
        async with engine.begin() as conn:
            rows = [row(seq, t0 + timedelta(seconds=o)) for seq, o in enumerate(offsets, 1)]
            await conn.execute(insert(EventRecord), rows)
            await conn.execute(text("UPDATE log_head SET seq = 6"))
        await upgrade(empty_database_url)
        async with engine.begin() as conn:
            head = (
                await conn.execute(select(LogHeadRecord.time, LogHeadRecord.time_ordered_after))
            ).one()
            # The newest time of all (seq 4, +6 s), not the head event's (+4 s).
            assert head.time == t0 + timedelta(seconds=6)
            assert head.time_ordered_after == 6
            # Later events, in order from there (as append_events stamps them).
            later = [row(seq, t0 + timedelta(seconds=o)) for seq, o in ((7, 6), (8, 7), (9, 9))]
            await conn.execute(insert(EventRecord), later)
        reader = SqlEventLogReader(session_factory(engine))
        log = {seq: t0 + timedelta(seconds=o) for seq, o in enumerate([*offsets, 6, 7, 9], 1)}
        for lo, hi in itertools.product([None, 0, 2, 4, 6, 8, 10], [None, 1, 4, 6, 7, 10]):
            start = None if lo is None else t0 + timedelta(seconds=lo)
            end = None if hi is None else t0 + timedelta(seconds=hi)
            want = [
                seq
                for seq, t in log.items()
                if (start is None or t >= start) and (end is None or t < end)
            ]
            for size in (1, 2, 100):
                got: list[int] = []
                after = 0
                while True:
                    page = await reader.list_page(
                        EventQuery(start_time=start, end_time=end), after, size
                    )
                    got += [e.seq for e in page]
                    if len(page) < size:
                        break
                    after = page[-1].seq
                assert got == want, (lo, hi, size)
    finally:
        await engine.dispose()
