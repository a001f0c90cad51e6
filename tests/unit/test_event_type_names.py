"""One list of event types: EVENT_TYPES, the table of docs/event-log.md and what the use cases
record (the app layer and the domain's event constructors, *_events.py) are the same set
(tests/integration/test_event_types.py drives each of them)."""

from __future__ import annotations

import ast
import re
from pathlib import Path

from airlock_server.domain.events import CALL_DENIED, EVENT_TYPES, family_types

ROOT = Path(__file__).resolve().parents[2]
DOC = ROOT / "docs" / "event-log.md"
APP = ROOT / "server" / "airlock_server" / "app"
DOMAIN = ROOT / "server" / "airlock_server" / "domain"
TYPE = re.compile(r"^([a-z]+)\.[a-z_]+\Z")


def documented_types() -> list[str]:
    """The backticked names of the first column of the doc's event-type table."""
    section = DOC.read_text(encoding="utf-8").split("## Event types", 1)[1].split("\n## ", 1)[0]
    found: list[str] = []
    for line in section.splitlines():
        if line.startswith("| `"):
            first_cell = line.split("|")[1]
            found += re.findall(r"`([a-z]+\.[a-z_]+)`", first_cell)
    return found


def recorded_types() -> dict[str, set[str]]:
    """String literals of the app layer and the event constructors shaped like an event type
    of a known family, with the modules they appear in. A type of a new family shows up
    through the integration test, which checks every appended type against EVENT_TYPES."""
    families = {t.split(".")[0] for t in EVENT_TYPES}
    found: dict[str, set[str]] = {}
    for module in sorted([*APP.glob("*.py"), *DOMAIN.glob("*_events.py")]):
        for node in ast.walk(ast.parse(module.read_text(encoding="utf-8"))):
            if isinstance(node, ast.Constant) and isinstance(node.value, str):
                match = TYPE.match(node.value)
                if match and match.group(1) in families:
                    found.setdefault(node.value, set()).add(module.name)
    return found


def test_the_list_has_no_duplicates_and_every_name_is_family_dot_fact() -> None:
    assert len(set(EVENT_TYPES)) == len(EVENT_TYPES)
    assert all(TYPE.match(t) for t in EVENT_TYPES), EVENT_TYPES


def test_the_docs_table_lists_exactly_the_event_types_in_order() -> None:
    assert documented_types() == list(EVENT_TYPES)


def test_the_app_layer_records_exactly_the_listed_types() -> None:
    recorded = recorded_types()
    # call.denied is recorded through the domain's constant (app/audit.py), not a literal.
    assert set(recorded) | {CALL_DENIED} == set(EVENT_TYPES), (
        f"recorded but not listed: {sorted(set(recorded) - set(EVENT_TYPES))}; "
        f"listed but never recorded: {sorted(set(EVENT_TYPES) - set(recorded) - {CALL_DENIED})}"
    )


def test_the_parsers_see_what_they_claim() -> None:
    """The checks above prove something only if the parsers find what is there."""
    assert "team.baseline_started" in documented_types()
    assert recorded_types()["team.baseline_started"] == {"team_events.py"}
    # Field names and setting keys with a dot are not event types.
    assert "principal.kind" not in recorded_types()
    assert "checkpoint.seq" not in recorded_types()


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
