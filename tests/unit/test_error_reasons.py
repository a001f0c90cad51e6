"""One catalogue of error reasons: the proto's ErrorReason, the server's Reason, docs/errors.md.

The reasons the server raises are collected statically from server/: every error constructed
with its reason (`FailedPrecondition(..., reason=Reason.X)`, a helper that passes its `reason`
parameter on, a class's own reason when none is given, NotFound/AlreadyExists through their fixed
tables), with the status code its class maps to. The enum must hold exactly those reasons, each
documented with exactly the codes it is raised with.
"""

from __future__ import annotations

import ast
import importlib.util
import inspect
from collections import defaultdict
from pathlib import Path
from types import ModuleType
from typing import Any

import grpc
import pytest

import airlock_server
from airlock.v1 import errors_pb2
from airlock_server.domain import errors as e
from airlock_server.transport.errors import ERROR_TABLE

ROOT = Path(__file__).resolve().parents[2]
SERVER = Path(airlock_server.__file__).parent
ERROR_CLASSES: dict[str, type[e.DomainError]] = {
    name: cls
    for name, cls in vars(e).items()
    if inspect.isclass(cls) and issubclass(cls, e.DomainError)
}
# The one reason not carried by a domain error: transport/errors.py's internal_status().
ERROR_INFO_CODE = grpc.StatusCode.INTERNAL


def _script() -> ModuleType:
    path = ROOT / "scripts" / "errors_doc.py"
    spec = importlib.util.spec_from_file_location("errors_doc", path)
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


DOC = _script()
ENTRIES = DOC.parse(DOC.PROTO.read_text(encoding="utf-8"))


def _code_of(cls: type[e.DomainError]) -> grpc.StatusCode:
    return next(ERROR_TABLE[c] for c in cls.__mro__ if c in ERROR_TABLE)


def _sample(cls: type[e.DomainError]) -> e.DomainError:
    """An instance built without a reason: what the class raises when the call names none."""
    samples: dict[str, Any] = {"violations": [e.FieldViolation("f", "bad")], "message": "m"}
    params = inspect.signature(cls.__init__).parameters
    args = {
        name: samples.get(name, "x")
        for name, p in params.items()
        if name != "self" and p.default is inspect.Parameter.empty and p.kind is not p.VAR_KEYWORD
    }
    return cls(**args)


def _member(node: ast.expr) -> str | None:
    """'X' for `Reason.X`, else None."""
    if (
        isinstance(node, ast.Attribute)
        and isinstance(node.value, ast.Name)
        and node.value.id == "Reason"
    ):
        return node.attr
    return None


def _aliases() -> dict[str, str]:
    """Module constants that stand for a member (`TOO_MANY = Reason.TOO_MANY`), anywhere in
    server/: a name is one reason everywhere."""
    found: dict[str, str] = {}
    for path in sorted(SERVER.rglob("*.py")):
        for node in ast.parse(path.read_text(encoding="utf-8")).body:
            if isinstance(node, ast.Assign) and (member := _member(node.value)):
                for target in node.targets:
                    if isinstance(target, ast.Name):
                        assert found.get(target.id, member) == member, target.id
                        found[target.id] = member
    return found


ALIASES = _aliases()


def _reason_member(node: ast.expr) -> str | None:
    """'X' for `Reason.X` or a constant that stands for it, else None."""
    if isinstance(node, ast.Name) and node.id in ALIASES:
        return ALIASES[node.id]
    return _member(node)


def _callee(node: ast.Call) -> str:
    func = node.func
    if isinstance(func, ast.Name):
        return func.id
    if isinstance(func, ast.Attribute):
        # `InvalidArgument.field(...)` builds an InvalidArgument.
        if isinstance(func.value, ast.Name) and func.value.id in ERROR_CLASSES:
            return func.value.id
        return func.attr
    return ""


