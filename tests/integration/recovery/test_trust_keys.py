"""Issue 9, played as the attacker would, on SQLite and PostgreSQL: an admin token taking over an
approver's key, a disabled approver still counting, blind votes on team drafts, and generic
sessions dressed as Airlock's own (docs/threat-model.md keeps one row per attack)."""

from __future__ import annotations

import json
from dataclasses import replace
from datetime import timedelta
from typing import Any

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from integration.recovery.recovery_world import World, raw_key
from sqlalchemy import text

from airlock_server.app.teams import TeamUpdate
from airlock_server.domain.errors import (
    FailedPrecondition,
    InvalidArgument,
    Unauthenticated,
)
from airlock_server.domain.principals import PrincipalKind
from airlock_server.domain.sessions import (
    KeyChange,
    SessionState,
    SessionStatus,
    VoteDecision,
    vote_digest,
)
from airlock_server.domain.team_changes import NewKey, key_change_message
from airlock_server.domain.teams import InvitationState, TeamSpec, TeamStatus, key_proof_message

pytestmark = pytest.mark.asyncio

DAY = timedelta(hours=24)


async def _events_of(world: World, type_: str) -> list[tuple[list[str], dict[str, object]]]:
    async with world.app.engine.connect() as conn:
        rows = await conn.execute(
            text("SELECT subjects, details FROM events WHERE type = :t ORDER BY seq"), {"t": type_}
        )
        # JSON columns come back decoded on PostgreSQL, as text on SQLite.
        return [
            (
                json.loads(subjects) if isinstance(subjects, str) else subjects,
                json.loads(details) if isinstance(details, str) else details,
            )
            for subjects, details in rows
        ]


# --- 2. a stolen admin token takes over an approver's key --------------------------------------


async def test_an_admin_cannot_take_over_an_approvers_key(world: World) -> None:
    """The admin issues itself a credential of alice, re-enrolls alice, the others approve, and
    the admin answers alice's invitation first with a key of its own: refused (KEY_NOT_APPROVED),
    and the real alice then enrolls the key the team approved."""
    admin_key = Ed25519PrivateKey.generate()
    alice_new = Ed25519PrivateKey.generate()
    issued = await world.app.identities.issue_credential(
        world.admin, PrincipalKind.APPROVER, "alice", "the admin's own", None, ""
    )
    as_alice = (await world.app.identities.authenticate(issued.token)).principal
    # Every credential issued for an approver is an event naming it.
    assert any(
        "approver:alice" in subjects and d["credential_id"] == issued.credential.credential_id
        for subjects, d in await _events_of(world, "credential.issued")
    )

    # Re-enrolling without naming the new key is refused: the team must see the key it approves.
    with pytest.raises(InvalidArgument) as keyless:
        await world.app.teams.update_team(
            world.admin, world.team_id, "", TeamUpdate(reenroll_approver_ids=("alice",)), ""
        )
    assert keyless.value.reason == "NEW_KEY_REQUIRED"

    # Alice hands her new public key over, vouched for by her key in force.
    vouch = world.keys["alice"].sign(key_change_message(world.team_id, "alice", raw_key(alice_new)))
    team, upd = await world.app.teams.update_team(
        world.admin,
        world.team_id,
        "",
        TeamUpdate(
            reenroll_approver_ids=("alice",),
            new_keys=(NewKey("alice", raw_key(alice_new), vouch),),
        ),
        "",
    )
    sid = upd.session.session_id
    # What the approvers see before they vote: the draft names alice's new key.
    seen = (await world.app.sessions.get_session(world.approver("bob"), sid)).session
    assert seen.draft is not None
    drafted = {m.approver_id: m for m in seen.draft.members}
    assert drafted["alice"].change is KeyChange.NEW_KEY
    assert drafted["alice"].public_key == raw_key(alice_new)
    assert drafted["alice"].signed_by_current_key
    assert drafted["bob"].change is KeyChange.KEEPS_KEY
    await world.vote("bob", sid)
    await world.vote("carol", sid)
    assert (await world.app.teams.get_team(world.admin, world.team_id)).status is (
        TeamStatus.UPDATE_PENDING_ACTIVATION
    )
    assert team.pending is not None
    member = team.pending.member("alice")
    assert member is not None
    invitation_id = member.invitation_id

    # The attack: the admin, as alice, accepts first with its own key (and a valid proof of it).
    with pytest.raises(InvalidArgument) as taken:
        await world.app.teams.respond_to_invitation(
            as_alice,
            invitation_id,
            True,
            raw_key(admin_key),
            admin_key.sign(key_proof_message(invitation_id)),
            "",
        )
    assert taken.value.reason == "KEY_NOT_APPROVED"
    # The invitation stays open for the real alice, who enrolls the approved key.
    await world.app.teams.respond_to_invitation(
        world.approver("alice"),
        invitation_id,
        True,
        raw_key(alice_new),
        alice_new.sign(key_proof_message(invitation_id)),
        "",
    )
    after = await world.app.teams.get_team(world.admin, world.team_id)
    assert after.status is TeamStatus.ACTIVE
    alice = after.current.member("alice")
    assert alice is not None
    assert alice.public_key == raw_key(alice_new)
    # The key change is an event naming the approver, the new key and the one it replaced.
    accepted = [
        d for s, d in await _events_of(world, "invitation.accepted") if "approver:alice" in s
    ]
    assert accepted[-1]["public_key"] == raw_key(alice_new).hex()
    assert accepted[-1]["replaced_key"] == raw_key(world.keys["alice"]).hex()
    requested = await _events_of(world, "team.update_requested")
    assert requested[-1][1]["new_keys"] == [
        {
            "approver_id": "alice",
            "public_key": raw_key(alice_new).hex(),
            "signed_by_current_key": True,
        }
    ]


