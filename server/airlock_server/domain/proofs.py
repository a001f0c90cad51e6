"""Approval proofs: the self-contained document of docs/approval-proofs.md (pure)."""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from typing import Any

from airlock_server.domain.errors import FailedPrecondition, Reason
from airlock_server.domain.events import (
    CALL_DENIED,
    Checkpoint,
    Event,
    format_time,
    log_key_missing,
)
from airlock_server.domain.sessions import Session, SessionState, draft_digest
from airlock_server.domain.webauthn import decode_assertion, is_assertion

PROOF_FORMAT = "airlock.approval-proof.v1+json"


def event_document(e: Event) -> dict[str, Any]:
    """An event as the proof carries it: every field its hash covers, and the hash."""
    return {
        "seq": e.seq,
        "time": format_time(e.time),
        "type": e.type,
        "actor": e.actor,
        "subjects": list(e.subjects),
        "details": dict(e.details),
        "prev_hash": e.prev_hash.hex(),
        "hash": e.hash.hex(),
    }


def checkpoint_document(checkpoint: Checkpoint, chain: Sequence[Event]) -> dict[str, Any]:
    """A signed checkpoint of the log (airlock.checkpoint.v1) and the chain of every event from
    the proof's first event up to and including its seq."""
    return {
        "seq": checkpoint.seq,
        "hash": checkpoint.hash.hex(),
        "time": format_time(checkpoint.time),
        "signature": checkpoint.signature.hex(),
        "key_id": checkpoint.key_id,
        "public_key": checkpoint.public_key.hex(),
        "chain": [event_document(e) for e in chain],
    }


def webauthn_document(signature: bytes) -> dict[str, Any]:
    """A passkey vote's assertion, decoded for the reader (the verifier checks it is the one
    the signature encodes); nothing for an Ed25519 vote."""
    if not is_assertion(signature):
        return {}
    try:
        a = decode_assertion(signature)
    except ValueError:
        return {}
    return {
        "webauthn": {
            "authenticator_data": a.authenticator_data.hex(),
            "client_data_json": a.client_data_json.decode("utf-8", errors="replace"),
            "signature": a.signature.hex(),
        }
    }


def approval_events(about_session: Sequence[Event]) -> list[Event]:
    """The events of a session that a proof carries: up to and including its approval, and
    no refused call (`call.denied` names the session too, and anyone refused on it would
    otherwise add to the proof, and move its anchor)."""
    approved = [e.seq for e in about_session if e.type == "session.approved"]
    until = approved[0] if approved else max((e.seq for e in about_session), default=0)
    return [e for e in about_session if e.type != CALL_DENIED and e.seq <= until]


def require_approved(session: Session) -> None:
    """Only an APPROVED session has an approval proof."""
    if session.state is not SessionState.APPROVED:
        raise FailedPrecondition(
            f"session {session.session_id} is {session.state.value}; only an APPROVED session "
            "has an approval proof",
            reason=Reason.SESSION_NOT_APPROVED,
            metadata={"sessionId": session.session_id, "state": session.state.value},
        )


def no_log_key_for_proofs() -> FailedPrecondition:
    """A proof is anchored in a checkpoint signed with the log key, or not exported: without
    one, the verifier has nothing to trust (docs/approval-proofs.md, "The trust anchor")."""
    return log_key_missing("anchor approval proofs in a signed checkpoint of the event log")


def build_proof(
    session: Session,
    keys: Mapping[str, bytes | None],
    events: Sequence[Event],
    anchor: tuple[Checkpoint, Sequence[Event]],
) -> bytes:
    """The proof of an APPROVED session: facts, frozen team snapshot, votes, events (by seq),
    and a checkpoint signed with the log key, with the chain up to it."""
    require_approved(session)
    document = {
        "format": PROOF_FORMAT,
        "session": {
            "session_id": session.session_id,
            "kind": session.kind.value,
            "team_id": session.team_id,
            "team_version": session.team_version,
            "action": session.action,
            "protected_resource": session.protected_resource,
            "requester": str(session.requester),
            "create_time": format_time(session.create_time),
            "expire_time": format_time(session.expire_time),
            "state": session.state.value,
            # A team update's votes sign its draft too (docs/signed-votes.md, field 9).
            **({"draft_sha256": draft_digest(session.draft)} if session.draft else {}),
        },
        "team": {
            "team_id": session.team_id,
            "version": session.team_version,
            "min_approvals": session.min_approvals,
            "approvers": [
                {"approver_id": a, "public_key": (keys.get(a) or b"").hex()}
                for a in session.approver_ids
            ],
        },
        "votes": [
            {
                "approver_id": v.approver_id,
                "decision": v.decision.value,
                "signature": v.signature.hex(),
                **webauthn_document(v.signature),
            }
            for v in session.votes
            # A disabled approver's vote stopped counting when it was disabled.
            if v.approver_id not in session.excluded_approver_ids
        ],
        "events": [event_document(e) for e in sorted(events, key=lambda e: e.seq)],
        "checkpoint": checkpoint_document(*anchor),
    }
    return json.dumps(document, indent=2, sort_keys=False, ensure_ascii=False).encode("utf-8")
