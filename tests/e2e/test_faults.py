"""Faults under load: PostgreSQL restarted, a replica killed, while approvers vote at once.

Three real `airlock-server` replicas serve one database in a PostgreSQL cluster of this test's
own (tests/e2e/pg_cluster.py: its own port, stopped and removed afterwards; the shared server
is never restarted). Approvers cast signed votes through all three, staggered so that many are
in flight when the fault strikes:

- the database stops (`pg_ctl stop -m fast`) and, once every replica's health says
  NOT_SERVING, starts again: health returns to SERVING by itself; a vote sent through the SDK
  while the database is down completes after it is back; `airlock audit tail` and
  `airlock sessions watch` ride through;
- one replica is killed with SIGKILL and a new one started on its port: `airlock audit tail`
  through it resumes where it was.

A vote answered UNAVAILABLE is sent again with its request_id, as a client does: the answer is
then its first outcome. Afterwards the invariants of tests/e2e/replicas.py hold (every
acknowledged vote stored exactly once and no other, one final state and one grant per approved
session, gap-free seq, the hash chain recomputed and VerifyLog intact) and no client saw INTERNAL
or UNKNOWN. The figures (outage to first successful call, codes seen meanwhile) are printed for
docs/operations.md.
"""

from __future__ import annotations

import asyncio
import json
import logging
import random
import secrets
import subprocess
import threading
import time
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import grpc
import pytest
import pytest_asyncio
from e2e.pg_cluster import PG_BIN, PgCluster, pg_cluster
from e2e.replicas import (
    BIN,
    REPLICAS,
    Cluster,
    Outcomes,
    World,
    check_invariants,
    replicas_on,
    server_env,
    start_replica,
    team_world,
)
from google.protobuf import json_format
from grpc_health.v1 import health_pb2, health_pb2_grpc
from integration.harness import postgres_required

from airlock.v1 import session_pb2, session_service_pb2, session_service_pb2_grpc
from airlock_cli.sessions import outcome_exit_code
from airlock_client import AirlockClient, AirlockError, RetryPolicy

pytestmark = [pytest.mark.postgres, pytest.mark.asyncio, pytest.mark.timeout(600)]

log = logging.getLogger("airlock.tests.faults")

SESSIONS = 4
SPREAD = 2.5  # votes start within this many seconds
BOUND = 60.0  # every wait for a state ends within this, or fails
SERVER_ERRORS = {"INTERNAL", "UNKNOWN"}
SERVING = health_pb2.HealthCheckResponse.SERVING
NOT_SERVING = health_pb2.HealthCheckResponse.NOT_SERVING
# A client that waits out an outage of many seconds (the SDK's default gives up after ~11 s).
PATIENT = RetryPolicy(max_attempts=60, initial_backoff=0.1, max_backoff=1.0)


@dataclass
class FaultCluster(Cluster):
    directory: Path = Path()
    pg: PgCluster | None = None


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[FaultCluster]:
    if not (PG_BIN / "initdb").exists():
        reason = f"no PostgreSQL binaries in {PG_BIN} (AIRLOCK_TEST_PG_BIN)"
        if postgres_required():
            pytest.fail(f"{reason} and AIRLOCK_REQUIRE_POSTGRES=1")
        pytest.skip(reason)
    directory = tmp_path_factory.mktemp("faults")
    with pg_cluster() as pg:
        url = pg.create_database("airlock")
        with replicas_on(url, directory) as (token, replicas):
            yield FaultCluster(url, token, replicas, directory, pg)


@pytest_asyncio.fixture
async def world(cluster: FaultCluster) -> AsyncIterator[World]:
    async with team_world(cluster) as built:
        yield built


# --- votes, health, a prober, the CLI ---------------------------------------------------------


@dataclass
class Ballot:
    session_id: str
    approver_id: str
    approve: bool
    replica: int
    request_id: str = field(default_factory=lambda: secrets.token_hex(16))
    codes: list[str] = field(default_factory=list)  # each answer, in order

    @property
    def final(self) -> str:
        return self.codes[-1]


async def _cast(world: World, ballot: Ballot, replica: int, delay: float = 0.0) -> None:
    await asyncio.sleep(delay)
    client = world.approvers[ballot.approver_id][replica]
    key = world.signing_keys[ballot.approver_id]
    try:
        await client.sign_and_vote(
            world.sessions[ballot.session_id], ballot.approve, key, request_id=ballot.request_id
        )
    except AirlockError as exc:
        ballot.codes.append(f"{exc.code.name} {exc.reason}")
    else:
        ballot.codes.append("OK")


