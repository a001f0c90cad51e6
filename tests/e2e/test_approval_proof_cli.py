"""An approval proof exported from a real server with `airlock proof export` and checked with
`airlock proof verify`, which needs no server: it is run with no server address at all."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

from airlock_client import checkpoints

if TYPE_CHECKING:  # the `server` fixture's type; a conftest is not importable at run time
    from e2e.conftest import ServerProcess

pytestmark = pytest.mark.timeout(300)

CLI = Path(sys.executable).parent / "airlock"
EXIT_PROOF_REJECTED = 4


def _verify(*args: str) -> subprocess.CompletedProcess[str]:
    # No AIRLOCK_* variables, no --server, no token: the verifier is offline.
    return subprocess.run(
        [str(CLI), "proof", "verify", *args],
        capture_output=True,
        text=True,
        timeout=60,
        env={"PATH": "/usr/bin:/bin"},
        check=False,
    )


def test_export_then_verify_offline(server: ServerProcess, tmp_path: Path) -> None:
    token_file = server.write_token("admin", server.admin_token)
    demo = server.cli(token_file, "--json", "demo")
    assert demo.returncode == 0, demo.stderr
    session_id = json.loads(demo.stdout)["sessionId"]

    out = tmp_path / "proof.json"
    exported = server.cli(token_file, "proof", "export", session_id, "--out", str(out))
    assert exported.returncode == 0, exported.stderr
    proof = json.loads(out.read_text())
    assert proof["format"] == "airlock.approval-proof.v1+json"
    assert proof["session"]["session_id"] == session_id

    verified = _verify(str(out))
    assert verified.returncode == 0, verified.stdout + verified.stderr
    assert verified.stdout.startswith("VALID")
    assert "signed APPROVE over session" in verified.stdout
    as_json = _verify(str(out), "--json")
    assert as_json.returncode == 0
    assert json.loads(as_json.stdout)["valid"] is True

    # The server has a log key: the proof is anchored in a checkpoint signed with it. The key
    # an auditor pins is the one GetLogCheckpoint (`airlock audit checkpoint`) gives.
    cp_file = tmp_path / "checkpoint.json"
    saved = server.cli(token_file, "audit", "checkpoint", "--out", str(cp_file))
    assert saved.returncode == 0, saved.stderr
    log_key = checkpoints.load(str(cp_file)).public_key.hex()
    assert proof["checkpoint"]["public_key"] == log_key
    assert proof["checkpoint"]["chain"][-1]["seq"] == proof["checkpoint"]["seq"]
    pinned = _verify(str(out), "--log-key", log_key)
    assert pinned.returncode == 0, pinned.stdout + pinned.stderr
    assert pinned.stdout.startswith("VALID")
    assert f"every event is anchored in the log checkpoint at seq {proof['checkpoint']['seq']}" in (
        pinned.stdout
    )
    assert "not anchored" not in pinned.stdout
    assert "pin the log key" not in pinned.stdout
    # Not pinned: still valid, but the verifier says the key is the proof's own.
    assert "pin the log key (--log-key)" in verified.stdout
    # Pinned to another key: refused.
    wrong = _verify(str(out), "--log-key", "11" * 32)
    assert wrong.returncode == EXIT_PROOF_REJECTED, wrong.stdout + wrong.stderr
    assert wrong.stdout.startswith("NOT VALID")
    assert "is not signed by the log key" in wrong.stderr

    # One byte of the request changed, and the CLI says no, and why.
    proof["session"]["protected_resource"] += "x"
    forged = tmp_path / "forged.json"
    forged.write_text(json.dumps(proof))
    refused = _verify(str(forged))
    assert refused.returncode == EXIT_PROOF_REJECTED
    assert refused.stdout.startswith("NOT VALID")
    assert "does not verify" in refused.stderr
    assert "only 0 distinct approvers" in refused.stderr


def test_a_pending_session_has_no_proof(server: ServerProcess, tmp_path: Path) -> None:
    token_file = server.write_token("admin", server.admin_token)
    done = server.cli(token_file, "proof", "export", "ses-nope", "--out", str(tmp_path / "p"))
    assert done.returncode == 64 + 5, done.stderr  # NOT_FOUND
    assert not (tmp_path / "p").exists()
