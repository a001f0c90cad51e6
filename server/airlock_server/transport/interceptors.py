"""Every RPC passes here: who calls, the canonical log line, and domain errors to statuses.

The work happens inside a wrapped handler (not in intercept_service itself) so that the
principal's context variable is set in the task that runs the servicer.
"""

from __future__ import annotations

import contextvars
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import grpc
import structlog
from grpc_status import rpc_status

from airlock_server.app.identity import Caller, IdentityService
from airlock_server.domain.errors import DomainError, Unimplemented
from airlock_server.domain.principals import Principal
from airlock_server.transport.errors import internal_status, status_code_for, to_status

log = structlog.get_logger("airlock.rpc")

Ctx = grpc.aio.ServicerContext[Any, Any]

_caller: contextvars.ContextVar[Caller] = contextvars.ContextVar("airlock_caller")

# Health and reflection answer anyone, so that probes and grpcurl work without a token.
PUBLIC_PREFIXES = ("/grpc.health.v1.Health/", "/grpc.reflection.")


def current_caller() -> Caller:
    return _caller.get()


def current_principal() -> Principal:
    return _caller.get().principal


def _bearer(metadata: tuple[tuple[str, str | bytes], ...] | None) -> str:
    for key, value in metadata or ():
        if key == "authorization" and isinstance(value, str):
            scheme, _, token = value.partition(" ")
            if scheme.lower() == "bearer":
                return token.strip()
    return ""


class RpcInterceptor(grpc.aio.ServerInterceptor):
    def __init__(self, identities: IdentityService) -> None:
        self._identities = identities

    async def intercept_service(
        self,
        continuation: Callable[
            [grpc.HandlerCallDetails], Awaitable[grpc.RpcMethodHandler[Any, Any] | None]
        ],
        details: grpc.HandlerCallDetails,
    ) -> grpc.RpcMethodHandler[Any, Any] | None:
        handler = await continuation(details)
        method: str = details.method
        if handler is None or method.startswith(PUBLIC_PREFIXES):
            return handler
        token = _bearer(details.invocation_metadata)
        if handler.unary_unary is not None:
            return grpc.unary_unary_rpc_method_handler(
                self._wrap_unary(method, token, handler.unary_unary),
                request_deserializer=handler.request_deserializer,
                response_serializer=handler.response_serializer,
            )
        if handler.unary_stream is not None:
            return grpc.unary_stream_rpc_method_handler(
                self._wrap_stream(method, token, handler.unary_stream),
                request_deserializer=handler.request_deserializer,
                response_serializer=handler.response_serializer,
            )
        return handler

    async def _authenticate(self, token: str) -> None:
        _caller.set(await self._identities.authenticate(token))

    def _wrap_unary(self, method: str, token: str, behavior: Any) -> Any:
        async def wrapped(request: Any, context: Ctx) -> Any:
            started = time.perf_counter()
            code = grpc.StatusCode.OK
            reason = ""
            try:
                await self._authenticate(token)
                try:
                    return await behavior(request, context)
                except NotImplementedError as missing:
                    raise _unimplemented(method) from missing
            except DomainError as err:
                code, reason = status_code_for(err), err.reason
                await context.abort_with_status(rpc_status.to_status(to_status(err)))
            except Exception as err:
                if _is_abort(err):
                    code = context.code() or grpc.StatusCode.UNKNOWN
                    raise
                code, reason = grpc.StatusCode.INTERNAL, "INTERNAL"
                log.exception("rpc.failed", method=method)
                await context.abort_with_status(rpc_status.to_status(internal_status()))
            finally:
                self._log(method, code, reason, started)

        return wrapped

    def _wrap_stream(self, method: str, token: str, behavior: Any) -> Any:
        async def wrapped(request: Any, context: Ctx) -> AsyncIterator[Any]:
            started = time.perf_counter()
            code = grpc.StatusCode.OK
            reason = ""
            try:
                await self._authenticate(token)
                try:
                    async for response in behavior(request, context):
                        yield response
                except NotImplementedError as missing:
                    raise _unimplemented(method) from missing
            except DomainError as err:
                code, reason = status_code_for(err), err.reason
                await context.abort_with_status(rpc_status.to_status(to_status(err)))
            except Exception as err:
                if _is_abort(err):
                    raise
                code, reason = grpc.StatusCode.INTERNAL, "INTERNAL"
                log.exception("rpc.failed", method=method)
                await context.abort_with_status(rpc_status.to_status(internal_status()))
            finally:
                self._log(method, code, reason, started)

        return wrapped

    @staticmethod
    def _log(method: str, code: grpc.StatusCode, reason: str, started: float) -> None:
        caller = _caller.get(None)
        log.info(
            "rpc.completed",
            method=method,
            principal=str(caller.principal) if caller else "",
            code=code.name,
            reason=reason,
            duration_ms=round((time.perf_counter() - started) * 1000, 2),
        )


def _unimplemented(method: str) -> Unimplemented:
    return Unimplemented(
        f"{method} is part of the contract but not implemented by this server yet",
        metadata={"method": method},
    )


def _is_abort(err: BaseException) -> bool:
    """grpc.aio raises AbortError when a handler aborts on purpose: it must pass through."""
    return isinstance(err, grpc.aio.AbortError)
