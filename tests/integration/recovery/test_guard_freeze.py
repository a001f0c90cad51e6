"""A recovery in progress freezes the vault's guard against its owner, on SQLite and PostgreSQL.

While another account's restore access grant on a vault is CREATING or AVAILABLE, the owner's
account (the one that may be compromised) cannot change the team that guards the vault, remove
it, or revoke that grant; once the grant ends it can again. And a change of team approved by the
current team takes effect only if the target is still ACTIVE and shared with the vault's account.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from datetime import timedelta
from typing import Any

import pytest
from integration.recovery.recovery_world import RECOVERY, World
from sqlalchemy import select

from airlock_server.app.sessions import session_subject
from airlock_server.app.vaults import AssociationChange
from airlock_server.domain.errors import FailedPrecondition
from airlock_server.domain.principals import PrincipalKind
from airlock_server.domain.sessions import (
    ExecutionStatus,
    SessionState,
    SessionStatus,
    VoteDecision,
)
from airlock_server.domain.teams import TeamState
from airlock_server.domain.vaults import GrantState
from airlock_server.persistence.models import EventRecord, EventSubjectRecord

pytestmark = pytest.mark.asyncio

UNDER = "VAULT_UNDER_RECOVERY"


async def _events_about(world: World, subject: str) -> list[tuple[str, dict[str, Any]]]:
    q = (
        select(EventRecord.type, EventRecord.details)
        .join(EventSubjectRecord, EventSubjectRecord.seq == EventRecord.seq)
        .where(EventSubjectRecord.subject == subject)
        .order_by(EventRecord.seq)
    )
    async with world.app.engine.connect() as conn:
        return [(r.type, dict(r.details)) for r in await conn.execute(q)]


async def _other_team(world: World) -> str:
    other: str = await world.make_team("others", ("dave", "erin"))
    await world.share(other, world.owner)
    return other


async def _refused(world: World, call: Callable[[], Awaitable[object]]) -> FailedPrecondition:
    """`call` is refused as a recovery in progress, and writes nothing."""
    before = await world.app.snapshot()
    with pytest.raises(FailedPrecondition) as refused:
        await call()
    assert refused.value.reason == UNDER
    assert await world.app.snapshot() == before
    return refused.value


# --- how a recovery ends, and the guard thaws ---


async def _reject(world: World, sid: str, grant_id: str) -> None:
    for name in ("alice", "bob"):
        await world.vote(name, sid, VoteDecision.REJECT)


async def _cancel(world: World, sid: str, grant_id: str) -> None:
    await world.app.sessions.cancel_session(world.recovery, sid, "")


async def _revoke(world: World, sid: str, grant_id: str) -> None:
    for name in ("alice", "bob"):
        await world.vote(name, sid)
    revoking = await world.app.vaults.revoke_restore_access(world.admin, grant_id, "", "")
    for name in ("bob", "carol"):
        await world.vote(name, revoking.session.session.session_id)


ENDINGS = {"rejected": _reject, "cancelled": _cancel, "revoked": _revoke}


@pytest.mark.parametrize("ending", sorted(ENDINGS))
async def test_the_guard_thaws_when_the_recovery_ends(world: World, ending: str) -> None:
    arn = await world.vault()
    other = await _other_team(world)
    asked = await world.app.vaults.request_restore_access(world.recovery, arn, "", "", "")
    sid, grant_id = asked.session.session.session_id, asked.grant.grant_id
    await _refused(world, lambda: world.app.vaults.associate(world.owner, arn, other, "", ""))

    await ENDINGS[ending](world, sid, grant_id)
    grants = await world.app.vaults.list_restore_access(world.owner, arn, None, 0, "")
    assert [g.state for g in grants.items] == [
        GrantState.REVOKED if ending == "revoked" else GrantState.FAILED
    ]
    moved = await world.app.vaults.associate(world.owner, arn, other, "", "")
    assert moved.session is not None
    assert moved.vault.pending_association is not None
    assert moved.vault.pending_association.team_id == other
    # The current team still decides: approved, the change takes effect.
    for name in ("alice", "carol"):
        await world.vote(name, moved.session.session.session_id)
    assert (await world.app.vaults.get_vault(world.owner, arn)).team_id == other


async def test_an_expired_request_freezes_nothing(world: World) -> None:
    """A request whose session ran out is no recovery, even before anyone wrote down its
    expiry: the owner's call writes it down (grant FAILED, session EXPIRED) and goes on."""
    arn = await world.vault()
    asked = await world.app.vaults.request_restore_access(world.recovery, arn, "", "", "")
    sid, grant_id = asked.session.session.session_id, asked.grant.grant_id
    world.clock.advance(timedelta(hours=23))
    await _refused(world, lambda: world.app.vaults.disassociate(world.owner, arn, "", ""))
    world.clock.advance(timedelta(hours=2))
    assert await world.app.count("restore_access_grants", "state = 'CREATING'") == 1

    gone = await world.app.vaults.disassociate(world.owner, arn, "", "")
    assert gone.session is not None
    expired = await world.app.sessions.get_session(world.admin, sid)
    assert expired.session.state is SessionState.FAILED
    assert expired.session.status is SessionStatus.EXPIRED
    grants = await world.app.vaults.list_restore_access(world.owner, arn, None, 0, "")
    assert [(g.grant_id, g.state) for g in grants.items] == [(grant_id, GrantState.FAILED)]
    types = [t for t, _ in await _events_about(world, f"grant:{grant_id}")]
    assert types == ["grant.requested", "grant.failed"]
    assert [t for t, _ in await _events_about(world, session_subject(sid))][-1] == (
        "session.expired"
    )


