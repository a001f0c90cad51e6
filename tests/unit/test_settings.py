"""Server settings: defaults, AIRLOCK_* variables, flags that win over them, and a clear error
naming the variable or flag the server cannot start with."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from airlock_server import cli, config
from airlock_server.config import ConfigError, Settings


def test_defaults_then_the_environment() -> None:
    assert Settings.from_env({}) == Settings()
    s = Settings.from_env(
        {
            "AIRLOCK_REGION": "eu-west-1",
            "AIRLOCK_LOG_LEVEL": "WARNING",
            "AIRLOCK_SHUTDOWN_GRACE": "2.5",
            "AIRLOCK_DB_POOL_SIZE": "4",
            "AIRLOCK_TLS_CERT": "",
        }
    )
    assert (s.region, s.log_level, s.shutdown_grace, s.db_pool_size) == (
        "eu-west-1",
        "warning",
        2.5,
        4,
    )
    assert s.tls_cert is None


@pytest.mark.parametrize(
    ("name", "value", "says"),
    [
        ("AIRLOCK_SHUTDOWN_GRACE", "soon", "must be a number"),
        ("AIRLOCK_SWEEP_INTERVAL", "0", "must be greater than 0"),
        ("AIRLOCK_EVENTS_SAFETY_POLL", "-1", "must be greater than 0"),
        ("AIRLOCK_DB_POOL_SIZE", "2.5", "must be a whole number"),
        ("AIRLOCK_LOG_LEVEL", "verbose", "must be one of debug, info, warning, error"),
        ("AIRLOCK_LOG_FORMAT", "xml", "must be one of auto, json, console"),
    ],
)
def test_a_bad_variable_is_named(name: str, value: str, says: str) -> None:
    with pytest.raises(ConfigError, match=f"^{name}: {says}"):
        Settings.from_env({name: value})


def test_flags_win_over_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AIRLOCK_REGION", "eu-west-1")
    monkeypatch.setenv("AIRLOCK_LISTEN", "127.0.0.1:6000")
    monkeypatch.setenv("AIRLOCK_LOG_LEVEL", "debug")
    from_env = cli._parser().parse_args(["serve"])
    assert (from_env.region, from_env.listen, from_env.log_level) == (
        "eu-west-1",
        "127.0.0.1:6000",
        "debug",
    )
    flagged = cli._parser().parse_args(
        ["--log-level", "ERROR", "serve", "--region", "ap-south-1", "--listen", "0.0.0.0:7000"]
    )
    assert (flagged.region, flagged.listen, flagged.log_level) == (
        "ap-south-1",
        "0.0.0.0:7000",
        "error",
    )


def test_the_server_refuses_to_start_on_a_bad_variable(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("AIRLOCK_SHUTDOWN_GRACE", "soon")
    assert cli.main(["migrate"]) == 2
    assert (
        capsys.readouterr().err == "error: AIRLOCK_SHUTDOWN_GRACE: must be a number, got 'soon'\n"
    )


def test_a_bad_log_level_flag_is_refused(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exited:
        cli.main(["--log-level", "verbose", "migrate"])
    assert exited.value.code == 2
    assert "--log-level: invalid choice: 'verbose'" in capsys.readouterr().err


def test_the_load_bounds_and_metrics_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    s = Settings.from_env(
        {
            "AIRLOCK_MAX_STREAMS": "50",
            "AIRLOCK_MAX_STREAMS_PER_PRINCIPAL": "5",
            "AIRLOCK_STREAM_BUFFER": "100",
            "AIRLOCK_REFUSAL_RATE": "0.5",
            "AIRLOCK_REFUSAL_BURST": "3",
            "AIRLOCK_METRICS_LISTEN": "127.0.0.1:9464",
            "AIRLOCK_METRICS_INTERVAL": "2",
        }
    )
    assert (s.max_streams, s.max_streams_per_principal, s.stream_buffer) == (50, 5, 100)
    assert (s.refusal_rate, s.refusal_burst) == (0.5, 3)
    assert (s.metrics_listen, s.metrics_interval) == ("127.0.0.1:9464", 2.0)
    assert Settings().metrics_listen is None  # off by default
    with pytest.raises(ConfigError, match=r"^AIRLOCK_MAX_STREAMS: must be a whole number"):
        Settings.from_env({"AIRLOCK_MAX_STREAMS": "1.5"})
    with pytest.raises(ConfigError, match=r"^AIRLOCK_REFUSAL_BURST: must be greater than 0"):
        Settings.from_env({"AIRLOCK_REFUSAL_BURST": "0"})
    monkeypatch.setenv("AIRLOCK_METRICS_LISTEN", "127.0.0.1:9000")
    assert cli._parser().parse_args(["serve"]).metrics_listen == "127.0.0.1:9000"
    flagged = cli._parser().parse_args(["serve", "--metrics-listen", "127.0.0.1:9100"])
    assert flagged.metrics_listen == "127.0.0.1:9100"


def test_help_names_every_setting_including_those_without_a_flag(
    capsys: pytest.CaptureFixture[str],
) -> None:
    """Every AIRLOCK_* variable the server reads (config.py, and cli.py's) is in --help."""
    source = Path(config.__file__).read_text() + Path(cli.__file__).read_text()
    names = set(re.findall(r"\bAIRLOCK_[A-Z_]+[A-Z]\b", source))
    assert {"AIRLOCK_SWEEP_INTERVAL", "AIRLOCK_SHUTDOWN_GRACE", "AIRLOCK_DB_POOL_SIZE"} <= names
    with pytest.raises(SystemExit) as exited:
        cli.main(["--help"])
    assert exited.value.code == 0
    shown = capsys.readouterr().out
    assert sorted(name for name in names if name not in shown) == []
