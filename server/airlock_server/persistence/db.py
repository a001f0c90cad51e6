"""Engines for the two supported databases."""

from __future__ import annotations

import asyncio
import contextlib
import functools
from collections.abc import AsyncIterator, Callable, Coroutine
from typing import Any, ParamSpec, TypeVar

from sqlalchemy import event, exc, text
from sqlalchemy.engine import make_url
from sqlalchemy.ext.asyncio import (
    AsyncEngine,
    AsyncSession,
    async_sessionmaker,
    create_async_engine,
)

from airlock_server.domain.errors import StaleConnection, Unavailable

P = ParamSpec("P")
R = TypeVar("R")

# Execution option of a read-only unit of work's connection (see SqlUnitOfWork).
READ_ONLY_OPTION = "airlock_read_only"
# ... that reads with one statement: no transaction around it (see SqlUnitOfWork).
ONE_STATEMENT_OPTION = "airlock_one_statement"


def normalize_url(url: str) -> str:
    """Accept plain sqlite:/postgresql: URLs and pick the async drivers."""
    u = make_url(url)
    if u.drivername in ("sqlite", "sqlite+pysqlite"):
        u = u.set(drivername="sqlite+aiosqlite")
    elif u.drivername in ("postgresql", "postgres", "postgresql+psycopg2"):
        u = u.set(drivername="postgresql+asyncpg")
    return u.render_as_string(hide_password=False)


def is_sqlite(url: str) -> bool:
    return make_url(url).get_backend_name() == "sqlite"


def create_engine(url: str, *, pool_size: int = 10) -> AsyncEngine:
    """hide_parameters: a database error's text never carries bound values (comments, key
    material, token hashes) into an exception message or a log line."""
    url = normalize_url(url)
    if is_sqlite(url):
        # One writer at a time is SQLite's nature: one connection, transactions queue for it,
        # and BEGIN IMMEDIATE takes the write lock up front so two processes never deadlock.
        # A read-only unit of work begins deferred: it takes no write lock unless it writes.
        engine = create_async_engine(
            url, pool_size=1, max_overflow=0, pool_timeout=60, hide_parameters=True
        )

        @event.listens_for(engine.sync_engine, "connect")
        def _on_connect(dbapi_connection: Any, _record: Any) -> None:
            dbapi_connection.isolation_level = None
            cursor = dbapi_connection.cursor()
            cursor.execute("PRAGMA journal_mode=WAL")
            cursor.execute("PRAGMA synchronous=NORMAL")
            cursor.execute("PRAGMA foreign_keys=ON")
            cursor.execute("PRAGMA busy_timeout=30000")
            cursor.close()

        @event.listens_for(engine.sync_engine, "begin")
        def _on_begin(conn: Any) -> None:
            options = conn.get_execution_options()
            if options.get(ONE_STATEMENT_OPTION, False):
                return  # autocommit: the one SELECT is its own transaction
            conn.exec_driver_sql(
                "BEGIN" if options.get(READ_ONLY_OPTION, False) else "BEGIN IMMEDIATE"
            )

        _track_statements(engine)
        return engine
    # No pre-ping (a round trip per checkout, about doubling a one-SELECT use case): a pooled
    # connection the database closed (a restart) fails its first statement, which invalidates
    # the pool, and the unit of work is retried once on a new connection (StaleConnection).
    engine = create_async_engine(
        url,
        pool_size=pool_size,
        max_overflow=pool_size,
        pool_pre_ping=False,
        hide_parameters=True,
    )
    _track_statements(engine)
    return engine


def session_factory(engine: AsyncEngine) -> async_sessionmaker[AsyncSession]:
    return async_sessionmaker(engine, expire_on_commit=False, autoflush=False)


# Execution option of a unit of work's connection: its StatementTracker.
TRACKER_OPTION = "airlock_tracker"


class StatementTracker:
    """Whether a statement of a unit of work went through (set by the engine's listener)."""

    sent = False


def _track_statements(engine: AsyncEngine) -> None:
    @event.listens_for(engine.sync_engine, "after_cursor_execute")
    def _on_executed(conn: Any, *_args: Any) -> None:
        tracker = conn.get_execution_options().get(TRACKER_OPTION)
        if tracker is not None:
            tracker.sent = True


# PostgreSQL SQLSTATEs of a database that cannot serve: connection exceptions (class 08),
# shutting down or starting up (57P01..57P03), no such database (3D000), too many connections.
OUTAGE_SQLSTATES = {"57P01", "57P02", "57P03", "3D000", "53300"}
# SQLite's words for a file it cannot use.
SQLITE_OUTAGES = ("unable to open database file", "disk i/o error")


def _sqlstate(error: BaseException | None) -> str:
    return str(getattr(error, "sqlstate", None) or getattr(error, "pgcode", None) or "")


def is_outage(error: BaseException) -> bool:
    """True when `error` says the database is unreachable rather than the statement wrong."""
    if isinstance(error, OSError | exc.TimeoutError):
        return True  # connection refused or reset, no route; or the pool waited in vain
    if isinstance(error, exc.DBAPIError):
        if error.connection_invalidated or isinstance(error, exc.InterfaceError):
            return True
        code = _sqlstate(error.orig)
        if code.startswith("08") or code in OUTAGE_SQLSTATES:
            return True
        if isinstance(error.orig, OSError):
            return True
        said = str(error.orig).lower()
        return any(words in said for words in SQLITE_OUTAGES)
    code = _sqlstate(error)
    return code.startswith("08") or code in OUTAGE_SQLSTATES


def outage(error: BaseException, *, sent: bool = True) -> Unavailable | None:
    """The domain error for a database outage, or None for any other error. `sent`: whether
    the transaction had a statement go through before; if not, and the connection was found
    dead, nothing happened and a retry is safe (StaleConnection)."""
    if not is_outage(error):
        return None
    if not sent and isinstance(error, exc.DBAPIError) and error.connection_invalidated:
        return StaleConnection()
    return Unavailable()


@contextlib.asynccontextmanager
async def reading(sessions: async_sessionmaker[AsyncSession]) -> AsyncIterator[AsyncSession]:
    """A session for reads outside a unit of work; an outage becomes Unavailable, and a
    connection found dead StaleConnection (a read may always be tried again: `read_retried`)."""
    try:
        async with sessions() as session:
            yield session
    except Exception as error:
        unavailable = outage(error, sent=False)
        if unavailable is None:
            raise
        raise unavailable from error


def read_retried(
    read: Callable[P, Coroutine[Any, Any, R]],
) -> Callable[P, Coroutine[Any, Any, R]]:
    """A read that met a connection a restart closed is read again, once, on a new one."""

    @functools.wraps(read)
    async def again(*args: P.args, **kwargs: P.kwargs) -> R:
        try:
            return await read(*args, **kwargs)
        except StaleConnection:
            return await read(*args, **kwargs)

    return again


async def reachable(engine: AsyncEngine, within: float) -> bool:
    """The health probe: one trivial statement on a pooled connection, answered `within`
    seconds; tried twice, as the first may meet a connection a restart closed."""
    for _ in range(2):
        try:
            async with asyncio.timeout(within), engine.connect() as conn:
                await conn.execute(text("SELECT 1"))
        except Exception:
            continue
        return True
    return False
