"""Offline verification of approval proofs (docs/approval-proofs.md).

Needs no server and no database, and trusts nothing the server says: it recomputes every vote
digest from the session's facts (docs/signed-votes.md, `keys.vote_digest`), checks every
signature against the key in the proof's frozen team snapshot, recomputes every event hash with
the canonical encoding of docs/event-log.md (implemented again here, from the document), and
checks the signed log checkpoint the events chain up to. It never imports the server.

The trust anchors are the log key and the approvers' keys the verifier is given (pinned): a
proof is valid only if its checkpoint verifies under the log key and M distinct pinned approver
keys signed APPROVE over exactly this request. Everything else a forger can make up, keys
included (and the server itself holds the log key); a proof that is consistent but signed by
another log key is reported as not anchored, one checked against no pinned approver keys as
unpinned, never as valid.
"""

from __future__ import annotations

import base64
import datetime as dt
import hashlib
import json
import re
from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from airlock.v1 import common_pb2, session_pb2
from airlock_client import keys, webauthn
from airlock_client.checkpoints import key_id

__all__ = [
    "KEYRING_FORMAT",
    "PROOF_FORMAT",
    "ProofError",
    "Verdict",
    "checkpoint_message",
    "event_canonical_bytes",
    "event_hash",
    "keyring_document",
    "read_keyring",
    "verify_proof",
]

PROOF_FORMAT = "airlock.approval-proof.v1+json"
KEYRING_FORMAT = "airlock.team-keyring.v1+json"
CHECKPOINT_TAG = "airlock.checkpoint.v1"
_TIME_RE = re.compile(r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}\.\d{6}Z$")
_HASH_RE = re.compile(r"^[0-9a-f]{64}$")


class ProofError(Exception):
    """The proof is not even well formed."""


@dataclass
class Verdict:
    """What the verifier found; `notes` say what was checked and what was not.

    `problems`: why the proof does not prove the approval (forged, altered or broken).
    `anchored`: its checkpoint verified under the log key the verifier was given, and every event
    chains up to it. `valid` only when both hold. A proof with no problems that is not anchored
    (no log key given) is `unanchored`: it holds together, but so would one a forger made up with
    keys of their own; `checkpoint_key` is the key its checkpoint is signed with, to compare with
    the log key the operator publishes.
    """

    problems: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    anchored: bool = False
    # M distinct pinned approver keys (approver_keys=) signed APPROVE over this request.
    pinned: bool = False
    checkpoint_key: bytes | None = None
    # Pinned approver keys (approver_keys=) that are not in the proof's team snapshot.
    absent_approver_keys: list[bytes] = field(default_factory=list)

    @property
    def valid(self) -> bool:
        return not self.problems and self.anchored and self.pinned

    @property
    def unanchored(self) -> bool:
        return not self.problems and not self.anchored

    @property
    def unpinned(self) -> bool:
        """Nothing wrong and anchored, but no approver keys were pinned: the approvers' keys are
        the server's word only (a compromised server holds the log key)."""
        return not self.problems and self.anchored and not self.pinned

    @property
    def verdict(self) -> str:
        if self.problems:
            return "NOT VALID"
        if not self.anchored:
            return "UNANCHORED"
        return "VALID" if self.pinned else "UNPINNED"


# --- the team keyring: approver keys pinned once (`airlock team keyring export`) -------------


def keyring_document(team_id: str, version: int, approvers: Mapping[str, bytes]) -> bytes:
    """A team's approver keys, to pin once and give to `proof verify --keyring`."""
    document = {
        "format": KEYRING_FORMAT,
        "team_id": team_id,
        "version": version,
        "approvers": [{"approver_id": a, "public_key": k.hex()} for a, k in approvers.items()],
    }
    return (json.dumps(document, indent=2) + "\n").encode("utf-8")


