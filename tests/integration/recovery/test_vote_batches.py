"""Votes cast together are written in one transaction (app/ballots.py), each with its own
outcome: a refused vote does not take the others with it, a replayed request_id answers what
its first call did, and of two votes racing to decide a session exactly one does."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import pytest
from integration.recovery.recovery_world import World
from sqlalchemy import event, text

from airlock_server.app.common import request_fingerprint
from airlock_server.app.sessions import SessionView
from airlock_server.domain.errors import (
    REQUEST_ID_REUSED,
    DomainError,
    FailedPrecondition,
    InvalidArgument,
    PermissionDenied,
)
from airlock_server.domain.sessions import ExecutionStatus, SessionState, VoteDecision

pytestmark = pytest.mark.asyncio


async def _sessions(world: World, n: int) -> list[str]:
    out = []
    for i in range(n):
        arn = await world.vault(f"batch-{i}")
        asked = await world.app.vaults.request_restore_access(world.recovery, arn, "", "", "")
        out.append(asked.session.session.session_id)
    return out


async def _signed(
    world: World, name: str, session_id: str, decision: VoteDecision = VoteDecision.APPROVE
) -> bytes:
    current = await world.app.sessions.get_session(world.admin, session_id)
    return world.sign(name, current.session, decision)


async def _vote(
    world: World,
    name: str,
    session_id: str,
    signature: bytes,
    *,
    request_id: str = "",
    fingerprint: str = "",
) -> SessionView | DomainError:
    """One Vote call as the transport makes it (its request's fingerprint set), its answer or
    its refusal. Nothing is awaited before the vote: calls started together share a batch."""
    request_fingerprint.set(fingerprint)  # this task's own context
    try:
        return await world.app.sessions.vote(
            world.approver(name), session_id, VoteDecision.APPROVE, "", signature, request_id
        )
    except DomainError as err:
        return err


async def _together(*calls: Any) -> list[Any]:
    """The calls started in one turn of the event loop: their votes share a batch."""
    tasks = [asyncio.ensure_future(c) for c in calls]
    return list(await asyncio.gather(*tasks))


@contextmanager
def _batch_reads(world: World) -> Iterator[list[str]]:
    """The votes' locked reads of sessions (one per batch, or per vote cast alone)."""
    seen: list[str] = []

    def on_execute(_conn: Any, _cursor: Any, statement: str, *_args: Any) -> None:
        if "m_approver_id" in statement:
            seen.append(statement)

    engine = world.app.engine.sync_engine
    event.listen(engine, "before_cursor_execute", on_execute)
    try:
        yield seen
    finally:
        event.remove(engine, "before_cursor_execute", on_execute)


async def _stored_votes(world: World, session_id: str) -> list[str]:
    async with world.app.engine.connect() as conn:
        rows = await conn.execute(
            text("SELECT approver_id FROM votes WHERE session_id = :s ORDER BY position"),
            {"s": session_id},
        )
        return [r[0] for r in rows]


async def _log_is_exact(world: World) -> None:
    assert (await world.app.audit.verify_log(world.auditor, 0, 0, None)).ok
    async with world.app.engine.connect() as conn:
        cast = (
            await conn.execute(text("SELECT count(*) FROM events WHERE type = 'vote.cast'"))
        ).one()
        stored = (await conn.execute(text("SELECT count(*) FROM votes"))).one()
    assert cast == stored


async def test_a_refused_vote_leaves_the_others_of_its_batch(world: World) -> None:
    s1, s2, s3, s4 = await _sessions(world, 4)
    with _batch_reads(world) as reads:
        good1, bad_signature, good3, not_approver = await _together(
            _vote(world, "alice", s1, await _signed(world, "alice", s1)),
            _vote(world, "bob", s2, await _signed(world, "bob", s2, VoteDecision.REJECT)),
            _vote(world, "carol", s3, await _signed(world, "carol", s3)),
            _vote(world, "dave", s4, await _signed(world, "dave", s4)),
        )
    assert len(reads) == 1  # one batch: the four sessions read (and locked) together
    assert isinstance(good1, SessionView)
    assert isinstance(good3, SessionView)
    assert [v.approver_id for v in good1.session.votes] == ["alice"]
    assert [v.approver_id for v in good3.session.votes] == ["carol"]
    assert isinstance(bad_signature, InvalidArgument)
    assert bad_signature.violations[0].field == "signature"
    assert isinstance(not_approver, PermissionDenied)
    assert await _stored_votes(world, s1) == ["alice"]
    assert await _stored_votes(world, s2) == []
    assert await _stored_votes(world, s3) == ["carol"]
    assert await _stored_votes(world, s4) == []
    await _log_is_exact(world)


async def test_request_ids_in_a_batch(world: World) -> None:
    s1, s2, s3 = await _sessions(world, 3)
    alice1, alice2, bob3 = [
        await _signed(world, n, s) for n, s in (("alice", s1), ("alice", s2), ("bob", s3))
    ]
    first = await _vote(world, "alice", s1, alice1, request_id="r-1", fingerprint="vote-s1")
    assert isinstance(first, SessionView)
    replay, reused, fresh, fresh_twin = await _together(
        # The same request again: answered as the first was.
        _vote(world, "alice", s1, alice1, request_id="r-1", fingerprint="vote-s1"),
        # Another request with the same id: refused, and not cast.
        _vote(world, "alice", s2, alice2, request_id="r-1", fingerprint="vote-s2"),
        # A new one, and its twin sent at once: cast once, both answered the same.
        _vote(world, "bob", s3, bob3, request_id="r-2", fingerprint="vote-s3"),
        _vote(world, "bob", s3, bob3, request_id="r-2", fingerprint="vote-s3"),
    )
    assert isinstance(replay, SessionView)
    assert replay.session.session_id == s1
    assert [v.approver_id for v in replay.session.votes] == ["alice"]
    assert isinstance(reused, InvalidArgument)
    assert reused.reason == REQUEST_ID_REUSED
    assert isinstance(fresh, SessionView)
    assert isinstance(fresh_twin, SessionView)
    assert [v.approver_id for v in fresh.session.votes] == ["bob"]
    assert fresh_twin.session.votes == fresh.session.votes
    assert await _stored_votes(world, s1) == ["alice"]
    assert await _stored_votes(world, s2) == []
    assert await _stored_votes(world, s3) == ["bob"]
    await _log_is_exact(world)


async def test_concurrent_deciding_votes(world: World) -> None:
    sessions = await _sessions(world, 3)
    for s in sessions:
        assert isinstance(
            await _vote(world, "alice", s, await _signed(world, "alice", s)), SessionView
        )
    calls = []
    for i, s in enumerate(sessions):
        bob, carol = await _signed(world, "bob", s), await _signed(world, "carol", s)
        calls.append(_vote(world, "bob", s, bob))
        calls.append(_vote(world, "carol", s, carol, request_id=f"c-{i}", fingerprint=f"c-{s}"))
    answers = await _together(*calls)
    for i, s in enumerate(sessions):
        bob, carol = answers[2 * i], answers[2 * i + 1]
        decided = [a for a in (bob, carol) if isinstance(a, SessionView)]
        refused = [a for a in (bob, carol) if not isinstance(a, SessionView)]
        # Two approvals of 2-of-3 decide it; the vote after finds it decided.
        assert len(decided) == 1, (bob, carol)
        assert len(refused) == 1, (bob, carol)
        assert isinstance(refused[0], FailedPrecondition)
        assert refused[0].reason == "SESSION_NOT_PENDING"
        view = decided[0].session
        assert view.state is SessionState.APPROVED
        assert view.execution_status is ExecutionStatus.EXECUTED
        assert len(await _stored_votes(world, s)) == 2
        async with world.app.engine.connect() as conn:
            grant = (
                await conn.execute(
                    text("SELECT state FROM restore_access_grants WHERE session_id = :s"),
                    {"s": s},
                )
            ).one()
        assert grant[0] == "AVAILABLE"
    await _log_is_exact(world)
