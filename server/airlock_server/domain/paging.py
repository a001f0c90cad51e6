"""Opaque page tokens (AIP-158), bound to the query that produced them."""

from __future__ import annotations

import base64
import hashlib
import json
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Generic, TypeVar

from airlock_server.domain.errors import InvalidArgument

T = TypeVar("T")

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