async def test_the_owner_revokes_its_own_grant_not_rs(world: World) -> None:
    arn = await world.vault()
    theirs = await world.app.vaults.request_restore_access(world.recovery, arn, "", "", "")
    mine = await world.app.vaults.request_restore_access(world.owner, arn, "", "", "")
    for asked in (theirs, mine):
        for name in ("alice", "bob"):
            await world.vote(name, asked.session.session.session_id)

    refused = await _refused(
        world,
        lambda: world.app.vaults.revoke_restore_access(world.owner, theirs.grant.grant_id, "", ""),
    )
    assert refused.metadata == {
        "vaultArn": arn,
        "grantId": theirs.grant.grant_id,
        "state": "AVAILABLE",
    }
    # The owner's own grant is no recovery against it: revoking it opens a session.
    own = await world.app.vaults.revoke_restore_access(world.owner, mine.grant.grant_id, "", "")
    assert own.grant.revoke_session_id == own.session.session.session_id
    # The admin may ask the team to revoke R's grant; approved, R's access ends.
    by_admin = await world.app.vaults.revoke_restore_access(
        world.admin, theirs.grant.grant_id, "", ""
    )
    assert by_admin.session.session.requester == world.admin
    for name in ("alice", "carol"):
        await world.vote(name, by_admin.session.session.session_id)
    assert not (await world.app.vaults.check_access(world.service, arn, RECOVERY)).allowed
    # Only the owner's own grant is left open (revocation pending): the guard thaws.
    gone = await world.app.vaults.disassociate(world.owner, arn, "", "")
    assert gone.session is not None


async def test_a_vault_left_without_a_team_takes_none_during_a_recovery(world: World) -> None:
    """A removal asked before R's request and approved by the team leaves the vault without a
    guard: while R's request is open, the owner cannot pick the next team without a vote."""
    arn = await world.vault()
    gone = await world.app.vaults.disassociate(world.owner, arn, "", "")
    assert gone.session is not None
    asked = await world.app.vaults.request_restore_access(world.recovery, arn, "", "", "")
    for name in ("alice", "bob"):
        await world.vote(name, gone.session.session.session_id)
    assert (await world.app.vaults.get_vault(world.owner, arn)).team_id is None
    assert await world.app.count("restore_access_grants", "state = 'CREATING'") == 1

    # Refused, and nothing written (_refused compares the database before and after).
    refused = await _refused(
        world, lambda: world.app.vaults.associate(world.owner, arn, world.team_id, "", "")
    )
    assert refused.metadata["grantId"] == asked.grant.grant_id
    # R's request ends (its requester cancels it): the owner may choose a team again.
    await world.app.sessions.cancel_session(world.recovery, asked.session.session.session_id, "")
    again = await world.app.vaults.associate(world.owner, arn, world.team_id, "", "")
    assert again.session is None
    assert again.vault.team_id == world.team_id


# --- the change of team, re-checked when the current team approves it ---


async def _unshare(world: World, team_id: str) -> None:
    await world.app.teams.unshare(
        world.admin, team_id, PrincipalKind.ACCOUNT, world.owner.subject, ""
    )


async def _start_deleting(world: World, team_id: str) -> None:
    _, deletion = await world.app.teams.start_team_deletion(world.admin, team_id, "", 3, "")
    for name in ("dave", "erin"):
        await world.vote(name, deletion.session.session_id)
    assert (await world.app.teams.get_team(world.admin, team_id)).state is TeamState.DELETING


MEANWHILE = {
    "unshared": (_unshare, "is no longer shared with account"),
    "not-active": (_start_deleting, "is no longer ACTIVE"),
}


@pytest.mark.parametrize("meanwhile", sorted(MEANWHILE))
async def test_an_approved_change_rechecks_its_target(world: World, meanwhile: str) -> None:
    arn = await world.vault()
    other = await _other_team(world)
    change: AssociationChange = await world.app.vaults.associate(world.owner, arn, other, "", "")
    assert change.session is not None
    sid = change.session.session.session_id
    happen, message = MEANWHILE[meanwhile]
    await happen(world, other)

    await world.vote("alice", sid)
    done = await world.vote("bob", sid)
    # The team approved, but the change cannot take effect: the vault keeps its team.
    assert done.session.state is SessionState.APPROVED
    assert done.session.execution_status is ExecutionStatus.FAILED
    assert message in done.session.execution_message
    assert "the vault kept its team" in done.session.execution_message
    vault = await world.app.vaults.get_vault(world.owner, arn)
    assert vault.team_id == world.team_id
    assert vault.pending_association is None
    about = await _events_about(world, session_subject(sid))
    types = [t for t, _ in about]
    assert types[-3:] == [
        "session.approved",
        "vault.association_change_dropped",
        "session.execution_failed",
    ]
    dropped = dict(about)["vault.association_change_dropped"]
    assert dropped["team_id"] == world.team_id
    assert message in dict(about)["session.execution_failed"]["message"]
