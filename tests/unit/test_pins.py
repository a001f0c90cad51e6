"""Generated and checked code cannot move with a new release.

Main once went red on every fresh clone because grpcio-tools was a range: a newer release wrote
another GRPC_GENERATED_VERSION into every *_pb2_grpc.py. Every tool that generates or checks
code is pinned exactly in pyproject.toml, both locks agree with those pins, the stubs carry the
pinned generator's version, and the runtime's minimum is the one the stubs demand.
"""

from __future__ import annotations

import re
import tomllib
from importlib import metadata
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
STUBS = REPO / "clients" / "airlock" / "v1"
# What generates (grpcio-tools, mypy-protobuf) or checks (ruff, mypy and its stubs) code.
CODE_TOOLS = ("grpcio-tools", "mypy-protobuf", "mypy", "ruff", "types-grpcio", "types-protobuf")


def _pyproject() -> dict[str, object]:
    with (REPO / "pyproject.toml").open("rb") as f:
        return tomllib.load(f)


def _requirement(spec_list: list[str], name: str) -> str:
    for spec in spec_list:
        if re.match(rf"{re.escape(name)}\s*[=<>!~\[]", spec):
            return spec
    raise AssertionError(f"{name} is not a requirement")


def _dev_extra() -> list[str]:
    project = _pyproject()["project"]
    assert isinstance(project, dict)
    extras: list[str] = project["optional-dependencies"]["dev"]
    return extras


def _dependencies() -> list[str]:
    project = _pyproject()["project"]
    assert isinstance(project, dict)
    deps: list[str] = project["dependencies"]
    return deps


def _pinned(name: str) -> str:
    spec = _requirement(_dev_extra(), name)
    match = re.fullmatch(rf"{re.escape(name)}==([\w.]+)", spec)
    assert match, f"{spec!r}: a code tool is pinned exactly (==)"
    return match.group(1)


def _locked(lock: str) -> dict[str, str]:
    text = (REPO / "requirements" / lock).read_text(encoding="utf-8")
    return {m[0].lower(): m[1] for m in re.findall(r"^([A-Za-z0-9._-]+)==([\w.]+)", text, re.M)}


def _version_tuple(version: str) -> tuple[int, ...]:
    return tuple(int(part) for part in re.findall(r"\d+", version)[:3])


@pytest.mark.parametrize("tool", CODE_TOOLS)
def test_each_code_tool_is_pinned_exactly_and_locked_at_that_version(tool: str) -> None:
    assert _locked("dev.txt")[tool] == _pinned(tool)


@pytest.mark.parametrize("tool", CODE_TOOLS)
def test_the_installed_tool_is_the_pinned_one(tool: str) -> None:
    assert metadata.version(tool) == _pinned(tool), "reinstall: make install"


@pytest.mark.parametrize("lock", ["server.txt", "dev.txt"])
def test_every_locked_requirement_carries_a_hash(lock: str) -> None:
    text = (REPO / "requirements" / lock).read_text(encoding="utf-8")
    blocks = re.split(r"\n(?=[A-Za-z0-9._-]+==)", text.strip())
    pinned = [b for b in blocks if re.match(r"[A-Za-z0-9._-]+==", b)]
    assert pinned
    for block in pinned:
        assert "--hash=sha256:" in block, block.splitlines()[0]


def test_the_server_lock_agrees_with_the_dev_lock() -> None:
    server, dev = _locked("server.txt"), _locked("dev.txt")
    assert {name: dev[name] for name in server} == server


def test_the_stubs_carry_the_pinned_generator_and_the_runtime_minimum_admits_them() -> None:
    tools = _pinned("grpcio-tools")
    generated = {
        m
        for path in STUBS.glob("*_pb2_grpc.py")
        for m in re.findall(r"GRPC_GENERATED_VERSION = '([\d.]+)'", path.read_text())
    }
    assert generated == {tools}
    grpcio = _requirement(_dependencies(), "grpcio")
    minimum = re.search(r">=([\d.]+)", grpcio)
    assert minimum, grpcio
    assert minimum.group(1) == tools, "grpcio's minimum is the stubs' GRPC_GENERATED_VERSION"
    assert _version_tuple(_locked("server.txt")["grpcio"]) >= _version_tuple(tools)


def test_the_protobuf_runtime_admits_the_generated_messages() -> None:
    generated = {
        m
        for path in STUBS.glob("*_pb2.py")
        for m in re.findall(r"# Protobuf Python Version: ([\d.]+)", path.read_text())
    }
    assert len(generated) == 1
    protobuf = _requirement(_dependencies(), "protobuf")
    minimum = re.search(r">=([\d.]+)", protobuf)
    assert minimum, protobuf
    assert _version_tuple(minimum.group(1)) >= _version_tuple(generated.pop())
