"""How soon a vote reaches WatchSession subscribers (issue 11: the last vote within 50 ms p99).

    python bench/watch.py                          # both backends, 20 sessions, 5 subscribers
    python bench/watch.py --backends postgres --sessions 40 --subscribers 10

For each backend (a SQLite file in a temp dir, or a fresh PostgreSQL database dropped at the
end; bench/run.py's helpers) it migrates, bootstraps and starts one `airlock-server serve`
(log key, log level warning), makes a 2-of-3 team and one pending restore-access session per
repetition (loadgen.py recovery-setup + vaults --request), then for each session in turn:
opens `--subscribers` WatchSession streams (the requester's), waits for each stream's first
message (the session now), and casts the two signed APPROVE votes one after the other. For
each vote and each subscriber, the time from the vote's answer (it is committed and in the
log) to the stream's message carrying it: `first_vote` and `last_vote` (the deciding one,
which approves the session), p50 / p99 / max over every subscriber of every session; `from_send`
the same from the moment the Vote was sent. Loopback only; the server is stopped by pid.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import grpc

sys.path.insert(0, str(Path(__file__).resolve().parent))
# The sibling scripts, by path (bench/ is no package): the same helpers as bench/run.py.
from loadgen import _vote, bearer, cmd_recovery_setup, cmd_vaults, percentile  # type: ignore[import-not-found]
from run import (  # type: ignore[import-not-found]
    airlock_serving,
    log,
    postgres_database,
)

from airlock.v1 import (
    approver_service_pb2_grpc,
    session_pb2,
    session_service_pb2,
    session_service_pb2_grpc,
)


def _ms(values: list[float]) -> dict[str, float]:
    values = sorted(values)
    if not values:
        return {"n": 0}
    return {
        "n": len(values),
        "p50_ms": round(percentile(values, 0.50) * 1000, 2),
        "p99_ms": round(percentile(values, 0.99) * 1000, 2),
        "max_ms": round(values[-1] * 1000, 2),
    }


def _voted(session: session_pb2.Session, approver_id: str) -> bool:
    return any(v.approver_id == approver_id for v in session.votes)


async def _one_session(
    ch: grpc.aio.Channel, rs: dict[str, Any], session: session_pb2.Session, subscribers: int
) -> dict[str, list[float]]:
    watcher = session_service_pb2_grpc.SessionServiceStub(ch)
    voter = approver_service_pb2_grpc.ApproverServiceStub(ch)
    md = bearer(rs["recovery"]["token"])
    a, b = rs["approvers"][0], rs["approvers"][1]
    # For each subscriber, when it saw a's vote and b's.
    seen: list[dict[str, float]] = [{} for _ in range(subscribers)]
    first: list[asyncio.Event] = [asyncio.Event() for _ in range(subscribers)]
    calls = [
        watcher.WatchSession(
            session_service_pb2.WatchSessionRequest(session_id=session.session_id), metadata=md
        )
        for _ in range(subscribers)
    ]

    async def follow(i: int) -> None:
        async for msg in calls[i]:
            now = time.perf_counter()
            first[i].set()
            for who in (a, b):
                if who["id"] not in seen[i] and _voted(msg.session, who["id"]):
                    seen[i][who["id"]] = now
            if len(seen[i]) == 2:
                return

    tasks = [asyncio.ensure_future(follow(i)) for i in range(subscribers)]
    try:
        await asyncio.wait_for(asyncio.gather(*(e.wait() for e in first)), 30)
        sent_a = time.perf_counter()
        voted = await _vote(voter, a, session)
        answered_a = time.perf_counter()
        sent_b = time.perf_counter()
        await _vote(voter, b, voted.session)
        answered_b = time.perf_counter()
        await asyncio.wait_for(asyncio.gather(*tasks), 30)
    finally:
        for t in tasks:
            t.cancel()
        for c in calls:
            c.cancel()
    return {
        "first_vote": [max(s[a["id"]] - answered_a, 0.0) for s in seen],
        "last_vote": [max(s[b["id"]] - answered_b, 0.0) for s in seen],
        "first_vote_from_send": [s[a["id"]] - sent_a for s in seen],
        "last_vote_from_send": [s[b["id"]] - sent_b for s in seen],
    }


async def measure(target: str, admin_token: str, work: Path, args: argparse.Namespace) -> Any:
    rs = await cmd_recovery_setup(target, admin_token)
    lines_file = work / "watch-vaults.jsonl"
    await cmd_vaults(target, rs, args.sessions, "watch", lines_file, True)
    sessions = [
        session_pb2.Session.FromString(bytes.fromhex(json.loads(line)["session"]))
        for line in lines_file.read_text().splitlines()
    ]
    got: dict[str, list[float]] = {}
    async with grpc.aio.insecure_channel(target) as ch:
        for s in sessions:
            for key, values in (await _one_session(ch, rs, s, args.subscribers)).items():
                got.setdefault(key, []).extend(values)
    return {"sessions": len(sessions), "subscribers": args.subscribers} | {
        k: _ms(v) for k, v in got.items()
    }


def bench_backend(backend: str, work: Path, args: argparse.Namespace) -> dict[str, Any]:
    if backend == "postgres":
        with postgres_database() as url:
            return _bench(url, work, args)
    return _bench(f"sqlite:///{work / 'airlock.db'}", work, args)


def _bench(url: str, work: Path, args: argparse.Namespace) -> dict[str, Any]:
    env = {
        "PATH": "/usr/bin:/bin",
        "AIRLOCK_DATABASE_URL": url,
        "AIRLOCK_LOG_KEY_FILE": str(work / "log-key.pem"),
        "AIRLOCK_LOG_LEVEL": "warning",
    }
    if os.environ.get("PYTHONPATH"):
        env["PYTHONPATH"] = os.environ["PYTHONPATH"]  # an A/B against another checkout
    with airlock_serving(env, work) as (server, token_file):
        target = f"127.0.0.1:{server.port}"
        result: dict[str, Any] = asyncio.run(
            measure(target, token_file.read_text().strip(), work, args)
        )
    return result


def parse(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--backends", default="sqlite,postgres")
    p.add_argument("--sessions", type=int, default=20, help="sessions, one after the other")
    p.add_argument("--subscribers", type=int, default=5, help="WatchSession streams per session")
    p.add_argument("--out", type=Path, help="write the results as JSON here")
    args = p.parse_args(argv)
    args.backends = [b.strip() for b in args.backends.split(",") if b.strip()]
    return args


def table(results: list[dict[str, Any]]) -> str:
    lines = []
    for r in results:
        for key in ("first_vote", "last_vote", "first_vote_from_send", "last_vote_from_send"):
            m = r[key]
            lines.append(
                f"{r['backend']:<9} watch {key:<22} p50 {m['p50_ms']} ms  p99 {m['p99_ms']} ms  "
                f"max {m['max_ms']} ms  (n={m['n']})"
            )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    args = parse(argv)
    results = []
    for backend in args.backends:
        with tempfile.TemporaryDirectory(prefix=f"airlock-watch-{backend}-") as tmp:
            log(f"{backend}: watch scenario")
            results.append({"backend": backend} | bench_backend(backend, Path(tmp), args))
    if args.out:
        args.out.write_text(json.dumps(results, indent=1))
    print(table(results))
    return 0


if __name__ == "__main__":
    sys.exit(main())
