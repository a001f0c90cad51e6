"""Engines for the two supported databases."""

from __future__ import annotations

from typing import Any

from sqlalchemy import event
from sqlalchemy.engine import make_url
from sqlalchemy.ext.asyncio import (
    AsyncEngine,
    AsyncSession,
    async_sessionmaker,
    create_async_engine,
)

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

        return engine
    return create_async_engine(
        url,
        pool_size=pool_size,
        max_overflow=pool_size,
        pool_pre_ping=False,
        hide_parameters=True,
    )


def session_factory(engine: AsyncEngine) -> async_sessionmaker[AsyncSession]:
    return async_sessionmaker(engine, expire_on_commit=False, autoflush=False)
