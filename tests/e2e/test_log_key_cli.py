"""`airlock-server log-key`: a log key for an install bootstrapped without one (its admin token
exists, its key file does not); made once, 0600, never overwritten, then used by `serve`."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

from airlock_server.log_key import load_log_key

SERVER_BIN = Path(sys.executable).parent / "airlock-server"
COMMAND_TIMEOUT = 60
READY_TIMEOUT = 30.0


def run(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(SERVER_BIN), "--log-format", "json", *args],
        capture_output=True,
        text=True,
        timeout=COMMAND_TIMEOUT,
        env={**os.environ, **(env or {})},
        check=False,
    )


def public_key_of(stdout: str) -> str:
    return stdout.split("public key ", 1)[1].split(")", 1)[0]


def test_log_key_made_once_with_mode_0600(tmp_path: Path) -> None:
    key_file = tmp_path / "var" / "log-key.pem"
    made = run("log-key", "--log-key-file", str(key_file))
    assert made.returncode == 0, made.stderr
    assert key_file.stat().st_mode & 0o777 == 0o600
    key = load_log_key(key_file)
    assert key is not None
    assert public_key_of(made.stdout) == key.public_key.hex()
    pem = key_file.read_bytes()

    again = run("log-key", "--log-key-file", str(key_file))
    assert again.returncode == 1
    assert f"log key {key_file} exists; refusing to overwrite it" in again.stderr
    assert key_file.read_bytes() == pem
    # The option before the command and the environment name the same file.
    assert run("--log-key-file", str(key_file), "log-key").returncode == 1
    assert run("log-key", env={"AIRLOCK_LOG_KEY_FILE": str(key_file)}).returncode == 1
    assert key_file.read_bytes() == pem

    other = tmp_path / "from-env.pem"
    assert run("log-key", env={"AIRLOCK_LOG_KEY_FILE": str(other)}).returncode == 0
    assert other.stat().st_mode & 0o777 == 0o600


def test_an_install_without_its_log_key_gets_one_and_serves_with_it(tmp_path: Path) -> None:
    database = f"sqlite:///{tmp_path / 'airlock.db'}"
    token_file, key_file = tmp_path / "admin.token", tmp_path / "log-key.pem"
    env = {"AIRLOCK_LOG_KEY_FILE": str(key_file)}
    assert run("--database-url", database, "migrate").returncode == 0
    booted = run(
        "--database-url", database, "bootstrap", "--admin-token-file", str(token_file), env=env
    )
    assert booted.returncode == 0, booted.stderr
    key_file.unlink()  # the install lost its key; its admin token remains

    # Without its key, the install cannot be sealed (vouched for) either.
    unkeyed = run("--database-url", database, "seal", env=env)
    assert unkeyed.returncode == 1
    assert "no log key" in unkeyed.stderr

    made = run("log-key", env=env)
    assert made.returncode == 0, made.stderr
    public_key = public_key_of(made.stdout)
    # The admin credential and the first event were signed and MACed with the lost key: the
    # operator vouches for the database under the new one (docs/threat-model.md).
    sealed = run("--database-url", database, "seal", env=env)
    assert sealed.returncode == 0, sealed.stderr
    assert "sealed with log key" in sealed.stdout
    assert "1 events checked" in sealed.stdout
    assert "1 credentials" in sealed.stdout

    ready, log_path = tmp_path / "ready", tmp_path / "server.log"
    with log_path.open("wb") as log_file:
        process = subprocess.Popen(
            [
                str(SERVER_BIN), "--database-url", database, "--log-format", "json",
                "serve", "--listen", "127.0.0.1:0", "--ready-file", str(ready),
            ],
            stdout=log_file,
            stderr=subprocess.STDOUT,
            env={**os.environ, **env},
        )  # fmt: skip
    try:
        deadline = time.monotonic() + READY_TIMEOUT
        while not ready.exists() and process.poll() is None and time.monotonic() < deadline:
            time.sleep(0.05)
        assert ready.exists(), log_path.read_text()
    finally:
        process.terminate()
        process.wait(COMMAND_TIMEOUT)
    started = [
        record
        for line in log_path.read_text().splitlines()
        if line.startswith("{") and (record := json.loads(line)).get("event") == "server.started"
    ]
    assert [r["log_public_key"] for r in started] == [public_key]
