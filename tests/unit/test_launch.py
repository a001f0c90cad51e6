"""The entry point silences gRPC's plain-text core lines exactly when the log is JSON."""

from __future__ import annotations

import pytest

from airlock_server.launch import json_logs, quiet_grpc_core


@pytest.mark.parametrize(
    ("argv", "env", "tty", "expected"),
    [
        (["serve"], {}, False, True),  # auto on a pipe
        (["serve"], {}, True, False),  # auto on a terminal
        (["--log-format", "console", "serve"], {}, False, False),
        (["--log-format=json", "serve"], {}, True, True),
        (["serve"], {"AIRLOCK_LOG_FORMAT": "JSON"}, True, True),
        (["--log-format", "console"], {"AIRLOCK_LOG_FORMAT": "json"}, False, False),
    ],
)
def test_json_logs_follow_the_flag_then_the_environment(
    argv: list[str], env: dict[str, str], tty: bool, expected: bool
) -> None:
    assert json_logs(argv, env, tty) is expected


def test_the_core_is_silenced_for_json_unless_the_operator_chose_a_verbosity() -> None:
    env: dict[str, str] = {}
    quiet_grpc_core(["serve"], env, False)
    assert env == {"GRPC_VERBOSITY": "NONE"}
    chosen = {"GRPC_VERBOSITY": "DEBUG"}
    quiet_grpc_core(["serve"], chosen, False)
    assert chosen == {"GRPC_VERBOSITY": "DEBUG"}
    console: dict[str, str] = {}
    quiet_grpc_core(["serve"], console, True)
    assert console == {}
