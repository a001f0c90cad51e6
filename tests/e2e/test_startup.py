"""Start-up as a new user meets it: `airlock-server` in its own process, on each way it can fail.

Every failure to start reads like a bad setting: one `error: ...` line on stderr that says what
to do, exit code 2, no traceback, and nothing served or created on the way out. And the two
commands say their version.
"""

from __future__ import annotations

import asyncio
import os
import shutil
import socket
import subprocess
import sys
from importlib.metadata import version
from pathlib import Path
from typing import TYPE_CHECKING

import pytest
from sqlalchemy import text

from airlock_server.persistence.db import create_engine
from airlock_server.persistence.migrate import head_revisions, upgrade_sync

if TYPE_CHECKING:  # the `server` fixture's type; a conftest is not importable at run time
    from e2e.conftest import ServerProcess

REPO = Path(__file__).resolve().parents[2]
BIN = Path(sys.executable).parent
SERVER_BIN = BIN / "airlock-server"
EXIT_STARTUP = 2
TIMEOUT = 60


def _server(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    """`airlock-server` with our environment but no AIRLOCK_* of ours; sweeps every 0.1 s, so a
    server that started on a database it cannot use would show it at once."""
    clean = {k: v for k, v in os.environ.items() if not k.startswith("AIRLOCK_")}
    return subprocess.run(
        [str(SERVER_BIN), "--log-format", "json", *args],
        capture_output=True,
        text=True,
        timeout=TIMEOUT,
        cwd=cwd,
        env={**clean, "AIRLOCK_SWEEP_INTERVAL": "0.1"},
        check=False,
    )


def _refused(done: subprocess.CompletedProcess[str], *says: str) -> None:
    """Exit 2 and exactly one line on stderr, `error: ...` with each of `says` in it."""
    assert done.returncode == EXIT_STARTUP, done.stderr
    assert done.stderr.count("\n") == 1, done.stderr
    assert done.stderr.startswith("error: "), done.stderr
    for said in says:
        assert said in done.stderr, done.stderr
    assert "Traceback" not in done.stderr


@pytest.fixture
def free_port() -> int:
    """A loopback port nobody listens on (bound, then released)."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
    return port


# --- the database -----------------------------------------------------------------------------


def test_serving_a_database_never_migrated_says_run_migrate(
    empty_database_url: str, tmp_path: Path
) -> None:
    """On each backend; checked before serving, so no sweeper fails on missing tables."""
    if empty_database_url.startswith("sqlite"):
        Path(empty_database_url.removeprefix("sqlite:///")).touch()  # an empty file, no schema
    done = _server(
        "--database-url", empty_database_url, "serve", "--listen", "127.0.0.1:0", cwd=tmp_path
    )
    _refused(done, "has no schema", "run `airlock-server migrate`")
    assert "sweeper.failed" not in done.stdout + done.stderr
    # bootstrap says the same, and leaves neither a token nor a key file behind.
    done = _server(
        "--database-url",
        empty_database_url,
        "bootstrap",
        "--admin-token-file",
        "admin.token",
        cwd=tmp_path,
    )
    _refused(done, "has no schema", "run `airlock-server migrate`")
    assert not (tmp_path / "admin.token").exists()
    assert not (tmp_path / "var").exists()


def test_a_database_behind_or_ahead_of_the_server_is_named(
    empty_database_url: str, tmp_path: Path
) -> None:
    """On each backend: one revision behind says migrate; a revision this server does not know
    (a newer server migrated it) says so instead of migrating anything."""
    url = empty_database_url
    upgrade_sync(url, "0006")
    done = _server("--database-url", url, "serve", "--listen", "127.0.0.1:0", cwd=tmp_path)
    (head,) = head_revisions()
    _refused(done, "is at schema revision 0006", f"needs {head}", "run `airlock-server migrate`")
    upgrade_sync(url)

    async def from_the_future() -> None:
        engine = create_engine(url, pool_size=1)
        try:
            async with engine.begin() as conn:
                await conn.execute(text("UPDATE alembic_version SET version_num = '0099'"))
        finally:
            await engine.dispose()

    asyncio.run(from_the_future())
    done = _server("--database-url", url, "serve", "--listen", "127.0.0.1:0", cwd=tmp_path)
    _refused(done, "is at schema revision 0099, newer than this server", "run a newer server")


def test_serving_a_database_that_does_not_exist_creates_nothing(tmp_path: Path) -> None:
    missing = tmp_path / "missing" / "dir" / "airlock.db"
    done = _server("--database-url", f"sqlite:///{missing}", "serve", cwd=tmp_path)
    _refused(done, f"the database {missing} does not exist", "run `airlock-server migrate`")
    assert not (tmp_path / "missing").exists()
    # migrate is the command that creates it, directory included.
    migrated = _server("--database-url", f"sqlite:///{missing}", "migrate", cwd=tmp_path)
    assert migrated.returncode == 0, migrated.stderr
    assert missing.exists()
    # ...unless that directory cannot be made: a file stands where it would go.
    (tmp_path / "a-file").touch()
    blocked = tmp_path / "a-file" / "sub" / "airlock.db"
    done = _server("--database-url", f"sqlite:///{blocked}", "migrate", cwd=tmp_path)
    _refused(done, f"cannot create the directory {blocked.parent}")


@pytest.mark.parametrize("command", ["serve", "migrate", "bootstrap"])
def test_an_unreachable_postgresql_is_named_without_its_password(
    command: str, free_port: int, tmp_path: Path
) -> None:
    url = f"postgresql://airlock:s3cret-pw@127.0.0.1:{free_port}/airlock"
    done = _server("--database-url", url, command, cwd=tmp_path)
    _refused(done, f"cannot use the database postgresql://airlock:***@127.0.0.1:{free_port}")
    assert "s3cret-pw" not in done.stderr + done.stdout


@pytest.mark.postgres
def test_a_postgresql_database_that_does_not_exist_is_named(tmp_path: Path) -> None:
    url = "postgresql://postgres@127.0.0.1:5432/airlock_never_created_here"
    done = _server("--database-url", url, "serve", cwd=tmp_path)
    if "Connect call failed" in done.stderr:
        pytest.skip("no PostgreSQL at 127.0.0.1:5432")
    _refused(done, 'database "airlock_never_created_here" does not exist')


@pytest.mark.parametrize(
    ("url", "says"),
    [
        ("mysql://airlock@db/airlock", "mysql is not supported"),
        ("not-a-url", "not a database URL: 'not-a-url'"),
    ],
)
@pytest.mark.parametrize("command", ["serve", "migrate", "bootstrap"])
def test_an_unsupported_url_is_a_bad_setting(
    command: str, url: str, says: str, tmp_path: Path
) -> None:
    done = _server("--database-url", url, command, cwd=tmp_path)
    _refused(done, "AIRLOCK_DATABASE_URL / --database-url", says, "sqlite:///", "postgresql://")


# --- the address ------------------------------------------------------------------------------


def test_a_port_already_in_use_is_named(tmp_path: Path) -> None:
    database = f"sqlite:///{tmp_path / 'airlock.db'}"
    assert _server("--database-url", database, "migrate", cwd=tmp_path).returncode == 0
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        address = f"127.0.0.1:{taken.getsockname()[1]}"
        done = _server("--database-url", database, "serve", "--listen", address, cwd=tmp_path)
    _refused(done, f"cannot listen on {address}", "in use")


# --- the version --------------------------------------------------------------------------------


@pytest.mark.parametrize("command", ["airlock-server", "airlock"])
def test_each_command_says_its_version(command: str) -> None:
    done = subprocess.run(
        [str(BIN / command), "--version"],
        capture_output=True,
        text=True,
        timeout=TIMEOUT,
        check=False,
    )
    assert (done.returncode, done.stdout) == (0, f"airlock {version('airlock')}\n"), done.stderr


def test_the_start_log_line_carries_the_version(server: ServerProcess) -> None:
    started = [r for r in server.log_records() if r.get("event") == "server.started"]
    assert [r["version"] for r in started] == [version("airlock")]


# --- the container's health check, plaintext (TLS: test_tls.py) --------------------------------


def test_the_health_check_reads_the_listen_address(server: ServerProcess, free_port: int) -> None:
    clean = {k: v for k, v in os.environ.items() if not k.startswith("AIRLOCK_")}

    def check(listen: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [str(SERVER_BIN), "healthcheck", "--timeout", "3"],
            capture_output=True,
            text=True,
            timeout=TIMEOUT,
            check=False,
            env={**clean, "AIRLOCK_LISTEN": listen},
        )

    done = check(f"0.0.0.0:{server.port}")
    assert (done.returncode, done.stdout, done.stderr) == (0, "SERVING\n", "")
    done = check(f"127.0.0.1:{free_port}")  # nobody there
    assert done.returncode == 1
    assert done.stderr.startswith(f"error: 127.0.0.1:{free_port}: UNAVAILABLE"), done.stderr
    done = check("127.0.0.1:0")  # serve may pick a port; the check cannot guess it
    assert done.returncode == 1  # unhealthy: Docker reserves exit code 2
    assert done.stderr.startswith("error: AIRLOCK_LISTEN / --listen: healthcheck needs a fixed")


# --- the CLI without a server -----------------------------------------------------------------


def test_the_demo_without_a_server_exits_with_the_unavailable_code(
    free_port: int, tmp_path: Path
) -> None:
    """Nobody at the address: not a story step misbehaving (exit 3) but the CLI's exit code for
    UNAVAILABLE (64 + 14), with the error said once."""
    token = tmp_path / "admin.token"
    token.write_text("not-a-real-token\n")
    token.chmod(0o600)
    clean = {k: v for k, v in os.environ.items() if not k.startswith("AIRLOCK_")}
    done = subprocess.run(
        [
            str(BIN / "airlock"),
            "--server",
            f"127.0.0.1:{free_port}",
            "--token-file",
            str(token),
            "--timeout",
            "5",
            "demo",
        ],
        capture_output=True,
        text=True,
        timeout=TIMEOUT,
        check=False,
        env=clean,
    )
    assert done.returncode == 64 + 14, done.stdout + done.stderr
    errors = [line for line in done.stderr.splitlines() if line.startswith("error: ")]
    assert len(errors) == 1, done.stderr
    assert errors[0].startswith("error: UNAVAILABLE: ")
    assert "demo failed" not in done.stderr
    assert "try --tls-ca" not in done.stderr  # refused, not closed at a handshake


def test_make_demo_without_a_server_reports_the_unavailable_code(
    free_port: int, tmp_path: Path
) -> None:
    """`make demo` runs the same command; make itself exits 2 on any failed recipe, and names
    the command's own code: 78, not the 3 of a story step misbehaving."""
    make = shutil.which("make")
    if make is None:
        pytest.skip("make is not installed")
    token = tmp_path / "admin.token"
    token.write_text("not-a-real-token\n")
    token.chmod(0o600)
    clean = {k: v for k, v in os.environ.items() if not k.startswith("AIRLOCK_")}
    done = subprocess.run(
        [
            make,
            "--no-print-directory",
            "-C",
            str(REPO),
            "-o",
            ".venv/.installed-server",  # the installed commands are the ones under test
            "demo",
            f"BIN={BIN}",
            f"AIRLOCK_SERVER=127.0.0.1:{free_port}",
            f"ADMIN_TOKEN={token}",
        ],
        capture_output=True,
        text=True,
        timeout=TIMEOUT,
        check=False,
        env=clean,
    )
    assert done.returncode == 2, done.stdout + done.stderr
    assert "error: UNAVAILABLE: " in done.stderr
    assert "Error 78" in done.stderr, done.stderr
