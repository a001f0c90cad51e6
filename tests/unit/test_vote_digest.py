"""The vote digest matches the byte layout and test vector written in docs/signed-votes.md."""

from __future__ import annotations

import hashlib
import re
import struct
from dataclasses import replace
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

from airlock_server.domain.principals import Principal, PrincipalKind
from airlock_server.domain.sessions import (
    DraftMember,
    KeyChange,
    Session,
    SessionKind,
    TeamDraft,
    VoteDecision,
    draft_digest,
    draft_digest_input,
    new_session,
    vote_digest,
    vote_digest_input,
)

DOC = Path(__file__).resolve().parents[2] / "docs" / "signed-votes.md"
EXPIRE = datetime(2025, 3, 1, 12, 0, 0, 250000, tzinfo=UTC)


def _doc_value(label: str) -> str:
    match = re.search(rf"^{re.escape(label)}:\s*([0-9a-f]+)$", DOC.read_text(), re.MULTILINE)
    assert match, f"{label!r} not found in {DOC}"
    return match.group(1)


def _vector_session() -> Session:
    session = new_session(
        session_id="ses-0001",
        kind=SessionKind.RESTORE_ACCESS,
        team_id="team-7",
        team_version=3,
        approver_ids=("alice", "bob"),
        min_approvals=2,
        requester=Principal(PrincipalKind.ACCOUNT, "444455556666"),
        protected_resource="arn:aws:backup:eu-west-1:111122223333:backup-vault:prod-lag",
        now=EXPIRE - timedelta(hours=24),
        ttl=timedelta(hours=24),
    )
    assert session.expire_time == EXPIRE
    return session


def test_input_bytes_match_the_documented_vector() -> None:
    raw = vote_digest_input(
        session_id="ses-0001",
        team_id="team-7",
        team_version=3,
        action="backup:CreateRestoreAccessBackupVault",
        protected_resource="arn:aws:backup:eu-west-1:111122223333:backup-vault:prod-lag",
        requester="account:444455556666",
        expire_time=EXPIRE,
        draft_sha256="",
        decision=VoteDecision.APPROVE,
    )
    assert raw.hex() == _doc_value("input")
    assert len(raw) == 220


@pytest.mark.parametrize(
    ("decision", "label"),
    [(VoteDecision.APPROVE, "approve digest"), (VoteDecision.REJECT, "reject digest")],
)
def test_digest_matches_the_documented_vector(decision: VoteDecision, label: str) -> None:
    assert vote_digest(_vector_session(), decision).hex() == _doc_value(label)


def test_an_independent_encoding_agrees() -> None:
    # A second implementation written straight from the doc's table.
    values = [
        "airlock.vote.v2",
        "ses-0001",
        "team-7",
        "3",
        "backup:CreateRestoreAccessBackupVault",
        "arn:aws:backup:eu-west-1:111122223333:backup-vault:prod-lag",
        "account:444455556666",
        "2025-03-01T12:00:00.250000Z",
        "",
        "APPROVE",
    ]
    raw = b"".join(struct.pack(">I", len(v.encode())) + v.encode() for v in values)
    expected = hashlib.sha256(raw).digest()
    assert vote_digest(_vector_session(), VoteDecision.APPROVE) == expected


def test_documented_signature_is_deterministic_and_verifies() -> None:
    key = Ed25519PrivateKey.from_private_bytes(bytes(range(32)))
    public = key.public_key()
    assert public.public_bytes(Encoding.Raw, PublicFormat.Raw).hex() == _doc_value("public key")
    digest = vote_digest(_vector_session(), VoteDecision.APPROVE)
    signature = key.sign(digest)
    assert signature.hex() == _doc_value("signature")
    public.verify(signature, digest)


def test_expire_time_is_spelled_in_utc_whatever_the_zone() -> None:
    session = _vector_session()
    shifted = replace(session, expire_time=EXPIRE.astimezone(timezone(timedelta(hours=2))))
    assert vote_digest(shifted, VoteDecision.APPROVE) == vote_digest(session, VoteDecision.APPROVE)


