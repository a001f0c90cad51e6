"""clients/airlock_client/service-config.json: the SDK's retry policy for callers in any language.

The JSON must say what RetryPolicy does (codes, attempts, backoff), name every service of the
contract, ship inside the package, and work: a real gRPC channel given it retries a real server's
UNAVAILABLE and ABORTED, and nothing else, up to the SDK's attempt count (or gRPC's cap of 5).
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from importlib import resources
from typing import Any

import grpc
import pytest
import pytest_asyncio

from airlock.v1 import (
    approver_service_pb2,
    audit_service_pb2,
    identity_service_pb2,
    session_service_pb2,
    team_service_pb2,
    vault_service_pb2,
)
from airlock_client.client import RetryPolicy

MODULES = (
    approver_service_pb2,
    audit_service_pb2,
    identity_service_pb2,
    session_service_pb2,
    team_service_pb2,
    vault_service_pb2,
)
TEXT = resources.files("airlock_client").joinpath("service-config.json").read_text("utf-8")
CONFIG: dict[str, Any] = json.loads(TEXT)
POLICY = RetryPolicy()
METHOD = "/airlock.v1.IdentityService/WhoAmI"
# gRFC A6: gRPC libraries clamp maxAttempts to 5 (grpc-java lets a channel raise it with
# maxRetryAttempts); the JSON states the SDK's count all the same.
GRPC_MAX_ATTEMPTS = 5
ATTEMPTS = min(POLICY.max_attempts, GRPC_MAX_ATTEMPTS)


def _seconds(duration: str) -> float:
    assert duration.endswith("s"), duration
    return float(duration.removesuffix("s"))


def test_the_json_is_the_sdks_policy() -> None:
    [entry] = CONFIG["methodConfig"]
    retry = entry["retryPolicy"]
    assert retry["maxAttempts"] == POLICY.max_attempts
    assert _seconds(retry["initialBackoff"]) == POLICY.initial_backoff
    assert _seconds(retry["maxBackoff"]) == POLICY.max_backoff
    assert retry["backoffMultiplier"] == POLICY.multiplier
    assert set(retry["retryableStatusCodes"]) == {c.name for c in POLICY.retryable}


def test_it_names_every_service_of_the_contract() -> None:
    [entry] = CONFIG["methodConfig"]
    named = {n["service"] for n in entry["name"]}
    services = {s.full_name for m in MODULES for s in m.DESCRIPTOR.services_by_name.values()}
    assert named == services


class Flaky:
    """A WhoAmI that fails with `code` until `failures` calls have failed, then answers."""

    def __init__(self) -> None:
        self.code = grpc.StatusCode.UNAVAILABLE
        self.failures = 0
        self.calls = 0

    async def answer(self, request: bytes, context: grpc.aio.ServicerContext[Any, Any]) -> bytes:
        self.calls += 1
        if self.calls <= self.failures:
            await context.abort(self.code, "try again")
        return identity_service_pb2.WhoAmIResponse(credential_id="c").SerializeToString()


@pytest_asyncio.fixture
async def flaky() -> AsyncIterator[tuple[Flaky, str]]:
    handler = Flaky()
    server = grpc.aio.server()
    # Raw bytes in and out: no serializers given.
    method: grpc.RpcMethodHandler[Any, Any] = grpc.unary_unary_rpc_method_handler(handler.answer)
    server.add_generic_rpc_handlers(
        (grpc.method_handlers_generic_handler("airlock.v1.IdentityService", {"WhoAmI": method}),)
    )
    port = server.add_insecure_port("127.0.0.1:0")
    await server.start()
    try:
        yield handler, f"127.0.0.1:{port}"
    finally:
        await server.stop(None)


async def whoami(target: str) -> grpc.StatusCode:
    options = [("grpc.service_config", TEXT), ("grpc.enable_retries", 1)]
    async with grpc.aio.insecure_channel(target, options=options) as channel:
        call: grpc.aio.UnaryUnaryMultiCallable[bytes, bytes] = channel.unary_unary(METHOD)
        try:
            await call(b"", timeout=30)
        except grpc.aio.AioRpcError as err:
            return err.code()
    return grpc.StatusCode.OK


@pytest.mark.asyncio
@pytest.mark.parametrize("code", [grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.ABORTED])
async def test_a_channel_given_it_retries_what_the_sdk_retries(
    flaky: tuple[Flaky, str], code: grpc.StatusCode
) -> None:
    handler, target = flaky
    handler.code, handler.failures = code, ATTEMPTS - 1
    assert await whoami(target) is grpc.StatusCode.OK
    assert handler.calls == ATTEMPTS


@pytest.mark.asyncio
async def test_it_gives_up_after_the_attempts(flaky: tuple[Flaky, str]) -> None:
    handler, target = flaky
    handler.failures = POLICY.max_attempts
    assert await whoami(target) is grpc.StatusCode.UNAVAILABLE
    assert handler.calls == ATTEMPTS


@pytest.mark.asyncio
async def test_other_codes_are_not_retried(flaky: tuple[Flaky, str]) -> None:
    handler, target = flaky
    handler.code, handler.failures = grpc.StatusCode.FAILED_PRECONDITION, 1
    assert await whoami(target) is grpc.StatusCode.FAILED_PRECONDITION
    assert handler.calls == 1
