"""Fuzzing every RPC of the contract against a real server (SQLite and PostgreSQL).

The requests come from the message descriptors (Hypothesis strategies built field by field),
so every method and every field is covered, and a method or field added to proto/ is fuzzed
without a line here. Each example is one call, as one of the principal kinds (admin, account,
approver, service, auditor, or no token at all), carrying either a well-typed request (values
at and past their edges: out-of-range Timestamps and Durations, nanos, NUL characters, long
strings, extreme integers, unknown enum values, ids of a small world so that calls reach the
use cases) or raw bytes that may not decode at all. Any answer is fine except INTERNAL and
UNKNOWN: bad input is INVALID_ARGUMENT, never a server error.

A fixed seed (derandomize) and a bounded count per method keep it reproducible and around a
minute per backend.
"""

from __future__ import annotations

import asyncio
import secrets
from collections.abc import Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import grpc
import pytest
from google.protobuf import descriptor, message_factory
from google.protobuf.message import Message
from grpc_health.v1 import health_pb2
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from airlock.v1 import (
    approver_service_pb2,
    audit_service_pb2,
    common_pb2,
    identity_service_pb2,
    notification_service_pb2,
    session_service_pb2,
    team_service_pb2,
    vault_service_pb2,
)
from airlock_client import AirlockClient
from airlock_client.client import NO_RETRY

if TYPE_CHECKING:
    from e2e.conftest import ServerProcess

EXAMPLES_PER_METHOD = 40
CALL_TIMEOUT = 10.0
# A stream that is served is read for its first message only, within this.
STREAM_WAIT = 0.5
MAX_DEPTH = 3
SERVER_ERRORS = {grpc.StatusCode.INTERNAL, grpc.StatusCode.UNKNOWN}

_FD = descriptor.FieldDescriptor

METHODS = [
    method
    for module in (
        identity_service_pb2,
        team_service_pb2,
        approver_service_pb2,
        vault_service_pb2,
        session_service_pb2,
        audit_service_pb2,
        notification_service_pb2,
        health_pb2,  # public: answers anyone, and must not fail either
    )
    for service in module.DESCRIPTOR.services_by_name.values()
    for method in service.methods
]
KINDS = ("admin", "account", "approver", "service", "auditor", "none")


def _path(method: descriptor.MethodDescriptor) -> str:
    return f"/{method.containing_service.full_name}/{method.name}"


# --- strategies from descriptors --------------------------------------------------------------


def _integers(bits: int, signed: bool) -> st.SearchStrategy[int]:
    low, high = (-(2 ** (bits - 1)), 2 ** (bits - 1) - 1) if signed else (0, 2**bits - 1)
    edges = [v for v in (0, 1, -1, 2, high, high - 1, low, low + 1) if low <= v <= high]
    return st.one_of(st.sampled_from(edges), st.integers(low, high), st.integers(-3, 1100))


def _strings(known: list[str]) -> st.SearchStrategy[str]:
    return st.one_of(
        st.sampled_from(known),
        st.text(max_size=24),
        st.text(max_size=8).map(lambda s: s + "\x00" + s),
        st.sampled_from(["", " ", "x" * 257, "y" * 5000, "../..", "a" * 64, "2" * 12]),
    )


def _scalar(field: descriptor.FieldDescriptor, known: list[str]) -> st.SearchStrategy[Any]:
    t = field.type
    if t == _FD.TYPE_STRING:
        return _strings(known)
    if t == _FD.TYPE_BYTES:
        return st.one_of(st.binary(max_size=80), st.just(b"\x01" * 64), st.just(b"\x02" * 32))
    if t == _FD.TYPE_BOOL:
        return st.booleans()
    if t == _FD.TYPE_ENUM:
        assert field.enum_type is not None
        top = max(v.number for v in field.enum_type.values)
        return st.integers(-2, top + 2)
    if t in (_FD.TYPE_DOUBLE, _FD.TYPE_FLOAT):
        return st.floats(width=32 if t == _FD.TYPE_FLOAT else 64)
    if t in (_FD.TYPE_INT64, _FD.TYPE_SINT64, _FD.TYPE_SFIXED64):
        return _integers(64, True)
    if t in (_FD.TYPE_UINT64, _FD.TYPE_FIXED64):
        return _integers(64, False)
    if t in (_FD.TYPE_UINT32, _FD.TYPE_FIXED32):
        return _integers(32, False)
    return _integers(32, True)


def messages(
    desc: descriptor.Descriptor, known: list[str], depth: int = 0
) -> st.SearchStrategy[Message]:
    """Messages of this type with any subset of their fields set, recursively (bounded)."""
    cls = message_factory.GetMessageClass(desc)
    if depth > MAX_DEPTH:
        return st.just(cls())
    fields: dict[str, st.SearchStrategy[Any]] = {}
    for field in desc.fields:
        if field.message_type is not None and field.message_type.GetOptions().map_entry:
            key = field.message_type.fields_by_name["key"]
            value = field.message_type.fields_by_name["value"]
            values = (
                messages(value.message_type, known, depth + 1)
                if value.message_type is not None
                else _scalar(value, known)
            )
            fields[field.name] = st.dictionaries(_scalar(key, known), values, max_size=3)
            continue
        one = (
            messages(field.message_type, known, depth + 1)
            if field.message_type is not None
            else _scalar(field, known)
        )
        fields[field.name] = st.lists(one, max_size=3) if field.is_repeated else one

    def build(values: dict[str, Any]) -> Message:
        out = cls()
        for name, value in values.items():
            field = desc.fields_by_name[name]
            target: Any = getattr(out, name)
            if field.message_type is not None and field.message_type.GetOptions().map_entry:
                for k, v in value.items():
                    if isinstance(v, Message):
                        target[k].CopyFrom(v)
                    else:
                        target[k] = v
            elif field.is_repeated and field.message_type is not None:
                for v in value:
                    target.add().CopyFrom(v)
            elif field.is_repeated:
                target.extend(value)
            elif field.message_type is not None:
                target.CopyFrom(value)
            else:
                setattr(out, name, value)
        return out

    return st.fixed_dictionaries({}, optional=fields).map(build)


