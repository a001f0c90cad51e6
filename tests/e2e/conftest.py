"""End-to-end fixtures: a real `airlock-server` process per backend, and what tests need around it.

The server is started exactly as an operator does it: `migrate`, `bootstrap --admin-token-file`,
then `serve --listen 127.0.0.1:0 --ready-file F` with JSON logs on stderr (kept in a file the
tests read). One server per backend serves the whole session, because starting one costs three
Python processes; tests stay independent of each other by using unique names.

The databases come from the shared helper `empty_database` of tests/conftest.py (its own
PostgreSQL database per server, dropped afterwards; the same skip / AIRLOCK_REQUIRE_POSTGRES rules).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import secrets
import signal
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Iterator
from contextlib import AbstractAsyncContextManager
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any, cast

import grpc
import pytest
from sqlalchemy import bindparam, text
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession
from sqlalchemy.sql import Executable

from airlock_server.log_key import load_log_key
from airlock_server.persistence.db import create_engine
from airlock_server.persistence.models import UTCDateTime
from airlock_server.persistence.seal import Sealer
from airlock_server.persistence.vouch import mac_rows

REPO = Path(__file__).resolve().parents[2]
# The commands installed beside the interpreter that runs the tests (.venv/bin).
BIN = Path(sys.executable).parent
SERVER_BIN = BIN / "airlock-server"
CLI_BIN = BIN / "airlock"
GRPCURL_BIN = BIN / "grpcurl"

# Bounds on every wait, so that a broken server fails a test instead of hanging it.
COMMAND_TIMEOUT = 60.0
READY_TIMEOUT = 30.0
STOP_TIMEOUT = 30.0
SHUTDOWN_GRACE = 3.0
POLL = 0.05

BACKENDS = [
    pytest.param("sqlite", id="sqlite"),
    pytest.param("postgresql", id="postgresql", marks=pytest.mark.postgres),
]


def unique(prefix: str) -> str:
    """A name no other test uses: `[a-zA-Z0-9._-]`, well under 64 characters."""
    return f"{prefix}-{secrets.token_hex(4)}"


def server_env(**extra: str) -> dict[str, str]:
    """The environment of a child process: ours without AIRLOCK_*, plus `extra`."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("AIRLOCK_")}
    env.update(extra)
    return env


# --- the shared database helpers of tests/conftest.py ---------------------------------------


def _shared_conftest(config: pytest.Config) -> Any:
    """tests/conftest.py as pytest loaded it (its module name is ambiguous to `import`)."""
    path = REPO / "tests" / "conftest.py"
    module = config.pluginmanager.get_plugin(str(path))
    if module is None:
        for plugin in config.pluginmanager.get_plugins():
            if getattr(plugin, "__file__", None) == str(path):
                module = plugin
                break
    assert module is not None, "tests/conftest.py was not loaded"
    assert hasattr(module, "empty_database"), "tests/conftest.py lost empty_database()"
    return module


def empty_database(
    config: pytest.Config, backend: str, directory: Path
) -> AbstractAsyncContextManager[str]:
    """An empty database of this test run's own on `backend`, dropped when the block ends."""
    return cast(
        "AbstractAsyncContextManager[str]",
        _shared_conftest(config).empty_database(backend, directory),
    )


# --- the server process -------------------------------------------------------------------