async def test_a_forged_vouching_signature_is_refused(world: World) -> None:
    """The admin cannot claim that alice vouched for a key: the signature must verify with her
    key in force."""
    admin_key = Ed25519PrivateKey.generate()
    forged = admin_key.sign(key_change_message(world.team_id, "alice", raw_key(admin_key)))
    with pytest.raises(InvalidArgument) as bad:
        await world.app.teams.update_team(
            world.admin,
            world.team_id,
            "",
            TeamUpdate(
                reenroll_approver_ids=("alice",),
                new_keys=(NewKey("alice", raw_key(admin_key), forged),),
            ),
            "",
        )
    assert bad.value.reason == "BAD_SIGNATURE"
    assert bad.value.violations[0].field == "new_keys[0].current_key_signature"


# --- 4. approvers no longer vote blind on team changes ------------------------------------------


async def test_a_vote_on_a_team_update_signs_the_draft_it_was_shown(world: World) -> None:
    """An approver reads the draft (members, M, TTLs, keys) in the session; a signature over any
    other draft, such as one that only changes the description, is refused."""
    _, upd = await world.app.teams.update_team(
        world.admin,
        world.team_id,
        "",
        TeamUpdate(approver_ids=("alice", "bob", "dave"), min_approvals=3),
        "",
    )
    sid = upd.session.session_id
    shown = (await world.app.sessions.get_session(world.approver("alice"), sid)).session
    assert shown.draft is not None
    assert shown.draft.min_approvals == 3
    assert [(m.approver_id, m.change) for m in shown.draft.members] == [
        ("alice", KeyChange.KEEPS_KEY),
        ("bob", KeyChange.KEEPS_KEY),
        ("dave", KeyChange.NEW_APPROVER),
    ]
    # A client shown a harmless draft signs that one: its signature does not count here.
    harmless = replace(shown, draft=replace(shown.draft, members=shown.draft.members[:2]))
    blind = world.keys["alice"].sign(vote_digest(harmless, VoteDecision.APPROVE))
    with pytest.raises(InvalidArgument) as refused:
        await world.app.sessions.vote(
            world.approver("alice"), sid, VoteDecision.APPROVE, "", blind, ""
        )
    assert refused.value.reason == "BAD_SIGNATURE"
    still = (await world.app.sessions.get_session(world.admin, sid)).session
    assert still.votes == ()
    # Signed over what was shown, it counts.
    voted = await world.vote("alice", sid)
    assert voted.session.approval_count == 1


# --- 3. disabling an approver takes effect at once ----------------------------------------------


