"""Replacing an approver's key through UpdateApprovalTeam (`reenroll_approver_ids`), end to end
on SQLite and PostgreSQL: the team approves, the approver enrolls a NEW key with a proof, and
from the new version on only the new key signs votes."""

from __future__ import annotations

import json

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from integration.recovery.recovery_world import World, raw_key
from sqlalchemy import text

from airlock_client.proof import verify_proof
from airlock_server.app.teams import TeamUpdate
from airlock_server.domain.errors import FailedPrecondition, InvalidArgument
from airlock_server.domain.sessions import SessionState, SessionStatus, VoteDecision
from airlock_server.domain.team_changes import NewKey
from airlock_server.domain.teams import InvitationState, TeamStatus, key_proof_message

pytestmark = pytest.mark.asyncio


async def _accept(
    world: World,
    invitation_id: str,
    key: Ed25519PrivateKey,
    signer: Ed25519PrivateKey | None = None,
) -> None:
    await world.app.teams.respond_to_invitation(
        world.approver("alice"),
        invitation_id,
        True,
        raw_key(key),
        (signer or key).sign(key_proof_message(invitation_id)),
        "",
    )


async def _events(world: World) -> int:
    async with world.app.engine.connect() as conn:
        return int(await conn.scalar(text("SELECT count(*) FROM events")) or 0)


async def test_a_reenrolled_approver_replaces_its_key(world: World) -> None:
    old_key = world.keys["alice"]
    new_key = Ed25519PrivateKey.generate()
    arn = await world.vault()
    before_sid = (
        await world.app.vaults.request_restore_access(world.recovery, arn, "", "", "")
    ).session.session.session_id

    team = await world.app.teams.get_team(world.admin, world.team_id)
    team, upd = await world.app.teams.update_team(
        world.admin,
        world.team_id,
        team.etag,
        TeamUpdate(reenroll_approver_ids=("alice",), new_keys=(NewKey("alice", raw_key(new_key)),)),
        "",
    )
    assert team.pending is not None
    draft_alice = team.pending.member("alice")
    assert draft_alice is not None
    assert draft_alice.invitation_state is InvitationState.PENDING
    assert draft_alice.public_key is None
    assert draft_alice.approved_key == raw_key(new_key)
    # Carried-over approvers keep their keys in the draft.
    bob = team.pending.member("bob")
    assert bob is not None
    assert bob.public_key == raw_key(world.keys["bob"])
    # The invitation opens only once the team approved the update.
    with pytest.raises(FailedPrecondition) as closed:
        await _accept(world, draft_alice.invitation_id, new_key)
    assert closed.value.reason == "INVITATION_CLOSED"

    # The version in force votes on the update: alice still signs with her old key there.
    await world.vote("alice", upd.session.session_id)
    await world.vote("bob", upd.session.session_id)
    waiting = await world.app.teams.get_team(world.admin, world.team_id)
    assert waiting.status is TeamStatus.UPDATE_PENDING_ACTIVATION
    invitations = await world.app.teams.list_invitations(
        world.approver("alice"), InvitationState.PENDING, world.team_id, 0, ""
    )
    assert [i.version.version for i in invitations.items] == [2]
    invitation_id = invitations.items[0].member.invitation_id
    assert invitation_id == draft_alice.invitation_id

    # Refused, and nothing changes: the old key again, another member's key (neither is the key
    # the team approved), a new key without a proof made with it.
    events_before, revision = await _events(world), waiting.revision
    with pytest.raises(InvalidArgument) as same:
        await _accept(world, invitation_id, old_key)
    assert same.value.reason == "KEY_NOT_APPROVED"
    assert same.value.violations[0].field == "public_key"
    with pytest.raises(InvalidArgument) as taken:
        await _accept(world, invitation_id, world.keys["bob"])
    assert taken.value.reason == "KEY_NOT_APPROVED"
    with pytest.raises(InvalidArgument) as unproved:
        await _accept(world, invitation_id, new_key, signer=old_key)
    assert unproved.value.reason == "BAD_SIGNATURE"
    unchanged = await world.app.teams.get_team(world.admin, world.team_id)
    assert unchanged.revision == revision
    assert unchanged.status is TeamStatus.UPDATE_PENDING_ACTIVATION
    assert await _events(world) == events_before

    # The new key with its proof: version 2 takes force.
    await _accept(world, invitation_id, new_key)
    after = await world.app.teams.get_team(world.admin, world.team_id)
    assert after.status is TeamStatus.ACTIVE
    assert after.current.version == 2
    alice = after.current.member("alice")
    assert alice is not None
    assert alice.public_key == raw_key(new_key)

    # The session opened before keeps its frozen version 1 (and its key), and is cancelled.
    before = (await world.app.sessions.get_session(world.admin, before_sid)).session
    assert before.team_version == 1
    assert before.state is SessionState.CANCELLED
    assert before.status is SessionStatus.CONFIGURATION_CHANGED
    async with world.app.deps.uow() as uow:
        assert await uow.teams.enrolled_key(world.team_id, 1, "alice") == raw_key(old_key)
        assert await uow.teams.enrolled_key(world.team_id, 2, "alice") == raw_key(new_key)

    # A new session freezes version 2: the old key's signature is refused and changes nothing.
    fresh = await world.app.vaults.request_restore_access(world.recovery, arn, "", "", "")
    sid = fresh.session.session.session_id
    assert fresh.session.session.team_version == 2
    with pytest.raises(InvalidArgument) as bad:
        await world.app.sessions.vote(
            world.approver("alice"),
            sid,
            VoteDecision.APPROVE,
            "",
            world.sign("alice", fresh.session.session, VoteDecision.APPROVE),
            "",
        )
    assert bad.value.reason == "BAD_SIGNATURE"
    pending = (await world.app.sessions.get_session(world.admin, sid)).session
    assert pending.state is SessionState.PENDING
    assert pending.votes == ()

    # The new key signs.
    world.keys["alice"] = new_key
    await world.vote("alice", sid)
    done = await world.vote("bob", sid)
    assert done.session.state is SessionState.APPROVED

    # Its approval proof names the new key and the enrollment event that recorded it.
    proof = json.loads(await world.app.sessions.export_approval_proof(world.admin, sid))
    snapshot = {a["approver_id"]: a["public_key"] for a in proof["team"]["approvers"]}
    assert snapshot["alice"] == raw_key(new_key).hex()
    assert world.log_key is not None
    verdict = verify_proof(
        json.dumps(proof), world.log_key.public_key, approver_keys=world.pins("alice", "bob")
    )
    assert verdict.valid, verdict.problems