def read_keyring(data: bytes | str) -> dict[str, bytes]:
    """The approver keys of a keyring document (approver id -> raw key)."""
    try:
        document = json.loads(data)
    except ValueError as exc:
        raise ProofError(f"not a team keyring: {exc}") from exc
    if not isinstance(document, Mapping) or document.get("format") != KEYRING_FORMAT:
        raise ProofError(f"not a team keyring ({KEYRING_FORMAT})")
    out: dict[str, bytes] = {}
    for i, entry in enumerate(_get(document, "approvers", list, "keyring")):
        approver_id = _get(entry, "approver_id", str, f"keyring.approvers[{i}]")
        out[approver_id] = _approver_key(
            _get(entry, "public_key", str, f"keyring.approvers[{i}]"), f"key of {approver_id}"
        )
    return out


# --- the event log's canonical encoding (docs/event-log.md) ---------------------------------


def event_canonical_bytes(
    *,
    seq: int,
    time: str,
    type_: str,
    actor: str,
    subjects: Sequence[str],
    details: Mapping[str, Any],
    prev_hash: str,
) -> bytes:
    """UTF-8 JSON of the seven fields, keys sorted at every depth, no whitespace, non-ASCII as
    is; `time` already in RFC 3339 UTC with six fractional digits, `prev_hash` 64 hex digits."""
    document = {
        "actor": actor,
        "details": details,
        "prev_hash": prev_hash,
        "seq": seq,
        "subjects": list(subjects),
        "time": time,
        "type": type_,
    }
    return json.dumps(
        document, sort_keys=True, separators=(",", ":"), ensure_ascii=False, allow_nan=False
    ).encode("utf-8")


def event_hash(**fields: Any) -> str:
    """SHA-256 of `event_canonical_bytes`, as 64 lowercase hex digits."""
    return hashlib.sha256(event_canonical_bytes(**fields)).hexdigest()


def _lp(value: str) -> bytes:
    data = value.encode("utf-8")
    return len(data).to_bytes(4, "big") + data


def checkpoint_message(seq: int, head_hash: str, time: str) -> bytes:
    """The bytes a log checkpoint signature covers (docs/event-log.md, airlock.checkpoint.v1)."""
    return b"".join(_lp(v) for v in (CHECKPOINT_TAG, str(seq), head_hash, time))


# --- reading the document ---------------------------------------------------------------------


def _get(obj: Mapping[str, Any], key: str, kind: type | tuple[type, ...], where: str) -> Any:
    if not isinstance(obj, Mapping) or key not in obj:
        raise ProofError(f"malformed proof: {where}.{key} is missing")
    value = obj[key]
    if not isinstance(value, kind) or (isinstance(value, bool) and kind is int):
        raise ProofError(f"malformed proof: {where}.{key} has the wrong type")
    return value


def _hex(value: str, size: int, where: str) -> bytes:
    try:
        data = bytes.fromhex(value)
    except ValueError as exc:
        raise ProofError(f"malformed proof: {where} is not hex") from exc
    if len(data) != size:
        raise ProofError(f"malformed proof: {where} is not {size} bytes")
    return data


def _approver_key(value: str, where: str) -> bytes:
    """An approver key: 32 raw bytes (Ed25519) or a passkey key encoding, in hex."""
    try:
        data = bytes.fromhex(value)
    except ValueError as exc:
        raise ProofError(f"malformed proof: {where} is not hex") from exc
    if webauthn.is_passkey_key(data):
        try:
            webauthn.decode_passkey_key(data)
        except ValueError as exc:
            raise ProofError(f"malformed proof: {where}: {exc}") from exc
        return data
    if len(data) != 32:
        raise ProofError(f"malformed proof: {where} is not 32 bytes nor a passkey key")
    return data


def _vote_signature(
    vote: Mapping[str, Any], key: bytes | None, where: str, approver_id: str
) -> bytes:
    """A vote's signature: 64 bytes (Ed25519), or, for an approver whose key is a passkey, a
    WebAuthn assertion encoding, the same as the `webauthn` object shows when present."""
    text = _get(vote, "signature", str, where)
    if key is None or not webauthn.is_passkey_key(key):
        return _hex(text, 64, f"signature of {approver_id}")
    try:
        data = bytes.fromhex(text)
        a = webauthn.decode_assertion(data)
    except ValueError as exc:
        raise ProofError(f"malformed proof: signature of {approver_id}: {exc}") from exc
    shown = vote.get("webauthn")
    if shown is not None and shown != {
        "authenticator_data": a.authenticator_data.hex(),
        "client_data_json": a.client_data_json.decode("utf-8", errors="replace"),
        "signature": a.signature.hex(),
    }:
        raise ProofError(f"malformed proof: {where}.webauthn is not the assertion it signed")
    return data


