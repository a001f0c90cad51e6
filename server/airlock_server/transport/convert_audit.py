"""Event log values to proto messages and back. No rules here, only shapes."""

from __future__ import annotations

from google.protobuf import struct_pb2

from airlock.v1 import audit_service_pb2 as pb
from airlock.v1 import common_pb2, event_pb2
from airlock_server.app.audit import Verification
from airlock_server.app.ports import EventQuery
from airlock_server.domain.events import Checkpoint, Event, Problem
from airlock_server.domain.principals import PrincipalKind
from airlock_server.transport import convert

_PROBLEMS = {
    Problem.HASH_MISMATCH: pb.VerifyLogResponse.PROBLEM_HASH_MISMATCH,
    Problem.CHAIN_BROKEN: pb.VerifyLogResponse.PROBLEM_CHAIN_BROKEN,
    Problem.SEQ_GAP: pb.VerifyLogResponse.PROBLEM_SEQ_GAP,
    Problem.CHECKPOINT_MISMATCH: pb.VerifyLogResponse.PROBLEM_CHECKPOINT_MISMATCH,
    Problem.TRUNCATED: pb.VerifyLogResponse.PROBLEM_TRUNCATED,
    Problem.UNSIGNED: pb.VerifyLogResponse.PROBLEM_UNSIGNED,
    Problem.SUBJECTS_MISMATCH: pb.VerifyLogResponse.PROBLEM_SUBJECTS_MISMATCH,
}


def actor_pb(actor: str) -> common_pb2.Principal:
    """ "kind:subject" or "kind" as stored; Airlock itself ("system") is kind SYSTEM."""
    kind, _, subject = actor.partition(":")
    try:
        principal_kind = PrincipalKind(kind)
    except ValueError:
        principal_kind = PrincipalKind.SYSTEM
    if principal_kind is PrincipalKind.SYSTEM:
        return common_pb2.Principal(kind=common_pb2.PRINCIPAL_KIND_SYSTEM)
    return common_pb2.Principal(kind=convert._KINDS[principal_kind], subject=subject)


def event_pb(e: Event) -> event_pb2.Event:
    details = struct_pb2.Struct()
    details.update(dict(e.details))
    return event_pb2.Event(
        seq=e.seq,
        time=convert.ts(e.time),
        type=e.type,
        actor=actor_pb(e.actor),
        subjects=list(e.subjects),
        details=details,
        prev_hash=e.prev_hash,
        hash=e.hash,
        canonical=e.canonical(),
        head_signature=e.head_signature,
    )


def event_query(request: pb.ListEventsRequest) -> EventQuery:
    actor = actor_kind = ""
    if request.HasField("actor"):
        p = request.actor
        if p.kind == common_pb2.PRINCIPAL_KIND_SYSTEM:
            actor_kind = PrincipalKind.SYSTEM.value
        elif p.kind == common_pb2.PRINCIPAL_KIND_UNSPECIFIED:
            if p.subject:
                actor = p.subject  # "system", as clients before PRINCIPAL_KIND_SYSTEM sent it
        else:
            kind = convert.principal_kind(p.kind, "actor.kind").value
            if p.subject:
                actor = f"{kind}:{p.subject}"
            else:
                actor_kind = kind
    return EventQuery(
        type=request.type,
        actor=actor,
        actor_kind=actor_kind,
        subject=request.subject,
        start_time=convert.from_ts(request.start_time) if request.HasField("start_time") else None,
        end_time=convert.from_ts(request.end_time) if request.HasField("end_time") else None,
    )


def checkpoint_pb(c: Checkpoint) -> event_pb2.LogCheckpoint:
    return event_pb2.LogCheckpoint(
        seq=c.seq,
        hash=c.hash,
        time=convert.ts(c.time),
        signature=c.signature,
        public_key=c.public_key,
        key_id=c.key_id,
    )


def checkpoint_of(c: event_pb2.LogCheckpoint) -> Checkpoint:
    return Checkpoint(
        c.seq,
        c.hash,
        convert.from_ts(c.time),
        c.signature,
        c.public_key,
        c.key_id,
    )


def verification_pb(v: Verification) -> pb.VerifyLogResponse:
    out = pb.VerifyLogResponse(ok=v.ok, checked_count=v.checked, head=checkpoint_pb(v.head))
    if v.finding is not None:
        out.first_bad_seq = v.finding.seq
        out.problem = _PROBLEMS[v.finding.problem]
        out.problem_description = v.finding.description
    return out
