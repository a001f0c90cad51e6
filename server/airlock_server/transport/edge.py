"""What every request passes before a use case sees it: decoded, every field in range.

Driven by the message descriptors, so a new RPC or field is covered without a line here:
- a body that does not decode is INVALID_ARGUMENT (gRPC itself would answer UNKNOWN);
- Timestamps lie in 0001-01-01..9999-12-31 with nanos in 0..999,999,999;
- Durations are at most MAX_DURATION either way (so `now + ttl` stays a date), nanos in range
  and of the seconds' sign;
- strings hold no NUL (PostgreSQL cannot store one; SQLite can: the backends would disagree)
  and at most MAX_STRING characters (each field's own, smaller limit is its use case's);
- 64-bit integers leave room for the `+ 1` of "after this seq" in a signed BIGINT.
The request's fingerprint, for request_id (app/common.py `once`), is computed here too.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Iterator
from datetime import timedelta
from typing import Any

from google.protobuf import descriptor, message
from google.protobuf.message import DecodeError

from airlock_server.domain.errors import UNDECODABLE_REQUEST, FieldViolation, InvalidArgument

MIN_SECONDS = -62_135_596_800  # 0001-01-01T00:00:00Z
MAX_SECONDS = 253_402_300_799  # 9999-12-31T23:59:59Z
MAX_NANOS = 999_999_999
MAX_DURATION = timedelta(days=365_250)  # 1,000 years
MAX_STRING = 4096
MAX_INT64 = 2**63 - 2

_FD = descriptor.FieldDescriptor
_INT64 = (_FD.TYPE_INT64, _FD.TYPE_SINT64, _FD.TYPE_SFIXED64, _FD.TYPE_UINT64, _FD.TYPE_FIXED64)


class Undecodable:
    """Stands for a request body that is not the method's message; refused by `admit`."""

    def __init__(self, error: Exception) -> None:
        self.error = error


def decoding(deserializer: Callable[[bytes], Any] | None) -> Callable[[bytes], Any] | None:
    """The method's deserializer, made total: garbage becomes an Undecodable, not an error
    raised inside gRPC (which answers UNKNOWN with the class name and logs a traceback)."""
    if deserializer is None:
        return None

    def decode(body: bytes) -> Any:
        try:
            return deserializer(body)
        except (DecodeError, ValueError, TypeError, RecursionError) as error:
            return Undecodable(error)

    return decode


def admit(request: Any) -> None:
    """Raise InvalidArgument naming each bad field; nothing is returned or changed."""
    if isinstance(request, Undecodable):
        raise InvalidArgument(
            [FieldViolation("request", "the body is not a valid message of this method")],
            reason=UNDECODABLE_REQUEST,
        )
    if isinstance(request, message.Message):
        violations = list(_violations(request, ""))
        if violations:
            raise InvalidArgument(violations)


def fingerprint(request: Any) -> str:
    """SHA-256 (hex) of the request's deterministic serialization with request_id cleared:
    what a request_id is bound to, with the caller and the method. Empty without a
    request_id: nothing to bind, nothing to hash."""
    if not isinstance(request, message.Message) or not getattr(request, "request_id", ""):
        return ""
    copy = type(request)()
    copy.CopyFrom(request)
    copy.ClearField("request_id")
    return hashlib.sha256(copy.SerializeToString(deterministic=True)).hexdigest()


def _violations(msg: message.Message, prefix: str) -> Iterator[FieldViolation]:
    name = msg.DESCRIPTOR.full_name
    if name == "google.protobuf.Timestamp":
        yield from _timestamp(msg, prefix.rstrip("."))
        return
    if name == "google.protobuf.Duration":
        yield from _duration(msg, prefix.rstrip("."))
        return
    for field, value in msg.ListFields():
        path = prefix + field.name
        if field.message_type is not None and field.message_type.GetOptions().map_entry:
            value_field = field.message_type.fields_by_name["value"]
            for key, item in value.items():
                yield from _scalar(field.message_type.fields_by_name["key"], key, f"{path}.key")
                if value_field.message_type is not None:
                    yield from _violations(item, f"{path}[{key!r}].")
                else:
                    yield from _scalar(value_field, item, f"{path}[{key!r}]")
        elif field.is_repeated:
            for i, item in enumerate(value):
                if field.message_type is not None:
                    yield from _violations(item, f"{path}[{i}].")
                else:
                    yield from _scalar(field, item, f"{path}[{i}]")
        elif field.message_type is not None:
            yield from _violations(value, path + ".")
        else:
            yield from _scalar(field, value, path)


def _scalar(field: descriptor.FieldDescriptor, value: Any, path: str) -> Iterator[FieldViolation]:
    if field.type == _FD.TYPE_STRING:
        if "\x00" in value:
            yield FieldViolation(path, "must not contain a NUL character")
        if len(value) > MAX_STRING:
            yield FieldViolation(path, f"at most {MAX_STRING} characters")
    elif field.type in _INT64 and not -MAX_INT64 <= value <= MAX_INT64:
        yield FieldViolation(path, f"must be between {-MAX_INT64} and {MAX_INT64}")


def _timestamp(ts: Any, path: str) -> Iterator[FieldViolation]:
    if not 0 <= ts.nanos <= MAX_NANOS:
        yield FieldViolation(path + ".nanos", f"must be between 0 and {MAX_NANOS}")
    if not MIN_SECONDS <= ts.seconds <= MAX_SECONDS:
        yield FieldViolation(path, "must lie between 0001-01-01 and 9999-12-31 (UTC)")


def _duration(d: Any, path: str) -> Iterator[FieldViolation]:
    if not -MAX_NANOS <= d.nanos <= MAX_NANOS or (d.seconds * d.nanos < 0):
        yield FieldViolation(
            path + ".nanos", "must be between -999999999 and 999999999, of the seconds' sign"
        )
    elif abs(d.seconds) + (1 if d.nanos else 0) > MAX_DURATION.total_seconds():
        yield FieldViolation(path, f"at most {MAX_DURATION.days} days either way")
