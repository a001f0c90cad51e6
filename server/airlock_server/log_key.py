"""The server's log key file: an Ed25519 private key (PKCS#8 PEM, mode 0600), made once.

`airlock-server bootstrap` creates it (never overwriting one), as does `airlock-server log-key`
for an install bootstrapped without one (refused when the file exists); `serve` loads it to sign
checkpoints of the event log. Without it the server still serves, and GetLogCheckpoint and
ExportApprovalProof answer FAILED_PRECONDITION LOG_KEY_MISSING.
"""

from __future__ import annotations

import os
import stat
from pathlib import Path

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.serialization import (
    Encoding,
    NoEncryption,
    PrivateFormat,
    load_pem_private_key,
)

from airlock_server.app.audit import LogKey

DEFAULT_LOG_KEY_FILE = "var/log-key.pem"


class LogKeyError(Exception):
    pass


def create_log_key(path: Path) -> LogKey | None:
    """A new key written to `path` (0600); None when the file exists already (kept as is)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    key = Ed25519PrivateKey.generate()
    pem = key.private_bytes(Encoding.PEM, PrivateFormat.PKCS8, NoEncryption())
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        return None
    with os.fdopen(fd, "wb") as out:
        out.write(pem)
    return LogKey(key)


def load_log_key(path: Path) -> LogKey | None:
    """The key in `path`; None when there is no such file."""
    try:
        mode = path.stat().st_mode
        pem = path.read_bytes()
    except FileNotFoundError:
        return None
    except OSError as exc:
        raise LogKeyError(f"cannot read the log key {path}: {exc.strerror}") from exc
    if mode & (stat.S_IRWXG | stat.S_IRWXO):
        raise LogKeyError(
            f"the log key {path} is readable by others (mode {oct(mode & 0o777)}); "
            f"run `chmod 600 {path}`"
        )
    try:
        key = load_pem_private_key(pem, password=None)
    except (ValueError, TypeError) as exc:
        raise LogKeyError(f"{path} does not hold a PEM private key") from exc
    if not isinstance(key, Ed25519PrivateKey):
        raise LogKeyError(f"{path} does not hold an Ed25519 private key")
    return LogKey(key)