@pytest.mark.parametrize(
    "change",
    [
        {"session_id": "ses-0002"},
        {"team_id": "team-8"},
        {"team_version": 4},
        {"action": "backup:RevokeRestoreAccessBackupVault"},
        {"protected_resource": "arn:aws:backup:eu-west-1:111122223333:backup-vault:other"},
        {"requester": Principal(PrincipalKind.ACCOUNT, "999999999999")},
        {"expire_time": EXPIRE + timedelta(microseconds=1)},
    ],
)
def test_every_signed_field_changes_the_digest(change: dict[str, object]) -> None:
    session = _vector_session()
    changed = replace(session, **change)  # type: ignore[arg-type]
    assert vote_digest(changed, VoteDecision.APPROVE) != vote_digest(session, VoteDecision.APPROVE)


def test_decision_changes_the_digest() -> None:
    session = _vector_session()
    assert vote_digest(session, VoteDecision.APPROVE) != vote_digest(session, VoteDecision.REJECT)


def test_length_prefixes_keep_adjacent_fields_apart() -> None:
    # Without prefixes "ab" + "c" and "a" + "bc" would encode the same.
    session = _vector_session()
    one = replace(session, session_id="ab", team_id="c")
    two = replace(session, session_id="a", team_id="bc")
    assert vote_digest(one, VoteDecision.APPROVE) != vote_digest(two, VoteDecision.APPROVE)


def test_non_ascii_is_length_prefixed_in_bytes() -> None:
    raw = vote_digest_input(
        session_id="é",
        team_id="t",
        team_version=1,
        action="a",
        protected_resource="r",
        requester="admin",
        expire_time=EXPIRE,
        draft_sha256="",
        decision=VoteDecision.REJECT,
    )
    tag_len = 4 + len("airlock.vote.v2")
    assert raw[tag_len : tag_len + 6] == b"\x00\x00\x00\x02\xc3\xa9"


# --- the draft digest (airlock.team-draft.v1) -------------------------------------------------

KEY_1 = bytes(range(32, 64))
KEY_2 = bytes(range(64, 96))


def _vector_draft() -> TeamDraft:
    return TeamDraft(
        team_id="team-7",
        version=4,
        description="rotate bob",
        min_approvals=2,
        session_ttl=timedelta(hours=24),
        invitation_ttl=timedelta(hours=48),
        members=(
            DraftMember("alice", KeyChange.KEEPS_KEY, KEY_1),
            DraftMember("bob", KeyChange.NEW_KEY, KEY_2, True),
            DraftMember("carol", KeyChange.NEW_APPROVER, None),
        ),
    )


def test_the_draft_digest_matches_the_documented_vector() -> None:
    raw = draft_digest_input(_vector_draft())
    assert raw.hex() == _doc_value("draft input")
    assert len(raw) == 303
    assert draft_digest(_vector_draft()) == _doc_value("draft digest")


def test_a_team_update_vote_signs_its_draft() -> None:
    update = replace(
        _vector_session(),
        session_id="ses-0002",
        kind=SessionKind.TEAM_UPDATE,
        action="mpa:UpdateApprovalTeam",
        protected_resource="arn:aws:mpa:eu-west-1::approval-team/team-7",
        requester=Principal(PrincipalKind.ADMIN, ""),
        draft=_vector_draft(),
    )
    assert vote_digest(update, VoteDecision.APPROVE).hex() == _doc_value(
        "team update approve digest"
    )


@pytest.mark.parametrize(
    "change",
    [
        {"description": "rotate alice"},
        {"min_approvals": 3},
        {"invitation_ttl": timedelta(hours=24)},
        {"members": (DraftMember("alice", KeyChange.KEEPS_KEY, KEY_1),)},
        {
            "members": (
                DraftMember("alice", KeyChange.KEEPS_KEY, KEY_1),
                DraftMember("bob", KeyChange.NEW_KEY, KEY_1[::-1], True),
                DraftMember("carol", KeyChange.NEW_APPROVER, None),
            )
        },
    ],
)
def test_every_change_to_the_draft_changes_the_vote(change: dict[str, object]) -> None:
    session = replace(_vector_session(), draft=_vector_draft())
    changed = replace(session, draft=replace(_vector_draft(), **change))  # type: ignore[arg-type]
    assert vote_digest(changed, VoteDecision.APPROVE) != vote_digest(session, VoteDecision.APPROVE)
