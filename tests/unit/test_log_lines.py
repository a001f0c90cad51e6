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
