"""Domain errors. Each carries a stable AIP-193 `reason`; transport maps classes to codes once."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

# Reasons that qualify INVALID_ARGUMENT beyond a bad field.
REQUEST_ID_REUSED = "REQUEST_ID_REUSED"  # a request_id came back with another request
UNDECODABLE_REQUEST = "UNDECODABLE_REQUEST"  # the body is not the method's message


@dataclass(frozen=True)
class FieldViolation:
    """One bad field of a request, named as the caller wrote it."""

    field: str
    description: str


class DomainError(Exception):
    """Base of every error a caller can cause. `reason` is part of the public contract."""

    reason: str = "DOMAIN_ERROR"

    def __init__(self, message: str, *, metadata: Mapping[str, str] | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.metadata: dict[str, str] = dict(metadata or {})


class InvalidArgument(DomainError):
    """The request is malformed; `violations` names each offending field."""

    reason = "INVALID_ARGUMENT"

    def __init__(
        self,
        violations: Sequence[FieldViolation],
        *,
        message: str | None = None,
        reason: str | None = None,
    ) -> None:
        self.violations = tuple(violations)
        fields = ", ".join(v.field for v in self.violations)
        super().__init__(
            message or "; ".join(f"{v.field}: {v.description}" for v in self.violations),
            metadata={"fields": fields},
        )
        if reason:
            self.reason = reason

    @classmethod
    def field(cls, field: str, description: str) -> InvalidArgument:
        return cls([FieldViolation(field, description)])


class Unauthenticated(DomainError):
    reason = "UNAUTHENTICATED"


class PermissionDenied(DomainError):
    reason = "PERMISSION_DENIED"


def _reason_word(kind: str) -> str:
    """'approval team' -> 'APPROVAL_TEAM', for reasons a client can branch on."""
    return "_".join(kind.upper().replace("-", " ").split())


class NotFound(DomainError):
    reason = "NOT_FOUND"

    def __init__(self, kind: str, key: str) -> None:
        super().__init__(f"{kind} {key!r} was not found", metadata={"resource": kind, "id": key})
        self.reason = f"{_reason_word(kind)}_NOT_FOUND"


class AlreadyExists(DomainError):
    reason = "ALREADY_EXISTS"

    def __init__(self, kind: str, key: str) -> None:
        super().__init__(f"{kind} {key!r} already exists", metadata={"resource": kind, "id": key})
        self.reason = f"{_reason_word(kind)}_ALREADY_EXISTS"


class FailedPrecondition(DomainError):
    """The object's current state forbids the operation; the message names the state."""

    reason = "FAILED_PRECONDITION"

    def __init__(
        self, message: str, *, reason: str | None = None, metadata: Mapping[str, str] | None = None
    ) -> None:
        super().__init__(message, metadata=metadata)
        if reason:
            self.reason = reason


class EtagMismatch(FailedPrecondition):
    reason = "ETAG_MISMATCH"

    def __init__(self, expected: str, actual: str) -> None:
        super().__init__(
            "the etag does not match the current version; read the object again and retry",
            metadata={"expectedEtag": expected, "actualEtag": actual},
        )


class InvalidTransition(FailedPrecondition):
    reason = "INVALID_STATE_TRANSITION"

    def __init__(self, kind: str, current: str, target: str) -> None:
        super().__init__(
            f"{kind} is {current} and cannot become {target}",
            metadata={"resource": kind, "state": current, "target": target},
        )


class Unimplemented(DomainError):
    reason = "NOT_IMPLEMENTED"


class ResourceExhausted(DomainError):
    """A limit of the server was reached; `retry_after` (seconds), when set, says when the
    same call may succeed again (google.rpc.RetryInfo)."""

    reason = "RESOURCE_EXHAUSTED"

    def __init__(
        self,
        message: str,
        *,
        reason: str,
        retry_after: float | None = None,
        metadata: Mapping[str, str] | None = None,
    ) -> None:
        super().__init__(message, metadata=metadata)
        self.reason = reason
        self.retry_after = retry_after


# Reasons of ResourceExhausted (the catalogue: proto ErrorReason).
TOO_MANY_STREAMS = "TOO_MANY_STREAMS"
STREAM_BUFFER_FULL = "STREAM_BUFFER_FULL"
TOO_MANY_REFUSED_CALLS = "TOO_MANY_REFUSED_CALLS"


class Conflict(DomainError):
    """A concurrent change won; the caller may retry."""

    reason = "CONCURRENT_CHANGE"


class Unavailable(DomainError):
    """The database cannot be reached (down, restarting, refusing connections, missing): the
    call did nothing, or its transaction committed whole; the caller retries with backoff."""

    reason = "DATABASE_UNAVAILABLE"

    def __init__(self, message: str = "the database cannot be reached; retry with backoff") -> None:
        super().__init__(message)


class StaleConnection(Unavailable):
    """The database had closed the pooled connection before this transaction sent anything
    (it restarted): nothing happened, so one retry on a new connection is safe."""


# Reasons of issue 9 (trust): named once here, used by the rules that raise them.
RESERVED_ACTION = "RESERVED_ACTION"  # a generic session named an action of Airlock's own kinds
APPROVER_DISABLED = "APPROVER_DISABLED"  # a disabled approver may not answer, vote or sign in
NEW_KEY_REQUIRED = "NEW_KEY_REQUIRED"  # re-enrolling an approver names its new key in the draft
KEY_NOT_APPROVED = "KEY_NOT_APPROVED"  # an invitation accepted with a key the team did not approve
QUORUM_UNREACHABLE = "QUORUM_UNREACHABLE"  # fewer enabled approvers than M: no session opens
