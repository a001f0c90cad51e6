"""Races on PostgreSQL: several wirings (separate connection pools, like server replicas) on one
database, voting at once on the same sessions, and votes racing cancellation and expiry.

Each session ends in exactly one final state, with exactly one grant, AVAILABLE only when
approved; no vote is lost or counted twice.
"""

from __future__ import annotations

import asyncio
import random
from datetime import timedelta
from typing import Any

import pytest
from integration.harness import Harness
from integration.recovery.recovery_world import RECOVERY, World
from sqlalchemy import text

from airlock_server.domain.errors import FailedPrecondition
from airlock_server.domain.sessions import SessionState, VoteDecision

pytestmark = pytest.mark.asyncio

MEMBERS = ("alice", "bob", "carol", "dave", "erin")
M = 3
SESSIONS = 8


@pytest.fixture(params=[pytest.param("postgresql", id="postgresql", marks=pytest.mark.postgres)])
def backend(request: pytest.FixtureRequest) -> str:
    value: str = request.param
    return value


async def _setup(world: World) -> tuple[list[Harness], list[str]]:
    team = await world.make_team("race", MEMBERS, m=M)
    await world.share(team, world.owner)
    await world.share(team, world.recovery)
    replicas = [world.another_wiring() for _ in range(3)]
    session_ids = []
    for i in range(SESSIONS):
        arn = await world.vault(f"v{i}", team)
        asked = await world.app.vaults.request_restore_access(world.recovery, arn, "", "", "")
        session_ids.append(asked.session.session.session_id)
    return replicas, session_ids


async def _rows(world: World, sql: str) -> list[tuple[Any, ...]]:
    async with world.app.engine.connect() as conn:
        return [tuple(r) for r in await conn.execute(text(sql))]


async def _check_invariants(world: World, accepted: dict[str, list[str]]) -> None:
    sessions = await _rows(world, "SELECT session_id, state, status FROM sessions")
    finals = await _rows(
        world,
        "SELECT e.type, s.subject FROM events e JOIN event_subjects s ON s.seq = e.seq "
        "WHERE e.type IN ('session.approved', 'session.rejected', 'session.expired', "
        "'session.cancelled') AND s.subject LIKE 'session:%'",
    )
    for session_id, state, _status in sessions:
        assert state != SessionState.PENDING.value, session_id
        ends = [t for t, subject in finals if subject == f"session:{session_id}"]
        assert len(ends) == 1, (session_id, ends)
        grants = await _rows(
            world,
            f"SELECT state FROM restore_access_grants WHERE session_id = '{session_id}'",
        )
        assert len(grants) == 1
        assert (grants[0][0] == "AVAILABLE") == (state == "APPROVED"), (session_id, state)
        votes = await _rows(
            world, f"SELECT approver_id, decision FROM votes WHERE session_id = '{session_id}'"
        )
        # Every vote that was answered OK is stored, once; no refused vote is.
        assert sorted(a for a, _ in votes) == sorted(accepted.get(session_id, [])), session_id
        approvals = sum(1 for _, d in votes if d == "APPROVE")
        rejections = len(votes) - approvals
        if state == "APPROVED":
            assert approvals == M
        elif ends == ["session.rejected"]:
            assert rejections == len(MEMBERS) - M + 1
        else:
            assert approvals < M
            assert rejections <= len(MEMBERS) - M
    cast = await _rows(world, "SELECT count(*) FROM events WHERE type = 'vote.cast'")
    stored = await _rows(world, "SELECT count(*) FROM votes")
    assert cast == stored


async def test_concurrent_votes_on_the_same_sessions(world: World) -> None:
    replicas, session_ids = await _setup(world)
    rng = random.Random(7)
    accepted: dict[str, list[str]] = {}
    refused: list[str] = []

    async def vote(session_id: str, name: str, decision: VoteDecision) -> None:
        replica = rng.choice(replicas)
        try:
            await world.vote(name, session_id, decision, app=replica)
        except FailedPrecondition as err:
            refused.append(err.reason)
        else:
            accepted.setdefault(session_id, []).append(name)

    jobs = [
        vote(sid, name, VoteDecision.APPROVE if rng.random() < 0.7 else VoteDecision.REJECT)
        for sid in session_ids
        for name in MEMBERS
    ]
    rng.shuffle(jobs)
    await asyncio.gather(*jobs)
    await _check_invariants(world, accepted)
    assert set(refused) <= {"SESSION_NOT_PENDING"}
    approved = await _rows(world, "SELECT count(*) FROM sessions WHERE state = 'APPROVED'")
    assert approved[0][0] >= 1


async def test_votes_race_cancellation(world: World) -> None:
    replicas, session_ids = await _setup(world)
    rng = random.Random(11)
    accepted: dict[str, list[str]] = {}
    refused: list[str] = []

    async def vote(session_id: str, name: str) -> None:
        try:
            await world.vote(name, session_id, VoteDecision.APPROVE, app=rng.choice(replicas))
        except FailedPrecondition as err:
            refused.append(err.reason)
        else:
            accepted.setdefault(session_id, []).append(name)

    async def cancel(session_id: str) -> None:
        try:
            await rng.choice(replicas).sessions.cancel_session(world.recovery, session_id, "")
        except FailedPrecondition as err:
            refused.append(err.reason)

    jobs = [vote(sid, name) for sid in session_ids for name in MEMBERS[:M]]
    jobs += [cancel(sid) for sid in session_ids]
    rng.shuffle(jobs)
    await asyncio.gather(*jobs)
    await _check_invariants(world, accepted)
    assert set(refused) <= {"SESSION_NOT_PENDING"}


async def test_votes_race_expiry(world: World) -> None:
    replicas, session_ids = await _setup(world)
    rng = random.Random(13)
    world.clock.advance(timedelta(hours=24))
    swept: list[int] = []

    async def vote(session_id: str, name: str) -> None:
        with pytest.raises(FailedPrecondition) as err:
            await world.vote(name, session_id, VoteDecision.APPROVE, app=rng.choice(replicas))
        assert err.value.reason in ("SESSION_EXPIRED", "SESSION_NOT_PENDING")

    async def sweep(replica: Harness) -> None:
        swept.append(await replica.sessions.sweep_expired_sessions())

    async def read(session_id: str) -> None:
        view = await rng.choice(replicas).sessions.get_session(world.recovery, session_id)
        assert view.session.state is SessionState.FAILED

    jobs = [vote(sid, name) for sid in session_ids for name in MEMBERS[:2]]
    jobs += [sweep(r) for r in replicas] + [read(sid) for sid in session_ids]
    rng.shuffle(jobs)
    await asyncio.gather(*jobs)
    await _check_invariants(world, {})
    assert await world.app.count("sessions", "status = 'EXPIRED'") == SESSIONS
    assert await world.app.count("restore_access_grants", "state = 'FAILED'") == SESSIONS
    assert await world.app.count("events", "type = 'session.expired'") == SESSIONS
    assert RECOVERY
