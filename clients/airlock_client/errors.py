"""The SDK's exceptions: one class per gRPC status code, built from the server's google.rpc.Status.

The server sends a `google.rpc.Status` in the `grpc-status-details-bin` trailer with exactly one
`google.rpc.ErrorInfo` (domain "airlock", a stable UPPER_SNAKE `reason`, lowerCamel metadata) and,
for bad input, a `google.rpc.BadRequest` naming the fields. Callers catch `AirlockError` (or a
subclass) and branch on `reason` (a string, as sent) or `error_reason` (the same reason as an
`airlock.v1.ErrorReason` value; docs/errors.md lists them); a bare `grpc.RpcError` never leaves
the SDK.
"""

from __future__ import annotations

import enum
from typing import Any, NamedTuple

import grpc
from google.rpc import error_details_pb2, status_pb2
from grpc_status import rpc_status

from airlock.v1 import errors_pb2

__all__ = [
    "AbortedError",
    "AirlockError",
    "AlreadyExistsError",
    "CallCancelledError",
    "DataLossError",
    "DeadlineExceededError",
    "ErrorReason",
    "FailedPreconditionError",
    "FieldViolation",
    "InternalError",
    "InvalidArgumentError",
    "NotFoundError",
    "OutOfRangeError",
    "PermissionDeniedError",
    "ResourceExhaustedError",
    "StatusCode",
    "UnauthenticatedError",
    "UnavailableError",
    "UnimplementedError",
    "UnknownError",
    "from_rpc_error",
]

ERROR_DOMAIN = "airlock"
# The contract's catalogue of reasons (proto/airlock/v1/errors.proto): ErrorReason.Name(value),
# ErrorReason.Value("TEAM_NOT_ACTIVE"), or the module constants errors_pb2.TEAM_NOT_ACTIVE.
ErrorReason = errors_pb2.ErrorReason
_DETAILS_KEY = "grpc-status-details-bin"


class StatusCode(enum.IntEnum):
    """The gRPC status codes, with the same numbers (mirrors `grpc.StatusCode`)."""

    OK = 0
    CANCELLED = 1
    UNKNOWN = 2
    INVALID_ARGUMENT = 3
    DEADLINE_EXCEEDED = 4
    NOT_FOUND = 5
    ALREADY_EXISTS = 6
    PERMISSION_DENIED = 7
    RESOURCE_EXHAUSTED = 8
    FAILED_PRECONDITION = 9
    ABORTED = 10
    OUT_OF_RANGE = 11
    UNIMPLEMENTED = 12
    INTERNAL = 13
    UNAVAILABLE = 14
    DATA_LOSS = 15
    UNAUTHENTICATED = 16

    @classmethod
    def from_grpc(cls, code: grpc.StatusCode | None) -> StatusCode:
        """The SDK code for a `grpc.StatusCode` (UNKNOWN when absent)."""
        if code is None:
            return cls.UNKNOWN
        number = code.value[0]
        return cls(number) if isinstance(number, int) and 0 <= number <= 16 else cls.UNKNOWN


class FieldViolation(NamedTuple):
    """One `google.rpc.BadRequest.FieldViolation`: which request field is wrong, and why."""

    field: str
    description: str


class AirlockError(Exception):
    """An RPC failed. `code` is the gRPC status, `reason` the server's stable ErrorInfo reason.

    `reason` is empty when the failure carried no ErrorInfo (for example a connection failure or a
    deadline that expired on the client). `metadata` is the ErrorInfo metadata (lowerCamel keys).
    `status` is the decoded `google.rpc.Status` when the server sent one.
    """

    code: StatusCode = StatusCode.UNKNOWN

    def __init__(
        self,
        code: StatusCode,
        reason: str,
        message: str,
        *,
        metadata: dict[str, str] | None = None,
        field_violations: list[FieldViolation] | None = None,
        domain: str = "",
        status: status_pb2.Status | None = None,
    ) -> None:
        super().__init__(message)
        self.code = code
        self.reason = reason
        self.message = message
        self.metadata: dict[str, str] = dict(metadata or {})
        self.field_violations: list[FieldViolation] = list(field_violations or [])
        self.domain = domain
        self.status = status

    @property
    def error_reason(self) -> errors_pb2.ErrorReason.ValueType:
        """`reason` as an `airlock.v1.ErrorReason` value. ERROR_REASON_UNSPECIFIED when the failure
        carried no Airlock reason, or one newer than this SDK (then `reason` still has it)."""
        if self.domain != ERROR_DOMAIN or not self.reason:
            return errors_pb2.ERROR_REASON_UNSPECIFIED
        try:
            return ErrorReason.Value(self.reason)
        except ValueError:
            return errors_pb2.ERROR_REASON_UNSPECIFIED

    @property
    def heading(self) -> str:
        """The code, then the reason when it says more than the code: `FAILED_PRECONDITION
        TEAM_NOT_ACTIVE`, but `INVALID_ARGUMENT` once when the reason is the code again."""
        if self.reason and self.reason != self.code.name:
            return f"{self.code.name} {self.reason}"
        return self.code.name

    def __str__(self) -> str:
        return f"{self.heading}: {self.message}" if self.message else self.heading

    def __repr__(self) -> str:
        return (
            f"{type(self).__name__}(code={self.code.name}, reason={self.reason!r}, "
            f"message={self.message!r})"
        )


class CallCancelledError(AirlockError):
    """CANCELLED: the call was cancelled (usually by the caller)."""

    code = StatusCode.CANCELLED


