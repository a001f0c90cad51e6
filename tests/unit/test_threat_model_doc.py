"""docs/threat-model.md keeps a row per attacker, and each row names a test that exists."""

from __future__ import annotations

import ast
import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
DOC = ROOT / "docs" / "threat-model.md"
ATTACKERS = ("database writer", "admin token", "owner account", "one approver", "the server itself")


def _rows() -> list[list[str]]:
    text = DOC.read_text(encoding="utf-8")
    table = text.split("## Attackers", 1)[1]
    rows = []
    for line in table.splitlines():
        if line.startswith("|") and not line.startswith("|---"):
            rows.append([cell.strip() for cell in line.strip("|").split("|")])
    return rows[1:]  # the header


def test_every_attacker_has_a_row() -> None:
    names = [row[0] for row in _rows()]
    for attacker in ATTACKERS:
        assert any(name.startswith(attacker) for name in names), attacker


def test_every_row_names_a_test_that_exists() -> None:
    for row in _rows():
        assert len(row) == 4, row
        named = re.findall(r"`(tests/[^`]+)`", row[3])
        assert named, f"the row of {row[0]} names no test"
        for reference in named:
            path, _, function = reference.partition("::")
            file = ROOT / path
            assert file.is_file(), reference
            if function:
                tree = ast.parse(file.read_text(encoding="utf-8"))
                defined = {
                    n.name
                    for n in ast.walk(tree)
                    if isinstance(n, ast.FunctionDef | ast.AsyncFunctionDef)
                }
                assert function in defined, reference
