"""`make lint`'s breaking-change check (scripts/buf_breaking.py) against real git history and buf.

Needs the pinned buf that `make lint` installs (.tools/buf); `make test` runs lint first.
"""

from __future__ import annotations

import importlib.util
import subprocess
from pathlib import Path
from types import ModuleType

import pytest

ROOT = Path(__file__).resolve().parents[2]
BUF = ROOT / ".tools" / "buf" / "node_modules" / ".bin" / "buf"

pytestmark = pytest.mark.skipif(not BUF.exists(), reason="buf is installed by `make lint`")

BUF_YAML = "version: v2\nmodules:\n  - path: .\nbreaking:\n  use:\n    - FILE\n"
PROTO = 'syntax = "proto3";\n\npackage demo.v1;\n\n// A thing.\nmessage Thing {\n{fields}}\n'


def _script() -> ModuleType:
    spec = importlib.util.spec_from_file_location(
        "buf_breaking", ROOT / "scripts" / "buf_breaking.py"
    )
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


SCRIPT = _script()


def git(repo: Path, *args: str) -> None:
    subprocess.run(["git", "-C", str(repo), *args], check=True, capture_output=True)


def commit(repo: Path, fields: list[str] | None, message: str) -> None:
    """Write proto/ with these fields (None: no proto/buf.yaml at all) and commit."""
    proto = repo / "proto" / "demo" / "v1"
    proto.mkdir(parents=True, exist_ok=True)
    (repo / "README").write_text(message, encoding="utf-8")
    if fields is not None:
        (repo / "proto" / "buf.yaml").write_text(BUF_YAML, encoding="utf-8")
        body = "".join(f"  // {f}.\n  string {f} = {i};\n" for i, f in enumerate(fields, 1))
        (proto / "thing.proto").write_text(PROTO.replace("{fields}", body), encoding="utf-8")
    git(repo, "add", "-A")
    git(repo, "commit", "-q", "-m", message)


@pytest.fixture
def repo(tmp_path: Path) -> Path:
    git(tmp_path, "init", "-q", "-b", "main")
    git(tmp_path, "config", "user.email", "t@example.org")
    git(tmp_path, "config", "user.name", "t")
    git(tmp_path, "config", "commit.gpgsign", "false")
    return tmp_path


def check(repo: Path, against: str = "HEAD~1") -> int:
    return int(SCRIPT.check(repo, str(BUF), against))


def test_an_added_field_passes_a_removed_one_fails(repo: Path) -> None:
    commit(repo, ["name"], "one field")
    commit(repo, ["name", "label"], "a field more")
    assert check(repo) == 0
    commit(repo, ["name"], "a field less")
    assert check(repo) == 1


def test_a_declared_break_passes_and_so_does_its_merge(repo: Path) -> None:
    commit(repo, ["name", "label"], "two fields")
    git(repo, "checkout", "-q", "-b", "topic")
    commit(repo, ["name"], "drop label\n\nContract-Break-Allowed: label was never used")
    assert check(repo) == 0
    commit(repo, ["name"], "after the break")
    assert check(repo) == 0  # compared with the commit that already broke
    git(repo, "checkout", "-q", "main")
    git(repo, "merge", "-q", "--no-ff", "-m", "merge topic", "topic")
    assert check(repo) == 0  # HEAD~1 is main before the merge; the trailer came with the branch


def test_an_undeclared_break_fails_its_merge(repo: Path) -> None:
    commit(repo, ["name", "label"], "two fields")
    git(repo, "checkout", "-q", "-b", "topic")
    commit(repo, ["name"], "drop label")
    git(repo, "checkout", "-q", "main")
    git(repo, "merge", "-q", "--no-ff", "-m", "merge topic", "topic")
    assert check(repo) == 1


def test_the_commit_that_adds_the_contract_has_nothing_to_compare(repo: Path) -> None:
    commit(repo, None, "before any proto")
    commit(repo, ["name"], "the contract")
    assert check(repo) == 0


def test_a_missing_base_is_an_error_not_a_pass(repo: Path) -> None:
    commit(repo, ["name"], "the only commit")
    assert check(repo) == 1
