"""The `events` scenario: the event log's append rate, and reads that must not grow with it.

    python bench/events.py --backend sqlite --url sqlite:////tmp/x.db
    python bench/run.py --scenarios events            # both backends, through run.py

One process, on a migrated database of its own (run.py makes and drops it):

1. append: C coroutines (c=1, 16, 64), each a closed loop of one transaction that records
   one event through the server's own unit of work (SqlUnitOfWork; SQLite: head-row lock,
   chain, insert; PostgreSQL: the event committed unsequenced, then the commit waits for this
   process's sequencer to give it seq, as a server is wired), for `--duration` s: events/s,
   commit p50/p99, this process's CPU per event and the sequencer's batches.
2. fill: a log of each size (10,000 and 100,000 events), each in a database of its own next
   to the run's (dropped after), by a direct bulk insert of a valid chain (domain `chain()`
   hashes, executemany in chunks; the guarding triggers only refuse UPDATE/DELETE, so nothing
   is dropped) - many cheap use-case writes would take minutes and measure nothing new - then,
   on PostgreSQL, VACUUM ANALYZE (as autovacuum leaves a log that grew over months). Each
   event is 100 µs after the one before (time never decreases along seq, as append_events
   keeps it). The mix: vote.cast 39.7 %, session.created 20 %, session.approved 20 %,
   grant.requested 20 %, and 0.1 % each of team.created and team.activated (by admin:ops and
   system: the rare family team.) and of call.denied by auditor:au-<i mod 3> (the rare actor
   kind); subjects session:s-<i/5> and team:t-<i mod 50>; other actors approver:a-<i mod 20>.
3. reads, through a real grpc.aio server per log (build_server on the server's wiring, its
   credential cache on as `serve` has it, in this process, loopback) and the SDK's stubs,
   `--reps` calls each, one at a time, taking turns between the logs (so every size meets the
   same load of the machine): ListEvents first page (no filter), filtered pages
   (type=vote.cast, type=team.created, family session., rare family team., actor kind
   auditor, subject team:t-7, after_seq=head-100, a time range from the middle of the log to
   its head, the rare family within that range), each a full page of the same size at every
   size of the log (50, or fewer when the smallest log has fewer matches: the `page`
   column); WatchEvents(after_seq=head-50) until those 50 arrive, and the live latency of
   WatchEvents (an event appended by a second engine, as another replica would, until the
   stream yields it). `p50 x`: the p50 at the largest log over the p50 at the smallest.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import statistics
import sys
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import asyncpg
import grpc
from google.protobuf.timestamp_pb2 import Timestamp
from sqlalchemy import insert, select, update
from sqlalchemy.engine import make_url

from airlock.v1 import audit_service_pb2, audit_service_pb2_grpc, common_pb2
from airlock_server.bootstrap import wire
from airlock_server.config import Settings
from airlock_server.domain.events import CALL_DENIED, Event, NewEvent, chain
from airlock_server.domain.principals import SYSTEM, Principal, PrincipalKind
from airlock_server.logs import configure_logging
from airlock_server.persistence.db import create_engine, normalize_url, session_factory
from airlock_server.persistence.event_log import event_row
from airlock_server.persistence.migrate import upgrade
from airlock_server.persistence.models import EventRecord, EventSubjectRecord, LogHeadRecord
from airlock_server.persistence.seal import Sealer
from airlock_server.persistence.sequencer import Sequencer
from airlock_server.persistence.uow import SqlUnitOfWork
from airlock_server.transport.server import build_server

CHUNK = 5000
STEP = timedelta(microseconds=100)  # between two filled events


def _ms(values: list[float]) -> dict[str, float]:
    values = sorted(values)
    if not values:
        return {"p50_ms": 0.0, "p99_ms": 0.0}
    p99 = values[min(len(values) - 1, int(len(values) * 0.99))]
    return {
        "p50_ms": round(statistics.median(values) * 1000, 2),
        "p99_ms": round(p99 * 1000, 2),
    }


async def append_rate(url: str, conc: int, duration: float) -> dict[str, Any]:
    engine = create_engine(url, pool_size=max(conc, 5))
    sessions = session_factory(engine)
    # PostgreSQL: events committed unsequenced, this process's sequencer gives them seq, as a
    # server wires it (bootstrap.wire).
    sequencer = Sequencer(url, Sealer()) if engine.dialect.name == "postgresql" else None
    latencies: list[float] = []
    errors = 0
    stop_at = time.perf_counter() + duration

    async def worker(n: int) -> None:
        nonlocal errors
        i = 0
        while time.perf_counter() < stop_at:
            started = time.perf_counter()
            try:
                async with SqlUnitOfWork(
                    sessions, lambda: datetime.now(UTC), sequencer=sequencer
                ) as uow:
                    uow.record(_bench_event(n, i))
                    await uow.commit()
            except Exception:
                errors += 1
                continue
            latencies.append(time.perf_counter() - started)
            i += 1

    began, cpu = time.perf_counter(), time.process_time()
    await asyncio.gather(*(worker(n) for n in range(conc)))
    elapsed, cpu = time.perf_counter() - began, time.process_time() - cpu
    batches = sequencer.batches if sequencer is not None else 0
    if sequencer is not None:
        await sequencer.close()
    await engine.dispose()
    return {
        "conc": conc,
        "events_per_s": round(len(latencies) / elapsed, 1),
        "errors": errors,
        # This process's CPU (the use cases and, on PostgreSQL, the sequencer) per event.
        "cpu_ms_per_event": round(cpu * 1000 / max(len(latencies), 1), 2),
        "sequencer_batches": batches,
        **_ms(latencies),
    }


def _bench_event(n: int, i: int) -> NewEvent:
    """An event the bench appends through the unit of work (the log takes known types only)."""
    return NewEvent(
        CALL_DENIED,
        Principal(PrincipalKind.SERVICE, "bench"),
        (f"bench:{n}",),
        {"method": "bench", "code": "NONE", "reason": "BENCH", "i": i},
    )


def _fill_event(i: int) -> NewEvent:
    r = i % 1000
    actor = Principal(PrincipalKind.APPROVER, f"a-{i % 20}")
    if r == 0:
        type_, actor = "team.created", Principal(PrincipalKind.ADMIN, "ops")
    elif r == 1:
        type_, actor = "team.activated", SYSTEM
    elif r == 2:
        type_, actor = CALL_DENIED, Principal(PrincipalKind.AUDITOR, f"au-{i % 3}")
    elif r < 400:
        type_ = "vote.cast"
    elif r < 600:
        type_ = "session.created"
    elif r < 800:
        type_ = "session.approved"
    else:
        type_ = "grant.requested"
    return NewEvent(
        type_,
        actor,
        (f"session:s-{i // 5}", f"team:t-{i % 50}"),
        {"i": i, "note": "bulk"},
    )


def _fill_chunk(seq: int, prev: bytes, time: datetime, n: int) -> list[Event]:
    """n events after `seq`, each STEP after the one before (time never decreases along seq)."""
    events: list[Event] = []
    for _ in range(n):
        time += STEP
        events += chain(seq, prev, [_fill_event(seq)], time)
        seq, prev = events[-1].seq, events[-1].hash
    return events


async def fill_to(url: str, target: int) -> float:
    """A valid chain appended after the head, in chunks; returns the seconds it took."""
    engine = create_engine(url, pool_size=2)
    sessions = session_factory(engine)
    began = time.perf_counter()
    try:
        while True:
            async with sessions() as s, s.begin():
                head = await s.scalar(
                    select(LogHeadRecord).where(LogHeadRecord.id == 1).with_for_update()
                )
                assert head is not None
                if head.seq >= target:
                    break
                n = min(CHUNK, target - head.seq)
                last_time = head.time or datetime.now(UTC)
                events = _fill_chunk(head.seq, head.hash, max(last_time, datetime.now(UTC)), n)
                await s.execute(insert(EventRecord), [event_row(e) for e in events])
                await s.execute(
                    insert(EventSubjectRecord),
                    [{"subject": sub, "seq": e.seq} for e in events for sub in e.subjects],
                )
                await s.execute(
                    update(LogHeadRecord)
                    .where(LogHeadRecord.id == 1)
                    .values(seq=events[-1].seq, hash=events[-1].hash, time=events[-1].time)
                )
        if engine.dialect.name == "postgresql":
            # A log that grew over months has been vacuumed and analyzed by autovacuum; one
            # filled in seconds would be, during the reads that follow, on the same cores.
            async with engine.connect() as conn:
                auto = await conn.execution_options(isolation_level="AUTOCOMMIT")
                await auto.exec_driver_sql("VACUUM ANALYZE events")
                await auto.exec_driver_sql("VACUUM ANALYZE event_subjects")
    finally:
        await engine.dispose()
    return time.perf_counter() - began


async def window(url: str, head: int) -> tuple[datetime, datetime]:
    """The times of seq head/2 and of the head: a time range of half the log, which grows with
    it ("since last week" on a log of years would be a small part of it)."""
    engine = create_engine(url, pool_size=1)
    try:
        async with session_factory(engine)() as s:
            times = [
                await s.scalar(select(EventRecord.time).where(EventRecord.seq == seq))
                for seq in (head // 2, head)
            ]
    finally:
        await engine.dispose()
    start, end = times
    assert start is not None
    assert end is not None
    return start, end


PAGE = 50


@dataclass
class Log:
    """One log of the reads, in a database of its own, and an admin's token on it."""

    url: str
    token: str
    head: int
    span: tuple[datetime, datetime]
    fill_s: float