async def test_a_disabled_approver_stops_at_once(world: World) -> None:
    """Credentials stop working, the vote it cast stops counting, it can neither vote nor answer
    an invitation, a session whose M became unreachable fails at once saying why, and team
    health counts it out."""
    cred = await world.app.identities.issue_credential(
        world.admin, PrincipalKind.APPROVER, "alice", "alice's laptop", None, ""
    )
    # An invitation alice has not answered yet.
    other = await world.app.teams.create_team(
        world.admin,
        TeamSpec("others", "", ("alice", "dave"), 2, DAY, DAY),
        "",
    )
    arn = await world.vault()
    counted = (
        await world.app.vaults.request_restore_access(world.recovery, arn, "", "", "")
    ).session.session.session_id
    doomed = (
        await world.app.sessions.start_session(
            world.service, world.team_id, "deploy", "r", {}, "", ""
        )
    ).session.session_id
    await world.vote("alice", counted)
    await world.vote("bob", doomed, VoteDecision.REJECT)

    await world.app.identities.disable_approver(world.admin, "alice", "")

    with pytest.raises(Unauthenticated):
        await world.app.identities.authenticate(cred.token)
    # Its APPROVE no longer counts toward M, and it votes no more.
    s = (await world.app.sessions.get_session(world.admin, counted)).session
    assert s.state is SessionState.PENDING
    assert s.excluded_approver_ids == ("alice",)
    assert s.approval_count == 0
    with pytest.raises(FailedPrecondition) as no_vote:
        await world.vote("alice", doomed)
    assert no_vote.value.reason == "APPROVER_DISABLED"
    # bob rejected, alice is out: 2 approvers remain for M = 2, so the session failed now.
    failed = (await world.app.sessions.get_session(world.admin, doomed)).session
    assert failed.state is SessionState.FAILED
    assert failed.status is SessionStatus.REJECTED
    assert "alice was disabled" in failed.status_message
    # Two others still make M on the first session.
    await world.vote("bob", counted)
    done = await world.vote("carol", counted)
    assert done.session.state is SessionState.APPROVED
    # It answers no invitation.
    invitation = other.current.member("alice")
    assert invitation is not None
    with pytest.raises(FailedPrecondition) as no_answer:
        await world.app.teams.respond_to_invitation(
            world.approver("alice"),
            invitation.invitation_id,
            True,
            raw_key(world.keys["alice"]),
            world.keys["alice"].sign(key_proof_message(invitation.invitation_id)),
            "",
        )
    assert no_answer.value.reason == "APPROVER_DISABLED"
    # Health counts it out.
    health = await world.app.teams.get_team_health(world.admin, world.team_id, None)
    alice = next(a for a in health.approvers if a.approver_id == "alice")
    assert not alice.identity_enabled
    assert not alice.active
    # A new session leaves it out of the frozen set; with one more disabled, M is unreachable.
    fresh = (
        await world.app.sessions.start_session(
            world.service, world.team_id, "deploy", "r2", {}, "", ""
        )
    ).session
    assert fresh.approver_ids == ("bob", "carol")
    await world.app.identities.disable_approver(world.admin, "carol", "")
    with pytest.raises(FailedPrecondition) as unreachable:
        await world.app.sessions.start_session(
            world.service, world.team_id, "deploy", "r3", {}, "", ""
        )
    assert unreachable.value.reason == "QUORUM_UNREACHABLE"
    # The disabling names what it did.
    disabled = await _events_of(world, "approver.disabled")
    subjects, details = disabled[0]
    assert f"credential:{cred.credential.credential_id}" in subjects
    assert details["revoked_credential_ids"] == [cred.credential.credential_id]
    excluded = details["excluded_from_session_ids"]
    assert isinstance(excluded, list)
    assert sorted(excluded) == sorted([counted, doomed])
    assert invitation.invitation_state is InvitationState.PENDING


# --- 6. reserved actions ------------------------------------------------------------------------


