"""AIRLOCK_EVENT_LOOP: uvloop by default, asyncio when asked or when uvloop is missing."""

from __future__ import annotations

import asyncio
import sys

import pytest

from airlock_server.cli import loop_factory
from airlock_server.config import ConfigError, Settings


def test_uvloop_is_the_default_and_installed_with_the_server() -> None:
    import uvloop

    assert Settings().event_loop == "uvloop"
    assert loop_factory("uvloop") is uvloop.new_event_loop


def test_asyncio_on_request() -> None:
    assert loop_factory("asyncio") is None
    with asyncio.Runner(loop_factory=loop_factory("asyncio")) as runner:
        assert runner.get_loop().__class__.__module__.startswith("asyncio")


def test_falls_back_to_asyncio_without_uvloop(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "uvloop", None)  # `import uvloop` raises ImportError
    assert loop_factory("uvloop") is None


def test_the_setting_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    assert Settings.from_env({"AIRLOCK_EVENT_LOOP": "asyncio"}).event_loop == "asyncio"
    with pytest.raises(ConfigError, match="AIRLOCK_EVENT_LOOP"):
        Settings.from_env({"AIRLOCK_EVENT_LOOP": "trio"})