@dataclass
class ServerProcess:
    """A running `airlock-server serve`, what it was started with, and ways to reach it.

    Test modules get it from the `server` fixture and use its methods: a conftest is not
    importable under one name, so the helpers live here rather than beside it.
    """

    backend: str
    database_url: str
    directory: Path
    admin_token: str
    port: int
    process: subprocess.Popen[bytes]
    log_path: Path
    returncode: int | None = field(default=None)

    @property
    def target(self) -> str:
        return f"127.0.0.1:{self.port}"

    # --- the process and its log -----------------------------------------------------------

    def log_text(self) -> str:
        return self.log_path.read_text(encoding="utf-8", errors="replace")

    def log_records(self) -> list[dict[str, Any]]:
        """Every line of the server's stderr, each parsed as JSON (a line that is not fails)."""
        records = []
        for line in self.log_text().splitlines():
            if line.strip():
                record = json.loads(line)
                assert isinstance(record, dict), line
                records.append(record)
        return records

    def stop(self) -> int:
        """SIGTERM by pid, a bounded wait, SIGKILL if it does not stop. Returns the exit code."""
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
        return self.wait_stopped()

    def wait_stopped(self) -> int:
        """A bounded wait for a server already told to stop (SIGKILL if it hangs). A second
        SIGTERM is not sent: one that lands after the loop has let go of its handlers, while
        the interpreter exits, would end the process with -15 after a clean stop."""
        try:
            self.process.wait(timeout=STOP_TIMEOUT)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait(timeout=STOP_TIMEOUT)
        self.returncode = self.process.returncode
        return self.returncode

    # --- clients -------------------------------------------------------------------------------

    def channel(self) -> grpc.aio.Channel:
        """A plaintext grpc.aio channel (use it with `async with`)."""
        return grpc.aio.insecure_channel(self.target)

    def grpcurl(
        self, *args: str, token: str | None = None, data: str | None = None
    ) -> subprocess.CompletedProcess[str]:
        """The real grpcurl binary against the server, plaintext, reflection only."""
        argv = [str(GRPCURL_BIN), "-plaintext", "-max-time", "30"]
        if token is not None:
            argv += ["-H", f"authorization: Bearer {token}"]
        if data is not None:
            argv += ["-d", data]
        return subprocess.run(
            [*argv, self.target, *args],
            capture_output=True,
            text=True,
            timeout=COMMAND_TIMEOUT,
            check=False,
        )

    def cli(self, token_file: Path | None, *args: str) -> subprocess.CompletedProcess[str]:
        """The `airlock` CLI as users run it, in its own process."""
        argv: list[str] = [str(CLI_BIN), "--server", self.target]
        if token_file is not None:
            argv += ["--token-file", str(token_file)]
        return subprocess.run(
            [*argv, *args],
            capture_output=True,
            text=True,
            timeout=COMMAND_TIMEOUT,
            env=server_env(),
            check=False,
        )

    def cli_json(self, token_file: Path | None, *args: str) -> Any:
        """`airlock --json ...`: exit code 0 and its stdout parsed."""
        done = self.cli(token_file, "--json", *args)
        assert done.returncode == 0, f"airlock {' '.join(args)}: {done.stderr}"
        return json.loads(done.stdout)

    def write_token(self, name: str, token: str) -> Path:
        """A token file as a user keeps one: readable by its owner only."""
        path = self.directory / f"{unique(name)}.token"
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w") as out:
            out.write(token + "\n")
        return path

    # --- straight to the database (what someone with its password could do) -----------------

    @contextlib.asynccontextmanager
    async def database(self) -> AsyncIterator[AsyncEngine]:
        engine = create_engine(self.database_url, pool_size=1)
        try:
            yield engine
        finally:
            await engine.dispose()

    async def vouched(self, tables: tuple[str, ...], *statements: Executable) -> list[int]:
        """Statements on rows the server MACs, then those tables' MACs made again with the
        server's log key, in one transaction: the operator moving time, vouching for what it
        wrote (a row changed otherwise is refused, docs/threat-model.md). Row counts."""
        key = load_log_key(log_key_file(self.directory))
        assert key is not None
        async with self.database() as engine, AsyncSession(engine) as s, s.begin():
            counts = [int(cast(Any, await s.execute(st)).rowcount) for st in statements]
            await mac_rows(s, Sealer(key), tables)
        return counts

    async def backdate_invitations(self, team_id: str, when: datetime) -> None:
        """Moves a PENDING team's invitation deadline to `when`."""
        when_param = bindparam("when", when, type_=UTCDateTime())
        versions, teams = await self.vouched(
            ("team_versions", "teams"),
            text(
                "UPDATE team_versions SET invitation_expire_time = :when WHERE team_id = :team"
            ).bindparams(when_param, team=team_id),
            text("UPDATE teams SET activation_deadline = :when WHERE team_id = :team").bindparams(
                when_param, team=team_id
            ),
        )
        assert versions >= 1
        assert teams == 1

    async def team_state_in_database(self, team_id: str) -> str:
        async with self.database() as engine, engine.connect() as conn:
            state = await conn.scalar(
                text("SELECT state FROM teams WHERE team_id = :team").bindparams(team=team_id)
            )
        return str(state)

    async def expire_credential(self, credential_id: str, when: datetime) -> None:
        (changed,) = await self.vouched(
            ("credentials",),
            text(
                "UPDATE credentials SET expire_time = :when WHERE credential_id = :cred"
            ).bindparams(bindparam("when", when, type_=UTCDateTime()), cred=credential_id),
        )
        assert changed == 1


def run_server_command(
    database_url: str, *args: str, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(SERVER_BIN), "--database-url", database_url, "--log-format", "json", *args],
        capture_output=True,
        text=True,
        timeout=COMMAND_TIMEOUT,
        env=server_env(**(env or {})),
        check=False,
    )


