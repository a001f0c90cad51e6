"""docs/authorization.md is written from the authorization table, which covers every RPC."""

from __future__ import annotations

import importlib.util
import re
from pathlib import Path
from types import ModuleType

from e2e.authorization_table import KEYS, ROWS, UNAUTHENTICATED

ROOT = Path(__file__).resolve().parents[2]


def _script() -> ModuleType:
    path = ROOT / "scripts" / "authorization_doc.py"
    spec = importlib.util.spec_from_file_location("authorization_doc", path)
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_the_doc_is_written_from_the_table() -> None:
    doc = (ROOT / "docs" / "authorization.md").read_text(encoding="utf-8")
    assert doc == _script().render(), "run: .venv/bin/python scripts/authorization_doc.py"


def test_the_table_covers_every_rpc_of_every_service() -> None:
    in_protos: set[tuple[str, str]] = set()
    for proto in sorted((ROOT / "proto" / "airlock" / "v1").glob("*_service.proto")):
        text = proto.read_text(encoding="utf-8")
        services = re.findall(r"^service (\w+) \{", text, re.M)
        assert len(services) == 1, proto
        in_protos |= {(services[0], rpc) for rpc in re.findall(r"^\s*rpc (\w+)\(", text, re.M)}
    in_table = {(r.service, r.rpc) for r in ROWS}
    assert in_table == in_protos
    assert len({r.id for r in ROWS}) == len(ROWS), "two rows with one id"


def test_every_cell_has_an_answer_and_no_credential_is_unauthenticated() -> None:
    for row in ROWS:
        assert tuple(row.answers) == KEYS
        assert row.answers["none"] == UNAUTHENTICATED