def _remove(files: list[Path]) -> None:
    for f in files:
        for extra in ("", "-wal", "-shm"):
            Path(f"{f}{extra}").unlink(missing_ok=True)


@contextlib.asynccontextmanager
async def side_by_side(backend: str, url: str, sizes: list[int]) -> AsyncIterator[list[str]]:
    """A database per log size next to the run's (same server, or same directory), dropped
    after: the reads alternate between them, so every size meets the same load of the machine
    (a log that grows in place is read at each size in turn, minutes apart)."""
    made: list[str] = []
    if backend == "postgres":
        u = make_url(normalize_url(url))
        admin = u.set(drivername="postgresql", database="postgres").render_as_string(False)

        async def sql(statement: str) -> None:
            con = await asyncpg.connect(admin)
            try:
                await con.execute(statement)
            finally:
                await con.close()

        try:
            for size in sizes:
                name = f"{u.database}_{size}"
                await sql(f'CREATE DATABASE "{name}"')
                made.append(u.set(database=name).render_as_string(False))
            yield made
        finally:
            for each in made:
                await sql(f'DROP DATABASE IF EXISTS "{make_url(each).database}" WITH (FORCE)')
    else:
        path = Path(str(make_url(url).database))
        files = [path.with_name(f"{path.stem}_{size}{path.suffix}") for size in sizes]
        try:
            yield [f"sqlite:///{f}" for f in files]
        finally:
            _remove(files)


