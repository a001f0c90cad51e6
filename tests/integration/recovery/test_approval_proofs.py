"""Approval proofs: exported from a real flow, verified offline, and every forgery caught.

One real recovery flow per backend gives a proof; each test mutates a copy the way a hostile
server or database administrator would and checks the verifier says no, for the right reason.
The forgeries are checked without a log key: what is wrong is reported whether or not the
verifier was given one (test_anchored_proofs.py: what the log key adds).
"""

from __future__ import annotations

import copy
import json
from typing import Any

import pytest
from integration.recovery.recovery_world import World, rehash

from airlock_client.proof import PROOF_FORMAT, verify_proof
from airlock_server.domain.errors import FailedPrecondition, NotFound, PermissionDenied
from airlock_server.domain.proofs import PROOF_FORMAT as SERVER_PROOF_FORMAT
from airlock_server.domain.sessions import VoteDecision

pytestmark = pytest.mark.asyncio


async def _approved(world: World, *, reject_first: bool = False) -> tuple[str, dict[str, Any]]:
    arn = await world.vault()
    asked = await world.app.vaults.request_restore_access(world.recovery, arn, "", "help", "")
    sid = asked.session.session.session_id
    if reject_first:
        await world.vote("carol", sid, VoteDecision.REJECT)
    await world.vote("alice", sid)
    await world.vote("bob", sid)
    raw = await world.app.sessions.export_approval_proof(world.recovery, sid)
    return sid, json.loads(raw)


def _problems(proof: dict[str, Any]) -> str:
    verdict = verify_proof(json.dumps(proof))
    assert verdict.problems, "a forged proof was not rejected"
    assert not verdict.valid
    return "\n".join(verdict.problems)


async def test_a_real_proof_verifies(world: World) -> None:
    sid, proof = await _approved(world, reject_first=True)
    assert proof["format"] == PROOF_FORMAT == SERVER_PROOF_FORMAT
    assert proof["session"]["session_id"] == sid
    assert proof["session"]["requester"] == "account:222222222222"
    assert proof["team"]["min_approvals"] == 2
    assert [a["approver_id"] for a in proof["team"]["approvers"]] == ["alice", "bob", "carol"]
    assert [v["decision"] for v in proof["votes"]] == ["REJECT", "APPROVE", "APPROVE"]
    types = [e["type"] for e in proof["events"]]
    assert types.count("invitation.accepted") == 3
    assert {"session.created", "vote.cast", "session.approved"} <= set(types)
    assert world.log_key is not None
    verdict = verify_proof(json.dumps(proof), world.log_key.public_key, approver_keys=world.pins())
    assert verdict.valid, verdict.problems
    assert verdict.anchored
    assert verdict.pinned
    # The same proof with no approver keys pinned: nothing wrong, anchored, but UNPINNED.
    unpinned_keys = verify_proof(json.dumps(proof), world.log_key.public_key)
    assert unpinned_keys.problems == []
    assert unpinned_keys.unpinned
    assert not unpinned_keys.valid
    assert unpinned_keys.verdict == "UNPINNED"
    assert verdict.checkpoint_key == world.log_key.public_key
    assert "2 of 3 approvers (M = 2)" in verdict.notes[0]

    # The same proof, the verifier given no log key: nothing wrong, but not VALID either.
    unpinned = verify_proof(json.dumps(proof))
    assert unpinned.problems == []
    assert not unpinned.valid
    assert not unpinned.anchored
    assert unpinned.unanchored
    assert unpinned.checkpoint_key == world.log_key.public_key
    assert any(world.log_key.public_key.hex() in n for n in unpinned.notes)


async def test_a_server_without_a_log_key_exports_no_proof(world: World) -> None:
    """An unanchored proof could not be told from a forgery, so none is exported; the caller's
    right to the session and its state are checked first."""
    sid, _ = await _approved(world)
    keyless = world.another_wiring(keyless=True)
    with pytest.raises(FailedPrecondition) as err:
        await keyless.sessions.export_approval_proof(world.recovery, sid)
    assert err.value.reason == "LOG_KEY_MISSING"
    assert "no log key" in err.value.message
    assert "approval proofs" in err.value.message
    with pytest.raises(PermissionDenied):
        await keyless.sessions.export_approval_proof(world.stranger, sid)
    with pytest.raises(NotFound):
        await keyless.sessions.export_approval_proof(world.admin, "ses-nope")
    arn = await world.vault("pending")
    asked = await world.app.vaults.request_restore_access(world.recovery, arn, "", "", "")
    with pytest.raises(FailedPrecondition) as pending:
        await keyless.sessions.export_approval_proof(
            world.recovery, asked.session.session.session_id
        )
    assert pending.value.reason == "SESSION_NOT_APPROVED"


