"""`airlock audit` against real server processes: tail follows live events, a saved checkpoint
verifies, and a row edited behind the server's back is named by its seq."""

from __future__ import annotations

import asyncio
import queue
import subprocess
import sys
import threading
from pathlib import Path
from typing import TYPE_CHECKING

from integration.tamper import change_one_byte, drop_guards

from airlock_client import checkpoints

if TYPE_CHECKING:  # the fixture's type; a conftest is not importable at run time
    from e2e.conftest import ServerProcess

LINE_WAIT = 30.0
CLI_BIN = Path(sys.executable).parent / "airlock"


def line_time(text: str) -> str:
    return text.split()[1]


def _lines(process: subprocess.Popen[str]) -> queue.Queue[str]:
    """stdout lines of a process, read by a thread so the test can wait with a bound."""
    lines: queue.Queue[str] = queue.Queue()

    def pump() -> None:
        assert process.stdout is not None
        for line in process.stdout:
            lines.put(line.rstrip("\n"))

    threading.Thread(target=pump, daemon=True).start()
    return lines


async def _edit_event_2(server: ServerProcess) -> None:
    async with server.database() as engine:
        await drop_guards(engine)
        await change_one_byte(engine, 2)


def test_audit_tail_checkpoint_and_verify(quiet_server: ServerProcess) -> None:
    server = quiet_server
    admin = server.write_token("admin", server.admin_token)

    # tail: replays seq 1 (bootstrap), then prints an event written after it started.
    with subprocess.Popen(
        [
            str(CLI_BIN),
            "--server",
            server.target,
            "--token-file",
            str(admin),
            "audit",
            "tail",
            "--count",
            "2",
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
    ) as tail:
        try:
            lines = _lines(tail)
            first = lines.get(timeout=LINE_WAIT)
            assert first.startswith("1 ")
            assert " server.bootstrapped admin:bootstrap " in first
            created = server.cli(admin, "approvers", "create", "ann", "--name", "Ann")
            assert created.returncode == 0, created.stderr
            live = lines.get(timeout=LINE_WAIT)
            assert live.startswith("2 ")
            assert live.endswith(
                ' approver.created admin:bootstrap approver:ann {"approver_id":"ann"}'
            )
            assert tail.wait(timeout=LINE_WAIT) == 0
        finally:
            if tail.poll() is None:  # by its pid: the process this test started
                tail.kill()
                tail.wait(timeout=LINE_WAIT)

    listed = server.cli(admin, "audit", "list", "--type", "approver.", "--actor", "admin")
    assert listed.returncode == 0, listed.stderr
    assert [line.split()[:3] for line in listed.stdout.splitlines()] == [
        ["2", line_time(listed.stdout), "approver.created"]
    ]
    nothing = server.cli(admin, "audit", "list", "--subject", "team:none")
    assert nothing.returncode == 0
    assert nothing.stdout == ""
    assert "no events" in nothing.stderr

    # A checkpoint kept elsewhere, and the log key the server published at start.
    cp_file = server.directory / "checkpoint.json"
    saved = server.cli(admin, "audit", "checkpoint", "--out", str(cp_file))
    assert saved.returncode == 0, saved.stderr
    checkpoint = checkpoints.load(str(cp_file))
    assert checkpoint.seq == 2
    started = [r for r in server.log_records() if r.get("event") == "server.started"]
    published = started[0]["log_public_key"]
    assert published == checkpoint.public_key.hex()

    ok = server.cli(admin, "audit", "verify", "--checkpoint", str(cp_file), "--log-key", published)
    assert ok.returncode == 0, ok.stderr
    assert ok.stdout.startswith("log intact: 2 events checked")
    assert "pinned log key" in ok.stdout

    # Someone with the database's password drops the guards and edits event 2.
    asyncio.run(_edit_event_2(server))
    bad = server.cli(admin, "audit", "verify", "--checkpoint", str(cp_file), "--log-key", published)
    assert bad.returncode == 5, bad.stderr
    assert bad.stdout.startswith("log NOT intact: first bad seq 2: HASH_MISMATCH")

    # A wrong pinned key refuses the checkpoint before asking the server anything.
    other = server.cli(
        admin, "audit", "verify", "--checkpoint", str(cp_file), "--log-key", "00" * 32
    )
    assert other.returncode == 2
    assert "pinned key" in other.stderr
