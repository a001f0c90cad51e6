"""Approval proofs anchored in a signed log checkpoint (docs/approval-proofs.md, `checkpoint`).

A server with a log key exports proofs whose checkpoint is the head it signed when it appended
the approval, with the chain of every event from the proof's first event up to it. Each
test mutates a copy the way a forger would and checks the verifier, with the log key pinned,
says no for the right reason. The log key is the trust anchor: a proof made up from scratch
(keys, votes, events, checkpoint) holds together, and only the log key tells it apart.
"""

from __future__ import annotations

import copy
import json
from datetime import UTC, datetime
from typing import Any

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from integration.recovery.recovery_world import World, rehash

from airlock_client import keys
from airlock_client.proof import _timestamp_session, checkpoint_message, verify_proof
from airlock_server.app.audit import LogKey
from airlock_server.domain.events import Checkpoint

pytestmark = pytest.mark.asyncio


async def _anchored(world: World) -> tuple[LogKey, dict[str, Any]]:
    """An APPROVED session, some traffic after it, and its proof from a keyed replica."""
    key = world.log_key
    assert key is not None
    keyed = world.another_wiring()
    arn = await world.vault()
    asked = await world.app.vaults.request_restore_access(world.recovery, arn, "", "help", "")
    sid = asked.session.session.session_id
    await world.vote("alice", sid)
    await world.vote("bob", sid)
    # Log traffic after the session: the chain to the head grows with it.
    await world.vault("later-1")
    await world.vault("later-2")
    raw = await keyed.sessions.export_approval_proof(world.recovery, sid)
    return key, json.loads(raw)


def _problems(proof: dict[str, Any], log_key: bytes) -> str:
    verdict = verify_proof(json.dumps(proof), log_key)
    assert verdict.problems, "a forged proof was not rejected"
    assert not verdict.valid
    return "\n".join(verdict.problems)


def _intermediate(proof: dict[str, Any]) -> int:
    """The index in the chain of an event strictly inside it, not one of the proof's."""
    mine = {e["seq"] for e in proof["events"]}
    chain = proof["checkpoint"]["chain"]
    return next(i for i, e in enumerate(chain[1:-1], 1) if e["seq"] not in mine)


async def test_an_anchored_proof_verifies_under_the_pinned_log_key(world: World) -> None:
    key, proof = await _anchored(world)
    checkpoint = proof["checkpoint"]
    assert checkpoint is not None
    assert checkpoint["public_key"] == key.public_key.hex()
    assert checkpoint["key_id"] == key.key_id
    chain = checkpoint["chain"]
    assert chain[0]["seq"] == proof["events"][0]["seq"]
    assert [e["seq"] for e in chain] == list(range(chain[0]["seq"], checkpoint["seq"] + 1))
    assert (chain[-1]["seq"], chain[-1]["hash"]) == (checkpoint["seq"], checkpoint["hash"])
    # The chain ends with the approval's transaction, signed when it was appended: the
    # traffic after it (two vaults) is not in there, and the time is that event's.
    assert checkpoint["seq"] >= proof["events"][-1]["seq"]
    assert proof["events"][-1]["type"] == "session.approved"
    assert not any("later-" in json.dumps(e) for e in chain)
    assert checkpoint["time"] == chain[-1]["time"]

    verdict = verify_proof(json.dumps(proof), key.public_key, approver_keys=world.pins())
    assert verdict.valid, verdict.problems
    assert verdict.anchored
    assert any(
        f"anchored in the log checkpoint at seq {checkpoint['seq']}" in n for n in verdict.notes
    )
    assert not any("which you did not give" in n for n in verdict.notes)

    # The server's own VerifyLog accepts that checkpoint too: it is a checkpoint of this log.
    keyed = world.wirings[-1]
    assert keyed.audit is not None
    checked = await keyed.audit.verify_log(
        world.auditor,
        0,
        0,
        Checkpoint(
            checkpoint["seq"],
            bytes.fromhex(checkpoint["hash"]),
            datetime.strptime(checkpoint["time"], "%Y-%m-%dT%H:%M:%S.%fZ").replace(tzinfo=UTC),
            bytes.fromhex(checkpoint["signature"]),
            key.public_key,
            key.key_id,
        ),
    )
    assert checked.ok, checked.finding


async def test_without_a_pinned_key_a_genuine_proof_is_unanchored(world: World) -> None:
    key, proof = await _anchored(world)
    verdict = verify_proof(json.dumps(proof))
    assert verdict.problems == []
    assert not verdict.valid
    assert not verdict.anchored
    assert verdict.unanchored
    # The key it is signed with, for a person to compare with the published log key.
    assert verdict.checkpoint_key == key.public_key
    assert any(
        f"signed by log key {key.key_id} (public key {key.public_key.hex()}), which you did "
        "not give" in n
        for n in verdict.notes
    )