async def prepared_log(url: str, size: int) -> Log:
    await upgrade(url)
    wiring = wire(Settings(database_url=url))
    try:
        token = (await wiring.app.identities.bootstrap_admin()).token
    finally:
        await wiring.close()
    took = await fill_to(url, size)
    engine = create_engine(url, pool_size=1)
    async with session_factory(engine)() as s:
        head = int(await s.scalar(select(LogHeadRecord.seq)) or 0)
    await engine.dispose()
    return Log(url, token, head, await window(url, head), round(took, 1))


def _filters(log: Log) -> dict[str, dict[str, Any]]:
    """ListEvents' filters, by name: the same on every log, bounds from its own head."""
    start, end = Timestamp(), Timestamp()
    start.FromDatetime(log.span[0])
    end.FromDatetime(log.span[1])
    auditors = common_pb2.Principal(kind=common_pb2.PRINCIPAL_KIND_AUDITOR)
    return {
        "list_first_page": {},
        "list_type_common": {"type": "vote.cast"},
        "list_type_rare": {"type": "team.created"},
        "list_family": {"type": "session."},
        "list_family_rare": {"type": "team."},
        "list_actor_kind_rare": {"actor": auditors},
        "list_subject": {"subject": "team:t-7"},
        "list_after_seq_late": {"after_seq": log.head - 100},
        "list_time_range": {"start_time": start, "end_time": end},
        "list_time_range_family_rare": {"start_time": start, "end_time": end, "type": "team."},
    }