def log_key_file(directory: Path) -> Path:
    """Each served database has its own log key, made by bootstrap next to its token."""
    return directory / "log-key.pem"


def prepare_database(database_url: str, directory: Path) -> str:
    """`migrate` then `bootstrap`; returns the admin token from the 0600 file."""
    migrated = run_server_command(database_url, "migrate")
    assert migrated.returncode == 0, migrated.stderr
    token_file = directory / "admin.token"
    booted = run_server_command(
        database_url,
        "bootstrap",
        "--admin-token-file",
        str(token_file),
        env={"AIRLOCK_LOG_KEY_FILE": str(log_key_file(directory))},
    )
    assert booted.returncode == 0, booted.stderr
    assert token_file.stat().st_mode & 0o777 == 0o600
    return token_file.read_text().strip()


def start_server(
    backend: str,
    database_url: str,
    directory: Path,
    admin_token: str,
    *,
    env: dict[str, str] | None = None,
    listen: str = "127.0.0.1:0",
) -> ServerProcess:
    """`serve` on a free port (or `listen`); returns once the ready file names the port
    (bounded)."""
    ready = directory / f"ready-{secrets.token_hex(4)}"
    log_path = directory / f"server-{ready.name}.log"
    with log_path.open("wb") as log_file:
        process = subprocess.Popen(
            [
                str(SERVER_BIN),
                "--database-url",
                database_url,
                "--log-format",
                "json",
                "serve",
                "--listen",
                listen,
                "--ready-file",
                str(ready),
            ],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=log_file,
            env=server_env(
                **{
                    "AIRLOCK_SWEEP_INTERVAL": "1",
                    "AIRLOCK_SHUTDOWN_GRACE": str(SHUTDOWN_GRACE),
                    # The authorization matrix makes thousands of refused calls per principal
                    # on purpose; the refusal rate limit has tests of its own
                    # (tests/integration/test_load_limits.py).
                    "AIRLOCK_REFUSAL_BURST": "1000000",
                    "AIRLOCK_LOG_KEY_FILE": str(log_key_file(directory)),
                    **(env or {}),
                }
            ),
        )
    server = ServerProcess(backend, database_url, directory, admin_token, 0, process, log_path)
    deadline = time.monotonic() + READY_TIMEOUT
    while True:
        content = ready.read_text() if ready.exists() else ""
        if content.endswith("\n"):
            server.port = int(content)
            return server
        if process.poll() is not None:
            raise RuntimeError(
                f"airlock-server exited with {process.returncode}:\n{server.log_text()}"
            )
        if time.monotonic() > deadline:
            server.stop()
            raise RuntimeError(
                f"airlock-server was not ready in {READY_TIMEOUT}s:\n{server.log_text()}"
            )
        time.sleep(POLL)


@contextlib.contextmanager
def served_database(
    config: pytest.Config, backend: str, directory: Path, *, env: dict[str, str] | None = None
) -> Iterator[ServerProcess]:
    """A fresh database, migrated and bootstrapped, with a server on it; all torn down after."""
    directory.mkdir(parents=True, exist_ok=True)
    with asyncio.Runner() as runner:
        database = empty_database(config, backend, directory)
        url = runner.run(database.__aenter__())
        try:
            token = prepare_database(url, directory)
            server = start_server(backend, url, directory, token, env=env)
            try:
                yield server
            finally:
                code = server.stop()
            # Reached only when the test passed: every server must stop cleanly on SIGTERM.
            assert code == 0, f"airlock-server exited with {code}:\n{server.log_text()[-4000:]}"
        finally:
            runner.run(database.__aexit__(None, None, None))


@pytest.fixture(scope="session", params=BACKENDS)
def server(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[ServerProcess]:
    """One server per backend for the session: its port, admin token, database URL and log."""
    backend: str = request.param
    directory = tmp_path_factory.mktemp(f"airlock-{backend}")
    # Its dispatcher looks for due notifications once, at start, then waits an hour: nothing
    # is delivered behind the tests' backs (tests/e2e/test_notification_delivery.py runs its own).
    with served_database(
        request.config, backend, directory, env={"AIRLOCK_NOTIFY_INTERVAL": "3600"}
    ) as running:
        yield running


@pytest.fixture(params=BACKENDS)
def quiet_server(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[ServerProcess]:
    """A server of this test alone whose sweeper waits an hour between rounds: what changes,
    changes through a call (read-time expiry) or through the test (shutdown)."""
    backend: str = request.param
    with served_database(
        request.config, backend, tmp_path / "server", env={"AIRLOCK_SWEEP_INTERVAL": "3600"}
    ) as running:
        yield running