def _forge(proof: dict[str, Any]) -> tuple[dict[str, Any], LogKey, dict[str, Ed25519PrivateKey]]:
    """A proof made up from scratch by someone with no approver's private key and no log key:
    approver keys, votes and enrollment events of their own, a log of their own (renumbered,
    rehashed, relinked) and a checkpoint signed with a log key of their own."""
    forged = copy.deepcopy(proof)
    made_up = {a["approver_id"]: Ed25519PrivateKey.generate() for a in forged["team"]["approvers"]}
    for a in forged["team"]["approvers"]:
        a["public_key"] = keys.public_key_bytes(made_up[a["approver_id"]]).hex()
    session = _timestamp_session(forged["session"])
    signatures = {}
    for vote in forged["votes"]:
        digest = keys.vote_digest(session, vote["decision"] == "APPROVE")
        vote["signature"] = made_up[vote["approver_id"]].sign(digest).hex()
        signatures[vote["approver_id"]] = vote["signature"]
    for seq, e in enumerate(forged["events"], 1):
        e["seq"] = seq
        if e["type"] == "invitation.accepted":
            (who,) = (
                s.removeprefix("approver:") for s in e["subjects"] if s.startswith("approver:")
            )
            e["details"]["public_key"] = keys.public_key_bytes(made_up[who]).hex()
        if e["type"] == "vote.cast":
            e["details"]["signature"] = signatures[e["details"]["approver_id"]]
    rehash(forged["events"])
    log = LogKey(Ed25519PrivateKey.generate())
    head = forged["events"][-1]
    checkpoint = forged["checkpoint"]
    checkpoint.update(
        seq=head["seq"],
        hash=head["hash"],
        chain=copy.deepcopy(forged["events"]),
        public_key=log.public_key.hex(),
        key_id=log.key_id,
    )
    checkpoint["signature"] = log.sign(
        checkpoint_message(checkpoint["seq"], checkpoint["hash"], checkpoint["time"])
    ).hex()
    return forged, log, made_up


async def test_a_proof_made_up_from_scratch_is_never_valid(world: World) -> None:
    key, proof = await _anchored(world)
    forged, forger_log, _ = _forge(proof)
    assert all(
        a["public_key"] != b["public_key"]
        for a, b in zip(forged["team"]["approvers"], proof["team"]["approvers"], strict=True)
    )

    # It holds together: without a log key the verifier can only say it is unanchored, and
    # name the key, which is not the operator's.
    unpinned = verify_proof(json.dumps(forged))
    assert unpinned.problems == [], unpinned.problems
    assert unpinned.unanchored
    assert not unpinned.valid
    assert unpinned.checkpoint_key == forger_log.public_key != key.public_key

    # Under the true log key: NOT VALID, and why.
    problems = _problems(forged, key.public_key)
    assert f"the checkpoint (seq {forged['checkpoint']['seq']}) is not signed by the log key " in (
        problems
    )
    assert f"it names log key {forger_log.key_id}" in problems


async def test_a_proof_without_its_checkpoint_is_not_valid(world: World) -> None:
    """The old verifier said VALID to a made-up proof with `checkpoint: null`."""
    key, proof = await _anchored(world)
    for candidate in (proof, _forge(proof)[0]):
        candidate["checkpoint"] = None
        for log_key in (None, key.public_key):
            verdict = verify_proof(json.dumps(candidate), log_key)
            assert not verdict.valid
            assert not verdict.anchored
            assert any(p.startswith("no log checkpoint") for p in verdict.problems)
    del proof["checkpoint"]
    assert "no log checkpoint" in _problems(proof, key.public_key)


