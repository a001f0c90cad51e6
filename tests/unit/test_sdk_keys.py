"""Approver key files: created 0600 and never overwritten; loaded only when private."""

from __future__ import annotations

import base64
import datetime as dt
import json
import os
import stat
from pathlib import Path

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey
from cryptography.hazmat.primitives.asymmetric.rsa import generate_private_key as rsa_key

from airlock.v1 import common_pb2, session_pb2
from airlock_client import keys


def _mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def test_saved_key_is_pkcs8_pem_with_mode_0600_even_under_a_loose_umask(tmp_path: Path) -> None:
    key = keys.generate_private_key()
    old = os.umask(0)
    try:
        path = keys.save_private_key(key, tmp_path / "approver.pem")
    finally:
        os.umask(old)
    assert _mode(path) == 0o600
    text = path.read_text()
    assert text.startswith("-----BEGIN PRIVATE KEY-----")  # PKCS#8, unencrypted
    loaded = keys.load_private_key(path)
    assert keys.public_key_bytes(loaded) == keys.public_key_bytes(key)


def test_save_refuses_to_overwrite(tmp_path: Path) -> None:
    path = tmp_path / "k.pem"
    path.write_text("precious")
    with pytest.raises(keys.KeyFileError, match="already exists"):
        keys.save_private_key(keys.generate_private_key(), path)
    assert path.read_text() == "precious"


def test_save_does_not_follow_a_planted_symlink(tmp_path: Path) -> None:
    victim = tmp_path / "victim"
    victim.write_text("keep")
    link = tmp_path / "k.pem"
    link.symlink_to(victim)
    with pytest.raises(keys.KeyFileError):
        keys.save_private_key(keys.generate_private_key(), link)
    assert victim.read_text() == "keep"


def test_save_into_a_missing_directory_is_a_key_file_error(tmp_path: Path) -> None:
    with pytest.raises(keys.KeyFileError, match="cannot create"):
        keys.save_private_key(keys.generate_private_key(), tmp_path / "no" / "k.pem")


def test_load_refuses_a_key_others_can_read(tmp_path: Path) -> None:
    path = keys.save_private_key(keys.generate_private_key(), tmp_path / "k.pem")
    path.chmod(0o644)
    with pytest.raises(keys.KeyFileError, match="too open"):
        keys.load_private_key(path)
    assert keys.load_private_key(path, require_private_mode=False) is not None


def test_load_refuses_other_key_types_and_garbage(tmp_path: Path) -> None:
    rsa_pem = rsa_key(public_exponent=65537, key_size=2048).private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    rsa_path = keys.write_secret_file(tmp_path / "rsa.pem", rsa_pem)
    with pytest.raises(keys.KeyFileError, match="not an Ed25519"):
        keys.load_private_key(rsa_path)
    junk = keys.write_secret_file(tmp_path / "junk.pem", b"hello")
    with pytest.raises(keys.KeyFileError, match="not an unencrypted PEM"):
        keys.load_private_key(junk)
    with pytest.raises(keys.KeyFileError, match="cannot read"):
        keys.load_private_key(tmp_path / "missing.pem")


def test_public_key_forms_and_invitation_proof() -> None:
    key = keys.generate_private_key()
    raw = keys.public_key_bytes(key)
    assert len(raw) == 32
    assert keys.public_key_bytes(key.public_key()) == raw
    assert base64.b64decode(keys.public_key_base64(key)) == raw
    proof = keys.sign_invitation(key, "inv-ü-1")
    assert len(proof) == 64
    Ed25519PublicKey.from_public_bytes(raw).verify(proof, "inv-ü-1".encode())


def test_parse_public_key_reads_every_form_keygen_and_others_give(tmp_path: Path) -> None:
    key = keys.generate_private_key()
    raw = keys.public_key_bytes(key)
    printed = keys.public_key_base64(key)  # what `airlock approver keygen` prints
    pem = key.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    files = {
        "b64.pub": f"{printed}\n",
        "hex.pub": raw.hex() + "\n",
        "keygen.json": json.dumps({"publicKey": printed, "keyFile": "alice.pem"}),
        "pem.pub": pem.decode(),
    }
    for name, text in files.items():
        (tmp_path / name).write_text(text)
        assert keys.parse_public_key(str(tmp_path / name)) == raw, name
    assert keys.parse_public_key(printed) == raw
    assert keys.parse_public_key(raw.hex()) == raw


def test_parse_public_key_refuses_what_is_not_an_ed25519_public_key(tmp_path: Path) -> None:
    rsa_pem = (
        rsa_key(public_exponent=65537, key_size=2048)
        .public_key()
        .public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
    )
    (tmp_path / "rsa.pub").write_bytes(rsa_pem)
    with pytest.raises(keys.KeyFileError, match="not an Ed25519 public key"):
        keys.parse_public_key(str(tmp_path / "rsa.pub"))
    (tmp_path / "short.pub").write_text(base64.b64encode(b"x" * 31).decode())
    with pytest.raises(keys.KeyFileError, match="is 32 bytes"):
        keys.parse_public_key(str(tmp_path / "short.pub"))
    (tmp_path / "doc.json").write_text('{"keyFile": "a.pem"}')
    with pytest.raises(keys.KeyFileError, match="without a publicKey"):
        keys.parse_public_key(str(tmp_path / "doc.json"))
    with pytest.raises(keys.KeyFileError, match="is 32 bytes"):
        keys.parse_public_key(str(tmp_path / "missing.pub"))


