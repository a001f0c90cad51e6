"""The layering of the design, checked on the source: every import, parsed with `ast`.

    transport -> app -> domain;  persistence -> domain (+ app.ports);  channels -> domain;
    clients -/-> server;  CLI -> SDK (never the other way)

bootstrap.py and cli.py are the only places that wire persistence into app and transport, so
they are not checked here.
"""

from __future__ import annotations

import ast
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
SOURCE_ROOTS = (ROOT / "server", ROOT / "clients")


@dataclass(frozen=True)
class Rule:
    """What the modules under `package` may import.

    `only`: if set, every import must be the standard library or fall under one of these.
    `never`: imports that fall under any of these are refused...
    `except_`: ...unless they fall under one of these.
    """

    package: str
    only: tuple[str, ...] | None = None
    never: tuple[str, ...] = ()
    except_: tuple[str, ...] = ()


DRIVERS = ("sqlalchemy", "alembic", "asyncpg", "aiosqlite")
GRPC = ("grpc", "grpc_status", "grpc_health", "grpc_reflection", "google.protobuf", "google.rpc")
WIRING = ("airlock_server.bootstrap", "airlock_server.cli")

RULES = (
    # Pure rules and state tables: the standard library and each other, nothing else.
    Rule("airlock_server.domain", only=("airlock_server.domain",)),
    # Use cases know ports, never the database or the wire.
    Rule(
        "airlock_server.app",
        never=(
            "airlock_server.persistence",
            "airlock_server.transport",
            "airlock_server.channels",
            *WIRING,
            *DRIVERS,
            *GRPC,
            "airlock.v1",
        ),
    ),
    # Storage implements the app's ports (Clock, repository protocols) and nothing else of app.
    Rule(
        "airlock_server.persistence",
        never=("airlock_server.app", "airlock_server.transport", *WIRING, *GRPC, "airlock.v1"),
        except_=("airlock_server.app.ports",),
    ),
    # Notification channels (webhook, SMTP) deliver what the domain renders; they implement an
    # app port and know neither storage nor the wire.
    Rule(
        "airlock_server.channels",
        never=(
            "airlock_server.app",
            "airlock_server.persistence",
            "airlock_server.transport",
            *WIRING,
            *DRIVERS,
            *GRPC,
            "airlock.v1",
        ),
    ),
    # The wire talks to use cases, never to storage.
    Rule("airlock_server.transport", never=("airlock_server.persistence", *WIRING, *DRIVERS)),
    # The approval portal is a web adapter: use cases, never storage, nor the gRPC wire (it
    # holds no channel to the server of its own: it calls the same use cases in-process).
    Rule(
        "airlock_server.transport.portal",
        never=("airlock_server.persistence", *WIRING, *DRIVERS, *GRPC, "airlock.v1"),
    ),
    # The SDK stands on the stubs alone: it ships without the server, and without the CLI.
    Rule("airlock_client", never=("airlock_server", "airlock_cli", *DRIVERS)),
    # The CLI (and its demo) stands on the SDK and the stubs; it ships without the server.
    Rule("airlock_cli", never=("airlock_server", *DRIVERS)),
)


def under(name: str, prefix: str) -> bool:
    return name == prefix or name.startswith(prefix + ".")


def is_module(name: str) -> bool:
    rel = Path(*name.split("."))
    return any(
        (root / rel).with_suffix(".py").is_file() or (root / rel / "__init__.py").is_file()
        for root in SOURCE_ROOTS
    )


def module_name(path: Path) -> str:
    for root in SOURCE_ROOTS:
        if path.is_relative_to(root):
            parts = path.relative_to(root).with_suffix("").parts
            return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)
    raise ValueError(path)


