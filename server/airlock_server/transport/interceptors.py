"""Every RPC passes here: who calls, the canonical log line, and domain errors to statuses.

The work happens inside a wrapped handler (not in intercept_service itself) so that the
principal's context variable is set in the task that runs the servicer.
"""

from __future__ import annotations

import asyncio
import contextvars
import inspect
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable
from typing import Any

import grpc
import structlog
from grpc_status import rpc_status

from airlock_server.app.audit import AuditService
from airlock_server.app.common import request_fingerprint
from airlock_server.app.identity import Caller, IdentityService
from airlock_server.domain.errors import DomainError, Reason, Unimplemented
from airlock_server.domain.principals import Principal
from airlock_server.transport.edge import Undecodable, admit, decoding, fingerprint
from airlock_server.transport.errors import internal_status, status_code_for, to_status
from airlock_server.transport.limits import Limits
from airlock_server.transport.metrics import Call, Telemetry, peer_of

log = structlog.get_logger("airlock.rpc")

Ctx = grpc.aio.ServicerContext[Any, Any]

_caller: contextvars.ContextVar[Caller] = contextvars.ContextVar("airlock_caller")

# Health and reflection answer anyone, so that probes and grpcurl work without a token.
PUBLIC_PREFIXES = ("/grpc.health.v1.Health/", "/grpc.reflection.")


def current_caller() -> Caller:
    return _caller.get()


def current_principal() -> Principal:
    return _caller.get().principal


def _bearer(metadata: Iterable[tuple[str, str | bytes]] | None) -> str:
    for key, value in metadata or ():
        if key == "authorization" and isinstance(value, str):
            scheme, _, token = value.partition(" ")
            if scheme.lower() == "bearer":
                return token.strip()
    return ""


# Refusals of an authenticated caller on a guarded object: each one is a fact of the log.
RECORDED_DENIALS = (grpc.StatusCode.PERMISSION_DENIED, grpc.StatusCode.FAILED_PRECONDITION)

# Request fields (and error metadata keys) that name what a call touches, and how the log's
# subjects spell them.
_SUBJECT_FIELDS = {
    "team_id": "team:",
    "session_id": "session:",
    "grant_id": "grant:",
    "approver_id": "approver:",
    "credential_id": "credential:",
    "invitation_id": "invitation:",
    "account_id": "account:",
    "vault_arn": "",
    "protected_resource": "",
}
_SUBJECT_METADATA = {
    "".join(w if i == 0 else w.title() for i, w in enumerate(k.split("_"))): v
    for k, v in _SUBJECT_FIELDS.items()
}


def denied_subjects(request: Any, error: DomainError) -> list[str]:
    """What a refused call tried to touch, where the request or the error names it."""
    found: list[str] = []
    for name, prefix in _SUBJECT_FIELDS.items():
        value = getattr(request, name, None)
        if isinstance(value, str) and value:
            found.append(prefix + value)
    for key, value in error.metadata.items():
        spelled = _SUBJECT_METADATA.get(key)
        if spelled is not None and value:
            found.append(spelled + value)
    return list(dict.fromkeys(found))