def _ballots(world: World, session_ids: list[str], seed: int) -> list[Ballot]:
    rng = random.Random(seed)
    ballots = [
        Ballot(sid, approver_id, rng.random() < 0.7, n % REPLICAS)
        for sid in session_ids
        for n, approver_id in enumerate(world.approver_ids)
    ]
    rng.shuffle(ballots)
    return ballots


async def _resend_unavailable(world: World, ballots: list[Ballot]) -> None:
    """What a client does with an UNAVAILABLE answer: the same vote, the same request_id."""
    for ballot in ballots:
        if ballot.final.startswith("UNAVAILABLE"):
            await _cast(world, ballot, 0)


def _outcomes(ballots: list[Ballot]) -> Outcomes:
    outcomes = Outcomes()
    for b in ballots:
        if b.final == "OK":
            outcomes.accepted.setdefault(b.session_id, []).append(b.approver_id)
        else:
            code, _, reason = b.final.partition(" ")
            outcomes.refused.append((b.session_id, code, reason))
    return outcomes


def _assert_answers(ballots: list[Ballot]) -> None:
    seen = {code.split(" ")[0] for b in ballots for code in b.codes}
    assert not seen & SERVER_ERRORS, seen
    finals = {b.final for b in ballots}
    assert finals <= {"OK", "FAILED_PRECONDITION SESSION_NOT_PENDING"}, finals


async def _health(target: str) -> int:
    async with grpc.aio.insecure_channel(target) as channel:
        try:
            answer = await health_pb2_grpc.HealthStub(channel).Check(
                health_pb2.HealthCheckRequest(service=""), timeout=2.0
            )
        except grpc.aio.AioRpcError:
            return -1
    return int(answer.status)


async def _until_health(targets: list[str], status: int) -> None:
    deadline = time.monotonic() + BOUND
    while [await _health(t) for t in targets] != [status] * len(targets):
        assert time.monotonic() < deadline, f"health never became {status} on {targets}"
        await asyncio.sleep(0.1)


@dataclass
class Prober:
    """GetSession every 0.1 s without retries: what a client sees, and when."""

    target: str
    token: str
    session_id: str
    answers: list[tuple[float, str]] = field(default_factory=list)

    async def run(self) -> None:
        async with grpc.aio.insecure_channel(self.target) as channel:
            stub = session_service_pb2_grpc.SessionServiceStub(channel)
            request = session_service_pb2.GetSessionRequest(session_id=self.session_id)
            metadata = (("authorization", f"Bearer {self.token}"),)
            while True:
                try:
                    await stub.GetSession(request, metadata=metadata, timeout=5.0)
                    code = "OK"
                except grpc.aio.AioRpcError as exc:
                    code = exc.code().name
                self.answers.append((time.monotonic(), code))
                await asyncio.sleep(0.1)

    def first_ok_after(self, moment: float) -> float:
        return next(t for t, code in self.answers if t >= moment and code == "OK")

    def codes_between(self, start: float, end: float) -> set[str]:
        return {code for t, code in self.answers if start <= t <= end}


class Tail:
    """`airlock audit tail` in its own process (stopped by its pid); a thread collects the seq
    of each line it prints."""

    def __init__(self, process: subprocess.Popen[str]) -> None:
        self.process = process
        self.seqs: list[int] = []
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        assert self.process.stdout is not None
        for line in self.process.stdout:
            if line.strip():
                self.seqs.append(int(line.split(" ", 1)[0]))

    async def until(self, seq: int) -> None:
        deadline = time.monotonic() + BOUND
        while not self.seqs or self.seqs[-1] < seq:
            assert self.process.poll() is None, f"audit tail exited {self.process.returncode}"
            assert time.monotonic() < deadline, f"audit tail stopped at {self.seqs[-1:]}"
            await asyncio.sleep(0.1)

    def stop(self) -> tuple[list[int], str]:
        self.process.terminate()
        try:
            _, err = self.process.communicate(timeout=BOUND)
        except subprocess.TimeoutExpired:
            self.process.kill()
            _, err = self.process.communicate(timeout=BOUND)
        self._reader.join(timeout=BOUND)
        return list(self.seqs), err