class Scan:
    """What server/ raises: (reason, status code, where) for every construction of an error."""

    def __init__(self) -> None:
        self.raised: list[tuple[str, grpc.StatusCode, str]] = []
        self.problems: list[str] = []
        self.members: set[str] = set()
        trees = {
            path: ast.parse(path.read_text(encoding="utf-8"))
            for path in sorted(SERVER.rglob("*.py"))
        }
        self.helpers = self._helpers(trees)
        for path, tree in trees.items():
            self._scan(path.relative_to(ROOT).as_posix(), tree)

    @staticmethod
    def _helpers(trees: dict[Path, ast.Module]) -> dict[str, type[e.DomainError]]:
        """Functions with a `reason` parameter that build an error class with it."""
        helpers: dict[str, type[e.DomainError]] = {}
        for tree in trees.values():
            for fn in ast.walk(tree):
                if not isinstance(fn, ast.FunctionDef | ast.AsyncFunctionDef):
                    continue
                if "reason" not in {a.arg for a in fn.args.args + fn.args.kwonlyargs}:
                    continue
                for call in ast.walk(fn):
                    if isinstance(call, ast.Call) and _callee(call) in ERROR_CLASSES:
                        for kw in call.keywords:
                            if (
                                kw.arg == "reason"
                                and isinstance(kw.value, ast.Name)
                                and kw.value.id == "reason"
                            ):
                                cls = ERROR_CLASSES[_callee(call)]
                                assert helpers.get(fn.name, cls) is cls, fn.name
                                helpers[fn.name] = cls
        return helpers

    def _scan(self, where: str, tree: ast.Module) -> None:
        in_errors_module = where.endswith("domain/errors.py")
        for node in ast.walk(tree):
            if isinstance(node, ast.Attribute) and _member(node):
                self.members.add(node.attr)
            self._literal(where, node)
            if not isinstance(node, ast.Call) or in_errors_module:
                continue
            name = _callee(node)
            line = f"{where}:{node.lineno}"
            given = next((k.value for k in node.keywords if k.arg == "reason"), None)
            if name == "ErrorInfo":
                if isinstance(given, ast.Attribute) and given.attr == "reason":
                    continue  # to_status(): passes a domain error's own reason on
                member = _reason_member(given) if given is not None else None
                if member is None:
                    self.problems.append(f"{line}: ErrorInfo without reason=Reason.X")
                else:
                    self.raised.append((member, ERROR_INFO_CODE, line))
            elif name in self.helpers:
                found = [
                    m
                    for a in (*node.args, *(k.value for k in node.keywords))
                    if (m := _reason_member(a))
                ]
                if len(found) != 1:
                    self.problems.append(f"{line}: {name}(...) names no single Reason.X")
                else:
                    self.raised.append((found[0], _code_of(self.helpers[name]), line))
            elif name in ERROR_CLASSES:
                self._construction(line, ERROR_CLASSES[name], node, given)

    def _construction(
        self, line: str, cls: type[e.DomainError], node: ast.Call, given: ast.expr | None
    ) -> None:
        code = _code_of(cls)
        if given is not None:
            member = _reason_member(given)
            if member is None and not (isinstance(given, ast.Name) and given.id == "reason"):
                self.problems.append(f"{line}: reason= is not Reason.X")
            elif member is not None:
                self.raised.append((member, code, line))
            return
        if cls in (e.NotFound, e.AlreadyExists):
            table = e.NOT_FOUND_REASONS if cls is e.NotFound else e.ALREADY_EXISTS_REASONS
            kind = node.args[0] if node.args else None
            if not (isinstance(kind, ast.Constant) and kind.value in table):
                self.problems.append(f"{line}: {cls.__name__} of a kind outside its table")
            else:
                self.raised.append((table[kind.value].name, code, line))  # type: ignore[index]
            return
        try:
            self.raised.append((_sample(cls).reason.name, code, line))
        except (AttributeError, TypeError) as exc:
            self.problems.append(f"{line}: {cls.__name__} without a reason ({exc})")

    def _literal(self, where: str, node: ast.AST) -> None:
        """A reason written as a string literal bypasses the catalogue."""
        value: ast.expr | None = None
        if (isinstance(node, ast.keyword) and node.arg == "reason") or (
            isinstance(node, ast.Assign)
            and any(getattr(t, "attr", getattr(t, "id", "")) == "reason" for t in node.targets)
        ):
            value = node.value
        elif isinstance(node, ast.Compare) and any(
            isinstance(x, ast.Attribute) and x.attr == "reason"
            for x in (node.left, *node.comparators)
        ):
            value = next(
                (x for x in (node.left, *node.comparators) if isinstance(x, ast.Constant)), None
            )
        if isinstance(value, ast.Constant) and isinstance(value.value, str) and value.value:
            self.problems.append(f"{where}:{value.lineno}: reason {value.value!r} as a literal")


SCAN = Scan()


def raised_codes() -> dict[str, set[str]]:
    codes: dict[str, set[str]] = defaultdict(set)
    for reason, code, _ in SCAN.raised:
        codes[reason].add(code.name)
    return codes


def test_the_scan_found_the_known_shapes() -> None:
    reasons = {r for r, _, _ in SCAN.raised}
    # reason=, a helper (_denied), NotFound's table, a class's own reason, ErrorInfo
    assert {"TEAM_NOT_ACTIVE", "NOT_VAULT_OWNER", "SESSION_NOT_FOUND"} <= reasons
    assert {"CONCURRENT_CHANGE", "ETAG_MISMATCH", "INTERNAL", "INVALID_ARGUMENT"} <= reasons
    assert "_denied" in SCAN.helpers


def test_no_reason_bypasses_the_catalogue() -> None:
    assert SCAN.problems == []


def test_every_reference_names_a_member() -> None:
    assert SCAN.members - {r.name for r in e.Reason} == set()


def test_the_server_catalogue_is_the_proto_enum() -> None:
    names = [v.name for v in errors_pb2.ErrorReason.DESCRIPTOR.values]
    assert names[0] == "ERROR_REASON_UNSPECIFIED"
    assert errors_pb2.ErrorReason.Value("ERROR_REASON_UNSPECIFIED") == 0
    assert sorted(names[1:]) == sorted(r.name for r in e.Reason)
    assert all(r.value == r.name for r in e.Reason)


def test_every_raised_reason_is_in_the_enum() -> None:
    assert set(raised_codes()) - {r.name for r in e.Reason} == set()


def test_the_enum_has_no_stale_member() -> None:
    assert {r.name for r in e.Reason} - set(raised_codes()) == set()


@pytest.mark.parametrize("entry", [x for x in ENTRIES if x.number], ids=lambda x: x.name)
def test_each_reason_documents_the_codes_it_is_raised_with(entry: Any) -> None:
    assert entry.codes, f"{entry.name}: the comment must start with its status code"
    assert set(entry.codes) == raised_codes()[entry.name], [
        w for r, _, w in SCAN.raised if r == entry.name
    ]


def test_the_proto_file_parses_to_the_enum() -> None:
    assert [(x.name, x.number) for x in ENTRIES] == [
        (v.name, v.number) for v in errors_pb2.ErrorReason.DESCRIPTOR.values
    ]


def test_the_doc_is_written_from_the_enum() -> None:
    doc = (ROOT / "docs" / "errors.md").read_text(encoding="utf-8")
    assert doc == DOC.render(), "run: .venv/bin/python scripts/errors_doc.py"
