"""The README a new user reads first says what the code does: the demo's steps as the demo prints
them, every `airlock` command, the design notes it links to, and the license it declares."""

from __future__ import annotations

import argparse
import inspect
import re
import sys
import tomllib
from pathlib import Path

import airlock_cli as cli
from airlock_cli import demo

ROOT = Path(__file__).resolve().parents[2]
README = (ROOT / "README.md").read_text()


def _section(title: str) -> str:
    start = README.index(f"## {title}\n")
    end = README.find("\n## ", start + 1)
    return README[start : end if end != -1 else None]


def test_the_demo_is_told_in_as_many_steps_as_it_prints() -> None:
    # Wherever the story lives, the CLI's demo command runs it: count the steps of that module.
    demo_source = inspect.getsource(sys.modules[vars(demo)["run_demo"].__module__])
    printed = demo_source.count("story.step(")
    told = re.findall(r"^(\d+)\. ", _section("The demo"), flags=re.MULTILINE)
    assert [int(n) for n in told] == list(range(1, printed + 1))
    assert f"in {printed}\nnumbered steps" in _section("The demo")


def test_every_cli_command_is_listed() -> None:
    parser = cli.build_parser()
    (commands,) = [a for a in parser._actions if isinstance(a, argparse._SubParsersAction)]
    listed = _section("The CLI")
    missing = [name for name in commands.choices if f"`{name}`" not in listed]
    assert missing == []


def test_the_design_notes_are_linked_and_exist() -> None:
    assert "[the project's design notes](docs/design.md)" in README
    design = (ROOT / "docs" / "design.md").read_text()
    for link in re.findall(r"\]\(([a-z-]+\.md)\)", design):  # its links to the other docs
        assert (ROOT / "docs" / link).exists(), link


def test_the_license_is_the_one_pyproject_declares() -> None:
    declared = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["license"]
    assert declared == "Apache-2.0"
    text = (ROOT / "LICENSE").read_text()
    assert text.split()[:4] == ["Apache", "License", "Version", "2.0,"]
    assert "END OF TERMS AND CONDITIONS" in text
    assert len(text.splitlines()) > 190  # the full text, not a notice
    assert "[LICENSE](LICENSE)" in README


def test_every_server_setting_is_in_the_configuration_table() -> None:
    source = (ROOT / "server" / "airlock_server" / "config.py").read_text()
    names = set(re.findall(r"\bAIRLOCK_[A-Z_]+[A-Z]\b", source))
    table = _section("Configuration")
    assert sorted(name for name in names if f"`{name}`" not in table) == []
