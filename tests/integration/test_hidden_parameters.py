"""A database error never carries bound values into a log line: a comment, a key or a token hash
that was a parameter of a failed statement stays out of the exception text the server logs, on
both databases (PostgreSQL's DETAIL quotes a duplicate key; asyncpg quotes a bad argument)."""

from __future__ import annotations

import json
import logging
from collections.abc import Iterator

import pytest
import structlog
from sqlalchemy import text
from sqlalchemy.exc import DBAPIError

from airlock_server.logs import configure_logging
from airlock_server.persistence.db import create_engine

SECRET = "comment body: call me on +1 555 0100"


@pytest.fixture
def json_logs() -> Iterator[None]:
    root = logging.getLogger()
    handlers, level = list(root.handlers), root.level
    configure_logging("json", "info")
    yield
    root.handlers[:] = handlers
    root.setLevel(level)
    structlog.reset_defaults()


@pytest.mark.asyncio
async def test_a_failed_statement_is_logged_without_its_values(
    database_url: str, json_logs: None, capsys: pytest.CaptureFixture[str]
) -> None:
    engine = create_engine(database_url, pool_size=1)
    insert = text("INSERT INTO settings (key, value) VALUES (:key, :value)")
    try:
        async with engine.begin() as conn:
            await conn.execute(insert, {"key": SECRET[:64], "value": SECRET})
            with pytest.raises(DBAPIError) as failed:
                await conn.execute(insert, {"key": SECRET[:64], "value": SECRET})
            try:
                raise RuntimeError("the use case failed") from failed.value
            except RuntimeError:
                structlog.get_logger().exception("rpc.failed", method="/airlock.v1.X/Y")
            await conn.rollback()
    finally:
        await engine.dispose()
    err = capsys.readouterr().err
    assert SECRET[:20] not in err
    [record] = [json.loads(line) for line in err.splitlines() if line.strip()]
    ours, *database = record["exception"]  # the logged error, then its cause's chain
    assert (ours["exc_type"], ours["exc_value"]) == ("RuntimeError", "the use case failed")
    assert database
    assert all(e["exc_value"].startswith("(message hidden") for e in database)
    # SQLAlchemy's wrapper keeps the statement (its placeholders, not its values).
    assert any("[SQL: INSERT INTO settings" in e["exc_value"] for e in database)
