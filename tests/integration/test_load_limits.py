"""Load bounds on SQLite and PostgreSQL, through a real gRPC server on the server's own wiring:
stream caps per principal and per process, one log read per new event whatever the number of
watchers, a reader that never reads is disconnected and its buffer freed, and refused calls are
rate-limited before they reach the log."""

from __future__ import annotations

import asyncio
import contextlib
import gc
import itertools
import logging
import random
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from functools import partial
from typing import Any

import grpc
import pytest
import pytest_asyncio
from google.rpc import error_details_pb2, status_pb2
from sqlalchemy import event

from airlock.v1 import (
    audit_service_pb2,
    audit_service_pb2_grpc,
    identity_service_pb2,
    identity_service_pb2_grpc,
)
from airlock_server.app.feed import EventFeed
from airlock_server.bootstrap import Wiring, wire
from airlock_server.config import Settings
from airlock_server.domain.principals import Principal, PrincipalKind
from airlock_server.transport.limits import Limits
from airlock_server.transport.server import Served, build_server

pytestmark = pytest.mark.asyncio

STEP = 10.0  # bound on each wait for a streamed message
ACCOUNT = "111122223333"
_names = itertools.count()


@dataclass
class Live:
    wiring: Wiring
    served: Served
    channel: grpc.aio.Channel
    admin: Principal
    admin_token: str

    @property
    def audit(self) -> audit_service_pb2_grpc.AuditServiceAsyncStub:
        return audit_service_pb2_grpc.AuditServiceStub(self.channel)

    async def token(self, kind: PrincipalKind, subject: str) -> str:
        issued = await self.wiring.app.identities.issue_credential(
            self.admin, kind, subject, "", None, ""
        )
        return issued.token

    async def write(self, n: int) -> None:
        """n new events (one approver each, one transaction each)."""
        for _ in range(n):
            i = next(_names)
            await self.wiring.app.identities.create_approver(
                self.admin, f"load-{i}", f"Load {i}", "", ""
            )


LiveFactory = Callable[..., Awaitable[Live]]


@pytest_asyncio.fixture
async def live(database_url: str) -> AsyncIterator[LiveFactory]:
    """A server on the server's own wiring, with the settings and limits a test asks for.
    Notifications (SQLite: the in-process wake; PostgreSQL: LISTEN) are the only prompt
    wake-ups: the polls are 30 s, longer than any wait of these tests."""
    made: list[Live] = []

    async def make(limits: Limits | None = None, **settings: Any) -> Live:
        wiring = wire(
            Settings(
                database_url=database_url,
                events_poll_interval=30.0,
                events_safety_poll=30.0,
                **settings,
            )
        )
        served = build_server(wiring.app, "127.0.0.1:0", limits=limits)
        await served.server.start()
        channel = grpc.aio.insecure_channel(f"127.0.0.1:{served.port}")
        issued = await wiring.app.identities.bootstrap_admin()
        admin = (await wiring.app.identities.authenticate(issued.token)).principal
        one = Live(wiring, served, channel, admin, issued.token)
        made.append(one)
        return one

    try:
        yield make
    finally:
        for one in made:
            await one.channel.close()
            await one.served.server.stop(None)
            await one.wiring.close()


def md(token: str) -> tuple[tuple[str, str]]:
    return (("authorization", f"Bearer {token}"),)


def details(err: grpc.aio.AioRpcError) -> tuple[str, error_details_pb2.RetryInfo | None]:
    """The ErrorInfo reason and the RetryInfo (if any) of a status."""
    raw = dict(err.trailing_metadata() or ()).get("grpc-status-details-bin")
    assert isinstance(raw, bytes)
    reason, retry = "", None
    for d in status_pb2.Status.FromString(raw).details:
        info, delay = error_details_pb2.ErrorInfo(), error_details_pb2.RetryInfo()
        if d.Unpack(info):
            reason = info.reason
        elif d.Unpack(delay):
            retry = delay
    return reason, retry


async def opened(live: Live, token: str, after_seq: int = 0) -> Any:
    """A WatchEvents stream that has delivered its first event (it holds a slot)."""
    call = live.audit.WatchEvents(
        audit_service_pb2.WatchEventsRequest(after_seq=after_seq), metadata=md(token)
    )
    first = await asyncio.wait_for(call.read(), STEP)
    assert first is not grpc.aio.EOF
    return call


async def refused(call: Any) -> grpc.aio.AioRpcError:
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await asyncio.wait_for(call.read(), STEP)
    return caught.value


def caught_up(feed: EventFeed, head: int) -> bool:
    return feed.position >= head or not feed.subscribers


