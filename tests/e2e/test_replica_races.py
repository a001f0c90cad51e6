"""Races between three real `airlock-server` processes on one PostgreSQL database.

Three replicas serve the same freshly created database, their sweepers running every 0.2 s.
Approvers vote at once on the same restore-access sessions through all three (round-robin
channels); votes race CancelSession; votes race expiry (the test moves `expire_time` into the
past in the database while votes are in flight, and the sweepers race the votes).

Afterwards, from the database and through the API: each session ends in exactly one final state;
its grant is AVAILABLE exactly when it was approved; every vote answered OK is stored exactly
once and no vote answered with an error is; the event log has gap-free seq and a valid hash
chain (recomputed here with `event_hash`, and checked by VerifyLog).

And a stream: WatchSession through one replica delivers the votes cast through the other two,
each as it is cast, then the final APPROVED session, and ends.
"""

from __future__ import annotations

import asyncio
import logging
import random
import secrets
import time
from collections.abc import AsyncIterator, Awaitable, Iterator
from datetime import UTC, datetime, timedelta

import pytest
import pytest_asyncio
from e2e.replicas import (
    REPLICAS,
    RETRY,
    SESSIONS,
    SETTLE_TIMEOUT,
    Cluster,
    M,
    Outcomes,
    World,
    allowed,
    cancel,
    check_invariants,
    replicas_on,
    rows,
    team_world,
    vote,
)
from integration.harness import empty_database
from sqlalchemy import bindparam, text
from sqlalchemy.ext.asyncio import AsyncSession

from airlock.v1 import session_pb2
from airlock_client import AirlockClient, AirlockError
from airlock_server.log_key import load_log_key
from airlock_server.persistence.db import create_engine
from airlock_server.persistence.models import UTCDateTime
from airlock_server.persistence.seal import Sealer
from airlock_server.persistence.vouch import mac_rows

pytestmark = [pytest.mark.postgres, pytest.mark.asyncio, pytest.mark.timeout(600)]


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cluster]:
    directory = tmp_path_factory.mktemp("replicas")
    with asyncio.Runner() as runner:
        database = empty_database("postgresql", directory)
        url = runner.run(database.__aenter__())
        try:
            with replicas_on(url, directory) as (token, replicas):
                yield Cluster(url, token, replicas, directory)
        finally:
            runner.run(database.__aexit__(None, None, None))


@pytest_asyncio.fixture
async def world(cluster: Cluster) -> AsyncIterator[World]:
    async with team_world(cluster) as built:
        yield built


# --- the races ---------------------------------------------------------------------------------


async def test_many_approvers_vote_at_once_through_three_replicas(world: World) -> None:
    session_ids = await world.open_sessions(SESSIONS)
    rng = random.Random(7)
    outcomes = Outcomes()
    jobs: list[Awaitable[None]] = []
    for sid in session_ids:
        for approver_id in world.approver_ids:
            jobs.append(vote(world, outcomes, sid, approver_id, rng.random() < 0.7, len(jobs)))
    rng.shuffle(jobs)
    await asyncio.gather(*jobs)
    await check_invariants(world, session_ids, outcomes)
    allowed(outcomes, {"SESSION_NOT_PENDING"})
    approved = [s for s in session_ids if len(outcomes.accepted.get(s, [])) >= M]
    assert approved, "no session reached its quorum"


async def test_votes_race_cancel_session(world: World) -> None:
    session_ids = await world.open_sessions(SESSIONS)
    rng = random.Random(11)
    outcomes = Outcomes()
    jobs: list[Awaitable[None]] = []
    for sid in session_ids:
        for approver_id in world.approver_ids[:M]:
            jobs.append(vote(world, outcomes, sid, approver_id, True, len(jobs)))
        jobs.append(cancel(world, outcomes, sid, len(jobs)))
    rng.shuffle(jobs)
    await asyncio.gather(*jobs)
    await check_invariants(world, session_ids, outcomes)
    allowed(outcomes, {"SESSION_NOT_PENDING"})


async def test_votes_race_expiry_and_the_sweepers(world: World) -> None:
    session_ids = await world.open_sessions(SESSIONS)
    rng = random.Random(13)
    outcomes = Outcomes()
    answered = asyncio.Event()

    async def vote_and_tell(sid: str, approver_id: str, replica: int) -> None:
        # The first approver of each session votes at once; the others start when the first
        # vote is answered, together with the move of the deadlines and the sweepers.
        if approver_id != world.approver_ids[0]:
            await answered.wait()
        await vote(world, outcomes, sid, approver_id, True, replica)
        answered.set()

    async def expire_all() -> None:
        """Once votes are answering, the deadline of every session moves into the past."""
        await answered.wait()
        past = bindparam("past", datetime.now(UTC) - timedelta(hours=1), type_=UTCDateTime())
        engine = create_engine(world.cluster.url, pool_size=1)
        key = load_log_key(world.cluster.directory / "log-key.pem")
        assert key is not None
        try:
            # The sessions' MACs made again in the same transaction: the operator moving time
            # vouches for it (a session row changed otherwise is refused).
            async with AsyncSession(engine) as s, s.begin():
                await s.execute(
                    text(
                        "UPDATE sessions SET expire_time = :past "
                        "WHERE session_id = ANY(:ids) AND state = 'PENDING'"
                    ).bindparams(past, ids=session_ids)
                )
                await mac_rows(s, Sealer(key), ("sessions",))
        finally:
            await engine.dispose()

    jobs: list[Awaitable[None]] = [
        vote_and_tell(sid, approver_id, n)
        for n, (sid, approver_id) in enumerate(
            (sid, a) for sid in session_ids for a in world.approver_ids[:M]
        )
    ]
    rng.shuffle(jobs)
    await asyncio.gather(expire_all(), *jobs)
    await check_invariants(world, session_ids, outcomes)
    allowed(outcomes, {"SESSION_NOT_PENDING", "SESSION_EXPIRED"})
    engine = create_engine(world.cluster.url, pool_size=1)
    try:
        for sid in session_ids:
            ((state, status),) = await rows(
                engine, "SELECT state, status FROM sessions WHERE session_id = :s", s=sid
            )
            assert (state, status) in (("APPROVED", "APPROVED"), ("FAILED", "EXPIRED")), sid
    finally:
        await engine.dispose()


