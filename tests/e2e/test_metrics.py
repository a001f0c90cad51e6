"""What an operator sees of a real server (each backend): `serve --metrics-listen` exports the
RPC metric by method and code and the service's gauges for Prometheus, and every
`rpc.completed` line carries the trace id, the request id and the peer."""

from __future__ import annotations

import asyncio
import os
import re
import secrets
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

import grpc
import pytest
from integration.harness import BACKENDS

from airlock.v1 import (
    audit_service_pb2,
    audit_service_pb2_grpc,
    identity_service_pb2,
    identity_service_pb2_grpc,
    team_service_pb2,
    team_service_pb2_grpc,
)

if TYPE_CHECKING:  # the fixture's type; a conftest is not importable at run time
    from e2e.conftest import ServerProcess

STEP = 10.0
GAUGES = (
    "airlock_sessions_pending",
    "airlock_sessions_oldest_pending_age",
    "airlock_team_slack",
    "airlock_streams_open",
    "airlock_events_buffered",
    "airlock_db_pool_in_use",
    "airlock_db_pool_size",
    "airlock_sweeper_failures_total",
)


def unique(prefix: str) -> str:
    return f"{prefix}-{secrets.token_hex(4)}"


def _e2e_helpers(request: pytest.FixtureRequest) -> Any:
    """tests/e2e/conftest.py as pytest loaded it (a conftest is not importable by name)."""
    path = Path(__file__).with_name("conftest.py")
    for plugin in request.config.pluginmanager.get_plugins():
        if getattr(plugin, "__file__", None) == str(path):
            return plugin
    raise AssertionError("tests/e2e/conftest.py was not loaded")


