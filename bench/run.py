"""Airlock benchmark: Airlock against a bare reference server, same load, same run.

    python bench/run.py                 # both backends, 3 x (2 s warm-up + 10 s)
    python bench/run.py --quick         # 3 x (2 s + 3 s)
    python bench/run.py --backends sqlite --duration 5 --log-levels warning

For each backend (a SQLite file in a temp dir; a fresh, uniquely named PostgreSQL database
on 127.0.0.1:5432 that is dropped afterwards) it runs `airlock-server migrate` and
`bootstrap`, starts one `airlock-server serve` per log level and `bench/reference_server.py`
(one INSERT transaction per call), sets up data through the generated stubs, then drives
every scenario from a separate load process (bench/loadgen.py), repetitions interleaved
round-robin so that drift hits every scenario alike:

  ref   c=16, c=64   the reference server: one INSERT transaction per call (writes' ratio)
  echo  c=16, c=64   the same server's Echo, no database: the bare grpc.aio floor (reads' ratio)
  get   c=16, c=64   GetApprovalTeam of an ACTIVE team, by an account it is shared with
  session c=16, c=64 GetSession of an APPROVED restore-access session, by its requester
  check c=16, c=64   CheckAccess (service credential) on a vault whose grant is AVAILABLE
  flow  c=16         CreateApprovalTeam (2-of-2), then each approver ListInvitations +
                     RespondToInvitation(ACCEPT, Ed25519 key + key_proof) -> ACTIVE
  vote  c=16, c=64   (issue 3) N restore-access sessions in flight (N vaults of account A,
                     each associated with one 2-of-3 team, R requested restore access on
                     each; made before, not timed), then 2 signed Votes per session, all
                     votes in random order, drained by C coroutines: Vote RPC/s, p50, p99;
                     every Vote carries a fresh request_id, as the SDK's do
  restore c=16       (issue 3; at the first vote concurrency only) RequestRestoreAccess on a
                     fresh associated vault, then 2 signed Votes -> session APPROVED/EXECUTED,
                     grant AVAILABLE: sessions/s and request-to-AVAILABLE p50/p99

  events             (issue 4) bench/events.py on a database of its own: the append rate of
                     events at c=1/16/64, and ListEvents (first page, filtered pages) and
                     WatchEvents (from a late seq; live) with 10,000 and 100,000 events
  watch              (issue 11) bench/watch.py on a database and server of its own: the time
                     from a Vote's answer to its WatchSession subscribers' message carrying it

`--scenarios echo,get,session,check,flow,vote,events,watch` picks them (default all but events
and watch;
`vote` means vote + restore; the reference always runs with the others and echo with the
reads, for the ratios; `events` alone runs no server process).

It prints a table of medians (RPC/s, p50, p99, ratios to the reference and to echo at the
same concurrency: reads are judged against echo, writes against the reference; the JSON
keeps both) and writes every run to bench/results/<time>.json. Everything listens on
127.0.0.1 only; every process it starts is stopped by pid.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import secrets
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager, suppress
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
PY = sys.executable
AIRLOCK = str(Path(PY).parent / "airlock-server")
PG_ADMIN_DSN = os.environ.get("BENCH_PG_DSN", "postgresql://postgres@127.0.0.1:5432/postgres")


def log(msg: str) -> None:
    print(f"[bench {time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


# --- processes ---------------------------------------------------------------------------


@dataclass
class Server:
    name: str
    proc: subprocess.Popen[bytes]
    port: int


def _wait_ready(proc: subprocess.Popen[bytes], ready: Path, what: str, timeout: float) -> int:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"{what} exited with {proc.returncode} before it was ready")
        if ready.exists() and ready.read_text().strip():
            return int(ready.read_text().strip())
        time.sleep(0.05)
    raise RuntimeError(f"{what} not ready after {timeout} s")


def stop(proc: subprocess.Popen[bytes], grace: float = 10.0) -> None:
    """SIGTERM by pid, then SIGKILL by pid if it does not exit within the grace."""
    if proc.poll() is not None:
        return
    proc.send_signal(signal.SIGTERM)
    try:
        proc.wait(grace)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait(5)


@contextmanager
def started(
    name: str, argv: list[str], ready: Path, logfile: Path, env: dict[str, str] | None = None
) -> Iterator[Server]:
    with logfile.open("wb") as out:
        proc = subprocess.Popen(
            argv, stdout=out, stderr=subprocess.STDOUT, env=env, cwd=ROOT, start_new_session=True
        )
    try:
        port = _wait_ready(proc, ready, name, 30)
        yield Server(name, proc, port)
    finally:
        stop(proc)


def run_json(argv: list[str], timeout: float) -> dict[str, Any]:
    done = subprocess.run(argv, capture_output=True, timeout=timeout, cwd=ROOT, check=False)
    if done.returncode != 0:
        raise RuntimeError(
            f"{argv[1:4]} failed ({done.returncode}): {done.stderr.decode()[-2000:]}"
        )
    out: dict[str, Any] = json.loads(done.stdout.decode().strip().splitlines()[-1])
    return out


# --- databases ---------------------------------------------------------------------------


@contextmanager
def postgres_database() -> Iterator[str]:
    import asyncpg

    name = f"airlock_bench_{os.getpid()}_{secrets.token_hex(4)}"

    async def admin(sql: str) -> None:
        con = await asyncpg.connect(PG_ADMIN_DSN)
        try:
            await con.execute(sql)
        finally:
            await con.close()

    asyncio.run(admin(f'CREATE DATABASE "{name}"'))
    log(f"created PostgreSQL database {name}")
    try:
        base = PG_ADMIN_DSN.rsplit("/", 1)[0]
        yield f"{base}/{name}"
    finally:
        asyncio.run(admin(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        log(f"dropped PostgreSQL database {name}")


# --- one backend ---------------------------------------------------------------------------


@dataclass
class Scenario:
    key: str  # e.g. "get c=16 log=warning"
    mode: str
    conc: int
    target: str  # server name
    runs: list[dict[str, Any]] = field(default_factory=list)


def bench_backend(backend: str, work: Path, args: argparse.Namespace) -> dict[str, Any]:
    if backend == "postgres":
        with postgres_database() as url:
            return _bench_backend(backend, url, url, work, args)
    url = f"sqlite:///{work / 'airlock.db'}"
    return _bench_backend(backend, url, f"sqlite:///{work / 'reference.db'}", work, args)


@contextmanager
def airlock_serving(env: dict[str, str], work: Path) -> Iterator[tuple[Server, Path]]:
    """One `airlock-server serve` on the migrated, bootstrapped database of `env` (loopback,
    its log in work/server.log): the server and the file holding the admin token."""
    token_file = migrate_and_bootstrap(env, work)
    ready = work / "ready"
    argv = [AIRLOCK, "--log-format", "json", "serve", "--listen", "127.0.0.1:0"]
    with started(
        "airlock", [*argv, "--ready-file", str(ready)], ready, work / "server.log", env
    ) as server:
        yield server, token_file


def migrate_and_bootstrap(env: dict[str, str], work: Path) -> Path:
    """Migrate the database of `env` and bootstrap it; the file holding the admin token."""
    subprocess.run([AIRLOCK, "migrate"], env=env, check=True, capture_output=True, timeout=120)
    token_file = work / "admin.token"
    subprocess.run(
        [AIRLOCK, "bootstrap", "--admin-token-file", str(token_file)],
        env=env,
        check=True,
        capture_output=True,
        timeout=60,
    )
    return token_file


def _bench_backend(
    backend: str, url: str, ref_url: str, work: Path, args: argparse.Namespace
) -> dict[str, Any]:
    env = dict(os.environ, AIRLOCK_DATABASE_URL=url, AIRLOCK_SHUTDOWN_GRACE="2")
    env.pop("AIRLOCK_LOG_LEVEL", None)
    token_file = migrate_and_bootstrap(env, work)
    admin_token = token_file.read_text().strip()
    pairs_file = work / "pairs.jsonl"
    pairs_file.touch()

    with _servers(backend, url, ref_url, work, env, args) as servers:
        primary = servers[f"airlock log={args.log_levels[0]}"]
        target0 = f"127.0.0.1:{primary.port}"
        setup = run_json(
            [
                PY,
                str(HERE / "loadgen.py"),
                "setup",
                "--target",
                target0,
                "--admin-token-file",
                str(token_file),
            ],
            timeout=120,
        )
        setup["admin_token"] = admin_token
        state_file = work / "state.json"
        state_file.write_text(json.dumps(setup))
        log(f"{backend}: setup done (team {setup['team_id']})")

        rstate_file = work / "recovery.json"
        reads = [m for m in ("get", "session", "check") if m in args.scenarios]
        if "vote" in args.scenarios or "session" in reads or "check" in reads:
            rstate = run_json(
                [
                    PY,
                    str(HERE / "loadgen.py"),
                    "recovery-setup",
                    "--target",
                    target0,
                    "--admin-token-file",
                    str(token_file),
                ],
                timeout=120,
            )
            rstate_file.write_text(json.dumps(rstate))
            log(f"{backend}: recovery setup done (2-of-3 team {rstate['team_id']})")
            if "session" in reads or "check" in reads:
                rstate = run_json(
                    [
                        PY,
                        str(HERE / "loadgen.py"),
                        "reads-setup",
                        "--target",
                        target0,
                        "--state",
                        str(rstate_file),
                    ],
                    timeout=120,
                )
                rstate_file.write_text(json.dumps(rstate))
                log(f"{backend}: read session {rstate['read_session_id']} approved")

        scenarios: list[Scenario] = []
        read_conc = set(args.get_conc if reads or "echo" in args.scenarios else [])
        ref_conc = sorted(
            read_conc
            | set(args.flow_conc if "flow" in args.scenarios else [])
            | set(args.vote_conc if "vote" in args.scenarios else [])
        )
        for c in ref_conc:
            scenarios.append(Scenario(f"ref c={c}", "ref", c, "reference"))
        for c in sorted(read_conc):
            scenarios.append(Scenario(f"echo c={c}", "echo", c, "reference"))
        for level in args.log_levels:
            first = level == args.log_levels[0]
            for mode in reads:
                for c in args.get_conc if first else args.get_conc[:1]:
                    scenarios.append(
                        Scenario(f"{mode} c={c} log={level}", mode, c, f"airlock log={level}")
                    )
            if "flow" in args.scenarios:
                for c in args.flow_conc:
                    scenarios.append(
                        Scenario(f"flow c={c} log={level}", "flow", c, f"airlock log={level}")
                    )
            if "vote" in args.scenarios and first:
                for c in args.vote_conc:
                    for mode in ("vote", "restore") if c == args.vote_conc[0] else ("vote",):
                        scenarios.append(
                            Scenario(f"{mode} c={c} log={level}", mode, c, f"airlock log={level}")
                        )

        pairs_total = 0
        pairs_next = 0
        flow_rate_guess = 30.0
        # Sessions/s a restore run may reach (vaults are made for it beforehand, never reused);
        # raised by what a run measured, and tripled when a run ran out of vaults.
        restore_rate_guess = 100.0
        restore_vaults = work / "restore-vaults.jsonl"
        restore_vaults.touch()
        restore_total = 0
        restore_next = 0

        def make_vaults(count: int, prefix: str, out: Path, request: bool) -> dict[str, Any]:
            return run_json(
                [
                    PY,
                    str(HERE / "loadgen.py"),
                    "vaults",
                    "--target",
                    target0,
                    "--state",
                    str(rstate_file),
                    "--count",
                    str(count),
                    "--prefix",
                    prefix,
                    "--out",
                    str(out),
                ]
                + (["--request"] if request else []),
                timeout=900,
            )

        for rep in range(args.reps):
            for sc in scenarios:
                server = servers[sc.target]
                argv = [
                    PY,
                    str(HERE / "loadgen.py"),
                    "run",
                    "--mode",
                    sc.mode,
                    "--target",
                    f"127.0.0.1:{server.port}",
                    "--conc",
                    str(sc.conc),
                    "--channels",
                    str(args.channels),
                    "--warmup",
                    str(args.warmup),
                    "--duration",
                    str(args.duration),
                    "--server-pid",
                    str(server.proc.pid),
                    "--state",
                    str(
                        rstate_file
                        if sc.mode in ("vote", "restore", "session", "check")
                        else state_file
                    ),
                ]
                if backend == "postgres":
                    argv.append("--pg-cpu")
                if sc.mode == "vote":
                    sessions_file = work / f"vote-{rep}-{sc.conc}.jsonl"
                    made = make_vaults(
                        args.vote_sessions, f"vote-{rep}-{sc.conc}", sessions_file, True
                    )
                    log(
                        f"{backend}: {made['vaults']} vaults + restore-access sessions in "
                        f"{made['seconds']} s"
                    )
                    argv += ["--vaults-file", str(sessions_file)]
                if sc.mode == "restore":
                    need = (
                        int(restore_rate_guess * (args.warmup + args.duration + 2) * 1.5) + sc.conc
                    )
                    if restore_total - restore_next < need:
                        made = make_vaults(need, f"restore-{restore_total}", restore_vaults, False)
                        restore_total += made["vaults"]
                        log(f"{backend}: +{made['vaults']} vaults in {made['seconds']} s")
                    argv += [
                        "--vaults-file",
                        str(restore_vaults),
                        "--vaults-offset",
                        str(restore_next),
                    ]
                if sc.mode == "flow":
                    need = int(flow_rate_guess * (args.warmup + args.duration + 2) * 1.5) + sc.conc
                    if pairs_total - pairs_next < need:
                        made = run_json(
                            [
                                PY,
                                str(HERE / "loadgen.py"),
                                "pairs",
                                "--target",
                                target0,
                                "--admin-token-file",
                                str(token_file),
                                "--count",
                                str(need),
                                "--prefix",
                                f"p{pairs_total}",
                                "--out",
                                str(pairs_file),
                            ],
                            timeout=600,
                        )
                        pairs_total += made["pairs"]
                        log(f"{backend}: +{made['pairs']} approver pairs in {made['seconds']} s")
                    argv += ["--pairs-file", str(pairs_file), "--pairs-offset", str(pairs_next)]
                res = run_json(argv, timeout=args.warmup + args.duration + 120)
                res["rep"] = rep
                res["server"] = sc.target
                sc.runs.append(res)
                if sc.mode == "flow":
                    pairs_next = res["pairs_used_until"]
                    flow_rate_guess = max(flow_rate_guess, res["flows"]["per_s"])
                if sc.mode == "restore":
                    restore_next = res["vaults_used_until"]
                    restore_rate_guess = max(restore_rate_guess, res["flows"]["per_s"])
                    if any("out of vaults" in e for e in res["errors"]):
                        restore_rate_guess *= 3
                log(
                    f"{backend} rep {rep + 1}/{args.reps} {sc.key}: {res['rpc_per_s']} RPC/s "
                    f"p50 {res['p50_ms']} ms p99 {res['p99_ms']} ms"
                    + (f" errors {res['errors']}" if res["errors"] else "")
                )
        log_lines = {
            name: sum(1 for _ in (work / f"{name.replace(' ', '_')}.log").open("rb"))
            for name in servers
        }
    return {
        "backend": backend,
        "scenarios": {sc.key: summarize(sc) for sc in scenarios},
        "runs": {sc.key: sc.runs for sc in scenarios},
        "server_log_lines": log_lines,
        "pairs_created": pairs_total,
    }


@contextmanager
def _servers(
    backend: str, url: str, ref_url: str, work: Path, env: dict[str, str], args: argparse.Namespace
) -> Iterator[dict[str, Server]]:
    """Every server of one backend, all started before the first measurement (an idle
    server costs next to nothing), stopped by pid afterwards."""
    servers: dict[str, Server] = {}
    with ExitStack() as stack:
        for level in args.log_levels:
            name = f"airlock log={level}"
            ready = work / f"ready-{level}"
            senv = dict(env, AIRLOCK_LOG_LEVEL=level)
            servers[name] = stack.enter_context(
                started(
                    name,
                    [
                        AIRLOCK,
                        "--log-format",
                        "json",
                        "serve",
                        "--listen",
                        "127.0.0.1:0",
                        "--ready-file",
                        str(ready),
                    ],
                    ready,
                    work / f"{name.replace(' ', '_')}.log",
                    senv,
                )
            )
        ready = work / "ready-ref"
        servers["reference"] = stack.enter_context(
            started(
                "reference",
                [
                    PY,
                    str(HERE / "reference_server.py"),
                    "--database-url",
                    ref_url,
                    "--ready-file",
                    str(ready),
                ],
                ready,
                work / "reference.log",
            )
        )
        log(f"{backend}: servers up: " + ", ".join(f"{n} :{s.port}" for n, s in servers.items()))
        yield servers


# --- summary -----------------------------------------------------------------------------


def _median(values: list[float]) -> float:
    return round(statistics.median(values), 2) if values else float("nan")


def summarize(sc: Scenario) -> dict[str, Any]:
    runs = sc.runs
    out: dict[str, Any] = {
        "mode": sc.mode,
        "conc": sc.conc,
        "server": sc.target,
        "reps": len(runs),
        "rpc_per_s": _median([r["rpc_per_s"] for r in runs]),
        "rpc_per_s_min": min(r["rpc_per_s"] for r in runs),
        "rpc_per_s_max": max(r["rpc_per_s"] for r in runs),
        "p50_ms": _median([r["p50_ms"] for r in runs]),
        "p99_ms": _median([r["p99_ms"] for r in runs]),
        "errors": sum(sum(r["errors"].values()) for r in runs),
        "machine_busy": _median([r["machine_busy"] for r in runs if r.get("machine_busy")]),
        "loadavg_1m": _median([r["loadavg_1m"] for r in runs if "loadavg_1m" in r]),
    }
    cpu = [r["cpu_us_per_rpc"] for r in runs if "cpu_us_per_rpc" in r]
    if cpu:
        out["cpu_us_per_rpc"] = {
            k: _median([c[k] for c in cpu]) if cpu[0][k] is not None else None for k in cpu[0]
        }
    if sc.mode == "vote":
        out["sessions"] = sum(r["sessions"] for r in runs)
        out["sessions_granted"] = sum(r["sessions_granted"] for r in runs)
        out["drain_s"] = _median([r["duration_s"] for r in runs])
    if sc.mode in ("flow", "restore"):
        out["flows_per_s"] = _median([r["flows"]["per_s"] for r in runs])
        out["flow_p50_ms"] = _median([r["flows"]["p50_ms"] for r in runs])
        out["flow_p99_ms"] = _median([r["flows"]["p99_ms"] for r in runs])
        out["pairs_wrapped"] = any(r.get("pairs_wrapped") for r in runs)
        methods = sorted({m for r in runs for m in r["calls"]})
        out["per_rpc"] = {
            m: {
                k: _median([r["calls"][m][k] for r in runs if m in r["calls"]])
                for k in ("per_s", "p50_ms", "p99_ms")
            }
            for m in methods
        }
    return out


READS = ("get", "session", "check")


def add_ratios(result: dict[str, Any]) -> None:
    """Every ratio, to the reference (writes' yardstick) and to echo (reads'), at the same
    concurrency; `ratio` names the one the scenario is judged by."""
    sc = result["scenarios"]
    for s in sc.values():
        for base, key in (("ref", "ref"), ("echo", "echo")):
            other = sc.get(f"{base} c={s['conc']}")
            if not other or s["mode"] == base or not other["rpc_per_s"]:
                continue
            s[f"ratio_to_{key}"] = round(s["rpc_per_s"] / other["rpc_per_s"], 3)
            # Server CPU per RPC is less disturbed by other load on the machine than RPC/s.
            mine = s.get("cpu_us_per_rpc", {}).get("server")
            theirs = other.get("cpu_us_per_rpc", {}).get("server")
            if mine and theirs:
                s[f"cpu_ratio_to_{key}"] = round(theirs / mine, 3)
        s["judged_against"] = "echo" if s["mode"] in READS else "ref"


def bench_watch(backend: str, work: Path, args: argparse.Namespace) -> dict[str, Any]:
    """bench/watch.py in its own process (its own database and server)."""
    out = work / "watch.json"
    argv = [PY, str(HERE / "watch.py"), "--backends", backend, "--out", str(out)]
    log(f"{backend}: watch scenario")
    done = subprocess.run(argv, check=True, timeout=900, stdout=subprocess.PIPE, text=True)
    result: dict[str, Any] = json.loads(out.read_text())[0]
    result["table"] = done.stdout.rstrip()
    return result


def bench_events(backend: str, work: Path, args: argparse.Namespace) -> dict[str, Any]:
    """bench/events.py in its own process, on a database of its own."""
    out = work / "events.json"
    with ExitStack() as stack:
        if backend == "postgres":
            url = stack.enter_context(postgres_database())
        else:
            url = f"sqlite:///{work / 'events.db'}"
        argv = [
            PY,
            str(HERE / "events.py"),
            "--backend",
            backend,
            "--url",
            url,
            "--duration",
            str(args.duration / 2),
            "--sizes",
            args.events_sizes,
            "--reps",
            str(args.events_reps),
            "--out",
            str(out),
        ]
        log(f"{backend}: events scenario")
        done = subprocess.run(argv, check=True, timeout=1800, stdout=subprocess.PIPE, text=True)
    result: dict[str, Any] = json.loads(out.read_text())
    result["table"] = done.stdout.rstrip()
    return result


def table(results: list[dict[str, Any]]) -> str:
    head = (
        f"{'backend':<9} {'scenario':<26} {'RPC/s':>8} {'min-max':>15} {'p50 ms':>8} "
        f"{'p99 ms':>8} {'x ref':>6} {'x echo':>6} {'srv us/RPC':>10} {'cpu x':>6} {'busy':>5}  "
        "extra"
    )
    lines = [head, "-" * len(head)]
    for res in results:
        for key, s in res["scenarios"].items():
            ratio = f"{s['ratio_to_ref']:.2f}" if "ratio_to_ref" in s else "-"
            eratio = f"{s['ratio_to_echo']:.2f}" if "ratio_to_echo" in s else "-"
            cpu = s.get("cpu_us_per_rpc", {}).get("server", "")
            judged = s.get("judged_against", "ref")
            cpu_ratio = s.get(f"cpu_ratio_to_{judged}")
            cpu_ratio = f"{cpu_ratio:.2f}{judged[0]}" if cpu_ratio else "-"
            extra = ""
            if s["mode"] == "flow":
                extra = (
                    f"{s['flows_per_s']} flows/s, flow p50 {s['flow_p50_ms']} ms "
                    f"p99 {s['flow_p99_ms']} ms"
                )
            if s["mode"] == "restore":
                extra = (
                    f"{s['flows_per_s']} sessions/s, request->AVAILABLE p50 "
                    f"{s['flow_p50_ms']} ms p99 {s['flow_p99_ms']} ms"
                )
            if s["mode"] == "vote":
                extra = (
                    f"{s['sessions_granted']}/{s['sessions']} sessions granted, "
                    f"drain {s['drain_s']} s"
                )
            if s["errors"]:
                extra += f" ERRORS {s['errors']}"
            lines.append(
                f"{res['backend']:<9} {key:<26} {s['rpc_per_s']:>8} "
                f"{str(s['rpc_per_s_min']) + '-' + str(s['rpc_per_s_max']):>15} "
                f"{s['p50_ms']:>8} {s['p99_ms']:>8} {ratio:>6} {eratio:>6} "
                f"{cpu!s:>10} {cpu_ratio:>6} "
                f"{s['machine_busy']!s:>5}  {extra}"
            )
            if s["mode"] in ("flow", "restore"):
                for m, v in s["per_rpc"].items():
                    lines.append(
                        f"{'':<9}   {m:<24} {v['per_s']:>8} {'':>15} {v['p50_ms']:>8} "
                        f"{v['p99_ms']:>8}"
                    )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--backends", default="sqlite,postgres", help="comma list: sqlite,postgres")
    p.add_argument("--duration", type=float, default=10.0, help="measured seconds per run")
    p.add_argument("--warmup", type=float, default=2.0, help="warm-up seconds per run")
    p.add_argument("--quick", action="store_true", help="3 s measured per run")
    p.add_argument("--reps", type=int, default=3)
    p.add_argument("--channels", type=int, default=4, help="grpc.aio channels per load process")
    p.add_argument("--get-conc", default="16,64", help="concurrencies of every read and echo")
    p.add_argument("--flow-conc", default="16")
    p.add_argument("--vote-conc", default="16,64", help="restore runs at the first only")
    p.add_argument("--vote-sessions", type=int, default=200, help="sessions in flight per vote run")
    p.add_argument(
        "--scenarios",
        default="echo,get,session,check,flow,vote",
        help="comma list of echo,get,session,check,flow,vote,events,watch (vote = vote drain + "
        "restore flow; events = bench/events.py; watch = bench/watch.py); ref always runs with "
        "the RPC scenarios, echo with the reads",
    )
    p.add_argument("--events-sizes", default="10000,100000", help="events: log sizes")
    p.add_argument("--events-reps", type=int, default=100, help="events: calls per read")
    p.add_argument(
        "--log-levels",
        default="warning,info",
        help="one airlock server per level; the first is the main one (info is the default)",
    )
    p.add_argument("--out", type=Path, help="results file (default bench/results/<time>.json)")
    p.add_argument("--keep", action="store_true", help="keep the temp dir (server logs)")
    p.add_argument("--report", type=Path, help="only print the table of an earlier results file")
    args = p.parse_args(argv)
    if args.report:
        earlier = json.loads(args.report.read_text())["results"]
        for res in earlier:
            add_ratios(res)
        print(table(earlier))
        return 0
    if args.quick:
        args.duration = 3.0
    args.get_conc = [int(x) for x in args.get_conc.split(",")]
    args.flow_conc = [int(x) for x in args.flow_conc.split(",")]
    args.vote_conc = [int(x) for x in args.vote_conc.split(",")]
    args.scenarios = args.scenarios.split(",")
    want_events = "events" in args.scenarios
    want_watch = "watch" in args.scenarios
    unknown = set(args.scenarios) - {
        "echo",
        "get",
        "session",
        "check",
        "flow",
        "vote",
        "events",
        "watch",
    }
    if unknown:
        p.error(f"unknown scenarios: {', '.join(sorted(unknown))}")
    args.log_levels = args.log_levels.split(",")
    # "postgresql" is the database's name too: the same backend.
    backends = ["postgres" if b == "postgresql" else b for b in args.backends.split(",")]
    started_at = datetime.now(UTC)
    results: list[dict[str, Any]] = []
    events_results: list[dict[str, Any]] = []
    rpc_scenarios = [s for s in args.scenarios if s not in ("events", "watch")]
    for backend in backends:
        work = Path(tempfile.mkdtemp(prefix=f"airlock-bench-{backend}-"))
        try:
            if rpc_scenarios:
                args.scenarios = rpc_scenarios
                res = bench_backend(backend, work, args)
                add_ratios(res)
                results.append(res)
            if want_events:
                events_results.append(bench_events(backend, work, args))
            if want_watch:
                events_results.append(bench_watch(backend, work, args))
        finally:
            if args.keep:
                log(f"kept {work}")
            else:
                shutil.rmtree(work, ignore_errors=True)
    text = table(results) if results else ""
    for res in events_results:
        text += ("\n\n" if text else "") + res["table"]
    print(text)
    out = args.out or HERE / "results" / f"{started_at.strftime('%Y%m%dT%H%M%SZ')}.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    meta = {
        "started": started_at.isoformat(),
        "argv": sys.argv[1:],
        "duration_s": args.duration,
        "warmup_s": args.warmup,
        "reps": args.reps,
        "channels": args.channels,
        "cpus": os.cpu_count(),
        "python": sys.version.split()[0],
    }
    with suppress(Exception):
        import grpc

        meta["grpcio"] = grpc.__version__
    out.write_text(
        json.dumps({"meta": meta, "results": results, "events": events_results}, indent=1)
    )
    log(f"results written to {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