def imports_of(source: str, module: str, is_package: bool = False) -> list[tuple[int, str]]:
    """(line, imported module) for every import anywhere in the file, relative ones resolved;
    `from a import b` counts as `a.b` when that is a module of the project."""
    found: list[tuple[int, str]] = []
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            found.extend((node.lineno, alias.name) for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                package = module.split(".") if is_package else module.split(".")[:-1]
                anchor = package[: len(package) - (node.level - 1)]
                base = ".".join([*anchor, *([base] if base else [])])
            for alias in node.names:
                full = f"{base}.{alias.name}"
                found.append((node.lineno, full if is_module(full) else base))
    return found


def violations(rule: Rule, module: str, imported: str) -> str | None:
    if under(imported, rule.package):
        return None
    if rule.only is not None:
        top = imported.split(".")[0]
        if top not in sys.stdlib_module_names and not any(under(imported, p) for p in rule.only):
            return f"may import only the standard library and {', '.join(rule.only)}"
    if any(under(imported, p) for p in rule.never) and not any(
        under(imported, p) for p in rule.except_
    ):
        return "crosses a layer boundary"
    return None


def files_of(package: str) -> list[Path]:
    for root in SOURCE_ROOTS:
        base = root / Path(*package.split("."))
        if base.is_dir():
            return sorted(base.rglob("*.py"))
    return []


CASES = [(rule, path) for rule in RULES for path in files_of(rule.package)]


@pytest.mark.parametrize("rule", RULES, ids=lambda r: r.package)
def test_every_layer_has_sources(rule: Rule) -> None:
    assert files_of(rule.package), f"no sources for {rule.package}: the table is stale"


@pytest.mark.parametrize(("rule", "path"), CASES, ids=[str(p.relative_to(ROOT)) for _, p in CASES])
def test_layering(rule: Rule, path: Path) -> None:
    module = module_name(path)
    found = imports_of(
        path.read_text(encoding="utf-8"), module, is_package=path.name == "__init__.py"
    )
    problems = [
        f"{path.relative_to(ROOT)}:{line}: imports {name}: {why}"
        for line, name in found
        if (why := violations(rule, module, name))
    ]
    assert not problems, "\n".join(problems)


# --- the checker itself --------------------------------------------------------------------


def rule_for(package: str) -> Rule:
    return next(r for r in RULES if r.package == package)


def check(package: str, module: str, source: str) -> list[str]:
    rule = rule_for(package)
    return [name for _, name in imports_of(source, module) if violations(rule, module, name)]


def test_checker_resolves_from_imports_to_modules() -> None:
    source = "from airlock_server.app import ports\nfrom airlock_server.app.ports import Clock\n"
    assert [n for _, n in imports_of(source, "airlock_server.persistence.uow")] == [
        "airlock_server.app.ports",
        "airlock_server.app.ports",
    ]


def test_checker_resolves_relative_imports() -> None:
    source = "from ..app import teams\nfrom . import teams\nfrom .models import X\n"
    assert [n for _, n in imports_of(source, "airlock_server.persistence.uow")] == [
        "airlock_server.app.teams",
        "airlock_server.persistence.teams",
        "airlock_server.persistence.models",
    ]


@pytest.mark.parametrize(
    ("package", "module", "source", "bad"),
    [
        ("airlock_server.domain", "airlock_server.domain.x", "import sqlalchemy", ["sqlalchemy"]),
        ("airlock_server.domain", "airlock_server.domain.x", "import grpc", ["grpc"]),
        (
            "airlock_server.domain",
            "airlock_server.domain.x",
            "from airlock_server.app.common import Deps",
            ["airlock_server.app.common"],
        ),
        ("airlock_server.domain", "airlock_server.domain.x", "import json, re, hashlib", []),
        (
            "airlock_server.app",
            "airlock_server.app.x",
            "def f():\n    from sqlalchemy import select\n",
            ["sqlalchemy"],
        ),
        ("airlock_server.app", "airlock_server.app.x", "import grpc.aio", ["grpc.aio"]),
        (
            "airlock_server.app",
            "airlock_server.app.x",
            "from airlock_server.persistence import uow",
            ["airlock_server.persistence.uow"],
        ),
        (
            "airlock_server.persistence",
            "airlock_server.persistence.x",
            "from airlock_server.app import ports, teams",
            ["airlock_server.app.teams"],
        ),
        (
            "airlock_server.persistence",
            "airlock_server.persistence.x",
            "from airlock_server.app.common import transact",
            ["airlock_server.app.common"],
        ),
        (
            "airlock_server.transport",
            "airlock_server.transport.x",
            "from airlock_server.persistence.teams import X",
            ["airlock_server.persistence.teams"],
        ),
        (
            "airlock_client",
            "airlock_client.x",
            "import airlock_server.domain.errors",
            ["airlock_server.domain.errors"],
        ),
        ("airlock_client", "airlock_client.x", "from airlock_cli import run", ["airlock_cli.run"]),
        ("airlock_cli", "airlock_cli.x", "import sqlalchemy", ["sqlalchemy"]),
    ],
)
def test_checker_catches_violations(package: str, module: str, source: str, bad: list[str]) -> None:
    assert check(package, module, source) == bad
