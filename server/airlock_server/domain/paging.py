"""Opaque page tokens (AIP-158), bound to the query that produced them, and the cursors they
carry: a key, or a time and a key for lists in time order."""

from __future__ import annotations

import base64
import hashlib
import json
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Generic, TypeVar

from airlock_server.domain.errors import InvalidArgument
from airlock_server.domain.events import format_time

T = TypeVar("T")

# Page cursors of time-ordered lists: (create_time, id), newest first.
TimeCursor = tuple[datetime, str]

DEFAULT_PAGE_SIZE = 50
MAX_PAGE_SIZE = 1000


@dataclass(frozen=True)
class Page(Generic[T]):
    items: tuple[T, ...]
    next_page_token: str = ""


def page_size(requested: int) -> int:
    if requested < 0:
        raise InvalidArgument.field("page_size", "must not be negative")
    if requested == 0:
        return DEFAULT_PAGE_SIZE
    return min(requested, MAX_PAGE_SIZE)


def _fingerprint(query: Mapping[str, object]) -> str:
    raw = json.dumps(query, sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(raw.encode()).hexdigest()[:16]


def encode_token(cursor: str, query: Mapping[str, object]) -> str:
    raw = json.dumps({"c": cursor, "q": _fingerprint(query)}, separators=(",", ":"))
    return base64.urlsafe_b64encode(raw.encode()).decode().rstrip("=")


def decode_token(token: str, query: Mapping[str, object]) -> str | None:
    """The cursor after which the page starts; None for the first page."""
    if not token:
        return None
    try:
        padded = token + "=" * (-len(token) % 4)
        data = json.loads(base64.urlsafe_b64decode(padded.encode()))
        cursor, fingerprint = data["c"], data["q"]
    except (ValueError, KeyError, TypeError) as exc:
        raise InvalidArgument.field("page_token", "not a page token this service issued") from exc
    if not isinstance(cursor, str) or fingerprint != _fingerprint(query):
        raise InvalidArgument.field(
            "page_token", "the page token belongs to a request with other parameters"
        )
    return cursor


def page_of(
    rows: Sequence[T], limit: int, key: Callable[[T], str], query: Mapping[str, object]
) -> Page[T]:
    """Rows were fetched with limit + 1: the extra one only says that a next page exists."""
    if len(rows) <= limit:
        return Page(tuple(rows))
    items = tuple(rows[:limit])
    return Page(items, encode_token(key(items[-1]), query))


def encode_cursor(t: datetime, key: str) -> str:
    return f"{format_time(t)}|{key}"


def decode_cursor(cursor: str | None) -> TimeCursor | None:
    if cursor is None:
        return None
    raw_time, sep, key = cursor.partition("|")
    try:
        if not sep:
            raise ValueError(cursor)
        t = datetime.strptime(raw_time, "%Y-%m-%dT%H:%M:%S.%fZ").replace(tzinfo=UTC)
    except ValueError as exc:
        raise InvalidArgument.field("page_token", "not a page token this service issued") from exc
    return t, key


def time_page(
    rows: Sequence[T],
    limit: int,
    key: Callable[[T], TimeCursor],
    query: Mapping[str, object],
) -> Page[T]:
    """page_of for rows in time order: the token carries the last item's (time, key)."""
    if len(rows) <= limit:
        return Page(tuple(rows))
    items = tuple(rows[:limit])
    return Page(items, encode_token(encode_cursor(*key(items[-1])), query))