def _watch(target: str, token_file: Path, session_id: str) -> subprocess.Popen[str]:
    """`airlock --json sessions watch`: it ends by itself when the session is final."""
    return subprocess.Popen(
        [
            str(BIN / "airlock"),
            "--server",
            target,
            "--token-file",
            str(token_file),
            "--json",
            "sessions",
            "watch",
            session_id,
        ],
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=server_env(),
    )


def _tail(target: str, token_file: Path, from_seq: int) -> Tail:
    return Tail(
        subprocess.Popen(
            [
                str(BIN / "airlock"),
                "--server",
                target,
                "--token-file",
                str(token_file),
                "audit",
                "tail",
                "--from-seq",
                str(from_seq),
            ],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env=server_env(),
        )
    )


async def _head(world: World) -> int:
    return int((await world.admin.get_log_checkpoint()).seq)


@dataclass(frozen=True)
class Auditor:
    token: str
    token_file: Path


@pytest_asyncio.fixture
async def auditor(world: World, tmp_path: Path) -> AsyncIterator[Auditor]:
    token = await world.token("auditor", "")
    path = tmp_path / "auditor.token"
    path.write_text(token + "\n")
    path.chmod(0o600)
    yield Auditor(token, path)


# --- the faults -------------------------------------------------------------------------------


async def test_votes_ride_through_a_postgresql_restart(world: World, auditor: Auditor) -> None:
    cluster = world.cluster
    assert isinstance(cluster, FaultCluster)
    assert cluster.pg is not None
    pg = cluster.pg
    session_ids = await world.open_sessions(SESSIONS)
    (spare,) = await world.open_sessions(1)  # for the SDK vote sent during the outage
    ballots = _ballots(world, session_ids, seed=17)
    tail = _tail(cluster.targets[0], auditor.token_file, await _head(world) + 1)
    watch = _watch(cluster.targets[1], auditor.token_file, session_ids[1])
    prober = Prober(cluster.targets[1], auditor.token, session_ids[0])
    voter = world.approver_ids[0]
    voter_token = await world.token("approver", voter)  # tokens are issued while it is up
    probing = asyncio.create_task(prober.run())
    rng = random.Random(5)
    try:
        voting = asyncio.gather(
            *(_cast(world, b, b.replica, rng.uniform(0, SPREAD)) for b in ballots)
        )
        await asyncio.sleep(SPREAD / 3)
        stopped = time.monotonic()
        await asyncio.to_thread(pg.stop, "fast")
        await _until_health(cluster.targets, NOT_SERVING)
        unhealthy = time.monotonic()
        patient = AirlockClient.connect(cluster.targets[2], voter_token, retry=PATIENT)
        async with patient:
            sdk_vote = asyncio.create_task(
                patient.sign_and_vote(world.sessions[spare], True, world.signing_keys[voter])
            )
            await asyncio.sleep(1.0)  # the vote meets the outage
            assert not sdk_vote.done()
            started = time.monotonic()
            await asyncio.to_thread(pg.start)
            await _until_health(cluster.targets, SERVING)
            healthy = time.monotonic()
            voted = await sdk_vote
            sdk_done = time.monotonic()
        await voting
        assert voted.approval_count == 1
        await _resend_unavailable(world, ballots)
        await tail.until(await _head(world))
    finally:
        probing.cancel()
        seqs, err = tail.stop()
        try:
            watched, watch_err = watch.communicate(timeout=BOUND)
        except subprocess.TimeoutExpired:
            watch.kill()  # by the pid this test started
            watched, watch_err = watch.communicate(timeout=BOUND)
    _assert_answers(ballots)
    # The watch rode through too, and ended with the session's final state, its exit code
    # saying which (0 approved; docs/notifications.md).
    assert "INTERNAL" not in watch_err, watch_err
    last = json.loads(watched.splitlines()[-1])
    assert last["state"] in ("STATE_APPROVED", "STATE_FAILED"), last
    final = json_format.ParseDict(last, session_pb2.Session())
    assert watch.returncode == outcome_exit_code(final), watch_err
    await check_invariants(world, session_ids, _outcomes(ballots))
    # The tail printed every event from where it began, each once, through the outage.
    assert seqs == list(range(seqs[0], seqs[0] + len(seqs))), seqs
    assert "INTERNAL" not in err, err
    assert err.count("connection lost") <= 1, err
    # What a client without retries saw, and when it could work again.
    first_ok = prober.first_ok_after(started)
    during = prober.codes_between(stopped, first_ok) - {"OK"}  # OK: before the stop bit
    assert not during & SERVER_ERRORS, during
    log.info(
        f"FIGURES postgresql restart: stop->start {started - stopped:.2f}s, "
        f"stop->all NOT_SERVING {unhealthy - stopped:.2f}s, "
        f"start->all SERVING {healthy - started:.2f}s, "
        f"start->SDK vote done {sdk_done - started:.2f}s, "
        f"start->first OK {first_ok - started:.2f}s, codes during the outage {sorted(during)}, "
        f"votes answered UNAVAILABLE then resent: "
        f"{sum(1 for b in ballots if len(b.codes) > 1)}/{len(ballots)}"
    )


