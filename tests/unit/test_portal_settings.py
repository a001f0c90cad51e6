"""`serve --portal-listen`: the setting, its environment variable, and the origin it implies."""

from __future__ import annotations

import pytest

from airlock_server import cli
from airlock_server.config import ConfigError, Settings


def test_portal_listen_from_the_environment_and_the_flag(monkeypatch: pytest.MonkeyPatch) -> None:
    assert Settings.from_env({}).portal_listen is None
    assert Settings.from_env({"AIRLOCK_PORTAL_LISTEN": "127.0.0.1:8080"}).portal_listen == (
        "127.0.0.1:8080"
    )
    monkeypatch.setenv("AIRLOCK_PORTAL_LISTEN", "127.0.0.1:8081")
    assert cli._parser().parse_args(["serve"]).portal_listen == "127.0.0.1:8081"
    flagged = cli._parser().parse_args(["serve", "--portal-listen", "127.0.0.1:9000"])
    assert flagged.portal_listen == "127.0.0.1:9000"


def test_the_origin_defaults_to_localhost_on_the_port() -> None:
    plain = cli.with_portal_origin(Settings(portal_listen="127.0.0.1:8080"))
    assert plain.portal_origin == "http://localhost:8080"
    tls = cli.with_portal_origin(
        Settings(portal_listen="0.0.0.0:8443", tls_cert="c.pem", tls_key="k.pem")
    )
    assert tls.portal_origin == "https://localhost:8443"
    given = Settings(portal_listen="127.0.0.1:8080", portal_origin="https://approve.example.com")
    assert cli.with_portal_origin(given).portal_origin == "https://approve.example.com"
    assert cli.with_portal_origin(Settings()).portal_origin == ""
    with pytest.raises(ConfigError, match="AIRLOCK_PORTAL_ORIGIN"):
        cli.with_portal_origin(Settings(portal_listen="127.0.0.1:0"))
