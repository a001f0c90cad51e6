"""Shared fixtures: a migrated database on SQLite and on PostgreSQL, and the app wired on it.

The helpers behind them are in tests/integration/harness.py. The `backend` fixture runs each
test that needs a database once per backend (ids `sqlite` and `postgresql`; the latter carries
the `postgres` marker, so `-m "not postgres"` leaves PostgreSQL out).
"""

from __future__ import annotations

import os
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
import pytest_asyncio
from integration.harness import (
    BACKENDS,
    FakeClock,
    Harness,
    HarnessFactory,
    empty_database,
    require_postgres,
)

from airlock_server.app.common import Deps
from airlock_server.bootstrap import Wiring, wire
from airlock_server.config import Settings
from airlock_server.domain.principals import Principal
from airlock_server.persistence.migrate import upgrade

# Server processes started by tests inherit this: small pools keep a whole run (several
# servers, three replicas, in-process engines) well under PostgreSQL's 100 connections.
os.environ.setdefault("AIRLOCK_DB_POOL_SIZE", "4")

# Re-exported: tests/e2e/conftest.py reaches these through this module.
__all__ = ["empty_database", "require_postgres"]


@pytest.fixture(params=BACKENDS)
def backend(request: pytest.FixtureRequest) -> str:
    value: str = request.param
    return value


@pytest_asyncio.fixture
async def empty_database_url(backend: str, tmp_path: Path) -> AsyncIterator[str]:
    """A database with no schema yet, on each backend."""
    async with empty_database(backend, tmp_path) as url:
        yield url


@pytest_asyncio.fixture
async def database_url(empty_database_url: str) -> str:
    """A database migrated to head, on each backend."""
    await upgrade(empty_database_url)
    return empty_database_url


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest_asyncio.fixture
async def harnesses(database_url: str, clock: FakeClock) -> AsyncIterator[HarnessFactory]:
    factory = HarnessFactory(database_url, clock)
    try:
        yield factory
    finally:
        for h in factory.made:
            await h.close()


@pytest_asyncio.fixture
async def app(harnesses: HarnessFactory) -> Harness:
    """The use cases on a migrated database of each backend, with a fake clock."""
    return harnesses()


@pytest_asyncio.fixture
async def admin(app: Harness) -> Principal:
    """The first admin, as bootstrap creates it and authentication recognizes it."""
    issued = await app.identities.bootstrap_admin()
    caller = await app.identities.authenticate(issued.token)
    return caller.principal


@pytest.fixture
def deps(app: Harness) -> Deps:
    """The app layer's dependencies on the test database, with the fake clock."""
    return app.deps


@pytest_asyncio.fixture
async def wiring(database_url: str) -> AsyncIterator[Wiring]:
    """The server's own composition root (real clock) on the test database."""
    wired = wire(Settings(database_url=database_url))
    try:
        yield wired
    finally:
        await wired.close()
