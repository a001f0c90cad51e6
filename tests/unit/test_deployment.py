"""The deployment files as a platform team reads them: the Dockerfile and compose.yaml.

No Docker engine runs the tests, so the Dockerfile is checked on its text (a base pinned by
digest, the hashed server lock, a numeric user, a health check that follows the settings,
AIRLOCK_LISTEN honoured, gRPC's own lines silenced) and compose.yaml on its parsed content, and
by `docker compose config` where Compose is installed. What the health check does against a real
server is in tests/e2e/test_startup.py (plaintext) and tests/e2e/test_tls.py (TLS, mutual TLS).
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
DIGEST = re.compile(r"@sha256:[0-9a-f]{64}$")


def _instructions() -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) of the Dockerfile, continuation lines joined, comments dropped."""
    joined = re.sub(r"\\\n", " ", (ROOT / "Dockerfile").read_text())
    found = []
    for line in joined.splitlines():
        line = line.strip()
        if line and not line.startswith("#"):
            keyword, _, rest = line.partition(" ")
            found.append((keyword.upper(), " ".join(rest.split())))
    return found


def _all(keyword: str) -> list[str]:
    return [rest for kw, rest in _instructions() if kw == keyword]


def _args() -> dict[str, str]:
    return dict(arg.partition("=")[::2] for arg in _all("ARG"))


def test_every_base_image_is_pinned_by_digest() -> None:
    froms = _all("FROM")
    assert froms
    for base in froms:
        image = base.split()[0]
        if image.startswith("${") and image.endswith("}"):
            image = _args()[image[2:-1]]
        assert DIGEST.search(image), f"FROM {base}: not pinned by digest"
        assert image.startswith("python:3.11-slim")


def test_dependencies_come_from_the_hashed_server_lock() -> None:
    runs = " ".join(_all("RUN"))
    assert "--require-hashes" in runs
    assert "-r requirements/server.txt" in runs
    assert any(copy.startswith("requirements/server.txt ") for copy in _all("COPY"))
    # The project goes in without resolving anything again: every dependency is the lock's.
    for install in re.findall(r"pip install [^&]*", runs):
        assert "--require-hashes" in install or "--no-deps" in install, install
    lock = (ROOT / "requirements" / "server.txt").read_text()
    assert "--hash=sha256:" in lock
    for dev_only in ("grpcio-tools", "pytest", "mypy"):  # the server's lock, not dev's
        assert f"\n{dev_only}==" not in lock


def test_the_runtime_user_is_numeric_and_not_root() -> None:
    users = _all("USER")
    assert users, "no USER"
    final = users[-1]
    assert re.fullmatch(r"\d+(:\d+)?", final), f"USER {final} is not numeric"
    assert all(part != "0" for part in final.split(":"))
    assert final.split(":")[0] == "10001"


def test_the_listen_address_comes_from_airlock_listen() -> None:
    env = " ".join(_all("ENV"))
    assert "AIRLOCK_LISTEN=0.0.0.0:50051" in env
    for keyword in ("CMD", "ENTRYPOINT"):
        for value in _all(keyword):
            assert "--listen" not in value, f"{keyword} {value} overrides AIRLOCK_LISTEN"
    assert _all("CMD")[-1] == '["serve"]'


def test_logs_stay_json() -> None:
    env = " ".join(_all("ENV"))
    assert "AIRLOCK_LOG_FORMAT=json" in env
    assert "GRPC_VERBOSITY=NONE" in env


def test_the_health_check_follows_the_settings() -> None:
    (check,) = _all("HEALTHCHECK")
    assert '["airlock-server", "healthcheck"' in check
    for fixed in ("50051", "127.0.0.1", "insecure"):  # no port, host or plaintext of its own
        assert fixed not in check


# --- compose.yaml ------------------------------------------------------------------------------


def _compose() -> dict[str, Any]:
    loaded = yaml.safe_load((ROOT / "compose.yaml").read_text())
    assert isinstance(loaded, dict)
    return loaded


def test_compose_runs_two_replicas_after_the_migrations_on_postgresql() -> None:
    services = _compose()["services"]
    server, migrate, postgres = services["airlock"], services["migrate"], services["postgres"]
    assert server["deploy"]["replicas"] == 2
    assert server["command"] == ["serve"]
    assert server["depends_on"]["migrate"]["condition"] == "service_completed_successfully"
    assert server["depends_on"]["postgres"]["condition"] == "service_healthy"
    assert migrate["command"] == ["migrate"]
    assert migrate["restart"] == "no"
    assert migrate["depends_on"]["postgres"]["condition"] == "service_healthy"
    for service in (server, migrate):
        url = service["environment"]["AIRLOCK_DATABASE_URL"]
        assert url.startswith("postgresql://airlock:${AIRLOCK_DB_PASSWORD:?")
        assert url.endswith("@postgres:5432/airlock")
        assert "airlock-keys:/var/lib/airlock" in service["volumes"]  # one log key for all
    assert DIGEST.search(postgres["image"])
    assert "ports" not in postgres  # the database stays on the compose network
    assert all(port.startswith("127.0.0.1:") for port in server["ports"])
    assert "--listen" not in " ".join(server["command"])


def test_compose_documents_the_bootstrap() -> None:
    bootstrap = _compose()["services"]["bootstrap"]
    assert bootstrap["command"] == ["bootstrap"]
    assert bootstrap["profiles"] == ["setup"]  # by hand, once: not on every `up`
    assert bootstrap["depends_on"]["migrate"]["condition"] == "service_completed_successfully"
    text = (ROOT / "compose.yaml").read_text()
    assert "docker compose run --rm bootstrap" in text


def _compose_command() -> list[str] | None:
    docker = shutil.which("docker")
    if docker is not None:
        probe = subprocess.run(
            [docker, "compose", "version"], capture_output=True, timeout=30, check=False
        )
        if probe.returncode == 0:
            return [docker, "compose"]
    legacy = shutil.which("docker-compose")
    return [legacy] if legacy else None


def _docker_env() -> dict[str, str]:
    """Ours without AIRLOCK_*: the file's variables are only those the test gives."""
    return {k: v for k, v in os.environ.items() if not k.startswith("AIRLOCK_")}


def test_docker_compose_accepts_the_file(tmp_path: Path) -> None:
    command = _compose_command()
    if command is None:
        pytest.skip("Docker Compose is not installed here")
    done = subprocess.run(
        [*command, "--file", str(ROOT / "compose.yaml"), "config", "--quiet"],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=tmp_path,
        env={**_docker_env(), "AIRLOCK_DB_PASSWORD": "not-a-real-password"},
        check=False,
    )
    assert done.returncode == 0, done.stderr
    # Without the password it refuses, naming the variable.
    refused = subprocess.run(
        [*command, "--file", str(ROOT / "compose.yaml"), "config", "--quiet"],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=tmp_path,
        env=_docker_env(),
        check=False,
    )
    assert refused.returncode != 0
    assert "AIRLOCK_DB_PASSWORD" in refused.stderr