async def test_who_may_export(world: World) -> None:
    sid, _ = await _approved(world)
    for caller in (
        world.admin,
        world.auditor,
        world.recovery,
        world.owner,
        world.approver("carol"),
    ):
        assert await world.app.sessions.export_approval_proof(caller, sid)
    for caller in (world.stranger, world.service, world.approver("dave")):
        with pytest.raises(PermissionDenied):
            await world.app.sessions.export_approval_proof(caller, sid)


async def test_a_pending_session_has_no_proof(world: World) -> None:
    arn = await world.vault()
    asked = await world.app.vaults.request_restore_access(world.recovery, arn, "", "", "")
    with pytest.raises(FailedPrecondition) as err:
        await world.app.sessions.export_approval_proof(
            world.recovery, asked.session.session.session_id
        )
    assert err.value.reason == "SESSION_NOT_APPROVED"


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("protected_resource", "arn:aws:backup:us-east-1:111111111111:backup-vault:other"),
        ("requester", "account:333333333333"),
        ("expire_time", "2099-01-01T00:00:00.000000Z"),
    ],
)
async def test_a_changed_request_is_caught(world: World, field: str, value: str) -> None:
    _, proof = await _approved(world)
    proof["session"][field] = value
    problems = _problems(proof)
    assert "signature of alice does not verify" in problems
    assert "only 0 distinct approvers" in problems


async def test_a_duplicated_signature_is_caught(world: World) -> None:
    _, proof = await _approved(world)
    alice = next(v for v in proof["votes"] if v["approver_id"] == "alice")
    proof["votes"] = [alice, copy.deepcopy(alice)]
    problems = _problems(proof)
    assert "alice voted more than once" in problems
    assert "only 1 distinct approvers" in problems


async def test_a_vote_by_a_non_member_is_caught(world: World) -> None:
    _, proof = await _approved(world)
    bob = next(v for v in proof["votes"] if v["approver_id"] == "bob")
    bob["approver_id"] = "dave"
    problems = _problems(proof)
    assert "vote of dave, who is not an approver of team" in problems
    assert "only 1 distinct approvers" in problems


async def test_a_removed_vote_is_caught(world: World) -> None:
    _, proof = await _approved(world)
    proof["votes"] = proof["votes"][:1]
    assert "only 1 distinct approvers" in _problems(proof)


async def test_a_lowered_threshold_is_caught(world: World) -> None:
    _, proof = await _approved(world)
    proof["votes"] = proof["votes"][:1]
    proof["team"]["min_approvals"] = 1
    assert "session.created records min_approvals 2, the proof says 1" in _problems(proof)


async def test_a_swapped_key_is_caught(world: World) -> None:
    _, proof = await _approved(world)
    carol_key = proof["team"]["approvers"][2]["public_key"]
    proof["team"]["approvers"][0]["public_key"] = carol_key
    problems = _problems(proof)
    assert "approvers alice and carol share one key" in problems
    assert "signature of alice does not verify" in problems


async def test_a_forged_key_and_signature_are_caught_by_the_enrollment_event(
    world: World,
) -> None:
    """A forger with a key of its own re-signs alice's vote: the snapshot and the votes agree,
    but alice's enrollment event records her real key."""
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

    from airlock_client import keys

    _, proof = await _approved(world)
    forger = Ed25519PrivateKey.generate()
    proof["team"]["approvers"][0]["public_key"] = keys.public_key_bytes(forger).hex()
    from airlock_client.proof import _timestamp_session

    digest = keys.vote_digest(_timestamp_session(proof["session"]), True)
    alice = next(v for v in proof["votes"] if v["approver_id"] == "alice")
    alice["signature"] = forger.sign(digest).hex()
    problems = _problems(proof)
    assert "the key of alice in the team snapshot is not the key its enrollment" in problems


async def test_an_edited_event_is_caught(world: World) -> None:
    _, proof = await _approved(world)
    created = next(e for e in proof["events"] if e["type"] == "session.created")
    created["details"]["protected_resource"] = "arn:elsewhere"
    problems = _problems(proof)
    assert f"event seq {created['seq']} (session.created): its hash does not match" in problems


async def test_an_edited_and_rehashed_event_still_disagrees_with_the_facts(world: World) -> None:
    _, proof = await _approved(world)
    created = next(e for e in proof["events"] if e["type"] == "session.created")
    created["details"]["expire_time"] = "2099-01-01T00:00:00.000000Z"
    rehash(proof["events"])
    assert "session.created records expire_time" in _problems(proof)


async def test_reordered_events_are_caught(world: World) -> None:
    _, proof = await _approved(world)
    events = proof["events"]
    events[-1], events[-2] = events[-2], events[-1]
    assert "events out of order" in _problems(proof)


async def test_a_removed_approval_event_is_caught(world: World) -> None:
    _, proof = await _approved(world)
    proof["events"] = [e for e in proof["events"] if e["type"] != "session.approved"]
    assert "no session.approved event" in _problems(proof)


async def test_a_proof_of_another_format_is_refused(world: World) -> None:
    _, proof = await _approved(world)
    proof["format"] = "airlock.approval-proof.v9+json"
    assert "unknown proof format" in _problems(proof)