def _requester(text: str) -> common_pb2.Principal:
    kind, _, subject = text.partition(":")
    name = f"PRINCIPAL_KIND_{kind.upper()}"
    try:
        value = common_pb2.PrincipalKind.Value(name)
    except ValueError as exc:
        raise ProofError(
            f"malformed proof: session.requester {text!r} names no principal kind"
        ) from exc
    return common_pb2.Principal(kind=value, subject=subject)


def _timestamp_session(facts: Mapping[str, Any]) -> session_pb2.Session:
    """The session as keys.vote_digest reads it, built from the proof's facts only."""
    expire = _get(facts, "expire_time", str, "session")
    if not _TIME_RE.match(expire):
        raise ProofError("malformed proof: session.expire_time is not YYYY-MM-DDTHH:MM:SS.ffffffZ")
    moment = dt.datetime.strptime(expire, "%Y-%m-%dT%H:%M:%S.%fZ").replace(tzinfo=dt.UTC)
    session = session_pb2.Session(
        session_id=_get(facts, "session_id", str, "session"),
        team_id=_get(facts, "team_id", str, "session"),
        team_version=_get(facts, "team_version", int, "session"),
        action=_get(facts, "action", str, "session"),
        protected_resource=_get(facts, "protected_resource", str, "session"),
        requester=_requester(_get(facts, "requester", str, "session")),
    )
    session.expire_time.FromDatetime(moment)
    return session


def _verify_signature(key: bytes, signature: bytes, message: bytes) -> bool:
    try:
        Ed25519PublicKey.from_public_bytes(key).verify(signature, message)
    except (InvalidSignature, ValueError):
        return False
    return True


# --- the verifier -----------------------------------------------------------------------------


def verify_proof(
    document: bytes | str | Mapping[str, Any],
    log_key: bytes | None = None,
    *,
    approver_keys: Collection[bytes] | None = None,
) -> Verdict:
    """Checks a proof; never raises for a bad proof (a malformed one is a problem too).

    `log_key`: the raw 32-byte Ed25519 public key of the server's event log, as the operator
    publishes it; the checkpoint's signature is checked against it. Without it the verdict is
    never `valid`: at best `unanchored`, with the key the checkpoint names in `checkpoint_key`.
    `approver_keys`: raw 32-byte approver public keys the verifier knows (pinned); an APPROVE
    counts only if the snapshot's key of its approver is one of them. Without any the verdict is
    never `valid`: at best `unpinned`.
    """
    verdict = Verdict()
    pinned = frozenset(approver_keys) if approver_keys else None
    try:
        proof = json.loads(document) if isinstance(document, (bytes, str)) else document
        if not isinstance(proof, Mapping):
            raise ProofError("malformed proof: not a JSON object")
        _verify(proof, log_key, pinned, verdict)
    except ProofError as exc:
        verdict.problems.append(str(exc))
    except (ValueError, TypeError) as exc:  # bad JSON
        verdict.problems.append(f"malformed proof: {exc}")
    return verdict


