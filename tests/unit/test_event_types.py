"""The closed set of event types: the domain's EVENT_TYPES is the table of docs/event-log.md, and
a family filter expands to its members."""

from __future__ import annotations

import re
from pathlib import Path

from airlock_server.domain.events import CALL_DENIED, EVENT_TYPES, family_types

DOC = Path(__file__).resolve().parents[2] / "docs" / "event-log.md"


def _documented() -> set[str]:
    text = DOC.read_text(encoding="utf-8")
    table = text.split("## Event types", 1)[1].split("\n## ", 1)[0]
    names: set[str] = set()
    for row in table.splitlines():
        if row.startswith("| `"):
            first_cell = row.split("|")[1]
            names |= set(re.findall(r"`([a-z_]+\.[a-z_]+)`", first_cell))
    return names


def test_the_documented_table_is_the_set_of_types() -> None:
    assert _documented() == set(EVENT_TYPES)
    assert CALL_DENIED in EVENT_TYPES


def test_a_family_is_its_known_types_in_order() -> None:
    assert family_types("grant.") == (
        "grant.available",
        "grant.failed",
        "grant.requested",
        "grant.revoke_dropped",
        "grant.revoke_requested",
        "grant.revoked",
    )
    assert family_types("vote.") == ("vote.cast",)
    assert family_types("nosuch.") == ()
    # A prefix of a family's name is not that family.
    assert family_types("tea.") == ()
    assert all(t.startswith("team.") for t in family_types("team."))
