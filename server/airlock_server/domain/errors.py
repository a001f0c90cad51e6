"""Domain errors. Each carries a stable AIP-193 `reason`; transport maps classes to codes once.

`Reason` is the server's one catalogue of reasons. It mirrors `airlock.v1.ErrorReason`
(proto/airlock/v1/errors.proto) member for member; tests/unit/test_error_reasons.py keeps the two
equal and proves that every reason raised anywhere in server/ is a member. Adding a reason is one
line here and one enum value in the proto (then `python scripts/gen_protos.py`).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from enum import StrEnum
from typing import Literal


class Reason(StrEnum):
    """Every ErrorInfo.reason the server sends; the value is the name, as on the wire."""

    # Generic reasons of the classes below, when no narrower one applies.
    INVALID_ARGUMENT = "INVALID_ARGUMENT"
    UNAUTHENTICATED = "UNAUTHENTICATED"
    PERMISSION_DENIED = "PERMISSION_DENIED"
    NOT_IMPLEMENTED = "NOT_IMPLEMENTED"
    CONCURRENT_CHANGE = "CONCURRENT_CHANGE"
    INTERNAL = "INTERNAL"
    ETAG_MISMATCH = "ETAG_MISMATCH"
    INVALID_STATE_TRANSITION = "INVALID_STATE_TRANSITION"
    # NOT_FOUND, one per kind of resource (see NotFound).
    ACCOUNT_NOT_FOUND = "ACCOUNT_NOT_FOUND"
    APPROVAL_TEAM_NOT_FOUND = "APPROVAL_TEAM_NOT_FOUND"
    APPROVER_NOT_FOUND = "APPROVER_NOT_FOUND"
    CREDENTIAL_NOT_FOUND = "CREDENTIAL_NOT_FOUND"
    INVITATION_NOT_FOUND = "INVITATION_NOT_FOUND"
    RESTORE_ACCESS_GRANT_NOT_FOUND = "RESTORE_ACCESS_GRANT_NOT_FOUND"
    SESSION_NOT_FOUND = "SESSION_NOT_FOUND"
    TEAM_SHARE_NOT_FOUND = "TEAM_SHARE_NOT_FOUND"
    VAULT_NOT_FOUND = "VAULT_NOT_FOUND"
    # ALREADY_EXISTS, one per kind of resource (see AlreadyExists).
    ACCOUNT_ALREADY_EXISTS = "ACCOUNT_ALREADY_EXISTS"
    APPROVAL_TEAM_ALREADY_EXISTS = "APPROVAL_TEAM_ALREADY_EXISTS"
    APPROVER_ALREADY_EXISTS = "APPROVER_ALREADY_EXISTS"
    RESTORE_ACCESS_GRANT_ALREADY_EXISTS = "RESTORE_ACCESS_GRANT_ALREADY_EXISTS"
    VAULT_ALREADY_EXISTS = "VAULT_ALREADY_EXISTS"
    # INVALID_ARGUMENT, narrower.
    BAD_SIGNATURE = "BAD_SIGNATURE"
    KEY_ALREADY_ENROLLED = "KEY_ALREADY_ENROLLED"
    KEY_NOT_REPLACED = "KEY_NOT_REPLACED"
    # PERMISSION_DENIED, narrower.
    TEAM_NOT_SHARED = "TEAM_NOT_SHARED"
    NOT_VAULT_OWNER = "NOT_VAULT_OWNER"
    NOT_VISIBLE = "NOT_VISIBLE"
    NOT_OWN_ACCOUNT = "NOT_OWN_ACCOUNT"
    NOT_SESSION_APPROVER = "NOT_SESSION_APPROVER"
    NOT_SESSION_REQUESTER = "NOT_SESSION_REQUESTER"
    REQUESTER_CANNOT_VOTE = "REQUESTER_CANNOT_VOTE"
    SYSTEM_CANCELLATION_ONLY = "SYSTEM_CANCELLATION_ONLY"
    # FAILED_PRECONDITION: the state of an object forbids the call.
    ALREADY_BOOTSTRAPPED = "ALREADY_BOOTSTRAPPED"
    APPROVER_DISABLED = "APPROVER_DISABLED"
    TEAM_NOT_ACTIVE = "TEAM_NOT_ACTIVE"
    TEAM_NOT_INACTIVE = "TEAM_NOT_INACTIVE"
    TEAM_DELETING = "TEAM_DELETING"
    TEAM_CHANGE_PENDING = "TEAM_CHANGE_PENDING"
    TEAM_STATUS_MISMATCH = "TEAM_STATUS_MISMATCH"
    NO_PENDING_UPDATE = "NO_PENDING_UPDATE"
    DELETION_NOT_DUE = "DELETION_NOT_DUE"
    INVITATION_CLOSED = "INVITATION_CLOSED"
    INVITATION_ALREADY_ANSWERED = "INVITATION_ALREADY_ANSWERED"
    INVITATION_EXPIRED = "INVITATION_EXPIRED"
    SESSION_NOT_PENDING = "SESSION_NOT_PENDING"
    SESSION_EXPIRED = "SESSION_EXPIRED"
    SESSION_NOT_APPROVED = "SESSION_NOT_APPROVED"
    ALREADY_VOTED = "ALREADY_VOTED"
    ALREADY_COMPLETED = "ALREADY_COMPLETED"
    NO_KEY_ENROLLED = "NO_KEY_ENROLLED"
    NO_TEAM_ASSOCIATED = "NO_TEAM_ASSOCIATED"
    TEAM_ALREADY_ASSOCIATED = "TEAM_ALREADY_ASSOCIATED"
    ASSOCIATION_CHANGE_PENDING = "ASSOCIATION_CHANGE_PENDING"
    ASSOCIATION_NEEDS_APPROVAL = "ASSOCIATION_NEEDS_APPROVAL"
    NO_PENDING_ASSOCIATION_CHANGE = "NO_PENDING_ASSOCIATION_CHANGE"
    GRANT_NOT_AVAILABLE = "GRANT_NOT_AVAILABLE"
    REVOKE_PENDING = "REVOKE_PENDING"
    NO_PENDING_REVOKE = "NO_PENDING_REVOKE"
    VAULT_UNDER_RECOVERY = "VAULT_UNDER_RECOVERY"
    LOG_KEY_MISSING = "LOG_KEY_MISSING"
    # RESOURCE_EXHAUSTED: a limit of the server was reached (see ResourceExhausted).
    TOO_MANY_STREAMS = "TOO_MANY_STREAMS"
    STREAM_BUFFER_FULL = "STREAM_BUFFER_FULL"
    TOO_MANY_REFUSED_CALLS = "TOO_MANY_REFUSED_CALLS"
    # INVALID_ARGUMENT, narrower (faults-edge).
    REQUEST_ID_REUSED = "REQUEST_ID_REUSED"
    UNDECODABLE_REQUEST = "UNDECODABLE_REQUEST"
    # UNAVAILABLE.
    DATABASE_UNAVAILABLE = "DATABASE_UNAVAILABLE"
    # FAILED_PRECONDITION: the database was changed behind the server's back (trust-log).
    RECORD_NOT_AUTHENTIC = "RECORD_NOT_AUTHENTIC"
    LOG_NOT_AUTHENTIC = "LOG_NOT_AUTHENTIC"
    # Trust in keys (trust-keys).
    RESERVED_ACTION = "RESERVED_ACTION"
    NEW_KEY_REQUIRED = "NEW_KEY_REQUIRED"
    KEY_NOT_APPROVED = "KEY_NOT_APPROVED"
    QUORUM_UNREACHABLE = "QUORUM_UNREACHABLE"
    # Notifications (issue 12).
    NOTIFICATION_ENDPOINT_NOT_FOUND = "NOTIFICATION_ENDPOINT_NOT_FOUND"
    NOTIFICATION_ENDPOINT_DISABLED = "NOTIFICATION_ENDPOINT_DISABLED"
    # The approval portal's passkeys (issue 13).
    PASSKEY_CHALLENGE_INVALID = "PASSKEY_CHALLENGE_INVALID"
    PASSKEY_COUNTER_NOT_INCREASED = "PASSKEY_COUNTER_NOT_INCREASED"
    PASSKEY_NOT_ENROLLED = "PASSKEY_NOT_ENROLLED"


# The kinds of resource a caller names by id; each has its fixed NOT_FOUND (and, where the caller
# creates it, ALREADY_EXISTS) reason, so no reason is built at run time.
Resource = Literal[
    "account",
    "approval team",
    "approver",
    "credential",
    "invitation",
    "notification endpoint",
    "restore access grant",
    "session",
    "team share",
    "vault",
]
NOT_FOUND_REASONS: Mapping[Resource, Reason] = {
    "account": Reason.ACCOUNT_NOT_FOUND,
    "approval team": Reason.APPROVAL_TEAM_NOT_FOUND,
    "approver": Reason.APPROVER_NOT_FOUND,
    "credential": Reason.CREDENTIAL_NOT_FOUND,
    "invitation": Reason.INVITATION_NOT_FOUND,
    "notification endpoint": Reason.NOTIFICATION_ENDPOINT_NOT_FOUND,
    "restore access grant": Reason.RESTORE_ACCESS_GRANT_NOT_FOUND,
    "session": Reason.SESSION_NOT_FOUND,
    "team share": Reason.TEAM_SHARE_NOT_FOUND,
    "vault": Reason.VAULT_NOT_FOUND,
}
ALREADY_EXISTS_REASONS: Mapping[Resource, Reason] = {
    "account": Reason.ACCOUNT_ALREADY_EXISTS,
    "approval team": Reason.APPROVAL_TEAM_ALREADY_EXISTS,
    "approver": Reason.APPROVER_ALREADY_EXISTS,
    "restore access grant": Reason.RESTORE_ACCESS_GRANT_ALREADY_EXISTS,
    "vault": Reason.VAULT_ALREADY_EXISTS,
}

# Reasons that qualify INVALID_ARGUMENT beyond a bad field, under the names their callers import.
REQUEST_ID_REUSED = Reason.REQUEST_ID_REUSED  # a request_id came back with another request
UNDECODABLE_REQUEST = Reason.UNDECODABLE_REQUEST  # the body is not the method's message


@dataclass(frozen=True)
class FieldViolation:
    """One bad field of a request, named as the caller wrote it."""

    field: str
    description: str


class DomainError(Exception):
    """Base of every error a caller can cause. `reason` is part of the public contract: each
    class names its generic one; a raise may name a narrower one of the catalogue."""

    reason: Reason = Reason.INVALID_ARGUMENT  # as the error table's row for a bare DomainError

    def __init__(
        self,
        message: str,
        *,
        reason: Reason | None = None,
        metadata: Mapping[str, str] | None = None,
    ) -> None:
        super().__init__(message)
        self.message = message
        self.metadata: dict[str, str] = dict(metadata or {})
        if reason is not None:
            self.reason = reason


class InvalidArgument(DomainError):
    """The request is malformed; `violations` names each offending field."""

    reason = Reason.INVALID_ARGUMENT

    def __init__(
        self,
        violations: Sequence[FieldViolation],
        *,
        message: str | None = None,
        reason: Reason | None = None,
    ) -> None:
        self.violations = tuple(violations)
        fields = ", ".join(v.field for v in self.violations)
        super().__init__(
            message or "; ".join(f"{v.field}: {v.description}" for v in self.violations),
            reason=reason,
            metadata={"fields": fields},
        )

    @classmethod
    def field(cls, field: str, description: str) -> InvalidArgument:
        return cls([FieldViolation(field, description)])


class Unauthenticated(DomainError):
    reason = Reason.UNAUTHENTICATED


class PermissionDenied(DomainError):
    reason = Reason.PERMISSION_DENIED


class NotFound(DomainError):
    def __init__(self, kind: Resource, key: str) -> None:
        super().__init__(
            f"{kind} {key!r} was not found",
            reason=NOT_FOUND_REASONS[kind],
            metadata={"resource": kind, "id": key},
        )


class AlreadyExists(DomainError):
    def __init__(self, kind: Resource, key: str) -> None:
        super().__init__(
            f"{kind} {key!r} already exists",
            reason=ALREADY_EXISTS_REASONS[kind],
            metadata={"resource": kind, "id": key},
        )


class FailedPrecondition(DomainError):
    """The object's current state forbids the operation; the message names the state and the
    reason says which rule refused (there is no generic FAILED_PRECONDITION reason)."""

    def __init__(
        self, message: str, *, reason: Reason, metadata: Mapping[str, str] | None = None
    ) -> None:
        super().__init__(message, reason=reason, metadata=metadata)


class EtagMismatch(FailedPrecondition):
    def __init__(self, expected: str, actual: str) -> None:
        super().__init__(
            "the etag does not match the current version; read the object again and retry",
            reason=Reason.ETAG_MISMATCH,
            metadata={"expectedEtag": expected, "actualEtag": actual},
        )


class InvalidTransition(FailedPrecondition):
    def __init__(self, kind: str, current: str, target: str) -> None:
        super().__init__(
            f"{kind} is {current} and cannot become {target}",
            reason=Reason.INVALID_STATE_TRANSITION,
            metadata={"resource": kind, "state": current, "target": target},
        )


class Unimplemented(DomainError):
    reason = Reason.NOT_IMPLEMENTED


class ResourceExhausted(DomainError):
    """A limit of the server was reached; `retry_after` (seconds), when set, says when the
    same call may succeed again (google.rpc.RetryInfo)."""

    def __init__(
        self,
        message: str,
        *,
        reason: Reason,
        retry_after: float | None = None,
        metadata: Mapping[str, str] | None = None,
    ) -> None:
        super().__init__(message, reason=reason, metadata=metadata)
        self.retry_after = retry_after


# Reasons of ResourceExhausted, under the names their callers import.
TOO_MANY_STREAMS = Reason.TOO_MANY_STREAMS
STREAM_BUFFER_FULL = Reason.STREAM_BUFFER_FULL
TOO_MANY_REFUSED_CALLS = Reason.TOO_MANY_REFUSED_CALLS


class Conflict(DomainError):
    """A concurrent change won; the caller may retry."""

    reason = Reason.CONCURRENT_CHANGE


class Unavailable(DomainError):
    """The database cannot be reached (down, restarting, refusing connections, missing): the
    call did nothing, or its transaction committed whole; the caller retries with backoff."""

    reason = Reason.DATABASE_UNAVAILABLE

    def __init__(self, message: str = "the database cannot be reached; retry with backoff") -> None:
        super().__init__(message)


class StaleConnection(Unavailable):
    """The database had closed the pooled connection before this transaction sent anything
    (it restarted): nothing happened, so one retry on a new connection is safe."""


# Reasons of issue 9 (trust): named once here, used by the rules that raise them.
RESERVED_ACTION = Reason.RESERVED_ACTION  # a generic session named an action of Airlock's kinds
APPROVER_DISABLED = Reason.APPROVER_DISABLED  # a disabled approver may not answer, vote, sign in
NEW_KEY_REQUIRED = Reason.NEW_KEY_REQUIRED  # re-enrolling an approver names its new key
KEY_NOT_APPROVED = Reason.KEY_NOT_APPROVED  # accepted with a key the team did not approve
QUORUM_UNREACHABLE = Reason.QUORUM_UNREACHABLE  # fewer enabled approvers than M: no session