def _verify(
    proof: Mapping[str, Any],
    log_key: bytes | None,
    pinned: frozenset[bytes] | None,
    verdict: Verdict,
) -> None:
    problems = verdict.problems
    fmt = proof.get("format")
    if fmt != PROOF_FORMAT:
        raise ProofError(f"unknown proof format {fmt!r}; this verifier reads {PROOF_FORMAT}")
    facts = _get(proof, "session", Mapping, "proof")
    team = _get(proof, "team", Mapping, "proof")
    votes = _get(proof, "votes", list, "proof")
    events = _get(proof, "events", list, "proof")
    session = _timestamp_session(facts)
    sid = session.session_id
    requester = _get(facts, "requester", str, "session")

    state = _get(facts, "state", str, "session")
    if state != "APPROVED":
        problems.append(f"session {sid} is {state}, not APPROVED")

    # The frozen team version.
    if _get(team, "team_id", str, "team") != session.team_id:
        problems.append(f"the team snapshot is of team {team['team_id']}, not {session.team_id}")
    if _get(team, "version", int, "team") != session.team_version:
        problems.append(
            f"the team snapshot is version {team['version']}, the session froze version "
            f"{session.team_version}"
        )
    m = _get(team, "min_approvals", int, "team")
    members: dict[str, bytes] = {}
    owner_of_key: dict[bytes, str] = {}
    for i, entry in enumerate(_get(team, "approvers", list, "team")):
        approver_id = _get(entry, "approver_id", str, f"team.approvers[{i}]")
        key = _approver_key(
            _get(entry, "public_key", str, f"team.approvers[{i}]"), f"key of {approver_id}"
        )
        if approver_id in members:
            problems.append(f"approver {approver_id} appears twice in the team snapshot")
        if key in owner_of_key:
            problems.append(
                f"approvers {owner_of_key[key]} and {approver_id} share one key in the team "
                "snapshot"
            )
        members[approver_id] = key
        owner_of_key[key] = approver_id
    if not 1 <= m <= len(members):
        problems.append(f"M = {m} is impossible with {len(members)} approvers")
    if pinned is not None:
        verdict.absent_approver_keys = sorted(k for k in pinned if k not in owner_of_key)
        for k in verdict.absent_approver_keys:
            verdict.notes.append(f"pinned approver key {_show_key(k)} is not in the team snapshot")

    # The votes: each signature over exactly this request.
    approvers_who_approved: list[str] = []
    signed: dict[str, str] = {}
    for i, vote in enumerate(votes):
        where = f"votes[{i}]"
        approver_id = _get(vote, "approver_id", str, where)
        decision = _get(vote, "decision", str, where)
        signature = _vote_signature(vote, members.get(approver_id), where, approver_id)
        if decision not in ("APPROVE", "REJECT"):
            problems.append(f"vote of {approver_id}: unknown decision {decision!r}")
            continue
        if approver_id in signed:
            problems.append(
                f"approver {approver_id} voted more than once (a duplicated signature); one "
                "vote per approver"
            )
            continue
        if approver_id not in members:
            problems.append(
                f"vote of {approver_id}, who is not an approver of team {session.team_id} "
                f"version {session.team_version}"
            )
            continue
        digest = keys.vote_digest(
            session, decision == "APPROVE", draft_sha256=facts.get("draft_sha256", "")
        )
        if webauthn.is_passkey_key(members[approver_id]):
            why = webauthn.passkey_problem(members[approver_id], signature, digest)
            if why is not None:
                problems.append(
                    f"the {decision} passkey assertion of {approver_id} does not prove a vote "
                    f"over this request (session {sid}): {why}"
                )
                continue
        elif not _verify_signature(members[approver_id], signature, digest):
            problems.append(
                f"the {decision} signature of {approver_id} does not verify against its key over "
                f"this request (session {sid}, action {session.action}, resource "
                f"{session.protected_resource}, requester {requester}, expiry "
                f"{facts['expire_time']}): the request or the key was changed"
            )
            continue
        signed[approver_id] = signature.hex()
        if decision == "APPROVE":
            approvers_who_approved.append(approver_id)
    counted = approvers_who_approved
    if pinned is not None:
        counted = [a for a in approvers_who_approved if members[a] in pinned]
        for approver_id in approvers_who_approved:
            if approver_id not in counted:
                verdict.notes.append(
                    f"the APPROVE of {approver_id} is not counted: its key "
                    f"{_show_key(members[approver_id])} is not a pinned approver key"
                )
        for approver_id, key in members.items():
            if key in pinned and approver_id not in counted:
                verdict.notes.append(
                    f"pinned approver key {_show_key(key)} ({approver_id}) did not sign APPROVE"
                )
    if pinned is None:
        verdict.notes.append(
            "no approver keys pinned (--approver-key, --keyring): the keys that signed are the "
            "ones the proof carries, which whoever runs the server could have enrolled; UNPINNED"
        )
    elif len(counted) >= m:
        verdict.pinned = True
    if len(counted) < m:
        problems.append(
            f"only {len(counted)} distinct approvers of team {session.team_id} "
            f"version {session.team_version} signed APPROVE over this request"
            + (" with a pinned key (--approver-key)" if pinned is not None else "")
            + f"; M = {m}"
        )

    # The events: each hash recomputed, in seq order, linked where consecutive.
    by_seq = _check_events(events, problems)
    _check_session_events(by_seq, facts, team, members, signed, approvers_who_approved, problems)
    _check_enrollments(proof.get("checkpoint"), by_seq, facts, members, counted, problems)

    _check_checkpoint(proof.get("checkpoint"), by_seq, log_key, verdict)
    if not problems:
        verdict.notes.insert(
            0,
            f"{len(counted)} of {len(members)} approvers (M = {m}) of team "
            f"{session.team_id} version {session.team_version} signed APPROVE over session {sid}"
            + (" with a pinned key" if pinned is not None else ""),
        )