@dataclass(frozen=True)
class Case:
    kind: str
    body: bytes
    typed: bool


def cases(method: descriptor.MethodDescriptor, known: list[str]) -> st.SearchStrategy[Case]:
    typed = messages(method.input_type, known).map(lambda m: (m.SerializeToString(), True))
    raw = st.binary(max_size=64).map(lambda b: (b, False))
    return st.builds(
        lambda kind, sent: Case(kind, sent[0], sent[1]),
        st.sampled_from(KINDS),
        st.one_of(typed, typed, raw),
    )


# --- a small world to aim at ---------------------------------------------------------------


@dataclass
class World:
    tokens: dict[str, str]
    known: list[str]


async def _world(server: ServerProcess) -> World:
    admin = AirlockClient.connect(server.target, server.admin_token, retry=NO_RETRY)
    async with admin:
        approvers = [f"fuzz-{secrets.token_hex(3)}" for _ in range(3)]
        for approver_id in approvers:
            await admin.create_approver(approver_id, approver_id)
        account_id = f"{secrets.randbelow(10**12):012d}"
        await admin.register_account(account_id, f"fuzz-{secrets.token_hex(3)}")
        service = f"fuzz-svc-{secrets.token_hex(3)}"
        issued = {
            "approver": await admin.issue_credential(
                common_pb2.PRINCIPAL_KIND_APPROVER, approvers[0]
            ),
            "account": await admin.issue_credential(common_pb2.PRINCIPAL_KIND_ACCOUNT, account_id),
            "service": await admin.issue_credential(common_pb2.PRINCIPAL_KIND_SERVICE, service),
            "auditor": await admin.issue_credential(common_pb2.PRINCIPAL_KIND_AUDITOR, ""),
        }
        team = await admin.create_team(
            f"fuzz-team-{secrets.token_hex(3)}", approvers, min_approvals=2
        )
    tokens = {kind: response.token for kind, response in issued.items()}
    tokens["admin"] = server.admin_token
    known = [
        *approvers,
        account_id,
        service,
        team.team_id,
        f"team:{team.team_id}",
        *(response.credential.credential_id for response in issued.values()),
        *(a.invitation_id for a in team.approvers),
    ]
    return World(tokens, known)


# --- the test -------------------------------------------------------------------------------


async def _send(
    channel: grpc.aio.Channel, method: descriptor.MethodDescriptor, world: World, case: Case
) -> grpc.StatusCode:
    token = world.tokens.get(case.kind)
    metadata = (("authorization", f"Bearer {token}"),) if token else ()
    path = _path(method)
    try:
        if method.server_streaming:
            stream: grpc.aio.UnaryStreamMultiCallable[bytes, bytes] = channel.unary_stream(path)
            call = stream(case.body, metadata=metadata, timeout=CALL_TIMEOUT)
            try:
                async with asyncio.timeout(STREAM_WAIT):
                    await call.read()
            except TimeoutError:
                pass  # served, and waiting for what comes next
            finally:
                call.cancel()
            return grpc.StatusCode.OK
        unary: grpc.aio.UnaryUnaryMultiCallable[bytes, bytes] = channel.unary_unary(path)
        await unary(case.body, metadata=metadata, timeout=CALL_TIMEOUT)
    except grpc.aio.AioRpcError as error:
        return error.code()
    return grpc.StatusCode.OK


@pytest.fixture(scope="module")
def runner() -> Iterator[asyncio.Runner]:
    with asyncio.Runner() as running:
        yield running


@pytest.fixture(scope="module")
def world(server: ServerProcess, runner: asyncio.Runner) -> World:
    return runner.run(_world(server))


@pytest.mark.parametrize("method", METHODS, ids=_path)
def test_no_request_makes_the_server_fail(
    server: ServerProcess,
    runner: asyncio.Runner,
    world: World,
    method: descriptor.MethodDescriptor,
) -> None:
    seen: list[tuple[grpc.StatusCode, Case]] = []

    async def connect() -> grpc.aio.Channel:
        return server.channel()

    channel = runner.run(connect())

    @settings(
        derandomize=True,
        database=None,
        max_examples=EXAMPLES_PER_METHOD,
        deadline=None,
        suppress_health_check=list(HealthCheck),
    )
    @given(case=cases(method, world.known))
    def call(case: Case) -> None:
        code = runner.run(_send(channel, method, world, case))
        seen.append((code, case))
        assert code not in SERVER_ERRORS, (
            f"{_path(method)} as {case.kind} answered {code.name} to "
            f"{'a typed request' if case.typed else 'raw bytes'} {case.body!r}"
        )

    try:
        call()
    finally:
        runner.run(channel.close())
    assert len(seen) >= EXAMPLES_PER_METHOD // 2
