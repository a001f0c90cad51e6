"""AIRLOCK_EVENT_LOOP: uvloop by default, asyncio when asked or when uvloop is missing."""

from __future__ import annotations

import sys

import pytest

from airlock_server.cli import ConfigError, loop_factory
from airlock_server.config import Settings


def test_uvloop_is_the_default_when_installed() -> None:
    uvloop = pytest.importorskip("uvloop")
    assert Settings().event_loop == "uvloop"
    assert loop_factory("uvloop") == (uvloop.new_event_loop, "uvloop")


def test_asyncio_on_request() -> None:
    assert loop_factory("asyncio") == (None, "asyncio")


def test_falls_back_to_asyncio_without_uvloop(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "uvloop", None)  # import uvloop raises ImportError
    assert loop_factory("uvloop") == (None, "asyncio")


def test_unknown_loop_is_a_config_error() -> None:
    with pytest.raises(ConfigError, match="trio"):
        loop_factory("trio")


def test_setting_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AIRLOCK_EVENT_LOOP", "asyncio")
    assert Settings.from_env().event_loop == "asyncio"