# --- watching through one replica ---------------------------------------------------------------


async def test_watch_through_one_replica_sees_votes_cast_through_the_others(world: World) -> None:
    """WatchSession on replica A while the votes go through B and C, one at a time: the stream
    delivers each vote as it is cast, then the APPROVED session, then ends."""
    (sid,) = await world.open_sessions(1)
    voters = world.approver_ids[:M]
    watcher = world.recovery[0]  # the requester, on replica A
    # A stream left open by a failure ends when the fixture closes the watcher's channel.
    stream = watcher.watch_session(sid)
    async with asyncio.timeout(SETTLE_TIMEOUT):
        now = await anext(stream)
        assert now.state == session_pb2.Session.STATE_PENDING
        assert now.approval_count == 0
        for n, approver_id in enumerate(voters, start=1):
            replica = 1 + (n - 1) % 2  # B, C, B
            answer = await world.approvers[approver_id][replica].sign_and_vote(
                world.sessions[sid], True, world.signing_keys[approver_id]
            )
            assert answer.approval_count == n
            # The next message is this vote: A learns of it from the log, not from its
            # own writes; nothing is skipped or sent twice.
            seen = await anext(stream)
            assert seen.approval_count == n
            assert [v.approver_id for v in seen.votes] == voters[:n]
            expected = (
                session_pb2.Session.STATE_APPROVED if n == M else session_pb2.Session.STATE_PENDING
            )
            assert seen.state == expected
        # Whatever follows (the execution result) is still the approved session; then the
        # stream ends on its own.
        rest = [s async for s in stream]
    assert all(s.state == session_pb2.Session.STATE_APPROVED for s in rest), rest
    final = rest[-1] if rest else seen
    assert final.approval_count == M
    assert final.execution_status == session_pb2.Session.EXECUTION_STATUS_EXECUTED
    access = await world.admin.check_access(world.vaults[sid], world.recovery_id)
    assert access.allowed


# --- revocation reaches every replica's credential cache (issue 11) ------------------------

log = logging.getLogger(__name__)
REVOCATION_BOUND = 10.0  # generous: a NOTIFY is milliseconds; the bound keeps a failure finite


async def _refused_everywhere(clients: list[AirlockClient], first: int) -> list[float]:
    """Seconds until each replica refuses the token, polled; the revoking replica `first` must
    refuse at once (asserted without polling)."""
    started = time.monotonic()
    with pytest.raises(AirlockError) as refused:
        await clients[first].whoami()
    assert refused.value.code.name == "UNAUTHENTICATED"
    seconds = []
    for client in clients:
        code = ""
        async with asyncio.timeout(REVOCATION_BOUND):
            while not code:
                try:
                    await client.whoami()
                except AirlockError as err:
                    code = err.code.name
                else:
                    await asyncio.sleep(0.005)
        assert code == "UNAUTHENTICATED"
        seconds.append(time.monotonic() - started)
    return seconds


async def test_a_revocation_reaches_every_replica(cluster: Cluster) -> None:
    """Each replica caches the credentials it verified. A revoked credential is refused by the
    replica that revoked it before it answers, and by the others once the database's NOTIFY
    reaches them (within a bound); so is every credential of a disabled approver."""
    admin = AirlockClient.connect(cluster.targets[0], cluster.admin_token, retry=RETRY)
    opened: list[AirlockClient] = [admin]
    try:
        sfx = secrets.token_hex(3)
        issued = await admin.issue_credential("auditor", "")
        approver_id = f"cached-{sfx}"
        await admin.create_approver(approver_id, approver_id)
        approver_tokens = [(await admin.issue_credential("approver", approver_id)).token]
        approver_tokens.append((await admin.issue_credential("approver", approver_id)).token)
        auditor = [AirlockClient.connect(t, issued.token) for t in cluster.targets]
        approver = [
            AirlockClient.connect(t, token) for token in approver_tokens for t in cluster.targets
        ]
        opened += auditor + approver
        # Every replica has verified (and cached) each token.
        for client in auditor + approver:
            assert (await client.whoami()).credential_id
        # Revoked through replica B: B refuses at once, A and C soon after.
        on_b, on_c = (AirlockClient.connect(t, cluster.admin_token) for t in cluster.targets[1:])
        opened += [on_b, on_c]
        await on_b.revoke_credential(issued.credential.credential_id)
        log.info("revocation refused after %s s", await _refused_everywhere(auditor, 1))
        # Disabled through replica C: both of its credentials, on every replica.
        await on_c.disable_approver(approver_id)
        for token_clients in (approver[:REPLICAS], approver[REPLICAS:]):
            seen = await _refused_everywhere(token_clients, 2)
            log.info("disabled approver refused after %s s", seen)
    finally:
        for client in opened:
            await client.close()