def _show_key(key: bytes) -> str:
    """An approver key as `airlock approver keygen` prints it (base64), with its key id."""
    return f"{base64.b64encode(key).decode('ascii')} (key id {key_id(key)})"


def _event_fields(e: Mapping[str, Any], where: str) -> dict[str, Any]:
    time = _get(e, "time", str, where)
    if not _TIME_RE.match(time):
        raise ProofError(f"malformed proof: {where}.time is not YYYY-MM-DDTHH:MM:SS.ffffffZ")
    prev = _get(e, "prev_hash", str, where)
    if not _HASH_RE.match(prev):
        raise ProofError(f"malformed proof: {where}.prev_hash is not 64 hex digits")
    return {
        "seq": _get(e, "seq", int, where),
        "time": time,
        "type_": _get(e, "type", str, where),
        "actor": _get(e, "actor", str, where),
        "subjects": _get(e, "subjects", list, where),
        "details": _get(e, "details", Mapping, where),
        "prev_hash": prev,
    }


def _check_events(events: Sequence[Any], problems: list[str]) -> dict[int, Mapping[str, Any]]:
    by_seq: dict[int, Mapping[str, Any]] = {}
    previous: tuple[int, str] | None = None
    for i, e in enumerate(events):
        where = f"events[{i}]"
        fields = _event_fields(e, where)
        seq = fields["seq"]
        claimed = _get(e, "hash", str, where)
        if event_hash(**fields) != claimed:
            problems.append(
                f"event seq {seq} ({fields['type_']}): its hash does not match its content"
            )
        if previous is not None:
            if seq <= previous[0]:
                problems.append(f"events out of order: seq {seq} comes after seq {previous[0]}")
            elif seq == previous[0] + 1 and fields["prev_hash"] != previous[1]:
                problems.append(
                    f"event seq {seq}: prev_hash is not the hash of event seq {previous[0]}"
                )
        previous = (seq, claimed)
        by_seq[seq] = e
    return by_seq