class UnknownError(AirlockError):
    """UNKNOWN."""

    code = StatusCode.UNKNOWN


class InvalidArgumentError(AirlockError):
    """INVALID_ARGUMENT: see `field_violations`."""

    code = StatusCode.INVALID_ARGUMENT


class DeadlineExceededError(AirlockError):
    """DEADLINE_EXCEEDED: the call did not finish within its deadline."""

    code = StatusCode.DEADLINE_EXCEEDED


class NotFoundError(AirlockError):
    """NOT_FOUND."""

    code = StatusCode.NOT_FOUND


class AlreadyExistsError(AirlockError):
    """ALREADY_EXISTS."""

    code = StatusCode.ALREADY_EXISTS


class PermissionDeniedError(AirlockError):
    """PERMISSION_DENIED: the credential is valid but its principal may not do this."""

    code = StatusCode.PERMISSION_DENIED


class ResourceExhaustedError(AirlockError):
    """RESOURCE_EXHAUSTED."""

    code = StatusCode.RESOURCE_EXHAUSTED


class FailedPreconditionError(AirlockError):
    """FAILED_PRECONDITION: the object is not in a state that allows this (see `reason`)."""

    code = StatusCode.FAILED_PRECONDITION


class AbortedError(AirlockError):
    """ABORTED: a concurrent change; the SDK retries these with the same request_id."""

    code = StatusCode.ABORTED


class OutOfRangeError(AirlockError):
    """OUT_OF_RANGE."""

    code = StatusCode.OUT_OF_RANGE


class UnimplementedError(AirlockError):
    """UNIMPLEMENTED: the server does not implement this RPC (yet)."""

    code = StatusCode.UNIMPLEMENTED


class InternalError(AirlockError):
    """INTERNAL: a server bug; the server logged the details."""

    code = StatusCode.INTERNAL


class UnavailableError(AirlockError):
    """UNAVAILABLE: the server could not be reached; the SDK retries these."""

    code = StatusCode.UNAVAILABLE


class DataLossError(AirlockError):
    """DATA_LOSS."""

    code = StatusCode.DATA_LOSS


class UnauthenticatedError(AirlockError):
    """UNAUTHENTICATED: no credential, or an unknown, revoked or expired one."""

    code = StatusCode.UNAUTHENTICATED


_CLASSES: dict[StatusCode, type[AirlockError]] = {
    cls.code: cls
    for cls in (
        CallCancelledError,
        UnknownError,
        InvalidArgumentError,
        DeadlineExceededError,
        NotFoundError,
        AlreadyExistsError,
        PermissionDeniedError,
        ResourceExhaustedError,
        FailedPreconditionError,
        AbortedError,
        OutOfRangeError,
        UnimplementedError,
        InternalError,
        UnavailableError,
        DataLossError,
        UnauthenticatedError,
    )
}


def error_class(code: StatusCode) -> type[AirlockError]:
    """The AirlockError subclass raised for a status code."""
    return _CLASSES.get(code, AirlockError)


def _rich_status(error: grpc.RpcError) -> status_pb2.Status | None:
    """The google.rpc.Status of the trailer, or None.

    `rpc_status.from_call` checks that the trailer agrees with the call's code and message; when
    it does not (a proxy rewrote one of them), the trailer is still decoded, because its
    ErrorInfo is what callers branch on.
    """
    try:
        return rpc_status.from_call(error)
    except ValueError:
        pass
    except Exception:  # a trailer that is not a Status: ignore it, keep code and message
        return None
    trailing: Any = getattr(error, "trailing_metadata", None)
    metadata: Any = trailing() if callable(trailing) else None
    for key, value in tuple(metadata or ()):
        if key == _DETAILS_KEY and isinstance(value, bytes):
            try:
                return status_pb2.Status.FromString(value)
            except Exception:
                return None
    return None


def from_status(code: StatusCode, message: str, status: status_pb2.Status | None) -> AirlockError:
    """Builds the error for a status code, message and optional google.rpc.Status."""
    reason = ""
    domain = ""
    metadata: dict[str, str] = {}
    violations: list[FieldViolation] = []
    if status is not None:
        for detail in status.details:
            if detail.Is(error_details_pb2.ErrorInfo.DESCRIPTOR):
                info = error_details_pb2.ErrorInfo()
                detail.Unpack(info)
                if not reason:
                    reason = info.reason
                    domain = info.domain
                    metadata = dict(info.metadata)
            elif detail.Is(error_details_pb2.BadRequest.DESCRIPTOR):
                bad = error_details_pb2.BadRequest()
                detail.Unpack(bad)
                violations.extend(
                    FieldViolation(v.field, v.description) for v in bad.field_violations
                )
    return error_class(code)(
        code,
        reason,
        message,
        metadata=metadata,
        field_violations=violations,
        domain=domain,
        status=status,
    )


def from_rpc_error(error: grpc.RpcError) -> AirlockError:
    """Converts a failed call (`grpc.aio.AioRpcError`, or a sync `grpc.Call`) to an AirlockError."""
    raw_code = error.code() if hasattr(error, "code") else None
    code = StatusCode.from_grpc(raw_code if isinstance(raw_code, grpc.StatusCode) else None)
    raw_message = error.details() if hasattr(error, "details") else None
    message = raw_message if isinstance(raw_message, str) else ""
    status = _rich_status(error)
    if status is not None and not message:
        message = status.message
    return from_status(code, message, status)
