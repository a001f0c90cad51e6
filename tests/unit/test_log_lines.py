"""Every line the server writes to stderr is one JSON object: structlog's own, and the standard
library's records (asyncio, grpc, Alembic) that reach the root logger."""

from __future__ import annotations

import json
import logging
from collections.abc import Iterator
from typing import Any

import pytest
import structlog

from airlock_server.logs import configure_logging


@pytest.fixture
def json_logs() -> Iterator[None]:
    root = logging.getLogger()
    handlers, level = list(root.handlers), root.level
    configure_logging("json", "info")
    yield
    root.handlers[:] = handlers
    root.setLevel(level)
    structlog.reset_defaults()


def _lines(err: str) -> list[dict[str, Any]]:
    return [json.loads(line) for line in err.splitlines() if line.strip()]


def test_a_stdlib_record_with_a_traceback_is_one_json_line(
    json_logs: None, capsys: pytest.CaptureFixture[str]
) -> None:
    secret = "tok_must_not_appear"  # a local of the failing frame

    def fail() -> None:
        raise ConnectionResetError("peer went away")

    try:
        fail()
    except ConnectionResetError:
        logging.getLogger("asyncio").error(
            "Future exception was never retrieved\nfuture: <Future finished>", exc_info=True
        )
    err = capsys.readouterr().err
    [record] = _lines(err)
    assert record["event"].startswith("Future exception was never retrieved\n")
    assert record["logger"] == "asyncio"
    assert record["level"] == "error"
    assert "timestamp" in record
    [exc] = record["exception"]
    assert exc["exc_type"] == "ConnectionResetError"
    assert exc["exc_value"] == "peer went away"
    assert secret not in err


def test_structlog_and_stdlib_lines_share_the_level_threshold(
    json_logs: None, capsys: pytest.CaptureFixture[str]
) -> None:
    structlog.get_logger().info("rpc.completed", code="OK")
    structlog.get_logger().debug("hidden")
    logging.getLogger("alembic.runtime.migration").info("Running upgrade  -> 0001")
    logging.getLogger("grpc").debug("hidden too")
    records = _lines(capsys.readouterr().err)
    assert [r["event"] for r in records] == ["rpc.completed", "Running upgrade  -> 0001"]
    assert records[1]["logger"] == "alembic.runtime.migration"


def test_configuring_twice_keeps_one_handler(
    json_logs: None, capsys: pytest.CaptureFixture[str]
) -> None:
    configure_logging("json", "info")
    logging.getLogger("asyncio").warning("once")
    assert len(_lines(capsys.readouterr().err)) == 1


def test_the_console_is_readable_and_as_careful(capsys: pytest.CaptureFixture[str]) -> None:
    root = logging.getLogger()
    handlers, level = list(root.handlers), root.level
    configure_logging("console", "info")
    try:
        token = "tok_secret_local"  # a local of the failing frame: never printed

        class FakeDriverError(Exception):
            pass

        FakeDriverError.__module__ = "asyncpg.exceptions"  # what the console must hide
        try:
            raise FakeDriverError(f"Key (key)=({token}) already exists")
        except FakeDriverError:
            structlog.get_logger().exception("rpc.failed", method="/airlock.v1.X/Y")
        structlog.get_logger().info("rpc.completed", code="OK")
    finally:
        root.handlers[:] = handlers
        root.setLevel(level)
        structlog.reset_defaults()
    err = capsys.readouterr().err
    assert token not in err
    assert "rpc.failed" in err
    assert "method=/airlock.v1.X/Y" in err
    assert "Traceback (most recent call last):" in err
    assert "FakeDriverError: (message hidden" in err
    assert "rpc.completed" in err
    assert "code=OK" in err
    with pytest.raises(json.JSONDecodeError):  # a terminal gets text, not JSON
        json.loads(err.splitlines()[0])