@pytest.fixture(params=BACKENDS)
def metered(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[ServerProcess]:
    with _e2e_helpers(request).served_database(
        request.config,
        request.param,
        tmp_path / "server",
        env={"AIRLOCK_METRICS_LISTEN": "127.0.0.1:0", "AIRLOCK_METRICS_INTERVAL": "0.2"},
    ) as running:
        yield running


def metrics_address(server: ServerProcess) -> str:
    [started] = [r for r in server.log_records() if r.get("event") == "server.started"]
    address = started["metrics_listen"]
    assert re.fullmatch(r"127\.0\.0\.1:\d+", address), address
    return str(address)


def scrape(address: str) -> str:
    with urllib.request.urlopen(f"http://{address}/metrics", timeout=STEP) as response:
        assert response.status == 200
        return str(response.read().decode())


def series(text: str, name: str) -> list[str]:
    return [line for line in text.splitlines() if line.startswith(name)]


def scrape_until(address: str, *names: str) -> str:
    """The metrics once each name has a series (the sampler reads the database at start)."""
    deadline = time.monotonic() + STEP
    while True:
        text = scrape(address)
        if all(series(text, n) for n in names) or time.monotonic() > deadline:
            return text
        time.sleep(0.1)


async def calls(server: ServerProcess, request_id: str, trace_id: str) -> None:
    """A call with a request id and a W3C trace context, a refused one, a team (for the slack
    gauge) and a stream left open while the metrics are scraped."""
    admin = (("authorization", f"Bearer {server.admin_token}"),)
    async with server.channel() as channel:
        identity = identity_service_pb2_grpc.IdentityServiceStub(channel)
        approvers = [unique("metric") for _ in range(2)]
        for i, approver in enumerate(approvers):
            await identity.CreateApprover(
                identity_service_pb2.CreateApproverRequest(
                    approver_id=approver,
                    display_name="Metric",
                    request_id=request_id if i == 0 else "",
                ),
                metadata=(*admin, ("traceparent", f"00-{trace_id}-{secrets.token_hex(8)}-01")),
            )
        with pytest.raises(grpc.aio.AioRpcError) as missing:
            await identity.GetApprover(
                identity_service_pb2.GetApproverRequest(approver_id="nobody-here"),
                metadata=admin,
            )
        assert missing.value.code() == grpc.StatusCode.NOT_FOUND
        await team_service_pb2_grpc.TeamServiceStub(channel).CreateApprovalTeam(
            team_service_pb2.CreateApprovalTeamRequest(
                name=unique("metrics"), approver_ids=approvers, min_approvals=2
            ),
            metadata=admin,
        )


async def open_stream(server: ServerProcess) -> tuple[grpc.aio.Channel, object]:
    channel = server.channel()
    call = audit_service_pb2_grpc.AuditServiceStub(channel).WatchEvents(
        audit_service_pb2.WatchEventsRequest(),
        metadata=(("authorization", f"Bearer {server.admin_token}"),),
    )
    assert await asyncio.wait_for(call.read(), STEP) is not grpc.aio.EOF
    return channel, call


def watch_lines(server: ServerProcess) -> list[dict[str, Any]]:
    return [
        r
        for r in server.log_records()
        if r.get("event") == "rpc.completed" and r["method"].endswith("/WatchEvents")
    ]


def test_metrics_and_log_fields_of_a_real_server(metered: ServerProcess) -> None:
    address = metrics_address(metered)
    request_id, trace_id = unique("req"), secrets.token_hex(16)

    async def scenario() -> str:
        await calls(metered, request_id, trace_id)
        channel, call = await open_stream(metered)
        try:
            return await asyncio.to_thread(scrape_until, address, *GAUGES)
        finally:
            call.cancel()  # type: ignore[attr-defined]
            await channel.close()

    text = asyncio.run(scenario())

    # The RPC metric, by service, method and code: NOT_FOUND is 5.
    found = series(text, "rpc_server_call_duration_seconds_count")
    assert any(
        'rpc_method="GetApprover"' in s and 'rpc_grpc_status_code="5"' in s for s in found
    ), found
    assert any(
        'rpc_method="CreateApprover"' in s
        and 'rpc_service="airlock.v1.IdentityService"' in s
        and 'rpc_grpc_status_code="0"' in s
        for s in found
    ), found
    for name in GAUGES:
        assert series(text, name), f"{name} missing:\n{text}"
    assert [s for s in series(text, "airlock_streams_open") if s.endswith(" 1.0")]
    assert [s for s in series(text, "airlock_team_slack{") if s.endswith(" -2.0")]
    failures = series(text, "airlock_sweeper_failures_total{")
    assert {s.split('task="')[1].split('"')[0] for s in failures} == {
        "invitations",
        "deletions",
        "sessions",
        "reminders",
    }

    # The log lines: trace id (the caller's, when it sent one), request id, peer; the stream
    # the client cancelled is logged CANCELLED.
    deadline = time.monotonic() + STEP
    while not watch_lines(metered) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert [r["code"] for r in watch_lines(metered)] == ["CANCELLED"]
    completed = [r for r in metered.log_records() if r.get("event") == "rpc.completed"]
    [with_id] = [r for r in completed if r.get("request_id") == request_id]
    assert with_id["trace_id"] == trace_id
    assert with_id["peer"].startswith("ipv4:127.0.0.1:")
    for record in completed:
        assert re.fullmatch(r"[0-9a-f]{32}", record["trace_id"]), record
        assert record["trace_id"] != "0" * 32
        assert record["peer"], record


def test_a_metrics_port_in_use_stops_the_start_with_one_error_line(tmp_path: Path) -> None:
    """Like the gRPC address: exit 2 and one `error:` line naming the metrics address."""
    server_bin = Path(sys.executable).parent / "airlock-server"
    database = f"sqlite:///{tmp_path / 'airlock.db'}"
    env = {k: v for k, v in os.environ.items() if not k.startswith("AIRLOCK_")}

    def run(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [str(server_bin), "--log-format", "json", "--database-url", database, *args],
            capture_output=True,
            text=True,
            timeout=60,
            cwd=tmp_path,
            env=env,
            check=False,
        )

    assert run("migrate").returncode == 0
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        address = f"127.0.0.1:{taken.getsockname()[1]}"
        done = run("serve", "--listen", "127.0.0.1:0", "--metrics-listen", address)
    assert done.returncode == 2, done.stderr
    assert done.stderr.count("\n") == 1, done.stderr
    assert done.stderr.startswith(f"error: cannot listen on {address} for metrics"), done.stderr
