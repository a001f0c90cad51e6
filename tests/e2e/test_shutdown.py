"""Graceful shutdown: SIGTERM (and SIGINT) make the server say NOT_SERVING to health watchers,
let calls in flight finish within the grace period, and exit with status 0."""

from __future__ import annotations

import asyncio
import signal
from typing import TYPE_CHECKING

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc
from sqlalchemy import text

from airlock.v1 import identity_service_pb2, identity_service_pb2_grpc

if TYPE_CHECKING:  # the `server` fixture's type; a conftest is not importable at run time
    from e2e.conftest import ServerProcess

pytestmark = pytest.mark.asyncio

SERVING = health_pb2.HealthCheckResponse.SERVING
NOT_SERVING = health_pb2.HealthCheckResponse.NOT_SERVING
TIMEOUT = 30.0


def events(server: ServerProcess) -> list[str]:
    return [str(r.get("event")) for r in server.log_records()]


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT], ids=["SIGTERM", "SIGINT"])
async def test_a_signal_turns_health_to_not_serving_and_exits_zero(
    quiet_server: ServerProcess, sig: signal.Signals
) -> None:
    server = quiet_server
    async with server.channel() as channel:
        identity = identity_service_pb2_grpc.IdentityServiceStub(channel)
        me = await identity.WhoAmI(
            identity_service_pb2.WhoAmIRequest(),
            metadata=(("authorization", f"Bearer {server.admin_token}"),),
            timeout=TIMEOUT,
        )
        assert me.credential_id

        # A health watch is a call in flight across the signal: it keeps being answered
        # during the grace period and is told NOT_SERVING.
        watch = health_pb2_grpc.HealthStub(channel).Watch(
            health_pb2.HealthCheckRequest(service=""), timeout=TIMEOUT
        )
        first = await watch.read()
        assert isinstance(first, health_pb2.HealthCheckResponse)
        assert first.status == SERVING

        server.process.send_signal(sig)
        second = await watch.read()
        assert isinstance(second, health_pb2.HealthCheckResponse)
        assert second.status == NOT_SERVING
        watch.cancel()

    code = await asyncio.to_thread(server.wait_stopped)  # bounded; SIGKILL only if it hangs
    assert code == 0
    seen = events(server)
    assert "server.stopping" in seen
    assert seen[-1] == "server.stopped"
    assert seen.index("server.started") < seen.index("server.stopping")
    # The signals were handled on the production default loop (AIRLOCK_EVENT_LOOP).
    [started] = [r for r in server.log_records() if r.get("event") == "server.started"]
    assert started["event_loop"] == "uvloop"


async def test_calls_in_flight_at_sigterm_finish_whole(quiet_server: ServerProcess) -> None:
    """Business calls racing SIGTERM: each either finishes OK with its effect committed, or is
    turned away (UNAVAILABLE, or CANCELLED if it had reached the server but no handler yet) with
    no effect; none is cut off halfway."""
    server = quiet_server
    prefix = f"shutdown-{server.port}-"
    names = [f"{prefix}{i:02d}" for i in range(40)]
    auth = (("authorization", f"Bearer {server.admin_token}"),)
    async with server.channel() as channel:
        identity = identity_service_pb2_grpc.IdentityServiceStub(channel)
        calls = [
            asyncio.ensure_future(
                identity.CreateApprover(
                    identity_service_pb2.CreateApproverRequest(approver_id=name, display_name=name),
                    metadata=auth,
                    timeout=TIMEOUT,
                )
            )
            for name in names
        ]
        await asyncio.wait(calls, return_when=asyncio.FIRST_COMPLETED)
        server.process.send_signal(signal.SIGTERM)
        results = await asyncio.gather(*calls, return_exceptions=True)

    answered_ok = set()
    for name, result in zip(names, results, strict=True):
        if isinstance(result, grpc.aio.AioRpcError):
            assert result.code() in (grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.CANCELLED), (
                name,
                result,
            )
        else:
            assert not isinstance(result, BaseException), (name, result)
            answered_ok.add(name)
    assert answered_ok  # at least the call that finished before the signal

    assert await asyncio.to_thread(server.wait_stopped) == 0
    async with server.database() as engine, engine.connect() as conn:
        stored = set(
            await conn.scalars(
                text("SELECT approver_id FROM approvers WHERE approver_id LIKE :p").bindparams(
                    p=f"{prefix}%"
                )
            )
        )
    assert stored == answered_ok
