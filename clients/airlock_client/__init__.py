"""Airlock's Python SDK: a thin, typed, async client of the `airlock.v1` gRPC API (the `airlock`
CLI, `airlock_cli`, is built on it).

    from airlock_client import AirlockClient, NotFoundError

    async with AirlockClient.connect("127.0.0.1:50051", token) as client:
        team = await client.get_team(team_id)

Results are the generated proto messages (`airlock.v1.*_pb2`); failures raise `AirlockError`
subclasses carrying the server's stable `reason`.
"""

from airlock_client.client import (
    DEFAULT_TARGET,
    DEFAULT_TIMEOUT,
    AirlockClient,
    RetryPolicy,
    principal_kind,
)
from airlock_client.errors import (
    AbortedError,
    AirlockError,
    AlreadyExistsError,
    CallCancelledError,
    DataLossError,
    DeadlineExceededError,
    ErrorReason,
    FailedPreconditionError,
    FieldViolation,
    InternalError,
    InvalidArgumentError,
    NotFoundError,
    OutOfRangeError,
    PermissionDeniedError,
    ResourceExhaustedError,
    StatusCode,
    UnauthenticatedError,
    UnavailableError,
    UnimplementedError,
    UnknownError,
)
from airlock_client.keys import (
    KeyFileError,
    generate_private_key,
    load_private_key,
    public_key_base64,
    public_key_bytes,
    save_private_key,
    sign_invitation,
    sign_vote,
    vote_digest,
)

__all__ = [
    "DEFAULT_TARGET",
    "DEFAULT_TIMEOUT",
    "AbortedError",
    "AirlockClient",
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
    "KeyFileError",
    "NotFoundError",
    "OutOfRangeError",
    "PermissionDeniedError",
    "ResourceExhaustedError",
    "RetryPolicy",
    "StatusCode",
    "UnauthenticatedError",
    "UnavailableError",
    "UnimplementedError",
    "UnknownError",
    "generate_private_key",
    "load_private_key",
    "principal_kind",
    "public_key_base64",
    "public_key_bytes",
    "save_private_key",
    "sign_invitation",
    "sign_vote",
    "vote_digest",
]
