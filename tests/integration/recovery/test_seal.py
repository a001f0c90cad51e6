"""`airlock-server seal`: the operator vouches for a database whose rows carry no MAC (written
before migration 0008, by a server without a key, or under a lost key): refused by a server
with a key before, trusted as it stands after, and never sealed over a broken chain."""

from __future__ import annotations

import json

import pytest
from integration.recovery.recovery_world import World
from integration.tamper import change_one_byte, drop_guards
from sqlalchemy import text

from airlock_client.proof import verify_proof
from airlock_server.domain.errors import FailedPrecondition
from airlock_server.domain.events import Problem
from airlock_server.persistence.db import session_factory
from airlock_server.persistence.seal import Sealer
from airlock_server.persistence.vouch import seal_database

pytestmark = pytest.mark.asyncio

MACED = ("credentials", "team_versions", "team_members", "sessions", "votes",
         "restore_access_grants", "approvers", "accounts", "teams", "team_shares",
         "team_deletions")  # fmt: skip


async def _unsealed(world: World) -> tuple[str, str]:
    """A pending restore request, then every MAC and the head's signature gone, as after an
    upgrade of an install that had no log key."""
    arn = await world.vault()
    asked = await world.app.vaults.request_restore_access(world.recovery, arn, "", "help", "")
    sid = asked.session.session.session_id
    await world.vote("alice", sid)
    async with world.app.engine.begin() as conn:
        for table in MACED:
            await conn.execute(text(f"UPDATE {table} SET mac = NULL"))
        await conn.execute(text("UPDATE log_head SET signature = NULL"))
    return arn, sid


async def test_seal_makes_a_database_without_macs_usable(world: World) -> None:
    assert world.log_key is not None
    assert world.app.audit is not None
    _, sid = await _unsealed(world)
    with pytest.raises(FailedPrecondition) as refused:
        await world.vote("bob", sid)
    assert refused.value.reason == "RECORD_NOT_AUTHENTIC"

    sealed = await seal_database(session_factory(world.app.engine), Sealer(world.log_key))
    assert sealed.finding is None
    assert sealed.rows["sessions"] == 1
    assert sealed.rows["votes"] == 1
    assert sealed.rows["team_members"] == 3
    assert sealed.rows["teams"] == 1
    assert set(MACED) <= set(sealed.rows)
    assert sealed.rows["approvers"] == await world.app.count("approvers")
    assert sealed.rows["accounts"] == await world.app.count("accounts") > 0
    # The head row's signature covers the log until the next append, then the append's does.
    checkpoint = await world.app.audit.checkpoint(world.auditor)
    assert checkpoint.seq == sealed.head_seq
    assert (await world.app.audit.verify_log(world.auditor, 0, 0, checkpoint)).ok
    await world.vote("bob", sid)
    assert (await world.app.sessions.get_session(world.admin, sid)).session.state.value == (
        "APPROVED"
    )
    proof = await world.app.sessions.export_approval_proof(world.recovery, sid)
    assert verify_proof(proof.decode(), world.log_key.public_key, approver_keys=world.pins()).valid
    assert (await world.app.audit.verify_log(world.auditor, 0, 0, checkpoint)).ok
    assert json.loads(proof)["checkpoint"]["seq"] > checkpoint.seq


async def test_seal_refuses_a_broken_chain_and_changes_nothing(world: World) -> None:
    assert world.log_key is not None
    _, sid = await _unsealed(world)
    await drop_guards(world.app.engine)
    await change_one_byte(world.app.engine, 3)
    sealed = await seal_database(session_factory(world.app.engine), Sealer(world.log_key))
    assert sealed.finding is not None
    assert (sealed.finding.seq, sealed.finding.problem) == (3, Problem.HASH_MISMATCH)
    async with world.app.engine.connect() as conn:
        assert await conn.scalar(text("SELECT count(*) FROM sessions WHERE mac IS NULL")) == 1
    with pytest.raises(FailedPrecondition) as refused:
        await world.vote("bob", sid)
    assert refused.value.reason == "RECORD_NOT_AUTHENTIC"
