"""The reference the benchmark compares Airlock to: a bare grpc.aio server whose one method
does one INSERT transaction per call, and nothing else (no auth, no logging, no ORM).

    python bench/reference_server.py --database-url postgresql://postgres@127.0.0.1/db \
        --ready-file F
    python bench/reference_server.py --database-url sqlite:////tmp/x/ref.db --ready-file F

Methods: /bench.Reference/Insert, bytes in, bytes out (a generic handler with identity
serializers, so there is no proto). PostgreSQL: an asyncpg pool, `BEGIN; INSERT; COMMIT`.
SQLite: one aiosqlite connection with the pragmas Airlock uses (WAL, synchronous=NORMAL),
`BEGIN IMMEDIATE; INSERT; COMMIT`, calls queued on an asyncio lock as Airlock's one-connection
pool queues them. /bench.Reference/Echo answers its request and touches no database: the bare
grpc.aio floor that the read scenarios are compared to. Stops on SIGTERM or SIGINT.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import signal
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import grpc

METHOD = "/bench.Reference/Insert"
SERVICE = "bench.Reference"

Insert = Callable[[bytes], Awaitable[None]]


async def _postgres(dsn: str, pool_size: int) -> tuple[Insert, Callable[[], Awaitable[None]]]:
    import asyncpg

    con = await asyncpg.connect(dsn)
    try:
        await con.execute(
            "CREATE TABLE IF NOT EXISTS ref_insert (id bigserial PRIMARY KEY, payload bytea "
            "NOT NULL, created_at timestamptz NOT NULL DEFAULT now())"
        )
    finally:
        await con.close()
    pool = await asyncpg.create_pool(dsn, min_size=pool_size, max_size=pool_size)

    async def insert(payload: bytes) -> None:
        async with pool.acquire() as c, c.transaction():
            await c.execute("INSERT INTO ref_insert(payload) VALUES ($1)", payload)

    async def close() -> None:
        await pool.close()

    return insert, close


async def _sqlite(path: str) -> tuple[Insert, Callable[[], Awaitable[None]]]:
    import aiosqlite

    db = await aiosqlite.connect(path, isolation_level=None)
    for pragma in (
        "PRAGMA journal_mode=WAL",
        "PRAGMA synchronous=NORMAL",
        "PRAGMA busy_timeout=30000",
    ):
        await db.execute(pragma)
    await db.execute(
        "CREATE TABLE IF NOT EXISTS ref_insert (id INTEGER PRIMARY KEY, payload BLOB NOT NULL, "
        "created_at REAL NOT NULL)"
    )
    lock = asyncio.Lock()

    async def insert(payload: bytes) -> None:
        async with lock:
            await db.execute("BEGIN IMMEDIATE")
            try:
                await db.execute(
                    "INSERT INTO ref_insert(payload, created_at) VALUES (?, ?)",
                    (payload, time.time()),
                )
            except BaseException:
                await db.execute("ROLLBACK")
                raise
            await db.execute("COMMIT")

    async def close() -> None:
        await db.close()

    return insert, close


def _sqlite_path(url: str) -> str:
    for prefix in ("sqlite+aiosqlite:///", "sqlite:///"):
        if url.startswith(prefix):
            return url[len(prefix) :]
    raise SystemExit(f"not a sqlite URL: {url}")


async def serve(url: str, listen: str, ready_file: Path | None, pool_size: int) -> None:
    if url.startswith("sqlite"):
        insert, close = await _sqlite(_sqlite_path(url))
    else:
        insert, close = await _postgres(
            url.replace("postgresql+asyncpg://", "postgresql://"), pool_size
        )

    async def handle(request: bytes, context: Any) -> bytes:
        await insert(request)
        return b""

    def ident(b: bytes) -> bytes:
        return b

    async def echo(request: bytes, context: Any) -> bytes:
        return request

    handler = grpc.unary_unary_rpc_method_handler(
        handle, request_deserializer=ident, response_serializer=ident
    )
    echo_handler = grpc.unary_unary_rpc_method_handler(
        echo, request_deserializer=ident, response_serializer=ident
    )
    server = grpc.aio.server()
    server.add_generic_rpc_handlers(
        (grpc.method_handlers_generic_handler(SERVICE, {"Insert": handler, "Echo": echo_handler}),)
    )
    port = server.add_insecure_port(listen)
    await server.start()
    if ready_file is not None:
        await asyncio.to_thread(ready_file.write_text, f"{port}\n")
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    await stop.wait()
    await server.stop(2)
    with contextlib.suppress(Exception):
        await close()


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--database-url", required=True)
    p.add_argument("--listen", default="127.0.0.1:0")
    p.add_argument("--ready-file", type=Path)
    p.add_argument("--pool-size", type=int, default=16, help="asyncpg pool size (PostgreSQL)")
    a = p.parse_args()
    asyncio.run(serve(a.database_url, a.listen, a.ready_file, a.pool_size))


if __name__ == "__main__":
    main()