async def test_pinned_approver_keys_count_alone(world: World) -> None:
    key, proof = await _anchored(world)
    alice, bob, dave = (keys.public_key_bytes(world.keys[n]) for n in ("alice", "bob", "dave"))

    both = verify_proof(json.dumps(proof), key.public_key, approver_keys=[alice, bob])
    assert both.valid, both.problems
    assert "2 of 3 approvers (M = 2)" in both.notes[0]
    assert both.absent_approver_keys == []

    # Only alice's key known: bob's APPROVE does not count, and M = 2 is not reached.
    one = verify_proof(json.dumps(proof), key.public_key, approver_keys=[alice, dave])
    assert not one.valid
    assert any("only 1 distinct approvers" in p and "with a pinned key" in p for p in one.problems)
    assert one.absent_approver_keys == [dave]
    dave_text = keys.public_key_base64(world.keys["dave"])
    assert any(f"key {dave_text} (key id" in n and "not in the team" in n for n in one.notes)
    assert any("the APPROVE of bob is not counted" in n for n in one.notes)

    # A made-up proof under the pins: none of its keys is known, whatever the log key says.
    forged, forger_log, _ = _forge(proof)
    pinned = verify_proof(json.dumps(forged), forger_log.public_key, approver_keys=[alice, bob])
    assert not pinned.valid
    assert sorted(pinned.absent_approver_keys) == sorted([alice, bob])
    assert any("only 0 distinct approvers" in p for p in pinned.problems)


async def test_a_checkpoint_signed_by_another_key_is_caught(world: World) -> None:
    key, proof = await _anchored(world)
    other = LogKey(Ed25519PrivateKey.generate())
    checkpoint = proof["checkpoint"]
    checkpoint["signature"] = other.sign(
        checkpoint_message(checkpoint["seq"], checkpoint["hash"], checkpoint["time"])
    ).hex()
    checkpoint["public_key"] = other.public_key.hex()
    checkpoint["key_id"] = other.key_id
    problems = _problems(proof, key.public_key)
    assert f"the checkpoint (seq {checkpoint['seq']}) is not signed by the log key you gave" in (
        problems
    )
    assert f"it names log key {other.key_id}" in problems
    # Given no log key, the verifier cannot tell, so it does not say VALID: it names the key.
    unpinned = verify_proof(json.dumps(proof))
    assert unpinned.unanchored
    assert unpinned.checkpoint_key == other.public_key


async def test_a_proof_verified_with_the_wrong_log_key_is_refused(world: World) -> None:
    _, proof = await _anchored(world)
    wrong = LogKey(Ed25519PrivateKey.generate())
    assert "is not signed by the log key" in _problems(proof, wrong.public_key)


@pytest.mark.parametrize("field", ["hash", "seq"])
async def test_an_edited_checkpoint_is_caught(world: World, field: str) -> None:
    key, proof = await _anchored(world)
    checkpoint = proof["checkpoint"]
    if field == "seq":
        checkpoint["seq"] -= 1
        checkpoint["chain"].pop()  # a chain that ends where the edited checkpoint says
    else:
        checkpoint["hash"] = "00" * 32
        checkpoint["chain"][-1]["hash"] = checkpoint["hash"]
    assert "is not signed by the log key" in _problems(proof, key.public_key)


async def test_a_removed_intermediate_event_is_caught(world: World) -> None:
    key, proof = await _anchored(world)
    chain = proof["checkpoint"]["chain"]
    removed = chain.pop(_intermediate(proof))
    assert f"checkpoint chain breaks at seq {removed['seq'] + 1}" in _problems(
        proof, key.public_key
    )


async def test_an_edited_intermediate_event_is_caught(world: World) -> None:
    key, proof = await _anchored(world)
    edited = proof["checkpoint"]["chain"][_intermediate(proof)]
    edited["actor"] = "admin:someone-else"
    assert f"checkpoint chain: event seq {edited['seq']} does not match its hash" in (
        _problems(proof, key.public_key)
    )


async def test_an_edited_and_rehashed_chain_no_longer_reaches_the_signed_head(
    world: World,
) -> None:
    key, proof = await _anchored(world)
    chain = proof["checkpoint"]["chain"]
    chain[_intermediate(proof)]["actor"] = "admin:someone-else"
    rehash(chain)
    assert "the checkpoint chain does not end at the checkpoint" in _problems(proof, key.public_key)


async def test_proof_events_rewritten_consistently_disagree_with_the_chain(world: World) -> None:
    """A forger who rewrites the proof's own events (hashes and links) but cannot re-sign the
    checkpoint: the chain the log key signed still holds the originals."""
    key, proof = await _anchored(world)
    forged = copy.deepcopy(proof)
    created = next(e for e in forged["events"] if e["type"] == "session.created")
    created["actor"] = "account:333333333333"
    forged["session"]["requester"] = "account:333333333333"
    rehash(forged["events"])
    problems = _problems(forged, key.public_key)
    assert f"event seq {created['seq']} is not the one in the checkpointed log" in problems


async def test_a_chain_that_starts_after_the_first_event_is_caught(world: World) -> None:
    key, proof = await _anchored(world)
    proof["checkpoint"]["chain"].pop(0)
    assert "does not reach back to the proof's first event" in _problems(proof, key.public_key)