def test_write_secret_file_writes_exact_bytes(tmp_path: Path) -> None:
    path = keys.write_secret_file(tmp_path / "token", b"abc\n")
    assert path.read_bytes() == b"abc\n"
    assert _mode(path) == 0o600


# -- the vote digest: the test vector of docs/signed-votes.md ----------------------------------

VECTOR_INPUT = (
    "0000000f6169726c6f636b2e766f74652e7632000000087365732d30303031000000067465616d2d37000000013300"
    "0000256261636b75703a437265617465526573746f72654163636573734261636b75705661756c740000003b61726e"
    "3a6177733a6261636b75703a65752d776573742d313a3131313132323232333333333a6261636b75702d7661756c74"
    "3a70726f642d6c6167000000146163636f756e743a3434343435353535363636360000001b323032352d30332d3031"
    "5431323a30303a30302e3235303030305a0000000000000007415050524f5645"
)
VECTOR_APPROVE = "e0340bee71918898cd900794cd16677d6801b7f4634e470c674200f3b41e11fb"
VECTOR_REJECT = "c9162d64aaceb8470c981777335fb502fd13a7542c3c279ca03d4c9525cba37d"
VECTOR_PUBLIC_KEY = "03a107bff3ce10be1d70dd18e74bc09967e4d6309ba50d5f1ddc8664125531b8"
VECTOR_SIGNATURE = (
    "822fabf58d74940b958b9948ea546ac6551b23c622ad86aa9c92032d931b8bca"
    "c185e837024298deb17323dd2a84bbc69a54732f1950d640532a0bc2d4cef700"
)


def _vector_session() -> session_pb2.Session:
    session = session_pb2.Session(
        session_id="ses-0001",
        team_id="team-7",
        team_version=3,
        action="backup:CreateRestoreAccessBackupVault",
        protected_resource="arn:aws:backup:eu-west-1:111122223333:backup-vault:prod-lag",
        requester=common_pb2.Principal(
            kind=common_pb2.PRINCIPAL_KIND_ACCOUNT, subject="444455556666"
        ),
        comment="not signed",
    )
    session.expire_time.FromDatetime(dt.datetime(2025, 3, 1, 12, 0, 0, 250000, tzinfo=dt.UTC))
    return session


def test_vote_digest_matches_the_documented_test_vector() -> None:
    session = _vector_session()
    assert keys.vote_digest_input(session, True).hex() == VECTOR_INPUT
    assert len(keys.vote_digest_input(session, True)) == 220
    assert keys.vote_digest(session, True).hex() == VECTOR_APPROVE
    assert keys.vote_digest(session, False).hex() == VECTOR_REJECT
    key = Ed25519PrivateKey.from_private_bytes(bytes(range(32)))
    assert keys.public_key_bytes(key).hex() == VECTOR_PUBLIC_KEY
    assert keys.sign_vote(key, session, True).hex() == VECTOR_SIGNATURE


def test_vote_digest_requester_without_subject_and_comment_not_signed() -> None:
    session = _vector_session()
    session.comment = "something else"
    assert keys.vote_digest(session, True).hex() == VECTOR_APPROVE
    session.requester.CopyFrom(common_pb2.Principal(kind=common_pb2.PRINCIPAL_KIND_ADMIN))
    assert b"\x00\x00\x00\x05admin\x00" in keys.vote_digest_input(session, True)


def test_the_sdk_signs_the_draft_it_is_shown() -> None:
    """keys.draft_digest recomputes the documented draft vector from the Session's team_draft,
    and the vote digest of a team update covers it."""
    session = _vector_session()
    session.session_id = "ses-0002"
    session.action = "mpa:UpdateApprovalTeam"
    session.protected_resource = "arn:aws:mpa:eu-west-1::approval-team/team-7"
    session.requester.CopyFrom(common_pb2.Principal(kind=common_pb2.PRINCIPAL_KIND_ADMIN))
    d = session.team_draft
    d.team_id, d.version, d.description, d.min_approvals = "team-7", 4, "rotate bob", 2
    d.session_ttl.seconds, d.invitation_ttl.seconds = 86400, 172800
    D = session_pb2.TeamDraft
    d.members.add(
        approver_id="alice", key_change=D.KEY_CHANGE_KEEPS_KEY, public_key=bytes(range(32, 64))
    )
    d.members.add(
        approver_id="bob",
        key_change=D.KEY_CHANGE_NEW_KEY,
        public_key=bytes(range(64, 96)),
        signed_by_current_key=True,
    )
    d.members.add(approver_id="carol", key_change=D.KEY_CHANGE_NEW_APPROVER)
    d.draft_sha256 = "not what is signed"
    assert keys.draft_digest(session) == (
        "e88119e77c9526f7e4b76303a966482e896733c230d88e975b9c6b27a0b960c9"
    )
    assert keys.vote_digest(session, True).hex() == (
        "62c78a63373f835a2e44ac24d82777baeaac5f6efad341cd21e21497dff13a3c"
    )


def test_a_long_inline_key_document_is_read_as_text() -> None:
    """keygen's --json output pasted inline is longer than a file name may be."""
    key = keys.generate_private_key()
    document = json.dumps({"publicKey": keys.public_key_base64(key), "note": "x" * 300})
    assert keys.parse_public_key(document) == keys.public_key_bytes(key)