class RpcInterceptor(grpc.aio.ServerInterceptor):
    def __init__(
        self,
        identities: IdentityService,
        audit: AuditService | None = None,
        limits: Limits | None = None,
        telemetry: Telemetry | None = None,
    ) -> None:
        self._identities = identities
        self._audit = audit
        self._limits = limits or Limits.of()
        self._telemetry = telemetry or Telemetry()
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
            return grpc.unary_unary_rpc_method_handler(
                self._wrap_unary(method, handler.unary_unary),
                request_deserializer=decoding(handler.request_deserializer),
                response_serializer=handler.response_serializer,
            )
        if handler.unary_stream is not None:
            return grpc.unary_stream_rpc_method_handler(
                self._wrap_stream(method, handler.unary_stream),
                request_deserializer=decoding(handler.request_deserializer),
                response_serializer=handler.response_serializer,
            )
        return handler

    async def _authenticate(self, context: Ctx) -> Caller:
        caller = await self._identities.authenticate(_bearer(context.invocation_metadata()))
        _caller.set(caller)
        return caller

    def _throttled(self, caller: Caller | None, error: DomainError) -> DomainError:
        """A refusal the log would record, or RESOURCE_EXHAUSTED once the caller has made
        too many of them (transport/limits.py)."""
        if caller is None or status_code_for(error) not in RECORDED_DENIALS:
            return error
        return self._limits.refusal(str(caller.principal), error)

    async def _record_denial(
        self,
        caller: Caller | None,
        method: str,
        code: grpc.StatusCode,
        request: Any,
        error: DomainError,
    ) -> None:
        """After the refused use case rolled back: one `call.denied` event, its own
        transaction. A failure here is logged, never turned into the caller's answer."""
        if caller is None or self._audit is None or code not in RECORDED_DENIALS:
            return
        try:
            await self._audit.record_denial(
                caller.principal, method, code.name, error.reason, denied_subjects(request, error)
            )
        except Exception:
            log.exception("rpc.denial_not_recorded", method=method, reason=error.reason)

    def _wrap_unary(self, method: str, behavior: Any) -> Any:
        async def wrapped(request: Any, context: Ctx) -> Any:
            call = self._telemetry.start(method, context.invocation_metadata())
            code = grpc.StatusCode.OK
            reason = ""
            caller: Caller | None = None
            try:
                caller = await self._authenticate(context)
                _admit(request)
                try:
                    return await behavior(request, context)
                except NotImplementedError as missing:
                    raise _unimplemented(method) from missing
            except DomainError as err:
                err = self._throttled(caller, err)
                code, reason = status_code_for(err), err.reason
                await self._record_denial(caller, method, code, request, err)
                await context.abort_with_status(rpc_status.to_status(to_status(err)))
            except asyncio.CancelledError:
                code = grpc.StatusCode.CANCELLED  # the client went away (or its deadline)
                raise
            except Exception as err:
                if _is_abort(err):
                    code = context.code() or grpc.StatusCode.UNKNOWN
                    raise
                code, reason = grpc.StatusCode.INTERNAL, Reason.INTERNAL
                log.exception("rpc.failed", method=method)
                await context.abort_with_status(rpc_status.to_status(internal_status()))
            finally:
                self._completed(method, code, reason, call, request, context)

        return wrapped

    def _wrap_stream(self, method: str, behavior: Any) -> Any:
        async def wrapped(request: Any, context: Ctx) -> None:
            call = self._telemetry.start(method, context.invocation_metadata())
            code = grpc.StatusCode.OK
            reason = ""
            caller: Caller | None = None
            try:
                caller = await self._authenticate(context)
                _admit(request)
                try:
                    principal = str(caller.principal)
                    await self._limits.stream(principal, behavior(request, context), context)
                except NotImplementedError as missing:
                    raise _unimplemented(method) from missing
            except DomainError as err:
                err = self._throttled(caller, err)
                code, reason = status_code_for(err), err.reason
                await self._record_denial(caller, method, code, request, err)
                await context.abort_with_status(rpc_status.to_status(to_status(err)))
            except asyncio.CancelledError:
                code = grpc.StatusCode.CANCELLED  # the client went away (or its deadline)
                raise
            except Exception as err:
                if _is_abort(err):
                    raise
                code, reason = grpc.StatusCode.INTERNAL, Reason.INTERNAL
                log.exception("rpc.failed", method=method)
                await context.abort_with_status(rpc_status.to_status(internal_status()))
            finally:
                self._completed(method, code, reason, call, request, context)

        return wrapped

    def _completed(
        self,
        method: str,
        code: grpc.StatusCode,
        reason: str,
        call: Call,
        request: Any,
        context: Ctx,
    ) -> None:
        """The call's metrics and its one `rpc.completed` line."""
        self._telemetry.finish(call, code)
        caller = _caller.get(None)
        request_id = getattr(request, "request_id", "")
        log.info(
            "rpc.completed",
            method=method,
            principal=str(caller.principal) if caller else "",
            code=code.name,
            reason=reason,
            duration_ms=round((time.perf_counter() - call.started) * 1000, 2),
            trace_id=call.trace_id,
            peer=peer_of(context),
            **({"request_id": request_id} if isinstance(request_id, str) and request_id else {}),
        )


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


def _unimplemented(method: str) -> Unimplemented:
    return Unimplemented(
        f"{method} is part of the contract but not implemented by this server yet",
        metadata={"method": method},
    )


def _is_abort(err: BaseException) -> bool:
    """grpc.aio raises AbortError when a handler aborts on purpose: it must pass through."""
    return isinstance(err, grpc.aio.AbortError)
