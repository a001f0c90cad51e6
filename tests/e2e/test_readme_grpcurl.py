"""The README's grpcurl session runs as written: the block is read from README.md, pointed at a
fresh server (its address and its admin token file), and run by bash, stopping at the first
command that fails."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

if TYPE_CHECKING:  # the `server` fixture's type; a conftest is not importable at run time
    from e2e.conftest import ServerProcess

README = Path(__file__).resolve().parents[2] / "README.md"
GRPCURL_BIN = Path(sys.executable).parent / "grpcurl"

pytestmark = pytest.mark.timeout(180)


def _grpcurl_block() -> str:
    text = README.read_text(encoding="utf-8")
    section = text.split("## Talking to it with grpcurl", 1)[1]
    match = re.search(r"```sh\n(.*?)```", section, flags=re.DOTALL)
    assert match, "the README's grpcurl section has no sh block"
    return match.group(1)


def test_the_readme_grpcurl_session_runs_as_written(
    quiet_server: ServerProcess, tmp_path: Path
) -> None:
    script = _grpcurl_block()
    assert "127.0.0.1:50051" in script
    assert "var/admin.token" in script
    assert ".venv/bin/grpcurl" in script
    token_file = quiet_server.write_token("admin", quiet_server.admin_token)
    script = (
        script.replace("127.0.0.1:50051", quiet_server.target)
        .replace("var/admin.token", str(token_file))
        .replace(".venv/bin/grpcurl", str(GRPCURL_BIN))
    )
    done = subprocess.run(
        ["bash", "-euo", "pipefail", "-c", script],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=tmp_path,
        check=False,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    out = done.stdout
    assert "airlock.v1.IdentityService" in out  # list
    assert '"status": "SERVING"' in out  # health
    assert out.count('"approver_id": "') >= 3  # three approvers
    assert '"token"' in out  # the credential, shown once
    assert '"name": "vault-guardians"' in out
    assert '"state": "STATE_PENDING"' in out
