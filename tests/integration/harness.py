"""Test helpers shared by every suite: a database of the test's own on SQLite or PostgreSQL,
and the server's own wiring on it with a clock the test moves.

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
from airlock_server.app.sessions import SessionService
from airlock_server.app.teams import TeamService
from airlock_server.app.vaults import VaultService
from airlock_server.bootstrap import Wiring, wire
from airlock_server.config import Settings
from airlock_server.domain.notifications import Routing
from airlock_server.persistence.event_log import PgListenSignal, PollSignal

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
    """The server's own wiring (bootstrap.wire) on one database, with a clock the test moves,
    and raw SQL for checks."""

    url: str
    clock: FakeClock
    wiring: Wiring

    @property
    def engine(self) -> AsyncEngine:
        return self.wiring.engine

    @property
    def deps(self) -> Deps:
        return self.wiring.deps

    @property
    def identities(self) -> IdentityService:
        return self.wiring.app.identities

    @property
    def teams(self) -> TeamService:
        return self.wiring.app.teams

    @property
    def sessions(self) -> SessionService:
        return self.wiring.app.sessions

    @property
    def vaults(self) -> VaultService:
        return self.wiring.app.vaults

    @property
    def audit(self) -> AuditService:
        return self.wiring.app.audit

    @property
    def notifications(self) -> NotificationService:
        return self.wiring.notifications

    @property
    def signal(self) -> PgListenSignal | PollSignal:
        return self.wiring.signal

    @property
    def backend(self) -> str:
        return self.engine.dialect.name

    async def count(self, table: str, where: str = "") -> int:
        async with self.engine.connect() as conn:
            value = await conn.scalar(
                text(f"SELECT count(*) FROM {table}" + (f" WHERE {where}" if where else ""))
            )
        return int(value or 0)

    async def counts(self, *tables: str) -> dict[str, int]:
        return {t: await self.count(t) for t in tables}

    async def snapshot(self) -> dict[str, object]:
        """What a refused call must leave as it was."""
        out: dict[str, object] = {}
        async with self.engine.connect() as conn:
            for table, order in (
                ("sessions", "session_id"),
                ("votes", "session_id, approver_id"),
                ("vaults", "vault_arn"),
                ("restore_access_grants", "grant_id"),
            ):
                rows = await conn.execute(text(f"SELECT * FROM {table} ORDER BY {order}"))
                out[table] = [tuple(r) for r in rows]
            out["events"] = await conn.scalar(text("SELECT count(*) FROM events"))
        return out

    async def close(self) -> None:
        await self.wiring.close()


def build_harness(
    url: str,
    clock: FakeClock,
    log_key: LogKey | None = None,
    *,
    routing: Routing | None = None,
    region: str = Settings.region,
    poll: float = 0.05,
    watch_poll: float = 2.0,
) -> Harness:
    """bootstrap.wire() with the test's own clock; with `log_key`, appends are signed and rows
    MACed with it, as a server with a key file (docs/threat-model.md); `routing`: where email
    notifications go (by default none, webhooks only); `poll` (SQLite's) and `watch_poll`
    (the safety poll): how soon watchers see what others committed."""
    settings = Settings(
        database_url=url,
        db_pool_size=5,
        region=region,
        events_poll_interval=poll,
        events_safety_poll=watch_poll,
    )
    return Harness(url, clock, wire(settings, log_key, clock=clock, routing=routing))


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
