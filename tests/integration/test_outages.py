"""A database that cannot be reached is an outage (Unavailable -> UNAVAILABLE), not a bug.

Real failures only: a port nobody listens on, a database that does not exist, an SQLite file
in a directory that does not exist, and pooled connections the database has closed under us
(what a restart does to them; here by pg_terminate_backend on this test's own database).
"""

from __future__ import annotations

import asyncio
import socket
from pathlib import Path

import pytest
from integration.harness import require_postgres
from sqlalchemy import text
from sqlalchemy.engine import make_url
from sqlalchemy.exc import DBAPIError

from airlock_server.bootstrap import Wiring, wire
from airlock_server.config import Settings
from airlock_server.domain.errors import Unauthenticated, Unavailable
from airlock_server.persistence.db import create_engine, reachable, reading, session_factory
from airlock_server.persistence.events import SqlEventLogReader

pytestmark = pytest.mark.asyncio


def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


async def _unreachable_url(backend: str, tmp_path: Path, how: str) -> str:
    if backend == "sqlite":
        return f"sqlite:///{tmp_path / 'no' / 'such' / 'dir' / 'airlock.db'}"
    await require_postgres()
    if how == "refused":
        return f"postgresql://postgres@127.0.0.1:{_closed_port()}/airlock"
    return "postgresql://postgres@127.0.0.1:5432/airlock_no_such_database_7f3a"


@pytest.mark.parametrize("how", ["refused", "missing"])
async def test_an_unreachable_database_is_unavailable(
    backend: str, tmp_path: Path, how: str
) -> None:
    url = await _unreachable_url(backend, tmp_path, how)
    wired = wire(Settings(database_url=url))
    try:
        # A use case: its unit of work cannot begin.
        with pytest.raises(Unavailable) as caught:
            await wired.app.identities.authenticate("some-token")
        assert caught.value.reason == "DATABASE_UNAVAILABLE"
        # The event log's reader, outside a unit of work.
        with pytest.raises(Unavailable):
            await SqlEventLogReader(session_factory(wired.engine)).head_seq()
        assert not await reachable(wired.engine, 5.0)
    finally:
        await wired.close()
        # aiosqlite answers a failed connect's stop from its thread a moment later: let it land
        # before this test's event loop closes.
        await asyncio.sleep(0.2)


async def test_a_reachable_database_probes_true_and_bad_sql_is_no_outage(
    wiring: Wiring,
) -> None:
    assert await reachable(wiring.engine, 5.0)
    with pytest.raises(Unauthenticated):
        await wiring.app.identities.authenticate("not-a-token")
    # A wrong statement is a bug of ours, not an outage: it is not dressed as Unavailable.
    with pytest.raises(DBAPIError) as caught:
        async with reading(session_factory(wiring.engine)) as s:
            await s.execute(text("SELECT no_such_column FROM no_such_table"))
    assert not isinstance(caught.value, Unavailable)


async def _kill_connections(database_url: str) -> None:
    """What a restart does to the pool: every other connection to this test's database is
    closed by the server."""
    killer = create_engine(database_url, pool_size=1)
    try:
        async with killer.connect() as conn:
            killed = await conn.scalar(
                text(
                    "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity "
                    "WHERE datname = :db AND pid <> pg_backend_pid()"
                ).bindparams(db=make_url(database_url).database)
            )
        assert killed is not None
        assert killed >= 1
    finally:
        await killer.dispose()


@pytest.mark.postgres
async def test_the_first_call_after_connections_die_succeeds(database_url: str) -> None:
    """A pooled connection the server has closed fails its first statement before anything
    was done; the pool is renewed and the unit of work retried once (StaleConnection), and a
    read of the event log likewise, so the first call after a restart succeeds."""
    if not database_url.startswith("postgresql"):
        pytest.skip("PostgreSQL only")
    wired = wire(Settings(database_url=database_url, db_pool_size=3))
    reader = SqlEventLogReader(session_factory(wired.engine))
    try:
        for _ in range(3):  # fill the pool
            with pytest.raises(Unauthenticated):
                await wired.app.identities.authenticate("not-a-token")
        await _kill_connections(database_url)
        with pytest.raises(Unauthenticated):
            await wired.app.identities.authenticate("not-a-token")
        await reader.head_seq()
        await _kill_connections(database_url)
        assert await reader.head_seq() == await reader.head_seq()
        assert await reachable(wired.engine, 5.0)
    finally:
        await wired.close()
