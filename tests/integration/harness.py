"""Test helpers shared by every suite: a database of the test's own on SQLite or PostgreSQL,
and the use cases wired on it with a clock the test moves.

Import it as `from integration.harness import ...` (tests/ is on sys.path through its conftest;
a module named `conftest` is ambiguous, since several directories have one). The fixtures built
on it live in tests/conftest.py.

Every PostgreSQL database is created for one test (`airlock_test_<hex>`) and dropped afterwards;
nothing touches a shared one. When PostgreSQL cannot be reached, `require_postgres` skips,
unless AIRLOCK_REQUIRE_POSTGRES=1 (as in CI), which turns the skip into a failure.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path

import asyncpg
import pytest
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

from airlock_server.app.audit import AuditService, LogKey
from airlock_server.app.common import Deps
from airlock_server.app.identity import IdentityService
from airlock_server.app.notifications import NotificationService
from airlock_server.app.ports import UnitOfWork
from airlock_server.app.sessions import SessionService
from airlock_server.app.teams import TeamService
from airlock_server.app.vaults import VaultService
from airlock_server.domain.notifications import Routing
from airlock_server.persistence.activity import activity_writer_of
from airlock_server.persistence.db import create_engine, session_factory
from airlock_server.persistence.event_log import (
    PgListenSignal,
    PollSignal,
    SqlEventLogReader,
    log_appender_of,
)
from airlock_server.persistence.seal import Sealer
from airlock_server.persistence.uow import SqlUnitOfWork

POSTGRES_SERVER = os.environ.get(
    "AIRLOCK_TEST_POSTGRES_URL", "postgresql://postgres@127.0.0.1:5432/postgres"
)
BACKENDS = [
    pytest.param("sqlite", id="sqlite"),
    pytest.param("postgresql", id="postgresql", marks=pytest.mark.postgres),
]
# For a test about PostgreSQL alone: @pytest.mark.parametrize("backend", POSTGRES_ONLY)
POSTGRES_ONLY = BACKENDS[1:]

_postgres_problem: str | None = None  # "" once PostgreSQL answered


def postgres_required() -> bool:
    return os.environ.get("AIRLOCK_REQUIRE_POSTGRES") == "1"


async def _postgres_admin() -> asyncpg.Connection:
    return await asyncpg.connect(POSTGRES_SERVER.replace("postgresql+asyncpg://", "postgresql://"))


async def require_postgres() -> None:
    """Skip (or, with AIRLOCK_REQUIRE_POSTGRES=1, fail) when PostgreSQL does not answer."""
    global _postgres_problem
    if _postgres_problem is None:
        try:
            conn = await _postgres_admin()
        except (OSError, asyncpg.PostgresError) as exc:
            _postgres_problem = f"{type(exc).__name__}: {exc}"
        else:
            await conn.close()
            _postgres_problem = ""
    if _postgres_problem:
        reason = f"PostgreSQL at {POSTGRES_SERVER} is unreachable ({_postgres_problem})"
        if postgres_required():
            pytest.fail(f"{reason} and AIRLOCK_REQUIRE_POSTGRES=1")
        pytest.skip(reason)


@asynccontextmanager
async def empty_database(backend: str, directory: Path) -> AsyncIterator[str]:
    """A database of our own with no schema; dropped (PostgreSQL) when the block ends."""
    if backend == "sqlite":
        yield f"sqlite:///{directory / 'airlock.db'}"
        return
    await require_postgres()
    name = f"airlock_test_{uuid.uuid4().hex}"
    conn = await _postgres_admin()
    try:
        await conn.execute(f'CREATE DATABASE "{name}"')
    finally:
        await conn.close()
    base = POSTGRES_SERVER.rsplit("/", 1)[0]
    try:
        yield f"{base}/{name}"
    finally:
        conn = await _postgres_admin()
        try:
            await conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        finally:
            await conn.close()


class FakeClock:
    """A clock the test moves by hand (expiry without waiting)."""

    def __init__(self, start: datetime | None = None) -> None:
        self.now = start or datetime.now(UTC).replace(microsecond=0)

    def __call__(self) -> datetime:
        return self.now

    def advance(self, delta: timedelta) -> None:
        self.now += delta


@dataclass
class Harness:
    """The app on one database: the use cases, a clock to move, and raw SQL for checks."""

    url: str
    engine: AsyncEngine
    clock: FakeClock
    deps: Deps
    identities: IdentityService
    teams: TeamService
    sessions: SessionService
    vaults: VaultService
    audit: AuditService
    signal: PgListenSignal | PollSignal
    notifications: NotificationService

    @property
    def backend(self) -> str:
        return self.engine.dialect.name

    async def count(self, table: str) -> int:
        async with self.engine.connect() as conn:
            value = await conn.scalar(text(f"SELECT count(*) FROM {table}"))
        return int(value or 0)

    async def counts(self, *tables: str) -> dict[str, int]:
        return {t: await self.count(t) for t in tables}

    async def close(self) -> None:
        await self.signal.close()
        await self.engine.dispose()


def build_harness(
    url: str, clock: FakeClock, log_key: LogKey | None = None, *, routing: Routing | None = None
) -> Harness:
    """What bootstrap.wire() builds, with the test's own clock; with `log_key`, appends are
    signed and rows MACed with it, as a server with a key file (docs/threat-model.md);
    `routing`: where email notifications go (by default none, webhooks only)."""
    engine = create_engine(url, pool_size=5)
    sessions = session_factory(engine)
    sealer = Sealer(log_key)
    activity_writer = activity_writer_of(engine)
    log_appender = log_appender_of(engine)

    def uow(*, read_only: bool = False, one_statement: bool = False) -> UnitOfWork:
        return SqlUnitOfWork(
            sessions,
            clock,
            read_only=read_only,
            one_statement=one_statement,
            sealer=sealer,
            routing=routing,
            activity_writer=activity_writer,
            log_appender=log_appender,
        )

    deps = Deps(uow=uow, clock=clock)
    signal: PgListenSignal | PollSignal = (
        PgListenSignal(url) if engine.dialect.name == "postgresql" else PollSignal(0.05)
    )
    log = SqlEventLogReader(sessions)
    sessions_app = SessionService(deps, 2.0, log=log, signal=signal)
    return Harness(
        url,
        engine,
        clock,
        deps,
        IdentityService(deps),
        TeamService(deps),
        sessions_app,
        VaultService(deps, sessions_app),
        AuditService(deps, log, signal, log_key, watch_poll=2.0),
        signal,
        NotificationService(deps),
    )


@dataclass
class HarnessFactory:
    url: str
    clock: FakeClock
    made: list[Harness] = field(default_factory=list)

    def __call__(self, log_key: LogKey | None = None, *, routing: Routing | None = None) -> Harness:
        """Another, independent wiring (own engine and pool) on the same database."""
        harness = build_harness(self.url, self.clock, log_key, routing=routing)
        self.made.append(harness)
        return harness
