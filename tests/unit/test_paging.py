"""Opaque page tokens (AIP-158): sizes, round trips, and tokens bound to their query."""

from __future__ import annotations

import base64
import json

import pytest

from airlock_server.domain.errors import InvalidArgument
from airlock_server.domain.paging import (
    DEFAULT_PAGE_SIZE,
    MAX_PAGE_SIZE,
    Page,
    decode_token,
    encode_token,
    page_of,
    page_size,
)

QUERY: dict[str, object] = {"kind": "approvers", "show_disabled": False}


def violation_fields(err: InvalidArgument) -> list[str]:
    return [v.field for v in err.violations]


# --- page_size -----------------------------------------------------------------------------


def test_zero_means_the_default() -> None:
    assert page_size(0) == DEFAULT_PAGE_SIZE


@pytest.mark.parametrize("n", [1, 7, DEFAULT_PAGE_SIZE, MAX_PAGE_SIZE])
def test_sizes_within_bounds_are_kept(n: int) -> None:
    assert page_size(n) == n


@pytest.mark.parametrize("n", [MAX_PAGE_SIZE + 1, 10**9])
def test_sizes_above_the_maximum_are_capped(n: int) -> None:
    assert page_size(n) == MAX_PAGE_SIZE


@pytest.mark.parametrize("n", [-1, -1000])
def test_negative_size_is_refused(n: int) -> None:
    with pytest.raises(InvalidArgument) as caught:
        page_size(n)
    assert violation_fields(caught.value) == ["page_size"]


# --- tokens --------------------------------------------------------------------------------


def test_empty_token_is_the_first_page() -> None:
    assert decode_token("", QUERY) is None


@pytest.mark.parametrize("cursor", ["", "alice", "team-0001", "2025-01-01T00:00:00Z|x", "ünï"])
def test_token_round_trip(cursor: str) -> None:
    token = encode_token(cursor, QUERY)
    assert token
    assert "=" not in token  # no padding: safe in URLs and on a command line
    assert decode_token(token, QUERY) == cursor


def test_token_does_not_depend_on_key_order() -> None:
    reordered = dict(reversed(list(QUERY.items())))
    assert decode_token(encode_token("c", QUERY), reordered) == "c"


@pytest.mark.parametrize(
    "other",
    [
        {"kind": "approvers", "show_disabled": True},
        {"kind": "accounts", "show_disabled": False},
        {"kind": "approvers"},
        {},
    ],
)
def test_token_of_another_query_is_refused(other: dict[str, object]) -> None:
    token = encode_token("alice", QUERY)
    with pytest.raises(InvalidArgument) as caught:
        decode_token(token, other)
    assert violation_fields(caught.value) == ["page_token"]


def _b64(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


@pytest.mark.parametrize(
    "token",
    [
        "garbage",
        "!!!",
        "a",
        _b64(b"not json"),
        _b64(b"[1, 2, 3]"),
        _b64(b'"a string"'),
        _b64(json.dumps({"c": "alice"}).encode()),
        _b64(json.dumps({"q": "x"}).encode()),
        _b64(json.dumps({"c": 5, "q": "x"}).encode()),
        _b64(b"\xff\xfe\x00"),
    ],
    ids=repr,
)
def test_garbage_token_is_refused(token: str) -> None:
    with pytest.raises(InvalidArgument) as caught:
        decode_token(token, QUERY)
    assert violation_fields(caught.value) == ["page_token"]


def test_a_forged_cursor_with_the_right_fingerprint_has_to_be_a_string() -> None:
    real = json.loads(base64.urlsafe_b64decode(encode_token("x", QUERY) + "=="))
    forged = _b64(json.dumps({"c": 42, "q": real["q"]}).encode())
    with pytest.raises(InvalidArgument) as caught:
        decode_token(forged, QUERY)
    assert violation_fields(caught.value) == ["page_token"]


# --- page_of -------------------------------------------------------------------------------


def key(row: str) -> str:
    return row


def test_fewer_rows_than_the_limit_is_the_last_page() -> None:
    assert page_of(["a", "b"], 3, key, QUERY) == Page(("a", "b"), "")


def test_exactly_the_limit_is_the_last_page() -> None:
    assert page_of(["a", "b", "c"], 3, key, QUERY) == Page(("a", "b", "c"), "")


def test_no_rows() -> None:
    assert page_of([], 3, key, QUERY) == Page((), "")


def test_limit_plus_one_rows_gives_a_next_page() -> None:
    page = page_of(["a", "b", "c", "d"], 3, key, QUERY)
    assert page.items == ("a", "b", "c")
    assert page.next_page_token
    # The next page starts after the last row returned, not after the extra one.
    assert decode_token(page.next_page_token, QUERY) == "c"


def test_walking_all_pages() -> None:
    rows = [f"r{i:03}" for i in range(10)]
    seen: list[str] = []
    token = ""
    for _ in range(10):
        cursor = decode_token(token, QUERY)
        remaining = [r for r in rows if cursor is None or r > cursor]
        page = page_of(remaining[:4], 3, key, QUERY)
        seen.extend(page.items)
        token = page.next_page_token
        if not token:
            break
    assert seen == rows
