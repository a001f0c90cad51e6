"""Watcher fan-out cost (issue 10): GetSession latency with and without 500 open WatchEvents
streams, while 2 events a second are written.

    python bench/watchers.py                       # both backends, 500 streams, 3 x 10 s
    python bench/watchers.py --backends sqlite --streams 200 --duration 5

For each backend (a SQLite file in a temp dir, or a fresh PostgreSQL database dropped at the
end; bench/run.py's helpers) it migrates, bootstraps and starts one `airlock-server serve`
(log level warning; AIRLOCK_MAX_STREAMS_PER_PRINCIPAL raised so that one admin may hold every
stream), makes one pending restore-access session (loadgen.py recovery-setup + vaults
--request), then, repetitions interleaved:

  quiet    `probe`: GetSession of that session by its requester, C coroutines closed loop,
           while a writer makes 2 events a second (CreateApprover): p50, p99, calls/s
  watched  the same probe while a separate `hold` process keeps N WatchEvents streams open
           (each replays the log, then follows it, reading every event). The probe starts
           once every stream has received its first event; after it, the holder reports how
           many events each stream received (min and max over the streams: the log at the
           start plus the writes of the run, for every stream).

Each of `probe` and `hold` is a process of its own (`python bench/watchers.py probe|hold`).
Results: a table (p50 ratio watched/quiet: the target is within 2x) and
bench/results/watchers-<time>.json. Loopback only; every process is stopped by pid.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import grpc

sys.path.insert(0, str(Path(__file__).resolve().parent))
# The sibling scripts, by path (bench/ is no package): the same helpers as bench/run.py.
from loadgen import bearer, percentile  # type: ignore[import-not-found]
from run import (  # type: ignore[import-not-found]
    HERE,
    PY,
    airlock_serving,
    log,
    postgres_database,
    run_json,
    stop,
)

from airlock.v1 import (
    audit_service_pb2,
    audit_service_pb2_grpc,
    identity_service_pb2,
    identity_service_pb2_grpc,
    session_pb2,
    session_service_pb2,
    session_service_pb2_grpc,
)

WRITES_PER_SECOND = 2.0


# --- probe: GetSession closed loop, plus the writer ---------------------------------------------


async def cmd_probe(
    target: str, state: dict[str, Any], conc: int, warmup: float, duration: float
) -> dict[str, Any]:
    session_id = state["session_id"]
    reader = bearer(state["recovery_token"])
    admin = bearer(state["admin_token"])
    latencies: list[float] = []
    errors = 0
    writes = 0
    async with grpc.aio.insecure_channel(target) as ch:
        sessions = session_service_pb2_grpc.SessionServiceStub(ch)
        ident = identity_service_pb2_grpc.IdentityServiceStub(ch)
        t0 = time.perf_counter()
        start, end = t0 + warmup, t0 + warmup + duration

        async def reader_loop() -> None:
            nonlocal errors
            while time.perf_counter() < end:
                t = time.perf_counter()
                try:
                    await sessions.GetSession(
                        session_service_pb2.GetSessionRequest(session_id=session_id),
                        metadata=reader,
                    )
                except grpc.aio.AioRpcError:
                    errors += 1
                    continue
                done = time.perf_counter()
                if start <= t and done < end:
                    latencies.append(done - t)

        async def writer() -> None:
            nonlocal writes, errors
            n = 0
            while time.perf_counter() < end:
                n += 1
                try:
                    await ident.CreateApprover(
                        identity_service_pb2.CreateApproverRequest(
                            approver_id=f"w-{state['suffix']}-{time.time_ns()}-{n}",
                            display_name="writer",
                        ),
                        metadata=admin,
                    )
                    writes += 1
                except grpc.aio.AioRpcError:
                    errors += 1
                await asyncio.sleep(1 / WRITES_PER_SECOND)

        await asyncio.gather(writer(), *(reader_loop() for _ in range(conc)))
    latencies.sort()
    return {
        "calls": len(latencies),
        "rps": round(len(latencies) / duration, 1),
        "p50_ms": round(percentile(latencies, 0.50) * 1000, 2),
        "p99_ms": round(percentile(latencies, 0.99) * 1000, 2),
        "writes": writes,
        "errors": errors,
    }


# --- hold: N WatchEvents streams ----------------------------------------------------------------


async def cmd_hold(
    target: str,
    token: str,
    streams: int,
    channels: int,
    after_seq: int,
    ready: Path,
    stop_file: Path,
) -> dict[str, Any]:
    """Open the streams, write `ready` once each received an event, keep reading until
    `stop_file` exists; report per-stream counts."""
    md = bearer(token)
    counts = [0] * streams
    first_at: list[float] = [0.0] * streams
    ended: dict[str, int] = {}
    opened = time.perf_counter()
    chans = [grpc.aio.insecure_channel(target) for _ in range(channels)]
    stubs = [audit_service_pb2_grpc.AuditServiceStub(c) for c in chans]

    async def follow(i: int) -> None:
        call = stubs[i % channels].WatchEvents(
            audit_service_pb2.WatchEventsRequest(after_seq=after_seq), metadata=md
        )
        try:
            async for _ in call:
                if counts[i] == 0:
                    first_at[i] = time.perf_counter() - opened
                counts[i] += 1
        except grpc.aio.AioRpcError as err:
            if err.code() != grpc.StatusCode.CANCELLED:
                ended[err.code().name] = ended.get(err.code().name, 0) + 1

    tasks = [asyncio.ensure_future(follow(i)) for i in range(streams)]
    written = False
    while not await asyncio.to_thread(stop_file.exists):
        if not written and all(counts):
            note = json.dumps({"first_max_s": round(max(first_at), 2)}) + "\n"
            await asyncio.to_thread(ready.write_text, note)
            written = True
        await asyncio.sleep(0.1)
    before = list(counts)
    for t in tasks:
        t.cancel()
    await asyncio.gather(*tasks, return_exceptions=True)
    for c in chans:
        await c.close()
    firsts = sorted(f for f in first_at if f)
    return {
        "streams": streams,
        "got_first": len(firsts),
        "first_p50_s": round(statistics.median(firsts), 2) if firsts else None,
        "first_max_s": round(firsts[-1], 2) if firsts else None,
        "events_min": min(before),
        "events_max": max(before),
        "ended": ended,
    }


# --- the orchestrator ---------------------------------------------------------------------------


def _probe(target: str, state_file: Path, args: argparse.Namespace) -> dict[str, Any]:
    result: dict[str, Any] = run_json(
        [
            PY,
            str(HERE / "watchers.py"),
            "probe",
            "--target",
            target,
            "--state",
            str(state_file),
            "--conc",
            str(args.conc),
            "--warmup",
            str(args.warmup),
            "--duration",
            str(args.duration),
        ],
        timeout=args.warmup + args.duration + 120,
    )
    return result


@contextmanager
def _holding(
    target: str, token: str, work: Path, args: argparse.Namespace, rep: int
) -> Iterator[dict[str, Any]]:
    """A `hold` process with the streams open and each fed; yields its report (filled in
    when it stops)."""
    ready, stop_file = work / f"hold-ready-{rep}", work / f"hold-stop-{rep}"
    out_file = work / f"hold-out-{rep}.json"
    with out_file.open("wb") as out:
        proc = subprocess.Popen(
            [
                PY,
                str(HERE / "watchers.py"),
                "hold",
                "--target",
                target,
                "--token",
                token,
                "--streams",
                str(args.streams),
                "--ready",
                str(ready),
                "--stop-file",
                str(stop_file),
            ],
            stdout=out,
            start_new_session=True,
        )
    report: dict[str, Any] = {}
    try:
        deadline = time.monotonic() + args.open_timeout
        while not ready.exists():
            if proc.poll() is not None:
                raise RuntimeError(f"hold exited with {proc.returncode}")
            if time.monotonic() > deadline:
                report["not_ready_after_s"] = args.open_timeout
                break
            time.sleep(0.2)
        yield report
    finally:
        stop_file.touch()
        try:
            proc.wait(60)
        except subprocess.TimeoutExpired:
            stop(proc)
        text = out_file.read_text().strip()
        if text:
            report.update(json.loads(text.splitlines()[-1]))


def bench_backend(backend: str, work: Path, args: argparse.Namespace) -> dict[str, Any]:
    if backend == "postgres":
        with postgres_database() as url:
            return _bench(backend, url, work, args)
    return _bench(backend, f"sqlite:///{work / 'airlock.db'}", work, args)


def _bench(backend: str, url: str, work: Path, args: argparse.Namespace) -> dict[str, Any]:
    env = {
        "PATH": "/usr/bin:/bin",
        "AIRLOCK_DATABASE_URL": url,
        "AIRLOCK_LOG_KEY_FILE": str(work / "log-key.pem"),
        "AIRLOCK_LOG_LEVEL": "warning",
        "AIRLOCK_MAX_STREAMS_PER_PRINCIPAL": str(args.streams + 10),
    }
    with airlock_serving(env, work) as (server, token_file):
        admin_token = token_file.read_text().strip()
        target = f"127.0.0.1:{server.port}"
        rs = run_json(
            [PY, str(HERE / "loadgen.py"), "recovery-setup", "--target", target,
             "--admin-token-file", str(token_file)],
            timeout=120,
        )  # fmt: skip
        rs_file = work / "recovery.json"
        rs_file.write_text(json.dumps(rs))
        vaults_file = work / "vaults.jsonl"
        run_json(
            [PY, str(HERE / "loadgen.py"), "vaults", "--target", target, "--state", str(rs_file),
             "--count", "1", "--prefix", "watch", "--out", str(vaults_file), "--request"],
            timeout=120,
        )  # fmt: skip
        line = json.loads(vaults_file.read_text().splitlines()[0])
        session = session_pb2.Session.FromString(bytes.fromhex(line["session"]))
        state_file = work / "probe.json"
        state_file.write_text(
            json.dumps(
                {
                    "session_id": session.session_id,
                    "recovery_token": rs["recovery"]["token"],
                    "admin_token": admin_token,
                    "suffix": rs["team_id"][-6:],
                }
            )
        )
        log(f"{backend}: server :{server.port}, session {session.session_id}")
        quiet: list[dict[str, Any]] = []
        watched: list[dict[str, Any]] = []
        holds: list[dict[str, Any]] = []
        for rep in range(args.reps):
            quiet.append(_probe(target, state_file, args))
            log(f"{backend}: quiet   #{rep + 1}: {quiet[-1]}")
            with _holding(target, admin_token, work, args, rep) as hold:
                watched.append(_probe(target, state_file, args))
            holds.append(hold)
            log(f"{backend}: watched #{rep + 1}: {watched[-1]} hold {hold}")
    q50 = statistics.median(r["p50_ms"] for r in quiet)
    w50 = statistics.median(r["p50_ms"] for r in watched)
    return {
        "backend": backend,
        "streams": args.streams,
        "quiet": quiet,
        "watched": watched,
        "holds": holds,
        "quiet_p50_ms": q50,
        "watched_p50_ms": w50,
        "quiet_p99_ms": statistics.median(r["p99_ms"] for r in quiet),
        "watched_p99_ms": statistics.median(r["p99_ms"] for r in watched),
        "p50_ratio": round(w50 / q50, 2) if q50 else None,
    }


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    sub = p.add_subparsers(dest="command")
    pr = sub.add_parser("probe")
    pr.add_argument("--target", required=True)
    pr.add_argument("--state", type=Path, required=True)
    pr.add_argument("--conc", type=int, default=4)
    pr.add_argument("--warmup", type=float, default=2.0)
    pr.add_argument("--duration", type=float, default=10.0)
    h = sub.add_parser("hold")
    h.add_argument("--target", required=True)
    h.add_argument("--token", required=True)
    h.add_argument("--streams", type=int, required=True)
    h.add_argument("--channels", type=int, default=10)
    h.add_argument("--after-seq", type=int, default=0)
    h.add_argument("--ready", type=Path, required=True)
    h.add_argument("--stop-file", type=Path, required=True)
    p.add_argument("--backends", default="sqlite,postgres")
    p.add_argument("--streams", type=int, default=500)
    p.add_argument("--conc", type=int, default=4, help="GetSession coroutines")
    p.add_argument("--warmup", type=float, default=2.0)
    p.add_argument("--duration", type=float, default=10.0)
    p.add_argument("--reps", type=int, default=3)
    p.add_argument("--open-timeout", type=float, default=60.0, help="bound on opening the streams")
    p.add_argument("--out", type=Path)
    args = p.parse_args(argv)

    if args.command == "probe":
        state = json.loads(args.state.read_text())
        result = asyncio.run(cmd_probe(args.target, state, args.conc, args.warmup, args.duration))
    elif args.command == "hold":
        result = asyncio.run(
            cmd_hold(args.target, args.token, args.streams, args.channels,
                     args.after_seq, args.ready, args.stop_file)
        )  # fmt: skip
    else:
        results = []
        with tempfile.TemporaryDirectory(prefix="airlock-watchers-") as tmp:
            for backend in args.backends.split(","):
                work = Path(tmp) / backend
                work.mkdir()
                results.append(bench_backend(backend, work, args))
        out = args.out or HERE / "results" / (
            "watchers-" + datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ") + ".json"
        )
        out.parent.mkdir(exist_ok=True)
        out.write_text(json.dumps(results, indent=2))
        print("backend   streams  quiet p50  watched p50  ratio  quiet p99  watched p99")
        for r in results:
            print(
                f"{r['backend']:<9} {r['streams']:>7}  {r['quiet_p50_ms']:>9}  "
                f"{r['watched_p50_ms']:>11}  {r['p50_ratio']:>5}  {r['quiet_p99_ms']:>9}  "
                f"{r['watched_p99_ms']:>11}"
            )
        log(f"results in {out}")
        return 0
    print(json.dumps(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
