"""Every RPC passes here. The interceptor composes four jobs, one module each, on one path for
unary and server-streaming calls alike:
- authentication (transport/authentication.py): who calls;
- the call's metrics and log line (transport/call_log.py);
- error mapping (transport/errors.py): exceptions to google.rpc statuses;
- refusals (transport/refusals.py): throttled, and written to the audit log.

The work happens inside a wrapped handler (not in intercept_service itself) so that the
principal's context variable is set in the task that runs the servicer.
"""

from __future__ import annotations

import asyncio
import inspect
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import grpc
import structlog
from grpc_status import rpc_status

from airlock_server.app.audit import AuditService
from airlock_server.app.common import request_fingerprint
from airlock_server.app.identity import Caller, IdentityService
from airlock_server.domain.errors import DomainError, Reason
from airlock_server.transport.authentication import Authentication, Ctx, current_principal
from airlock_server.transport.call_log import CallLog
from airlock_server.transport.edge import Undecodable, admit, decoding, fingerprint
from airlock_server.transport.errors import (
    domain_error_of,
    internal_status,
    status_code_for,
    to_status,
)
from airlock_server.transport.limits import Limits
from airlock_server.transport.metrics import Telemetry
from airlock_server.transport.refusals import Refusals

log = structlog.get_logger("airlock.rpc")

# Health and reflection answer anyone, so that probes and grpcurl work without a token.
PUBLIC_PREFIXES = ("/grpc.health.v1.Health/", "/grpc.reflection.")

# What a wrapped method runs once its caller is known and its request admitted: the servicer
# itself (unary), or the servicer's responses written within the stream caps (server-streaming).
Run = Callable[[Any, Ctx], Awaitable[Any]]


class RpcInterceptor(grpc.aio.ServerInterceptor):
    def __init__(
        self,
        identities: IdentityService,
        audit: AuditService | None = None,
        limits: Limits | None = None,
        telemetry: Telemetry | None = None,
    ) -> None:
        self._limits = limits or Limits.of()
        self._authentication = Authentication(identities)
        self._log = CallLog(telemetry or Telemetry())
        self._refusals = Refusals(audit, self._limits)
        # One wrapped handler per method, built on its first call: the token is read from the
        # call's own metadata inside the handler, so nothing per call is captured here.
        self._wrapped: dict[
            str, tuple[grpc.RpcMethodHandler[Any, Any], grpc.RpcMethodHandler[Any, Any]]
        ] = {}

    async def intercept_service(
        self,
        continuation: Callable[
            [grpc.HandlerCallDetails], Awaitable[grpc.RpcMethodHandler[Any, Any] | None]
        ],
        details: grpc.HandlerCallDetails,
    ) -> grpc.RpcMethodHandler[Any, Any] | None:
        handler = await continuation(details)
        method: str = details.method
        if handler is None:
            return None
        cached = self._wrapped.get(method)
        if cached is not None and cached[0] is handler:
            return cached[1]
        wrapped = self._wrap(method, handler)
        self._wrapped[method] = (handler, wrapped)
        return wrapped

    def _wrap(
        self, method: str, handler: grpc.RpcMethodHandler[Any, Any]
    ) -> grpc.RpcMethodHandler[Any, Any]:
        if method.startswith(PUBLIC_PREFIXES):
            return _public(handler)
        if handler.unary_unary is not None:
            unary: Any = handler.unary_unary  # an async servicer method: (request, context)
            return grpc.unary_unary_rpc_method_handler(
                self._serving(method, unary),
                request_deserializer=decoding(handler.request_deserializer),
                response_serializer=handler.response_serializer,
            )
        if handler.unary_stream is not None:
            stream: Any = handler.unary_stream

            async def follow(request: Any, context: Ctx) -> None:
                responses = stream(request, context)
                await self._limits.stream(str(current_principal()), responses, context)

            return grpc.unary_stream_rpc_method_handler(
                self._serving(method, follow),
                request_deserializer=decoding(handler.request_deserializer),
                response_serializer=handler.response_serializer,
            )
        return handler

    def _serving(self, method: str, run: Run) -> Callable[[Any, Ctx], Awaitable[Any]]:
        """The one path of every call, unary or streaming: authenticated, admitted, run; a
        failure answered with its status; then the call's metrics and log line."""

        async def serve(request: Any, context: Ctx) -> Any:
            metadata = context.invocation_metadata()
            call = self._log.start(method, metadata)
            code = grpc.StatusCode.OK
            reason = ""
            caller: Caller | None = None
            try:
                caller = await self._authentication.caller(metadata)
                _admit(request)
                return await run(request, context)
            except asyncio.CancelledError:
                code = grpc.StatusCode.CANCELLED  # the client went away (or its deadline)
                raise
            except grpc.aio.AbortError:
                # A handler aborting on purpose: its status passes through as it is.
                code = context.code() or grpc.StatusCode.UNKNOWN
                raise
            except Exception as err:
                error = domain_error_of(method, err)
                if error is None:
                    code, reason = grpc.StatusCode.INTERNAL, Reason.INTERNAL
                    log.exception("rpc.failed", method=method)
                    status = internal_status()
                else:
                    error = await self._refusals.answer(caller, method, request, error)
                    code, reason = status_code_for(error), error.reason
                    status = to_status(error)
                await context.abort_with_status(rpc_status.to_status(status))
            finally:
                self._log.completed(method, call, code, reason, request, context, caller)

        return serve


def _public(handler: grpc.RpcMethodHandler[Any, Any]) -> grpc.RpcMethodHandler[Any, Any]:
    """Health and reflection answer anyone, unlogged; an undecodable body is INVALID_ARGUMENT
    there too (gRPC would answer UNKNOWN and log a traceback), and a method the library leaves
    unimplemented (health's List) UNIMPLEMENTED. Reflection's bidirectional stream, and a
    synchronous server stream (gRPC runs it in a thread), are left as they are."""

    async def refuse(request: Any, context: Ctx) -> None:
        if isinstance(request, Undecodable):
            try:
                admit(request)
            except DomainError as err:
                await context.abort_with_status(rpc_status.to_status(to_status(err)))

    if handler.unary_unary is not None:
        unary: Any = handler.unary_unary

        async def answer(request: Any, context: Ctx) -> Any:
            await refuse(request, context)
            try:
                result = unary(request, context)  # a coroutine, or (synchronous) the answer
                return await result if inspect.isawaitable(result) else result
            except NotImplementedError:
                await context.abort(grpc.StatusCode.UNIMPLEMENTED, "not implemented here")

        return grpc.unary_unary_rpc_method_handler(
            answer,
            request_deserializer=decoding(handler.request_deserializer),
            response_serializer=handler.response_serializer,
        )
    if handler.unary_stream is not None and _is_async(handler.unary_stream):
        stream: Any = handler.unary_stream

        async def follow(request: Any, context: Ctx) -> AsyncIterator[Any]:
            await refuse(request, context)
            result = stream(request, context)
            if inspect.isasyncgen(result):
                async for response in result:
                    yield response
            else:  # it writes through the context (grpc_health's aio Watch)
                await result

        return grpc.unary_stream_rpc_method_handler(
            follow,
            request_deserializer=decoding(handler.request_deserializer),
            response_serializer=handler.response_serializer,
        )
    return handler


def _is_async(behavior: object) -> bool:
    return inspect.iscoroutinefunction(behavior) or inspect.isasyncgenfunction(behavior)


def _admit(request: Any) -> None:
    """Refuse a malformed request before any use case; bind its request_id to it."""
    admit(request)
    request_fingerprint.set(fingerprint(request))
