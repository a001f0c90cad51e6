"""How `airlock` reaches the server: the credential (--token-file, --token or the environment)
and the connection (--server, TLS files), from the options or the AIRLOCK_* variables."""

from __future__ import annotations

import argparse
import os
from pathlib import Path

from airlock_cli.base import LocalError, UsageError
from airlock_client.client import DEFAULT_TARGET, AirlockClient


def _read_token_file(path: str) -> str:
    try:
        text = Path(path).read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise LocalError(f"cannot read token file {path}: {getattr(exc, 'strerror', exc)}") from exc
    for line in text.splitlines():
        line = line.strip()
        if line and not line.startswith("#"):
            return line
    raise LocalError(f"token file {path} holds no token")


def resolve_token(args: argparse.Namespace) -> str:
    if args.token and args.token_file:
        raise UsageError("airlock: give --token or --token-file, not both")
    if args.token:
        return str(args.token)
    if args.token_file:
        return _read_token_file(args.token_file)
    if os.environ.get("AIRLOCK_TOKEN"):
        return os.environ["AIRLOCK_TOKEN"].strip()
    if os.environ.get("AIRLOCK_TOKEN_FILE"):
        return _read_token_file(os.environ["AIRLOCK_TOKEN_FILE"])
    raise UsageError(
        "airlock: no credential: give --token-file FILE (or --token, AIRLOCK_TOKEN_FILE, "
        "AIRLOCK_TOKEN)"
    )


def _read_pem(path: str | None) -> bytes | None:
    if not path:
        return None
    try:
        return Path(path).read_bytes()
    except OSError as exc:
        raise LocalError(f"cannot read {path}: {exc.strerror}") from exc


def connect(args: argparse.Namespace, token: str) -> AirlockClient:
    env = os.environ
    ca = _read_pem(args.tls_ca or env.get("AIRLOCK_TLS_CA"))
    cert = _read_pem(args.tls_cert or env.get("AIRLOCK_TLS_CERT"))
    key = _read_pem(args.tls_key or env.get("AIRLOCK_TLS_KEY"))
    if (cert is None) != (key is None):
        raise UsageError("airlock: --tls-cert and --tls-key go together")
    return AirlockClient.connect(
        args.server or env.get("AIRLOCK_SERVER") or DEFAULT_TARGET,
        token,
        timeout=args.timeout,
        tls=args.tls,
        root_certificates=ca,
        certificate_chain=cert,
        private_key=key,
    )


def plaintext(args: argparse.Namespace | None) -> bool:
    """Whether the connection was (or would have been) made without TLS."""
    env = os.environ
    return args is not None and not (
        args.tls
        or args.tls_ca
        or args.tls_cert
        or env.get("AIRLOCK_TLS_CA")
        or env.get("AIRLOCK_TLS_CERT")
    )