async def drain(call: Any) -> tuple[list[int], grpc.aio.AioRpcError]:
    """The seqs a stream still delivers, and the error that ends it."""
    seqs: list[int] = []
    while True:
        try:
            message = await asyncio.wait_for(call.read(), STEP)
        except grpc.aio.AioRpcError as err:
            return seqs, err
        assert message is not grpc.aio.EOF
        seqs.append(message.event.seq)


async def until(condition: Callable[[], bool], what: str) -> None:
    """Wait (bounded) for something the server does in the background."""
    for _ in range(int(STEP / 0.02)):
        if condition():
            return
        await asyncio.sleep(0.02)
    raise AssertionError(f"not within {STEP} s: {what}")


# --- stream caps -----------------------------------------------------------------------------


async def test_streams_are_capped_per_principal_and_per_process(live: LiveFactory) -> None:
    server = await live(Limits.of(max_streams=3, max_streams_per_principal=2))
    ann = await server.token(PrincipalKind.AUDITOR, "ann")
    bob = await server.token(PrincipalKind.AUDITOR, "bob")

    ann_1, ann_2 = await opened(server, ann), await opened(server, ann)
    over = await refused(
        server.audit.WatchEvents(audit_service_pb2.WatchEventsRequest(), metadata=md(ann))
    )
    assert over.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
    assert details(over)[0] == "TOO_MANY_STREAMS"
    assert "per caller" in (over.details() or "")

    # Another caller has a slot of its own, until the process's cap.
    bob_1 = await opened(server, bob)
    full = await refused(
        server.audit.WatchEvents(audit_service_pb2.WatchEventsRequest(), metadata=md(bob))
    )
    assert full.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
    assert details(full)[0] == "TOO_MANY_STREAMS"
    assert server.served.limits.streams.open == 3

    # A closed stream gives its slot back.
    ann_1.cancel()
    await until(lambda: server.served.limits.streams.open == 2, "the cancelled slot is freed")
    bob_2 = await opened(server, bob)
    for call in (ann_2, bob_1, bob_2):
        call.cancel()
    await until(lambda: server.served.limits.streams.open == 0, "every slot is freed")


# --- fan-out: one read per new event ---------------------------------------------------------


async def test_new_events_are_read_once_for_every_watcher(live: LiveFactory) -> None:
    watchers = 20
    server = await live(Limits.of(max_streams_per_principal=watchers))
    token = await server.token(PrincipalKind.AUDITOR, "many")
    head = await server.wiring.app.audit._log.head_seq()
    calls = [await opened(server, token, after_seq=head - 1) for _ in range(watchers)]
    await until(lambda: server.wiring.feed.subscribers == watchers, "all follow the feed")

    reads: list[str] = []

    def count(_conn: Any, _cursor: Any, statement: str, *_: Any) -> None:
        if statement.lstrip().upper().startswith(("SELECT", "WITH")) and " events" in statement:
            reads.append(statement)

    event.listen(server.wiring.engine.sync_engine, "before_cursor_execute", count)
    try:
        new = 5
        for i in range(new):
            await server.write(1)
            got = await asyncio.gather(*(asyncio.wait_for(c.read(), STEP) for c in calls))
            assert {m.event.seq for m in got} == {head + 1 + i}
    finally:
        event.remove(server.wiring.engine.sync_engine, "before_cursor_execute", count)
    # Every watcher got every event; the log was read about once per event (a wake-up may
    # find nothing new), not once per watcher and event (that would be 100 here).
    assert len(reads) <= 2 * new + 2, reads
    for c in calls:
        c.cancel()


# --- a reader that never reads ---------------------------------------------------------------


async def test_a_reader_that_never_reads_is_disconnected_and_its_buffer_freed(
    live: LiveFactory,
) -> None:
    server = await live(stream_buffer=20)
    token = await server.token(PrincipalKind.AUDITOR, "sleepy")
    # Without BDP probing the client's window stays at 64 KiB (it may otherwise grow to
    # megabytes on loopback, and the test would have to write that much first).
    sleepy = grpc.aio.insecure_channel(
        f"127.0.0.1:{server.served.port}", options=[("grpc.http2.bdp_probe", 0)]
    )
    call = audit_service_pb2_grpc.AuditServiceStub(sleepy).WatchEvents(
        audit_service_pb2.WatchEventsRequest(), metadata=md(token)
    )
    feed = server.wiring.feed
    await until(lambda: feed.subscribers == 1, "the stream follows the feed")

    # Write until the server gives up on it: the client's flow-control window fills, the
    # stream's buffer then fills, and the feed drops it.
    head = await server.wiring.app.audit._log.head_seq()
    for _ in range(40):
        await server.write(25)
        head += 25
        # (A tight loop of writes would keep SQLite's one connection from the feed.)
        await until(partial(caught_up, feed, head), "the feed read")
        if feed.subscribers == 0:
            break
    assert feed.subscribers == 0
    assert feed.buffered == 0
    await until(lambda: server.served.limits.streams.open == 0, "the call ended")

    # What reached the client before the end is a prefix of the log, then the status.
    seqs, ended = await drain(call)
    assert ended.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
    assert details(ended)[0] == "STREAM_BUFFER_FULL"
    assert seqs == list(range(1, len(seqs) + 1))

    # Resuming after the last event received works, and the feed is fine for others.
    resumed = await opened(server, token, after_seq=seqs[-1])
    resumed.cancel()
    await sleepy.close()


