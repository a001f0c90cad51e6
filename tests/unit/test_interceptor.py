"""RpcInterceptor on an in-process grpc.aio server: auth, error mapping and the log line.

No database: the authenticator is a fake with IdentityService's `authenticate`.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Iterator, MutableMapping
from dataclasses import dataclass, field
from typing import Any, cast

import grpc
import pytest
import pytest_asyncio
import structlog
from google.rpc import error_details_pb2, status_pb2
from grpc_health.v1 import health, health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection, reflection_pb2, reflection_pb2_grpc

from airlock.v1 import vault_service_pb2, vault_service_pb2_grpc
from airlock_server.app.identity import Caller, IdentityService
from airlock_server.domain.errors import InvalidArgument, NotFound, Unauthenticated
from airlock_server.domain.principals import Principal, PrincipalKind
from airlock_server.transport.authentication import current_principal
from airlock_server.transport.interceptors import RpcInterceptor

GOOD = "alk_good-token-0123456789abcdefghijklmnopqrstuvwxyz"
APPROVER = "alk_approver-token-0123456789abcdefghijklmnopqrstuv"
SECRET = "s3cr3t-exception-text-that-must-not-leak"
SERVICE = "test.Probe"

Logs = list[MutableMapping[str, Any]]


@dataclass
class FakeIdentities:
    """What the interceptor needs of IdentityService, and a record of what it was asked."""

    seen: list[str] = field(default_factory=list)

    async def authenticate(self, token: str) -> Caller:
        self.seen.append(token)
        if token == GOOD:
            return Caller(Principal(PrincipalKind.ADMIN, ""), "cred-admin")
        if token == APPROVER:
            return Caller(Principal(PrincipalKind.APPROVER, "alice"), "cred-alice")
        raise Unauthenticated("the token is unknown, revoked or expired")


async def whoami(request: bytes, context: grpc.aio.ServicerContext[Any, Any]) -> bytes:
    return str(current_principal()).encode()


async def fail(request: bytes, context: grpc.aio.ServicerContext[Any, Any]) -> bytes:
    what = request.decode()
    if what == "not-found":
        raise NotFound("approver", "bob")
    if what == "invalid":
        raise InvalidArgument.field("name", "must match [a-zA-Z0-9._-]{1,64}")
    if what == "not-implemented":
        raise NotImplementedError("later")
    if what == "abort":
        await context.abort(grpc.StatusCode.RESOURCE_EXHAUSTED, "slow down")
    raise RuntimeError(SECRET)


async def stream(
    request: bytes, context: grpc.aio.ServicerContext[Any, Any]
) -> AsyncIterator[bytes]:
    yield b"one"
    yield b"two"
    what = request.decode()
    if what == "not-found":
        raise NotFound("session", "s-1")
    if what == "boom":
        raise RuntimeError(SECRET)
    if what == "not-implemented":
        raise NotImplementedError


HANDLERS = grpc.method_handlers_generic_handler(
    SERVICE,
    {
        "WhoAmI": grpc.unary_unary_rpc_method_handler(whoami),
        "Fail": grpc.unary_unary_rpc_method_handler(fail),
        "Stream": grpc.unary_stream_rpc_method_handler(stream),
    },
)


@dataclass
class Harness:
    channel: grpc.aio.Channel
    identities: FakeIdentities

    async def unary(self, method: str, request: bytes = b"", token: str | None = GOOD) -> bytes:
        call: grpc.aio.UnaryUnaryMultiCallable[bytes, bytes] = self.channel.unary_unary(
            f"/{SERVICE}/{method}"
        )
        metadata = (("authorization", f"Bearer {token}"),) if token is not None else None
        return await call(request, metadata=metadata, timeout=10)

    async def stream(
        self, request: bytes, token: str | None = GOOD, received: list[bytes] | None = None
    ) -> list[bytes]:
        """The messages of one server stream; also appended to `received` as they come."""
        call: grpc.aio.UnaryStreamMultiCallable[bytes, bytes] = self.channel.unary_stream(
            f"/{SERVICE}/Stream"
        )
        metadata = (("authorization", f"Bearer {token}"),) if token is not None else None
        out = received if received is not None else []
        async for message in call(request, metadata=metadata, timeout=10):
            out.append(message)
        return out


@pytest.fixture
def logs() -> Iterator[Logs]:
    """Every log entry of the test, captured for the whole test."""
    with structlog.testing.capture_logs() as captured:
        yield captured


@pytest_asyncio.fixture
async def harness() -> AsyncIterator[Harness]:
    identities = FakeIdentities()
    server = grpc.aio.server(interceptors=[RpcInterceptor(cast(IdentityService, identities))])
    server.add_generic_rpc_handlers((HANDLERS,))
    # A generated base servicer: every method raises NotImplementedError.
    vault_service_pb2_grpc.add_VaultServiceServicer_to_server(
        vault_service_pb2_grpc.VaultServiceServicer(),  # type: ignore[abstract]
        server,
    )
    health_pb2_grpc.add_HealthServicer_to_server(health.HealthServicer(), server)
    reflection.enable_server_reflection(
        (SERVICE, health.SERVICE_NAME, reflection.SERVICE_NAME), server
    )
    port = server.add_insecure_port("127.0.0.1:0")
    assert port
    await server.start()
    channel = grpc.aio.insecure_channel(f"127.0.0.1:{port}")
    try:
        yield Harness(channel, identities)
    finally:
        await channel.close()
        await server.stop(None)


def status_of(err: grpc.aio.AioRpcError) -> status_pb2.Status:
    for key, value in err.trailing_metadata() or ():
        if key == "grpc-status-details-bin":
            assert isinstance(value, bytes)
            return status_pb2.Status.FromString(value)
    raise AssertionError("no google.rpc.Status in the trailers")


def infos(status: status_pb2.Status) -> list[error_details_pb2.ErrorInfo]:
    out = []
    for d in status.details:
        if d.Is(error_details_pb2.ErrorInfo.DESCRIPTOR):
            info = error_details_pb2.ErrorInfo()
            d.Unpack(info)
            out.append(info)
    return out


def bad_requests(status: status_pb2.Status) -> list[error_details_pb2.BadRequest]:
    out = []
    for d in status.details:
        if d.Is(error_details_pb2.BadRequest.DESCRIPTOR):
            br = error_details_pb2.BadRequest()
            d.Unpack(br)
            out.append(br)
    return out


def rpc_lines(logs: Logs) -> Logs:
    return [line for line in logs if line.get("event") == "rpc.completed"]


async def completed(logs: Logs, count: int = 1) -> Logs:
    """The canonical log lines, once `count` of them are written.

    An aborted call's status reaches the client before the server's handler has run its
    `finally`, so the test yields to the event loop (boundedly) until the line is there.
    """
    for _ in range(2000):
        if len(rpc_lines(logs)) >= count:
            break
        await asyncio.sleep(0.005)
    return rpc_lines(logs)


def assert_no_token(logs: Logs) -> None:
    text = repr(logs)
    assert GOOD not in text
    assert APPROVER not in text
    assert "Bearer" not in text


# --- authentication ------------------------------------------------------------------------


@pytest.mark.asyncio
async def test_a_good_token_reaches_the_handler_with_its_principal(
    harness: Harness, logs: Logs
) -> None:
    assert await harness.unary("WhoAmI") == b"admin"
    assert await harness.unary("WhoAmI", token=APPROVER) == b"approver:alice"
    assert harness.identities.seen == [GOOD, APPROVER]
    lines = await completed(logs, 2)
    assert [(x["method"], x["principal"], x["code"]) for x in lines] == [
        (f"/{SERVICE}/WhoAmI", "admin", "OK"),
        (f"/{SERVICE}/WhoAmI", "approver:alice", "OK"),
    ]
    for line in lines:
        assert isinstance(line["duration_ms"], float | int)
        assert line["duration_ms"] >= 0
        assert line["log_level"] == "info"
    assert_no_token(logs)


@pytest.mark.asyncio
@pytest.mark.parametrize(
    "metadata",
    [
        None,
        (("authorization", "Bearer "),),
        (("authorization", "Bearer alk_unknown"),),
        (("authorization", f"Basic {GOOD}"),),
        (("authorization", GOOD),),
        (("x-api-key", GOOD),),
    ],
    ids=["none", "empty", "unknown", "basic", "no-scheme", "other-header"],
)
async def test_missing_or_bad_token_is_unauthenticated(
    harness: Harness, logs: Logs, metadata: tuple[tuple[str, str], ...] | None
) -> None:
    call: grpc.aio.UnaryUnaryMultiCallable[bytes, bytes] = harness.channel.unary_unary(
        f"/{SERVICE}/WhoAmI"
    )
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await call(b"", metadata=metadata, timeout=10)
    assert caught.value.code() is grpc.StatusCode.UNAUTHENTICATED
    status = status_of(caught.value)
    assert [(i.reason, i.domain) for i in infos(status)] == [("UNAUTHENTICATED", "airlock")]
    [line] = await completed(logs)
    assert line["code"] == "UNAUTHENTICATED"
    assert line["principal"] == ""
    assert line["reason"] == "UNAUTHENTICATED"
    assert_no_token(logs)


@pytest.mark.asyncio
async def test_bearer_scheme_is_case_insensitive(harness: Harness) -> None:
    call: grpc.aio.UnaryUnaryMultiCallable[bytes, bytes] = harness.channel.unary_unary(
        f"/{SERVICE}/WhoAmI"
    )
    assert await call(b"", metadata=(("authorization", f"bearer {GOOD}"),), timeout=10) == b"admin"


@pytest.mark.asyncio
async def test_stream_without_token_is_unauthenticated(harness: Harness) -> None:
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await harness.stream(b"", token=None)
    assert caught.value.code() is grpc.StatusCode.UNAUTHENTICATED
    assert [i.reason for i in infos(status_of(caught.value))] == ["UNAUTHENTICATED"]


# --- errors --------------------------------------------------------------------------------


@pytest.mark.asyncio
async def test_domain_error_maps_to_its_code_and_details(harness: Harness, logs: Logs) -> None:
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await harness.unary("Fail", b"not-found")
    err = caught.value
    assert err.code() is grpc.StatusCode.NOT_FOUND
    assert err.details() == "approver 'bob' was not found"
    status = status_of(err)
    assert status.code == grpc.StatusCode.NOT_FOUND.value[0]
    [info] = infos(status)
    assert (info.reason, info.domain) == ("APPROVER_NOT_FOUND", "airlock")
    assert dict(info.metadata) == {"resource": "approver", "id": "bob"}
    assert bad_requests(status) == []
    [line] = await completed(logs)
    assert (line["principal"], line["code"], line["reason"]) == (
        "admin",
        "NOT_FOUND",
        "APPROVER_NOT_FOUND",
    )


@pytest.mark.asyncio
async def test_invalid_argument_carries_bad_request(harness: Harness) -> None:
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await harness.unary("Fail", b"invalid")
    assert caught.value.code() is grpc.StatusCode.INVALID_ARGUMENT
    status = status_of(caught.value)
    assert [i.reason for i in infos(status)] == ["INVALID_ARGUMENT"]
    [br] = bad_requests(status)
    assert [v.field for v in br.field_violations] == ["name"]


@pytest.mark.asyncio
async def test_unexpected_exception_is_internal_and_leaks_nothing(
    harness: Harness, logs: Logs
) -> None:
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await harness.unary("Fail", b"boom")
    err = caught.value
    assert err.code() is grpc.StatusCode.INTERNAL
    assert SECRET not in (err.details() or "")
    assert "RuntimeError" not in (err.details() or "")
    status = status_of(err)
    assert SECRET not in str(status)
    assert [(i.reason, i.domain) for i in infos(status)] == [("INTERNAL", "airlock")]
    [line] = await completed(logs)
    assert (line["code"], line["reason"]) == ("INTERNAL", "INTERNAL")
    # The details go to the server's log, not to the caller.
    failures = [x for x in logs if x.get("event") == "rpc.failed"]
    assert len(failures) == 1
    assert failures[0]["log_level"] == "error"
    assert_no_token(logs)


@pytest.mark.asyncio
async def test_not_implemented_error_is_unimplemented(harness: Harness, logs: Logs) -> None:
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await harness.unary("Fail", b"not-implemented")
    assert caught.value.code() is grpc.StatusCode.UNIMPLEMENTED
    [info] = infos(status_of(caught.value))
    assert info.reason == "NOT_IMPLEMENTED"
    assert info.metadata["method"] == f"/{SERVICE}/Fail"
    assert (await completed(logs))[0]["code"] == "UNIMPLEMENTED"


@pytest.mark.asyncio
async def test_a_generated_base_servicer_answers_unimplemented(harness: Harness) -> None:
    stub = vault_service_pb2_grpc.VaultServiceStub(harness.channel)
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await stub.GetVault(
            vault_service_pb2.GetVaultRequest(),
            metadata=(("authorization", f"Bearer {GOOD}"),),
            timeout=10,
        )
    assert caught.value.code() is grpc.StatusCode.UNIMPLEMENTED
    assert [i.reason for i in infos(status_of(caught.value))] == ["NOT_IMPLEMENTED"]


@pytest.mark.asyncio
async def test_a_deliberate_abort_passes_through(harness: Harness, logs: Logs) -> None:
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await harness.unary("Fail", b"abort")
    assert caught.value.code() is grpc.StatusCode.RESOURCE_EXHAUSTED
    assert caught.value.details() == "slow down"
    assert [x["code"] for x in await completed(logs)] == ["RESOURCE_EXHAUSTED"]
    assert not [x for x in logs if x.get("event") == "rpc.failed"]


# --- streams -------------------------------------------------------------------------------


@pytest.mark.asyncio
async def test_stream_passes_messages(harness: Harness, logs: Logs) -> None:
    assert await harness.stream(b"") == [b"one", b"two"]
    [line] = await completed(logs)
    assert (line["method"], line["principal"], line["code"]) == (
        f"/{SERVICE}/Stream",
        "admin",
        "OK",
    )


@pytest.mark.asyncio
@pytest.mark.parametrize(
    ("what", "code", "reason"),
    [
        ("not-found", grpc.StatusCode.NOT_FOUND, "SESSION_NOT_FOUND"),
        ("boom", grpc.StatusCode.INTERNAL, "INTERNAL"),
        ("not-implemented", grpc.StatusCode.UNIMPLEMENTED, "NOT_IMPLEMENTED"),
    ],
)
async def test_stream_errors_after_messages(
    harness: Harness, logs: Logs, what: str, code: grpc.StatusCode, reason: str
) -> None:
    received: list[bytes] = []
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await harness.stream(what.encode(), received=received)
    assert received == [b"one", b"two"]
    assert caught.value.code() is code
    assert SECRET not in (caught.value.details() or "")
    assert [i.reason for i in infos(status_of(caught.value))] == [reason]
    assert [x["code"] for x in await completed(logs)] == [code.name]


# --- public methods ------------------------------------------------------------------------


@pytest.mark.asyncio
async def test_health_needs_no_token(harness: Harness) -> None:
    stub = health_pb2_grpc.HealthStub(harness.channel)
    response = await stub.Check(health_pb2.HealthCheckRequest(), timeout=10)
    assert response.status == health_pb2.HealthCheckResponse.SERVING
    assert harness.identities.seen == []


@pytest.mark.asyncio
async def test_reflection_needs_no_token(harness: Harness) -> None:
    stub = reflection_pb2_grpc.ServerReflectionStub(harness.channel)

    async def one_request() -> AsyncIterator[reflection_pb2.ServerReflectionRequest]:
        yield reflection_pb2.ServerReflectionRequest(list_services="")

    names: set[str] = set()
    async for response in stub.ServerReflectionInfo(one_request(), timeout=10):
        names.update(s.name for s in response.list_services_response.service)
    assert {SERVICE, health.SERVICE_NAME} <= names
    assert harness.identities.seen == []
