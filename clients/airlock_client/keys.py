"""Approver signing keys: Ed25519, kept in a PEM file only its owner can read.

The private key never leaves the approver's machine: the SDK sends only the raw 32-byte public
key and signatures made locally (the invitation proof, and later the vote signature).
"""

from __future__ import annotations

import base64
import binascii
import datetime as dt
import hashlib
import json
import os
import stat
from pathlib import Path
from typing import BinaryIO

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from airlock.v1 import common_pb2, session_pb2

__all__ = [
    "KeyFileError",
    "draft_digest",
    "draft_digest_input",
    "generate_private_key",
    "key_change_message",
    "load_private_key",
    "open_secret_file",
    "parse_public_key",
    "public_key_base64",
    "public_key_bytes",
    "save_private_key",
    "sign_invitation",
    "sign_vote",
    "vote_digest",
    "vote_digest_input",
    "write_secret_file",
]


class KeyFileError(Exception):
    """A key file could not be written or read safely."""


def generate_private_key() -> Ed25519PrivateKey:
    """A fresh Ed25519 private key."""
    return Ed25519PrivateKey.generate()


def open_secret_file(path: str | os.PathLike[str]) -> BinaryIO:
    """Creates `path` with mode 0600 and opens it for writing; refuses an existing path.

    The file is created with O_CREAT | O_EXCL | O_NOFOLLOW and mode 0600 in one system call, so
    it is never readable by anyone else, not even for an instant, and an existing file (or a
    symlink planted at the path) is never followed or truncated.
    """
    target = Path(path)
    flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_NOFOLLOW", 0)
    try:
        fd = os.open(target, flags, 0o600)
    except FileExistsError as exc:
        raise KeyFileError(f"{target}: already exists; refusing to overwrite it") from exc
    except OSError as exc:
        raise KeyFileError(f"{target}: cannot create: {exc.strerror}") from exc
    if hasattr(os, "fchmod"):
        os.fchmod(fd, 0o600)  # the umask can only remove bits; make the mode exact anyway
    return os.fdopen(fd, "wb")


def write_secret_file(path: str | os.PathLike[str], data: bytes) -> Path:
    """Writes `data` to a new file of mode 0600 (see `open_secret_file`); never overwrites."""
    target = Path(path)
    with open_secret_file(target) as handle:
        try:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        except OSError as exc:
            target.unlink(missing_ok=True)
            raise KeyFileError(f"{target}: cannot write: {exc.strerror}") from exc
    return target


def save_private_key(key: Ed25519PrivateKey, path: str | os.PathLike[str]) -> Path:
    """Writes the key as unencrypted PKCS#8 PEM to a new file of mode 0600 (never overwrites)."""
    pem = key.private_bytes(
        encoding=serialization.Encoding.PEM,
        format=serialization.PrivateFormat.PKCS8,
        encryption_algorithm=serialization.NoEncryption(),
    )
    return write_secret_file(path, pem)


def load_private_key(
    path: str | os.PathLike[str], *, require_private_mode: bool = True
) -> Ed25519PrivateKey:
    """Reads an Ed25519 private key from a PEM (PKCS#8) file.

    With `require_private_mode` (the default), a file that its group or others can read or write
    is refused, as ssh refuses such keys: the key could already be in someone else's hands.
    """
    source = Path(path)
    try:
        mode = source.stat().st_mode
        data = source.read_bytes()
    except OSError as exc:
        raise KeyFileError(f"{source}: cannot read: {exc.strerror}") from exc
    if require_private_mode and os.name == "posix" and mode & (stat.S_IRWXG | stat.S_IRWXO):
        raise KeyFileError(
            f"{source}: permissions {stat.S_IMODE(mode):04o} are too open; "
            "the key file must be readable by its owner only (chmod 600)"
        )
    try:
        key = serialization.load_pem_private_key(data, password=None)
    except (ValueError, TypeError) as exc:
        raise KeyFileError(f"{source}: not an unencrypted PEM private key") from exc
    if not isinstance(key, Ed25519PrivateKey):
        raise KeyFileError(f"{source}: not an Ed25519 private key")
    return key


def public_key_bytes(key: Ed25519PrivateKey | Ed25519PublicKey) -> bytes:
    """The raw 32-byte public key (what the server enrolls)."""
    public = key.public_key() if isinstance(key, Ed25519PrivateKey) else key
    return public.public_bytes(
        encoding=serialization.Encoding.Raw, format=serialization.PublicFormat.Raw
    )


def public_key_base64(key: Ed25519PrivateKey | Ed25519PublicKey) -> str:
    """The raw public key in standard base64 (as the proto3 JSON mapping shows bytes)."""
    return base64.b64encode(public_key_bytes(key)).decode("ascii")


