"""docs/threat-model.md keeps a row for each attack of issue 9 on keys, approvers and proofs,
and every test a row names exists (the rows of the event log's attackers have their own check)."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
DOC = REPO / "docs" / "threat-model.md"

ATTACKERS = (
    "admin token, re-enrolling an approver",
    "admin token, forging a vouch",
    "admin token, changing a team blind",
    "disabled approver",
    "service principal",
    "anyone editing a proof, or a server with the log key",
)


def _rows() -> dict[str, str]:
    rows = {}
    for line in DOC.read_text(encoding="utf-8").splitlines():
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if len(cells) == 4 and cells[0] not in ("attacker", "---"):
            rows[cells[0]] = cells[3]
    return rows


@pytest.mark.parametrize("attacker", ATTACKERS)
def test_each_attacker_has_its_row_and_its_tests_exist(attacker: str) -> None:
    rows = _rows()
    assert attacker in rows, f"docs/threat-model.md has no row for {attacker!r}"
    cited = re.findall(r"`([^`]+\.py)(?:::([A-Za-z0-9_]+))?`", rows[attacker])
    assert cited, f"the row of {attacker!r} names no test"
    for path, name in cited:
        source = (REPO / path).read_text(encoding="utf-8")
        if name:
            assert re.search(rf"^(async )?def {name}\(", source, re.MULTILINE), f"{path}::{name}"