# --- refused calls ---------------------------------------------------------------------------


async def denials(server: Live) -> int:
    found = await server.audit.ListEvents(
        audit_service_pb2.ListEventsRequest(type="call.denied", page_size=1000),
        metadata=md(server.admin_token),
    )
    return len(found.events)


async def test_refused_calls_are_rate_limited_before_the_log(live: LiveFactory) -> None:
    server = await live(Limits.of(refusal_rate=0.001, refusal_burst=3))
    await server.wiring.app.identities.register_account(server.admin, ACCOUNT, "prod", "")
    token = await server.token(PrincipalKind.ACCOUNT, ACCOUNT)
    identity = identity_service_pb2_grpc.IdentityServiceStub(server.channel)
    before = await denials(server)

    codes, retries = [], []
    for _ in range(6):
        with pytest.raises(grpc.aio.AioRpcError) as caught:
            await identity.DisableApprover(
                identity_service_pb2.DisableApproverRequest(approver_id="nobody"),
                metadata=md(token),
            )
        codes.append(caught.value.code())
        reason, retry = details(caught.value)
        if caught.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED:
            assert reason == "TOO_MANY_REFUSED_CALLS"
            assert retry is not None
            retries.append(retry.retry_delay.ToTimedelta().total_seconds())
    assert (
        codes == [grpc.StatusCode.PERMISSION_DENIED] * 3 + [grpc.StatusCode.RESOURCE_EXHAUSTED] * 3
    )
    assert all(r > 0 for r in retries)
    # The burst reached the log, the rest did not.
    assert await denials(server) == before + 3

    # Another caller's refusals have a budget of their own; allowed calls are not limited.
    other = await server.token(PrincipalKind.AUDITOR, "other")
    with pytest.raises(grpc.aio.AioRpcError) as theirs:
        await identity.DisableApprover(
            identity_service_pb2.DisableApproverRequest(approver_id="nobody"), metadata=md(other)
        )
    assert theirs.value.code() == grpc.StatusCode.PERMISSION_DENIED
    assert await denials(server) == before + 4


# --- a follower whose client goes away -------------------------------------------------------


async def test_cancelled_followers_leave_no_error_in_the_log(
    live: LiveFactory, caplog: pytest.LogCaptureFixture
) -> None:
    """A client that goes away cancels its follower wherever it is, in a read too; the read
    is finished rather than its connection aborted, so nothing is logged at ERROR."""
    server = await live()
    await server.write(30)
    auditor = Principal(PrincipalKind.AUDITOR, "leaving")
    caplog.set_level(logging.WARNING)
    chance = random.Random(10)
    for _ in range(100):
        stream = server.wiring.app.audit.watch_events(auditor, 0)
        step = asyncio.ensure_future(anext(stream))
        await asyncio.sleep(chance.random() * 0.004)
        step.cancel()
        with contextlib.suppress(asyncio.CancelledError, StopAsyncIteration):
            await step
    await until(lambda: server.wiring.feed.subscribers == 0, "the followers are gone")
    await asyncio.sleep(0.2)  # the reads that were left to finish
    gc.collect()  # a future whose failure nobody retrieved is logged when collected
    errors = [r.getMessage() for r in caplog.records if r.levelno >= logging.ERROR]
    assert errors == []


# --- many clients (re)connecting at once ------------------------------------------------------


async def test_streams_replaying_at_once_share_their_reads(live: LiveFactory) -> None:
    server = await live()
    await server.write(10)
    auditor = Principal(PrincipalKind.AUDITOR, "reconnecting")
    reads: list[str] = []

    def count(_conn: Any, _cursor: Any, statement: str, *_: Any) -> None:
        if statement.lstrip().upper().startswith("SELECT") and "FROM events" in statement:
            reads.append(statement)

    streams = [server.wiring.app.audit.watch_events(auditor, 0) for _ in range(20)]
    event.listen(server.wiring.engine.sync_engine, "before_cursor_execute", count)
    try:
        firsts = await asyncio.wait_for(asyncio.gather(*(anext(s) for s in streams)), STEP)
    finally:
        event.remove(server.wiring.engine.sync_engine, "before_cursor_execute", count)
    assert {e.seq for e in firsts} == {1}
    # One read of the first page for the twenty (20 without sharing).
    assert len(reads) == 1, reads
    for s in streams:
        await s.aclose()
