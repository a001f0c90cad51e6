"""PostgreSQL: the LISTEN connection that keeps this process's credential cache honest.

The `credentials` table's trigger (migration 0012) sends `pg_notify('airlock_credentials',
credential_id)` for every changed or deleted row, delivered at commit to every replica; the
watch drops that credential from the cache. While the connection is down, notifications are
missed, so the cache is suspended (serves nothing, every RPC reads its credential) until the
watch is listening again, and then starts empty.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Iterable
from typing import Any, Protocol

import asyncpg
import structlog
from sqlalchemy.engine import make_url


class Cache(Protocol):
    """What the watch tells the cache (app/credential_cache.py)."""

    def drop(self, credential_ids: Iterable[str]) -> None: ...
    def suspend(self) -> None: ...
    def resume(self) -> None: ...


CHANNEL = "airlock_credentials"
# Between attempts while the database is away: short, so that the cache comes back soon after
# the database does; capped, so that an outage costs few connection attempts.
RETRY_FIRST = 0.2
RETRY_CAP = 5.0
PROBE_INTERVAL = 5.0

log = structlog.get_logger("airlock.credentials")


class CredentialWatch:
    def __init__(self, database_url: str, cache: Cache) -> None:
        self._dsn = (
            make_url(database_url)
            .set(drivername="postgresql")
            .render_as_string(hide_password=False)
        )
        self._cache = cache
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        if self._task is None:
            self._task = asyncio.get_running_loop().create_task(self._run())

    def _changed(self, _conn: Any, _pid: int, _channel: str, payload: str) -> None:
        self._cache.drop([payload])

    async def _run(self) -> None:
        delay = RETRY_FIRST
        while True:
            try:
                conn = await asyncpg.connect(self._dsn, timeout=10)
            except Exception as exc:  # an outage: try again later
                log.warning("credentials.listen_failed", error=type(exc).__name__)
                await asyncio.sleep(delay)
                delay = min(delay * 2, RETRY_CAP)
                continue
            try:
                await self._listen(conn)
            except Exception as exc:  # the watch outlives any connection
                log.warning("credentials.listen_failed", error=type(exc).__name__)
            finally:
                self._cache.suspend()
                with contextlib.suppress(Exception):
                    await conn.close(timeout=1)
            delay = RETRY_FIRST
            await asyncio.sleep(delay)

    async def _listen(self, conn: asyncpg.Connection) -> None:
        """Until the connection is lost."""
        lost = asyncio.Event()
        conn.add_termination_listener(lambda _c: lost.set())
        await conn.add_listener(CHANNEL, self._changed)
        # Listening from here on: what was cached before may have missed a change.
        self._cache.resume()
        log.info("credentials.listening", channel=CHANNEL)
        while not lost.is_set():
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(lost.wait(), PROBE_INTERVAL)
            if not lost.is_set():
                # A connection can die without closing (a network partition): ask it.
                await conn.fetchval("SELECT 1", timeout=PROBE_INTERVAL)
        log.warning("credentials.listen_lost", effect="credentials read on every RPC")

    async def close(self) -> None:
        task, self._task = self._task, None
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
        self._cache.suspend()
