"""The hot reads (GetSession, CheckAccess, GetApprovalTeam): on PostgreSQL each is one statement
on a connection the engine's pool lends (persistence/hot_reads.py), outside SQLAlchemy's
execution path. They answer what the ordinary unit of work answers, refuse a row the server did
not write, and survive the pool's connections dying (a restart) like every other read."""

from __future__ import annotations

from typing import Any

import pytest
from integration.recovery.recovery_world import World
from sqlalchemy import text
from sqlalchemy.engine import make_url

from airlock_server.domain.errors import FailedPrecondition, Reason
from airlock_server.domain.sessions import SessionState
from airlock_server.persistence.db import create_engine

pytestmark = pytest.mark.asyncio


async def _approved_grant(world: World) -> tuple[str, str]:
    """A vault with an AVAILABLE grant of the recovery account: (vault ARN, session id)."""
    arn = await world.vault()
    asked = await world.app.vaults.request_restore_access(world.recovery, arn, "", "", "")
    session_id = asked.session.session.session_id
    await world.vote("alice", session_id)
    await world.vote("bob", session_id)
    return arn, session_id


async def _reads(world: World, arn: str, session_id: str) -> tuple[Any, ...]:
    app = world.app
    view = await app.sessions.get_session(world.recovery, session_id)
    access = await app.vaults.check_access(world.service, arn, world.recovery.subject)
    team = await app.teams.get_team_view(world.owner, world.team_id)
    return view, access, team


async def test_the_hot_reads_answer_as_the_unit_of_work_does(world: World) -> None:
    arn, session_id = await _approved_grant(world)
    view, access, team = await _reads(world, arn, session_id)
    assert view.session.state is SessionState.APPROVED
    assert view.team_name == "guardians"
    assert access.allowed
    assert team.team.team_id == world.team_id
    assert {"alice", "bob"} <= set(team.activity)
    # The same reads through the ordinary unit of work (as SQLite serves them).
    async with world.app.deps.uow(one_statement=True) as uow:
        assert await uow.sessions.get(session_id) == view.session
        found, grants = await uow.vaults.with_open_grants(arn, world.recovery.subject)
        assert found is not None
        assert access.grant is not None
        assert [g.grant_id for g in await grants()] == [access.grant.grant_id]
        read = await uow.teams.view(world.team_id, world.owner)
        assert read.team == team.team
        assert read.share is not None
        assert await read.extras() == (team.deletion, team.activity)


@pytest.mark.postgres
async def test_the_hot_reads_survive_their_connections_dying(world: World) -> None:
    if not world.url.startswith("postgresql"):
        pytest.skip("PostgreSQL only")
    arn, session_id = await _approved_grant(world)
    before = await _reads(world, arn, session_id)
    for _ in range(3):
        await _kill_connections(world.url)
        assert await _reads(world, arn, session_id) == before


async def test_the_hot_reads_refuse_a_row_the_server_did_not_write(world: World) -> None:
    arn, _ = await _approved_grant(world)
    async with world.app.engine.begin() as conn:  # the attacker's statement
        await conn.execute(
            text("UPDATE restore_access_grants SET status_message = 'forged' WHERE vault_arn = :a"),
            {"a": arn},
        )
    with pytest.raises(FailedPrecondition) as caught:
        await world.app.vaults.check_access(world.service, arn, world.recovery.subject)
    assert caught.value.reason == Reason.RECORD_NOT_AUTHENTIC


async def _kill_connections(database_url: str) -> None:
    """What a restart does to the pool: every other connection to the database is closed."""
    killer = create_engine(database_url, pool_size=1)
    try:
        async with killer.connect() as conn:
            await conn.execute(
                text(
                    "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                    "WHERE datname = :db AND pid <> pg_backend_pid()"
                ).bindparams(db=make_url(database_url).database)
            )
    finally:
        await killer.dispose()