async def test_votes_survive_kill_9_of_a_replica(world: World, auditor: Auditor) -> None:
    cluster = world.cluster
    assert isinstance(cluster, FaultCluster)
    session_ids = await world.open_sessions(SESSIONS)
    ballots = _ballots(world, session_ids, seed=23)
    victim_index = REPLICAS - 1
    victim = cluster.replicas[victim_index]
    tail = _tail(victim.target, auditor.token_file, await _head(world) + 1)
    rng = random.Random(9)
    try:
        voting = asyncio.gather(
            *(_cast(world, b, b.replica, rng.uniform(0, SPREAD)) for b in ballots)
        )
        await asyncio.sleep(SPREAD / 3)
        killed = time.monotonic()
        victim.process.kill()  # SIGKILL, by the pid this test started
        victim.process.wait(timeout=BOUND)
        # A new replica on the same port: its clients (and the tail) reconnect to it.
        cluster.replicas[victim_index] = await asyncio.to_thread(
            start_replica, cluster.url, cluster.directory, REPLICAS + 1, victim.target
        )
        back = time.monotonic()
        await voting
        await _resend_unavailable(world, ballots)
        await tail.until(await _head(world))
    finally:
        seqs, err = tail.stop()
    _assert_answers(ballots)
    await check_invariants(world, session_ids, _outcomes(ballots))
    assert seqs == list(range(seqs[0], seqs[0] + len(seqs))), seqs
    assert "INTERNAL" not in err, err
    log.info(
        f"FIGURES replica kill -9: killed->replacement serving {back - killed:.2f}s, "
        f"votes answered UNAVAILABLE then resent: "
        f"{sum(1 for b in ballots if len(b.codes) > 1)}/{len(ballots)}, "
        f"final answers {sorted({b.final for b in ballots})}"
    )


async def test_votes_ride_through_pg_ctl_restart_fast(world: World, auditor: Auditor) -> None:
    """`pg_ctl restart -m fast` in one go, under load: no wait for health in between."""
    cluster = world.cluster
    assert isinstance(cluster, FaultCluster)
    assert cluster.pg is not None
    session_ids = await world.open_sessions(SESSIONS)
    ballots = _ballots(world, session_ids, seed=29)
    prober = Prober(cluster.targets[0], auditor.token, session_ids[0])
    probing = asyncio.create_task(prober.run())
    rng = random.Random(3)
    try:
        voting = asyncio.gather(
            *(_cast(world, b, b.replica, rng.uniform(0, SPREAD)) for b in ballots)
        )
        await asyncio.sleep(SPREAD / 3)
        began = time.monotonic()
        await asyncio.to_thread(cluster.pg.restart, "fast")
        restarted = time.monotonic()
        await voting
        await _resend_unavailable(world, ballots)
        await _until_health(cluster.targets, SERVING)
        await asyncio.sleep(0.3)  # a few more answers for the prober
    finally:
        probing.cancel()
    _assert_answers(ballots)
    await check_invariants(world, session_ids, _outcomes(ballots))
    first_ok = prober.first_ok_after(restarted)
    during = prober.codes_between(began, first_ok) - {"OK"}
    assert not during & SERVER_ERRORS, during
    log.info(
        f"FIGURES pg_ctl restart -m fast: restart took {restarted - began:.2f}s, "
        f"restarted->first OK {first_ok - restarted:.2f}s, codes meanwhile {sorted(during)}, "
        f"votes answered UNAVAILABLE then resent: "
        f"{sum(1 for b in ballots if len(b.codes) > 1)}/{len(ballots)}"
    )