def parse_public_key(text: str) -> bytes:
    """The raw 32-byte Ed25519 public key in `text` or in the file it names: base64 (as
    `airlock approver keygen` prints it), 64 hex digits, keygen's `--json` document (its
    `publicKey`), or a PEM public key."""
    value = text.strip()
    source = f"{text}: "
    path = Path(value)
    try:
        named_file = path.is_file()
    except (OSError, ValueError):  # a key pasted inline can be longer than a file name may be
        named_file = False
    if named_file:
        try:
            value = path.read_text(encoding="utf-8").strip()
        except (OSError, UnicodeDecodeError) as exc:
            raise KeyFileError(f"{path}: cannot read a public key from it") from exc
        source = f"{path}: "
    if value.startswith("{"):
        try:
            value = str(json.loads(value)["publicKey"])
        except (ValueError, KeyError, TypeError) as exc:
            raise KeyFileError(f"{source}a JSON document without a publicKey") from exc
    raw: bytes | None = None
    if value.startswith("-----BEGIN"):
        try:
            pem = serialization.load_pem_public_key(value.encode("ascii"))
        except (ValueError, TypeError) as exc:
            raise KeyFileError(f"{source}not a PEM public key") from exc
        if not isinstance(pem, Ed25519PublicKey):
            raise KeyFileError(f"{source}not an Ed25519 public key")
        raw = public_key_bytes(pem)
    elif len(value) == 64:
        try:
            raw = bytes.fromhex(value)
        except ValueError:
            raw = None
    if raw is None:
        try:
            # Padding optional: a key copied out of a JSON field or a URL often lacks it.
            raw = base64.b64decode(value + "=" * (-len(value) % 4), validate=True)
        except (binascii.Error, ValueError):
            raw = None
    if raw is None or len(raw) != 32:
        raise KeyFileError(
            f"{source}an Ed25519 public key is 32 bytes, in base64 or 64 hex digits (or a PEM "
            "public key)"
        )
    return raw


def sign_invitation(key: Ed25519PrivateKey, invitation_id: str) -> bytes:
    """The key proof for accepting an invitation: Ed25519 over the UTF-8 bytes of its id."""
    return key.sign(invitation_id.encode("utf-8"))


# -- signed votes (docs/signed-votes.md, encoding airlock.vote.v2) -------------------------------

VOTE_DIGEST_TAG = "airlock.vote.v2"
DRAFT_DIGEST_TAG = "airlock.team-draft.v1"
KEY_CHANGE_TAG = "airlock.key-change.v1"
_KIND_PREFIX = "PRINCIPAL_KIND_"
_KEY_CHANGE_PREFIX = "KEY_CHANGE_"


def _field(value: str) -> bytes:
    data = value.encode("utf-8")
    return len(data).to_bytes(4, "big") + data


def _requester(principal: common_pb2.Principal) -> str:
    kind = common_pb2.PrincipalKind.Name(principal.kind).removeprefix(_KIND_PREFIX).lower()
    return f"{kind}:{principal.subject}" if principal.subject else kind


def _expire_time(session: session_pb2.Session) -> str:
    """UTC, RFC 3339 with exactly six fractional digits and Z."""
    moment = dt.datetime.fromtimestamp(session.expire_time.seconds, dt.UTC)
    micros = session.expire_time.nanos // 1000
    return f"{moment:%Y-%m-%dT%H:%M:%S}.{micros:06d}Z"


def draft_digest_input(draft: session_pb2.TeamDraft) -> bytes:
    """The length-prefixed UTF-8 fields of a team draft that are hashed (docs/signed-votes.md),
    from the fields the approver is shown (never the server's `draft_sha256`)."""
    fields = [
        DRAFT_DIGEST_TAG,
        draft.team_id,
        str(draft.version),
        draft.description,
        str(draft.min_approvals),
        str(draft.session_ttl.seconds),
        str(draft.invitation_ttl.seconds),
        str(len(draft.members)),
    ]
    for m in draft.members:
        change = session_pb2.TeamDraft.KeyChange.Name(m.key_change)
        fields += [
            m.approver_id,
            change.removeprefix(_KEY_CHANGE_PREFIX),
            m.public_key.hex(),
            "1" if m.signed_by_current_key else "0",
        ]
    return b"".join(_field(value) for value in fields)


def draft_digest(session: session_pb2.Session) -> str:
    """Hex SHA-256 of the session's team draft; empty when it has none (not a team update)."""
    if not session.HasField("team_draft"):
        return ""
    return hashlib.sha256(draft_digest_input(session.team_draft)).hexdigest()


def key_change_message(team_id: str, approver_id: str, new_key: bytes) -> bytes:
    """What an approver's key in force signs to vouch for its new key (UpdateApprovalTeam's
    `new_keys[].current_key_signature`)."""
    return b"".join(_field(v) for v in (KEY_CHANGE_TAG, team_id, approver_id, new_key.hex()))


def vote_digest_input(
    session: session_pb2.Session, approve: bool, *, draft_sha256: str | None = None
) -> bytes:
    """The ten length-prefixed UTF-8 fields that are hashed (docs/signed-votes.md).
    `draft_sha256`: the draft digest when the session's draft itself is not at hand (a proof
    carries only its digest); by default it is recomputed from `session.team_draft`."""
    fields = (
        VOTE_DIGEST_TAG,
        session.session_id,
        session.team_id,
        str(session.team_version),
        session.action,
        session.protected_resource,
        _requester(session.requester),
        _expire_time(session),
        draft_digest(session) if draft_sha256 is None else draft_sha256,
        "APPROVE" if approve else "REJECT",
    )
    return b"".join(_field(value) for value in fields)


def vote_digest(
    session: session_pb2.Session, approve: bool, *, draft_sha256: str | None = None
) -> bytes:
    """SHA-256 of `vote_digest_input`: the 32 bytes an approver signs."""
    return hashlib.sha256(vote_digest_input(session, approve, draft_sha256=draft_sha256)).digest()


def sign_vote(key: Ed25519PrivateKey, session: session_pb2.Session, approve: bool) -> bytes:
    """The Vote signature: Ed25519 over the session's vote digest with this decision."""
    return key.sign(vote_digest(session, approve))