@pytest.mark.parametrize(
    "action",
    [
        "backup:createrestoreaccessbackupvault",
        "BACKUP:CreateRestoreAccessBackupVault",
        "backup:AnythingElse",
        "MPA:UpdateApprovalTeam",
        "mpa:whatever",
    ],
)
async def test_a_generic_session_cannot_pass_for_airlocks_own(world: World, action: str) -> None:
    arn = "arn:aws:backup:eu-west-1:111111111111:backup-vault:prod-lag"
    with pytest.raises(InvalidArgument) as refused:
        await world.app.sessions.start_session(
            world.service, world.team_id, action, arn, {}, "", ""
        )
    assert refused.value.reason == "RESERVED_ACTION"
    assert refused.value.violations[0].field == "action"
    assert await world.app.count("sessions", "kind = 'GENERIC'") == 0


# --- 8. proofs: pinned keys, relabelled kinds, enrollments ------------------------------------


async def _proof(world: World) -> dict[str, Any]:
    view = await world.app.sessions.start_session(
        world.service, world.team_id, "deploy", "svc/prod", {}, "", ""
    )
    sid = view.session.session_id
    await world.vote("alice", sid)
    await world.vote("bob", sid)
    proof: dict[str, Any] = json.loads(
        await world.app.sessions.export_approval_proof(world.admin, sid)
    )
    return proof


async def test_a_proof_needs_pinned_approver_keys(world: World) -> None:
    from airlock_client.proof import verify_proof

    proof = await _proof(world)
    assert world.log_key is not None
    bare = verify_proof(json.dumps(proof), world.log_key.public_key)
    assert bare.verdict == "UNPINNED"
    assert not bare.valid
    pinned = verify_proof(json.dumps(proof), world.log_key.public_key, approver_keys=world.pins())
    assert pinned.verdict == "VALID", pinned.problems


async def test_a_generic_proof_relabelled_restore_access_is_not_valid(world: World) -> None:
    from airlock_client.proof import verify_proof

    proof = await _proof(world)
    proof["session"]["kind"] = "RESTORE_ACCESS"
    assert world.log_key is not None
    verdict = verify_proof(json.dumps(proof), world.log_key.public_key, approver_keys=world.pins())
    assert verdict.verdict == "NOT VALID"
    assert "session.created records kind 'GENERIC', the proof says 'RESTORE_ACCESS'" in (
        verdict.problems
    )


async def test_an_enrollment_after_the_session_or_a_second_acceptance_is_not_valid(
    world: World,
) -> None:
    """What a forger who rewrote the log would have to show: alice's key enrolled after the
    session opened, or by a second acceptance of one invitation. The verifier checks the order
    and the invitation on the events themselves."""
    from airlock_client.proof import _check_enrollments

    proof = await _proof(world)
    events = {e["seq"]: e for e in proof["events"]}
    created = next(s for s, e in events.items() if e["type"] == "session.created")
    accepted = {
        e["details"]["invitation_id"]: s
        for s, e in events.items()
        if e["type"] == "invitation.accepted"
    }
    members = {a["approver_id"]: bytes.fromhex(a["public_key"]) for a in proof["team"]["approvers"]}
    alice_seq = next(
        s
        for s, e in events.items()
        if e["type"] == "invitation.accepted" and "approver:alice" in e["subjects"]
    )
    problems: list[str] = []
    _check_enrollments(None, events, proof["session"], members, ["alice"], problems)
    assert problems == []
    # The enrollment moved after session.created.
    late = dict(events)
    late[created + 1000] = {**events[alice_seq], "seq": created + 1000}
    del late[alice_seq]
    _check_enrollments(None, late, proof["session"], members, ["alice"], problems)
    assert any("is not before the session" in p for p in problems)
    # Alice's invitation accepted before, by another acceptance event: hers is not the first.
    problems.clear()
    alice_invitation = events[alice_seq]["details"]["invitation_id"]
    bob_seq = next(s for i, s in accepted.items() if "approver:bob" in events[s]["subjects"])
    twice = dict(events)
    twice[alice_seq - 1] = {
        **events[bob_seq],
        "seq": alice_seq - 1,
        "details": {**events[bob_seq]["details"], "invitation_id": alice_invitation},
    }
    _check_enrollments(None, twice, proof["session"], members, ["alice"], problems)
    assert any("not the first acceptance of invitation" in p for p in problems)