def _check_session_events(
    by_seq: Mapping[int, Mapping[str, Any]],
    facts: Mapping[str, Any],
    team: Mapping[str, Any],
    members: Mapping[str, bytes],
    signed: Mapping[str, str],
    approved: Sequence[str],
    problems: list[str],
) -> None:
    """The events must tell the same story as the facts, the snapshot and the votes."""
    sid = facts["session_id"]
    subject = f"session:{sid}"
    about = [e for e in by_seq.values() if subject in e["subjects"]]
    created = [e for e in about if e["type"] == "session.created"]
    if len(created) != 1:
        problems.append(f"the events hold {len(created)} session.created events of {sid}, not 1")
    else:
        d, expected = (
            created[0]["details"],
            {
                "kind": _get(facts, "kind", str, "session"),
                "team_id": facts["team_id"],
                "team_version": facts["team_version"],
                "action": facts["action"],
                "protected_resource": facts["protected_resource"],
                "expire_time": facts["expire_time"],
                "min_approvals": team["min_approvals"],
                "approver_ids": list(members),
                "draft_sha256": facts.get("draft_sha256"),
            },
        )
        for key, value in expected.items():
            if d.get(key) != value:
                problems.append(
                    f"session.created records {key} {d.get(key)!r}, the proof says {value!r}"
                )
        if created[0]["actor"] != facts["requester"]:
            problems.append(
                f"session.created was caused by {created[0]['actor']}, the proof names requester "
                f"{facts['requester']}"
            )
    if not any(e["type"] == "session.approved" for e in about):
        problems.append(f"no session.approved event of {sid}")
    cast = {
        e["details"].get("approver_id"): e["details"].get("signature")
        for e in about
        if e["type"] == "vote.cast"
    }
    for approver_id in approved:
        if cast.get(approver_id) != signed[approver_id]:
            problems.append(f"no vote.cast event records the signature of {approver_id}")
    for approver_id in approved:
        key = members[approver_id].hex()
        if not any(
            e["type"] == "invitation.accepted"
            and f"team:{facts['team_id']}" in e["subjects"]
            and f"approver:{approver_id}" in e["subjects"]
            and e["details"].get("public_key") == key
            for e in by_seq.values()
        ):
            problems.append(
                f"the key of {approver_id} in the team snapshot is not the key its enrollment "
                "(invitation.accepted) event records"
            )


def _check_enrollments(
    checkpoint: Any,
    by_seq: Mapping[int, Mapping[str, Any]],
    facts: Mapping[str, Any],
    members: Mapping[str, bytes],
    counted: Sequence[str],
    problems: list[str],
) -> None:
    """Each counted key was enrolled before the session was created, in a version of the team
    no later than the session's, and by the first acceptance of its invitation (the server
    accepts an invitation once: a second acceptance event is made up)."""
    sid = facts["session_id"]
    team = f"team:{facts['team_id']}"
    seen: dict[int, Mapping[str, Any]] = {}
    chain = checkpoint.get("chain") if isinstance(checkpoint, Mapping) else None
    for e in chain if isinstance(chain, list) else ():
        if isinstance(e, Mapping) and isinstance(e.get("seq"), int):
            seen[e["seq"]] = e
    seen.update(by_seq)
    created = [
        s
        for s, e in seen.items()
        if e.get("type") == "session.created" and f"session:{sid}" in e.get("subjects", ())
    ]
    if len(created) != 1:
        return  # reported by _check_session_events
    opened = created[0]
    accepted = sorted(
        (s, e)
        for s, e in seen.items()
        if e.get("type") == "invitation.accepted" and team in e.get("subjects", ())
    )
    for approver_id in counted:
        key = members[approver_id].hex()
        mine = [
            (s, e)
            for s, e in accepted
            if f"approver:{approver_id}" in e["subjects"] and e["details"].get("public_key") == key
        ]
        fit = [
            (s, e)
            for s, e in mine
            if s < opened
            and isinstance(e["details"].get("version"), int)
            and e["details"]["version"] <= facts["team_version"]
        ]
        if not fit:
            if mine:
                problems.append(
                    f"the enrollment of {approver_id}'s key (invitation.accepted, seq "
                    f"{mine[0][0]}) is not before the session (session.created, seq {opened}) "
                    f"for team version {facts['team_version']}"
                )
            continue
        s, e = fit[0]
        invitation = e["details"].get("invitation_id")
        earlier = [
            x
            for x, other in accepted
            if x < s and other["details"].get("invitation_id") == invitation
        ]
        if earlier:
            problems.append(
                f"the enrollment of {approver_id}'s key (seq {s}) is not the first acceptance "
                f"of invitation {invitation} (seq {earlier[0]} accepted it before)"
            )


