"""The `airlock` argument parser: the connection and output options, then each family of
commands, added by the module of its service."""

from __future__ import annotations

import argparse
import importlib.metadata

from airlock_cli import (
    approver,
    audit,
    demo,
    health,
    identity,
    notifications,
    proof,
    sessions,
    teams,
    vaults,
)
from airlock_cli.base import Parser, global_options
from airlock_client.client import DEFAULT_TARGET

_EPILOG = f"""\
environment:
  AIRLOCK_SERVER       server address (default {DEFAULT_TARGET})
  AIRLOCK_TOKEN        bearer token (prefer AIRLOCK_TOKEN_FILE: a token in argv or the
                       environment can be seen by other local users)
  AIRLOCK_TOKEN_FILE   file holding the bearer token (its first non-empty line)
  AIRLOCK_TLS_CA, AIRLOCK_TLS_CERT, AIRLOCK_TLS_KEY   TLS files (see --tls-ca ...)

output:
  Human-readable by default; --json prints one JSON document: the resource, or the RPC
  response when it carries more than one thing; lists print the List response with every
  page merged. Errors go to stderr as `error: CODE REASON: message`, then one line per
  invalid field.

exit codes:
  0         success
  1         usage error (bad arguments, no credential given)
  2         local error (a file that cannot be read or written, a bad key file)
  3         `airlock demo`: a step did not behave as the story says
  4         `airlock proof verify`: the proof does not prove the approval (reasons on stderr)
  5         `airlock audit verify`: the event log or the checkpoint did not verify
  6         `airlock proof verify`: unanchored: nothing wrong found, but its checkpoint is
            signed by a log key you did not give (--log-key); stderr names that key
  7         `airlock proof verify`: unpinned: nothing wrong found and anchored, but no approver
            keys were pinned (--approver-key, --keyring from `airlock team keyring export`)
  10        `sessions wait|watch`, `restore request --wait`: the session was REJECTED
            (approval became impossible); 0 when it was APPROVED
  11        ... the session EXPIRED
  12        ... the session was CANCELLED (by a user, a team change or deletion)
  13        ... the session ended otherwise not approved
  64 + N    the server answered with gRPC status N, for example 67 INVALID_ARGUMENT,
            69 NOT_FOUND, 70 ALREADY_EXISTS, 71 PERMISSION_DENIED, 73 FAILED_PRECONDITION,
            76 UNIMPLEMENTED, 78 UNAVAILABLE, 80 UNAUTHENTICATED (the grpcurl convention)
  130       interrupted
"""

# In the order `airlock --help` lists them.
_SERVICES = (identity, teams, approver, proof, sessions, vaults, health, audit, demo, notifications)


def _version() -> str:
    """The installed package's version (its metadata, from pyproject.toml)."""
    try:
        return importlib.metadata.version("airlock")
    except importlib.metadata.PackageNotFoundError:  # a source tree never installed
        return "unknown"


def build_parser() -> argparse.ArgumentParser:
    """The `airlock` argument parser."""
    parser = Parser(
        prog="airlock",
        description="Airlock: multi-party approval for logically air-gapped backup vaults.",
        epilog=_EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--version", action="version", version=f"airlock {_version()}")
    global_options(parser, root=True)
    commands = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for service in _SERVICES:
        service.add_commands(commands)
    return parser
