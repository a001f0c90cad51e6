"""Approval proofs anchored in a signed log checkpoint (docs/approval-proofs.md, `checkpoint`).

A server with a log key exports proofs whose checkpoint is signed by the same code as
GetLogCheckpoint, with the chain of every event from the proof's first event up to it. Each
test mutates a copy the way a forger would and checks the verifier, with the log key pinned,
says no for the right reason.
"""

from __future__ import annotations

import copy
import json
from datetime import UTC, datetime
from typing import Any

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from recovery_world import World  # type: ignore[import-not-found]

from airlock_client.proof import checkpoint_message, event_hash, verify_proof
from airlock_server.app.audit import LogKey
from airlock_server.domain.events import Checkpoint

pytestmark = pytest.mark.asyncio


async def _anchored(world: World) -> tuple[LogKey, dict[str, Any]]:
    """An APPROVED session, some traffic after it, and its proof from a keyed server."""
    key = LogKey(Ed25519PrivateKey.generate())
    keyed = world.another_wiring(key)
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
    assert not verdict.ok, "a forged proof was accepted"
    return "\n".join(verdict.problems)


def _rehash(events: list[dict[str, Any]]) -> None:
    """Recompute each hash and relink consecutive events, as a forger of the log would."""
    previous: tuple[int, str] | None = None
    for e in events:
        if previous is not None and e["seq"] == previous[0] + 1:
            e["prev_hash"] = previous[1]
        e["hash"] = event_hash(
            seq=e["seq"],
            time=e["time"],
            type_=e["type"],
            actor=e["actor"],
            subjects=e["subjects"],
            details=e["details"],
            prev_hash=e["prev_hash"],
        )
        previous = (e["seq"], e["hash"])


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
    # The chain reaches past the session: the traffic after it is in there too.
    assert checkpoint["seq"] > proof["events"][-1]["seq"]

    verdict = verify_proof(json.dumps(proof), key.public_key)
    assert verdict.ok, verdict.problems
    assert any(
        f"anchored in the log checkpoint at seq {checkpoint['seq']}" in n for n in verdict.notes
    )
    assert not any("not anchored" in n or "pin the log key" in n for n in verdict.notes)

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


async def test_without_a_pinned_key_the_verifier_says_so(world: World) -> None:
    _, proof = await _anchored(world)
    verdict = verify_proof(json.dumps(proof))
    assert verdict.ok, verdict.problems
    assert any("pin the log key (--log-key)" in n for n in verdict.notes)


async def test_a_checkpoint_signed_by_another_key_is_caught(world: World) -> None:
    key, proof = await _anchored(world)
    other = LogKey(Ed25519PrivateKey.generate())
    checkpoint = proof["checkpoint"]
    checkpoint["signature"] = other.sign(
        checkpoint_message(checkpoint["seq"], checkpoint["hash"], checkpoint["time"])
    ).hex()
    checkpoint["public_key"] = other.public_key.hex()
    checkpoint["key_id"] = other.key_id
    assert f"the checkpoint (seq {checkpoint['seq']}) is not signed by the log key" in (
        _problems(proof, key.public_key)
    )


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
    _rehash(chain)
    assert "the checkpoint chain does not end at the checkpoint" in _problems(proof, key.public_key)


async def test_proof_events_rewritten_consistently_disagree_with_the_chain(world: World) -> None:
    """A forger who rewrites the proof's own events (hashes and links) but cannot re-sign the
    checkpoint: the chain the log key signed still holds the originals."""
    key, proof = await _anchored(world)
    forged = copy.deepcopy(proof)
    created = next(e for e in forged["events"] if e["type"] == "session.created")
    created["actor"] = "account:333333333333"
    forged["session"]["requester"] = "account:333333333333"
    _rehash(forged["events"])
    problems = _problems(forged, key.public_key)
    assert f"event seq {created['seq']} is not the one in the checkpointed log" in problems


async def test_a_chain_that_starts_after_the_first_event_is_caught(world: World) -> None:
    key, proof = await _anchored(world)
    proof["checkpoint"]["chain"].pop(0)
    assert "does not reach back to the proof's first event" in _problems(proof, key.public_key)
