"""The one table from domain errors to gRPC status codes, and the google.rpc.Status it sends."""

from __future__ import annotations

from collections.abc import Mapping

import grpc
from google.protobuf import any_pb2, duration_pb2
from google.rpc import code_pb2, error_details_pb2, status_pb2

from airlock_server.domain import errors as e
from airlock_server.domain.errors import Reason

DOMAIN = "airlock"

ERROR_TABLE: Mapping[type[e.DomainError], grpc.StatusCode] = {
    e.DomainError: grpc.StatusCode.INVALID_ARGUMENT,
    e.InvalidArgument: grpc.StatusCode.INVALID_ARGUMENT,
    e.Unauthenticated: grpc.StatusCode.UNAUTHENTICATED,
    e.PermissionDenied: grpc.StatusCode.PERMISSION_DENIED,
    e.NotFound: grpc.StatusCode.NOT_FOUND,
    e.AlreadyExists: grpc.StatusCode.ALREADY_EXISTS,
    e.FailedPrecondition: grpc.StatusCode.FAILED_PRECONDITION,
    e.EtagMismatch: grpc.StatusCode.FAILED_PRECONDITION,
    e.InvalidTransition: grpc.StatusCode.FAILED_PRECONDITION,
    e.Unimplemented: grpc.StatusCode.UNIMPLEMENTED,
    e.Conflict: grpc.StatusCode.ABORTED,
    e.Unavailable: grpc.StatusCode.UNAVAILABLE,
    e.ResourceExhausted: grpc.StatusCode.RESOURCE_EXHAUSTED,
}


def status_code_for(error: e.DomainError) -> grpc.StatusCode:
    """The most specific row of the table for this error's class."""
    for cls in type(error).__mro__:
        if cls in ERROR_TABLE:
            return ERROR_TABLE[cls]
    raise KeyError(type(error))


def _pack(message: object) -> any_pb2.Any:
    packed = any_pb2.Any()
    packed.Pack(message)  # type: ignore[arg-type]
    return packed


def to_status(error: e.DomainError) -> status_pb2.Status:
    """AIP-193: one ErrorInfo with a stable reason; BadRequest names the fields."""
    code = status_code_for(error)
    details = [
        _pack(
            error_details_pb2.ErrorInfo(
                reason=error.reason, domain=DOMAIN, metadata=dict(error.metadata)
            )
        )
    ]
    if isinstance(error, e.InvalidArgument) and error.violations:
        details.append(
            _pack(
                error_details_pb2.BadRequest(
                    field_violations=[
                        error_details_pb2.BadRequest.FieldViolation(
                            field=v.field, description=v.description
                        )
                        for v in error.violations
                    ]
                )
            )
        )
    if isinstance(error, e.ResourceExhausted) and error.retry_after is not None:
        delay = duration_pb2.Duration()
        delay.FromNanoseconds(max(1, round(error.retry_after * 1e9)))
        details.append(_pack(error_details_pb2.RetryInfo(retry_delay=delay)))
    return status_pb2.Status(code=code.value[0], message=error.message, details=details)


def internal_status() -> status_pb2.Status:
    """Anything unexpected: a generic message; the traceback goes only to the log."""
    return status_pb2.Status(
        code=code_pb2.INTERNAL,
        message="internal error; the server logged the details",
        details=[_pack(error_details_pb2.ErrorInfo(reason=Reason.INTERNAL, domain=DOMAIN))],
    )


def domain_error_of(method: str, error: Exception) -> e.DomainError | None:
    """What a handler's exception answers: a DomainError itself; a NotImplementedError (a
    generated base servicer's method) UNIMPLEMENTED; anything else None, a bug (INTERNAL)."""
    if isinstance(error, e.DomainError):
        return error
    if isinstance(error, NotImplementedError):
        return e.Unimplemented(
            f"{method} is part of the contract but not implemented by this server yet",
            metadata={"method": method},
        )
    return None
