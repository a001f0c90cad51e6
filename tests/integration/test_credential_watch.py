"""The credential cache as the server wires it (issue 11): what it verified it serves without a
round trip; PostgreSQL's trigger announces every change of a credential row, and the watch drops
it; a lost LISTEN connection empties the cache, which is used again once the watch listens."""

from __future__ import annotations

import asyncio
from collections.abc import Callable

import pytest
from sqlalchemy import text

from airlock_server.app.credential_cache import CredentialCache
from airlock_server.bootstrap import Wiring

pytestmark = pytest.mark.asyncio

BOUND = 10.0  # every wait below ends well before this, or the test fails
STEP = 0.01


async def _until(condition: Callable[[], bool], what: str) -> None:
    for _ in range(int(BOUND / STEP)):
        if condition():
            return
        await asyncio.sleep(STEP)
    raise AssertionError(f"not within {BOUND} s: {what}")


async def _cached(wiring: Wiring) -> tuple[CredentialCache, str]:
    cache = wiring.deps.credentials
    assert cache is not None
    wiring.start()
    await _until(lambda: cache.live, "the cache is live")
    issued = await wiring.app.identities.bootstrap_admin()
    await wiring.app.identities.authenticate(issued.token)
    assert len(cache) == 1
    return cache, issued.token


async def test_a_verified_credential_is_cached_and_a_revoked_one_dropped(wiring: Wiring) -> None:
    cache, token = await _cached(wiring)
    caller = await wiring.app.identities.authenticate(token)
    await wiring.app.identities.revoke_credential(caller.principal, caller.credential_id, "")
    assert len(cache) == 0


@pytest.mark.postgres
async def test_a_change_made_by_sql_is_announced_and_dropped(wiring: Wiring, backend: str) -> None:
    if backend != "postgresql":
        pytest.skip("SQLite has no NOTIFY; its one process drops what it revokes")
    cache, _ = await _cached(wiring)
    async with wiring.engine.begin() as conn:
        # A no-op for the row's MAC, still a change for the trigger.
        await conn.execute(text("UPDATE credentials SET revoke_time = revoke_time"))
    await _until(lambda: len(cache) == 0, "the change reached the cache")


@pytest.mark.postgres
async def test_a_lost_listen_connection_empties_the_cache_until_it_listens_again(
    wiring: Wiring, backend: str
) -> None:
    if backend != "postgresql":
        pytest.skip("PostgreSQL's LISTEN connection")
    cache, token = await _cached(wiring)
    generation = cache.generation
    async with wiring.engine.begin() as conn:
        killed = await conn.scalar(
            text(
                "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity "
                "WHERE datname = current_database() AND pid <> pg_backend_pid() "
                "AND query LIKE '%airlock_credentials%'"
            )
        )
    assert killed == 1
    # Suspended (emptied) when the connection was lost, emptied again when listening anew.
    await _until(lambda: cache.generation >= generation + 2 and cache.live, "listening again")
    assert len(cache) == 0
    await wiring.app.identities.authenticate(token)
    assert len(cache) == 1