def _check_checkpoint(
    checkpoint: Any,
    by_seq: Mapping[int, Mapping[str, Any]],
    log_key: bytes | None,
    verdict: Verdict,
) -> None:
    """A signed head of the log, and the chain of every event from the proof's first event up to
    it: each proof event must be in that chain, unchanged. Anchored only under `log_key`."""
    problems = verdict.problems
    if checkpoint is None:
        problems.append(
            "no log checkpoint: nothing ties the events or the team snapshot's keys to the "
            "server's signed event log, so anyone could have made this proof up"
        )
        return
    if not isinstance(checkpoint, Mapping):
        raise ProofError("malformed proof: checkpoint is not an object")
    seq = _get(checkpoint, "seq", int, "checkpoint")
    head = _get(checkpoint, "hash", str, "checkpoint")
    time = _get(checkpoint, "time", str, "checkpoint")
    signature = _hex(_get(checkpoint, "signature", str, "checkpoint"), 64, "checkpoint.signature")
    named = checkpoint.get("public_key")
    named_key = _hex(named, 32, "checkpoint.public_key") if isinstance(named, str) else None
    message = checkpoint_message(seq, head, time)
    signed = False
    if log_key is not None:
        signed = _verify_signature(log_key, signature, message)
        if signed:
            verdict.checkpoint_key = log_key
        else:
            problems.append(
                f"the checkpoint (seq {seq}) is not signed by the log key you gave (--log-key, "
                f"key id {key_id(log_key)})"
                + (
                    f"; it names log key {key_id(named_key)}"
                    if named_key is not None and named_key != log_key
                    else ""
                )
            )
    elif named_key is None:
        problems.append(
            "the checkpoint names no public key and no log key was given (--log-key): its "
            "signature cannot be checked"
        )
    else:
        # Only self-consistency: a forger signs with a key of their own and names it here.
        signed = _verify_signature(named_key, signature, message)
        if signed:
            verdict.checkpoint_key = named_key
        else:
            problems.append(
                f"the checkpoint (seq {seq}) is not signed by the log key it names "
                f"(key id {key_id(named_key)})"
            )
    # The chain is checked whatever the signature said, to report everything wrong at once.
    chained = _check_chain(checkpoint, seq, head, by_seq, problems)
    if not (signed and chained):
        return
    if log_key is not None:
        verdict.anchored = True
        verdict.notes.append(
            f"every event is anchored in the log checkpoint at seq {seq} ({time}), signed by "
            f"the log key you gave (key id {key_id(log_key)})"
        )
    elif named_key is not None:
        verdict.notes.append(
            f"every event chains up to the log checkpoint at seq {seq} ({time}), signed by log "
            f"key {key_id(named_key)} (public key {named_key.hex()}), which you did not give: "
            "compare it with the log key the operator publishes, then verify with --log-key"
        )


def _check_chain(
    checkpoint: Mapping[str, Any],
    seq: int,
    head: str,
    by_seq: Mapping[int, Mapping[str, Any]],
    problems: list[str],
) -> bool:
    """Whether the checkpoint's chain recomputes, links, ends at (seq, head) and holds every
    proof event unchanged; each reason it does not is added to `problems`."""
    chain = _get(checkpoint, "chain", list, "checkpoint")
    intact = True
    previous: tuple[int, str] | None = None
    for i, e in enumerate(chain):
        fields = _event_fields(e, f"checkpoint.chain[{i}]")
        claimed = _get(e, "hash", str, f"checkpoint.chain[{i}]")
        if event_hash(**fields) != claimed:
            problems.append(f"checkpoint chain: event seq {fields['seq']} does not match its hash")
            return False
        if previous is not None and (
            fields["seq"] != previous[0] + 1 or fields["prev_hash"] != previous[1]
        ):
            problems.append(f"checkpoint chain breaks at seq {fields['seq']}")
            return False
        mine = by_seq.get(fields["seq"])
        if mine is not None and mine.get("hash") != claimed:
            problems.append(f"event seq {fields['seq']} is not the one in the checkpointed log")
            intact = False
        previous = (fields["seq"], claimed)
    if previous is None or previous != (seq, head):
        problems.append(f"the checkpoint chain does not end at the checkpoint (seq {seq})")
        return False
    first = chain[0]["seq"]
    if any(s < first for s in by_seq):
        problems.append("the checkpoint chain does not reach back to the proof's first event")
        return False
    if any(s > seq for s in by_seq):
        problems.append(f"some events of the proof are after the checkpoint (seq {seq})")
        return False
    return intact