Call = Callable[[], Awaitable[None]]


async def _alternating(reps: int, calls: list[Call]) -> list[dict[str, float]]:
    """Each call `reps` times after one to warm, the calls taking turns: p50/p99 of each."""
    for call in calls:
        await call()
    times: list[list[float]] = [[] for _ in calls]
    for _ in range(reps):
        for took, call in zip(times, calls, strict=True):
            started = time.perf_counter()
            await call()
            took.append(time.perf_counter() - started)
    return [_ms(t) for t in times]


async def reads(logs: list[Log], reps: int) -> list[dict[str, Any]]:
    """Through a real grpc.aio server per log (each on the server's wiring, in this process),
    the SDK's stubs, one call at a time, taking turns between the logs.

    Each filter's page size is fixed on the first (smallest) log and kept for the larger
    ones, so that every size does the same work: PAGE, or fewer when the smallest log has
    fewer matches (a rare type's 8 events at 10,000 against a page of 50 at 100,000 would
    measure 42 more events converted and sent, not the log's size)."""
    outs: list[dict[str, Any]] = [{"events": log.head, "fill_s": log.fill_s} for log in logs]
    async with contextlib.AsyncExitStack() as stack:
        stubs = []
        for log in logs:
            wiring = wire(Settings(database_url=log.url, events_poll_interval=0.05))
            stack.push_async_callback(wiring.close)
            wiring.start()  # as `serve` does: the credential cache is on once its watch listens
            served = build_server(wiring.app, "127.0.0.1:0")
            await served.server.start()
            stack.push_async_callback(served.server.stop, None)
            channel = grpc.aio.insecure_channel(f"127.0.0.1:{served.port}")
            stack.push_async_callback(channel.close)
            stubs.append(audit_service_pb2_grpc.AuditServiceStub(channel))

        def md(log: Log) -> tuple[tuple[str, str], ...]:
            return (("authorization", f"Bearer {log.token}"),)

        for name in _filters(logs[0]):
            first = _filters(logs[0])[name]
            r = await stubs[0].ListEvents(
                audit_service_pb2.ListEventsRequest(page_size=PAGE, **first), metadata=md(logs[0])
            )
            page = PAGE if r.next_page_token else max(1, len(r.events) - 1)

            def lister(log: Log, stub: Any, kw: dict[str, Any], page: int = page) -> Call:
                request = audit_service_pb2.ListEventsRequest(page_size=page, **kw)

                async def call() -> None:
                    r = await stub.ListEvents(request, metadata=md(log))
                    # A full page, and more after it: the same work at every size.
                    assert len(r.events) == page, (kw, len(r.events))
                    assert r.next_page_token, kw

                return call

            calls = [
                lister(log, stub, _filters(log)[name])
                for log, stub in zip(logs, stubs, strict=True)
            ]
            for out, figures in zip(outs, await _alternating(reps, calls), strict=True):
                out[name] = {**figures, "page": page}

        def watcher(log: Log, stub: Any) -> Call:
            async def watch_late() -> None:
                call = stub.WatchEvents(
                    audit_service_pb2.WatchEventsRequest(after_seq=log.head - 50), metadata=md(log)
                )
                got = 0
                async for _ in call:
                    got += 1
                    if got == 50:
                        break
                call.cancel()

            return watch_late

        calls = [watcher(log, stub) for log, stub in zip(logs, stubs, strict=True)]
        for out, figures in zip(outs, await _alternating(max(reps // 4, 5), calls), strict=True):
            out["watch_from_late_seq_50"] = figures

        # Live: a second engine appends (another replica); the stream yields it.
        live: list[list[float]] = [[] for _ in logs]
        streams = []
        for log, stub in zip(logs, stubs, strict=True):
            other = create_engine(log.url, pool_size=1)
            stack.push_async_callback(other.dispose)
            call = stub.WatchEvents(
                audit_service_pb2.WatchEventsRequest(after_seq=log.head), metadata=md(log)
            )
            stack.callback(call.cancel)
            streams.append((session_factory(other), call.__aiter__()))
        for i in range(20):
            for took, (sessions, stream) in zip(live, streams, strict=True):
                started = time.perf_counter()
                async with SqlUnitOfWork(sessions, lambda: datetime.now(UTC)) as uow:
                    uow.record(_bench_event(-1, i))
                    await uow.commit()
                msg = await asyncio.wait_for(stream.__anext__(), 30)
                assert msg.event.type == CALL_DENIED
                assert msg.event.actor.subject == "bench"
                took.append(time.perf_counter() - started)
        for out, took in zip(outs, live, strict=True):
            out["watch_live_latency"] = _ms(took)
    return outs


async def run(backend: str, url: str, args: argparse.Namespace) -> dict[str, Any]:
    await upgrade(url)
    result: dict[str, Any] = {"backend": backend, "append": [], "reads": []}
    for conc in args.append_conc:
        r = await append_rate(url, conc, args.duration)
        print(f"{backend}: append c={conc}: {r}", file=sys.stderr)
        result["append"].append(r)
    async with side_by_side(backend, url, args.sizes) as urls:
        logs = []
        for size, log_url in zip(args.sizes, urls, strict=True):
            logs.append(await prepared_log(log_url, size))
            print(f"{backend}: filled to {size} events in {logs[-1].fill_s} s", file=sys.stderr)
        result["reads"] = await reads(logs, args.reps)
    for r in result["reads"]:
        print(f"{backend}: reads at {r['events']}: {json.dumps(r)}", file=sys.stderr)
    first, last = result["reads"][0], result["reads"][-1]
    # p50 at the largest log over p50 at the smallest, per read: flat is 1 (issue 11: <= 1.2).
    result["p50_growth"] = {
        k: round(last[k]["p50_ms"] / first[k]["p50_ms"], 2)
        for k in first
        if isinstance(first[k], dict) and first[k]["p50_ms"]
    }
    return result


def table(results: list[dict[str, Any]]) -> str:
    lines = []
    for res in results:
        b = res["backend"]
        for a in res["append"]:
            lines.append(
                f"{b:<9} append c={a['conc']:<3} {a['events_per_s']:>9} events/s  "
                f"p50 {a['p50_ms']} ms  p99 {a['p99_ms']} ms  errors {a['errors']}  "
                f"cpu {a['cpu_ms_per_event']} ms/event  batches {a['sequencer_batches']}"
            )
        keys = [k for k in res["reads"][0] if isinstance(res["reads"][0][k], dict)]
        head = f"{b:<9} {'p50 / p99 ms':<28}{'page':>5}" + "".join(
            f"{str(r['events']) + ' events':>22}" for r in res["reads"]
        )
        lines.append(head + ("   p50 x" if len(res["reads"]) > 1 else ""))
        growth = res.get("p50_growth", {})
        for k in keys:
            lines.append(
                f"{'':<9} {k:<28}{res['reads'][0][k].get('page', ''):>5}"
                + "".join(f"{r[k]['p50_ms']:>12} / {r[k]['p99_ms']:<7}" for r in res["reads"])
                + (f"{growth[k]:>8}" if k in growth else "")
            )
    return "\n".join(lines)


def parse(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--backend", required=True, choices=["sqlite", "postgres"])
    p.add_argument("--url", required=True, help="an empty database of this run")
    p.add_argument("--duration", type=float, default=5.0, help="seconds per append run")
    p.add_argument("--append-conc", default="1,16,64")
    p.add_argument("--sizes", default="10000,100000")
    p.add_argument("--reps", type=int, default=100)
    p.add_argument("--out", type=Path, help="write the result as JSON here")
    args = p.parse_args(argv)
    args.append_conc = [int(x) for x in args.append_conc.split(",")]
    args.sizes = [int(x) for x in args.sizes.split(",")]
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse(argv)
    configure_logging("console", "warning")
    result = asyncio.run(run(args.backend, args.url, args))
    if args.out:
        args.out.write_text(json.dumps(result, indent=1))
    print(table([result]))
    return 0


if __name__ == "__main__":
    sys.exit(main())
