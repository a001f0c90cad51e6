"""WatchSession on the process's event feed (SQLite and PostgreSQL): a watcher reads its
session again only when an event about that session arrives, not on every event of the log,
and the watchers of one caller woken by the same event share one read."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from integration.recovery.recovery_world import World
from sqlalchemy import event

from airlock_server.app.feed import EventFeed
from airlock_server.app.sessions import SessionService
from airlock_server.domain.sessions import SessionState
from airlock_server.persistence.db import session_factory
from airlock_server.persistence.event_log import PollSignal
from airlock_server.persistence.events import SqlEventLogReader

pytestmark = pytest.mark.asyncio

STEP = 10.0
WATCHERS = 5


async def test_watchers_read_their_session_only_when_it_changes(world: World) -> None:
    # The watchers on an engine of their own (another wiring), so that what they read is
    # counted apart from the writes. A safety interval of an hour: every read below is caused
    # by an event. The feed looks at the log every 50 ms (one read for all the watchers).
    other = world.another_wiring()
    log = SqlEventLogReader(session_factory(other.engine))
    feed = EventFeed(log, PollSignal(0.05), 3600.0)
    watching = SessionService(other.deps, 3600.0, feed=feed)
    arn = await world.vault()
    opened = await world.app.vaults.request_restore_access(world.recovery, arn, "", "", "")
    sid = opened.session.session.session_id
    streams = [watching.watch(world.recovery, sid) for _ in range(WATCHERS)]
    for s in streams:
        first = await asyncio.wait_for(anext(s), STEP)
        assert first.session.state is SessionState.PENDING
    waiting = [asyncio.ensure_future(anext(s)) for s in streams]

    session_reads: list[str] = []

    def count(statement: str) -> None:
        if statement.lstrip().upper().startswith("SELECT") and "FROM sessions" in statement:
            session_reads.append(statement)

    def through_sqlalchemy(_conn: Any, _cursor: Any, statement: str, *_: Any) -> None:
        count(statement)

    # PostgreSQL's hot reads (GetSession) run on the driver connection, past SQLAlchemy's
    # events: asyncpg's query logger of each connection the pool lends sees them.
    logged: set[int] = set()

    def lent(_dbapi_connection: Any, _record: Any, proxy: Any) -> None:
        driver = proxy.driver_connection
        if hasattr(driver, "add_query_logger") and id(driver) not in logged:
            logged.add(id(driver))
            driver.add_query_logger(lambda query: count(query.query))

    engine = other.engine.sync_engine
    event.listen(engine, "before_cursor_execute", through_sqlalchemy)
    event.listen(engine.pool, "checkout", lent)
    try:
        # What one read of the session costs, in statements.
        await watching.get_session(world.recovery, sid)
        await asyncio.sleep(0)  # asyncpg hands its loggers the query at the next turn
        one_read = len(session_reads)
        assert one_read > 0
        session_reads.clear()

        # Events about other things: the watchers wake for none of them.
        for i in range(5):
            await world.app.identities.create_approver(world.admin, f"other-{i}", "O", "", "")
        head = await log.head_seq()
        for _ in range(int(STEP / 0.02)):
            if feed.position >= head:
                break
            await asyncio.sleep(0.02)
        assert feed.position >= head
        assert session_reads == []
        assert not any(w.done() for w in waiting)

        # A vote on the session (written through the other engine): every watcher sees it.
        await world.vote("alice", sid)
        got = await asyncio.wait_for(asyncio.gather(*waiting), STEP)
        assert {len(v.session.votes) for v in got} == {1}
        await asyncio.sleep(0)
    finally:
        event.remove(engine, "before_cursor_execute", through_sqlalchemy)
        event.remove(engine.pool, "checkout", lent)
        for s in streams:
            await s.aclose()
        await feed.close()
    # One read for the five watchers of this caller, woken by the same event.
    assert one_read <= len(session_reads) < 2 * one_read
