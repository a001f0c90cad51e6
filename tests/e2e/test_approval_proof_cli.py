"""An approval proof exported from a real server with `airlock proof export` and checked with
`airlock proof verify`, which needs no server: it is run with no server address at all."""

from __future__ import annotations

import base64
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
EXIT_PROOF_UNANCHORED = 6
EXIT_PROOF_UNPINNED = 7


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

    # The server has a log key: the proof is anchored in a checkpoint signed with it. The key
    # an auditor pins is the one GetLogCheckpoint (`airlock audit checkpoint`) gives.
    cp_file = tmp_path / "checkpoint.json"
    saved = server.cli(token_file, "audit", "checkpoint", "--out", str(cp_file))
    assert saved.returncode == 0, saved.stderr
    log_key = checkpoints.load(str(cp_file)).public_key.hex()
    assert proof["checkpoint"]["public_key"] == log_key
    assert proof["checkpoint"]["chain"][-1]["seq"] == proof["checkpoint"]["seq"]
    # Anchored, but the approvers' keys are only the server's word: UNPINNED, exit 7.
    bare_keys = _verify(str(out), "--log-key", log_key)
    assert bare_keys.returncode == EXIT_PROOF_UNPINNED, bare_keys.stdout + bare_keys.stderr
    assert bare_keys.stdout.startswith("UNPINNED")
    assert "keyring export" in bare_keys.stderr
    # The team's keyring, exported once, pins them.
    keyring = tmp_path / "keyring.json"
    exported_ring = server.cli(
        token_file, "team", "keyring", "export", proof["team"]["team_id"], "--out", str(keyring)
    )
    assert exported_ring.returncode == 0, exported_ring.stderr
    ring = json.loads(keyring.read_text())
    assert {a["approver_id"]: a["public_key"] for a in ring["approvers"]} == {
        a["approver_id"]: a["public_key"] for a in proof["team"]["approvers"]
    }
    pinned = _verify(str(out), "--log-key", log_key, "--keyring", str(keyring))
    assert pinned.returncode == 0, pinned.stdout + pinned.stderr
    assert pinned.stdout.startswith("VALID")
    assert "signed APPROVE over session" in pinned.stdout
    assert f"every event is anchored in the log checkpoint at seq {proof['checkpoint']['seq']}" in (
        pinned.stdout
    )
    as_json = _verify(str(out), "--json", "--log-key", log_key, "--keyring", str(keyring))
    assert as_json.returncode == 0
    document = json.loads(as_json.stdout)
    assert (document["valid"], document["anchored"], document["verdict"]) == (True, True, "VALID")

    # No log key given: nothing wrong, but not VALID: the verifier names the key the
    # checkpoint is signed with, to compare with the published one, and exits 6.
    unpinned = _verify(str(out))
    assert unpinned.returncode == EXIT_PROOF_UNANCHORED, unpinned.stdout + unpinned.stderr
    assert unpinned.stdout.startswith("UNANCHORED")
    assert "VALID" not in unpinned.stdout
    assert log_key in unpinned.stderr
    assert checkpoints.key_id(bytes.fromhex(log_key)) in unpinned.stderr
    unpinned_json = json.loads(_verify(str(out), "--json").stdout)
    assert unpinned_json["valid"] is False
    assert unpinned_json["anchored"] is False
    assert unpinned_json["verdict"] == "UNANCHORED"
    assert unpinned_json["problems"] == []
    assert unpinned_json["checkpointKey"] == log_key

    # Pinned to another key: refused.
    wrong = _verify(str(out), "--log-key", "11" * 32)
    assert wrong.returncode == EXIT_PROOF_REJECTED, wrong.stdout + wrong.stderr
    assert wrong.stdout.startswith("NOT VALID")
    assert "is not signed by the log key" in wrong.stderr

    # Approver keys the verifier knows (as `approver keygen` prints them, one per file): with
    # all of the snapshot's, VALID; with one, its APPROVE alone does not reach M.
    pins = []
    for a in proof["team"]["approvers"]:
        pin = tmp_path / f"{a['approver_id']}.pub"
        pin.write_text(base64.b64encode(bytes.fromhex(a["public_key"])).decode() + "\n")
        pins += ["--approver-key", str(pin)]
    all_pinned = _verify(str(out), "--log-key", log_key, *pins)
    assert all_pinned.returncode == 0, all_pinned.stdout + all_pinned.stderr
    assert "with a pinned key" in all_pinned.stdout
    approved = [v["approver_id"] for v in proof["votes"] if v["decision"] == "APPROVE"]
    first = str(tmp_path / f"{approved[0]}.pub")
    one = _verify(str(out), "--log-key", log_key, "--approver-key", first)
    assert one.returncode == EXIT_PROOF_REJECTED, one.stdout + one.stderr
    assert "only 1 distinct approvers" in one.stderr
    assert f"the APPROVE of {approved[1]} is not counted" in one.stdout
    bad_pin = _verify(str(out), "--log-key", log_key, "--approver-key", str(tmp_path / "nope"))
    assert bad_pin.returncode == 2, bad_pin.stderr  # a local error: no such key

    # One byte of the request changed, and the CLI says no, and why.
    proof["session"]["protected_resource"] += "x"
    forged = tmp_path / "forged.json"
    forged.write_text(json.dumps(proof))
    # Rejected with or without a log key: what is wrong is checked either way.
    refused = _verify(str(forged))
    assert refused.returncode == EXIT_PROOF_REJECTED
    assert refused.stdout.startswith("NOT VALID")
    assert "does not verify" in refused.stderr
    assert "only 0 distinct approvers" in refused.stderr
    assert _verify(str(forged), "--log-key", log_key).returncode == EXIT_PROOF_REJECTED

    # Its checkpoint removed: NOT VALID, and why.
    proof["session"]["protected_resource"] = proof["session"]["protected_resource"][:-1]
    proof["checkpoint"] = None
    forged.write_text(json.dumps(proof))
    bare = _verify(str(forged), "--log-key", log_key, "--keyring", str(keyring))
    assert bare.returncode == EXIT_PROOF_REJECTED, bare.stdout + bare.stderr
    assert bare.stdout.startswith("NOT VALID")
    assert "no log checkpoint" in bare.stderr


def test_a_pending_session_has_no_proof(server: ServerProcess, tmp_path: Path) -> None:
    token_file = server.write_token("admin", server.admin_token)
    done = server.cli(token_file, "proof", "export", "ses-nope", "--out", str(tmp_path / "p"))
    assert done.returncode == 64 + 5, done.stderr  # NOT_FOUND
    assert not (tmp_path / "p").exists()
