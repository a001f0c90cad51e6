"""What every command module of `airlock` shares: the exit codes, the failures that end a
command, and how a module adds its commands (`add_family`, `add_command`) to the parser."""

from __future__ import annotations

import argparse
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any, NoReturn

from airlock_cli.output import Output
from airlock_cli.values import positive_float
from airlock_client.client import DEFAULT_TARGET, DEFAULT_TIMEOUT, AirlockClient

# The exit codes, as `airlock --help` tells them (parser.py's epilog).
EXIT_OK = 0
EXIT_USAGE = 1
EXIT_LOCAL = 2
EXIT_DEMO_FAILED = 3
EXIT_PROOF_REJECTED = 4
EXIT_LOG_NOT_INTACT = 5
EXIT_PROOF_UNANCHORED = 6
EXIT_PROOF_UNPINNED = 7
EXIT_RPC_BASE = 64  # + the gRPC status code, as grpcurl does
EXIT_INTERRUPTED = 130


class UsageError(Exception):
    """Bad command-line input."""


class LocalError(Exception):
    """A local failure: files, keys."""


class CommandFailed(Exception):
    """The command ran and its answer is no (a proof rejected, a session not approved...): it
    exits with `exit_code` after writing `heading` and its message on stderr."""

    exit_code = EXIT_LOCAL
    heading = ""

    def report(self) -> str:
        """What goes to stderr."""
        return f"{self.heading}{self}\n"


class Parser(argparse.ArgumentParser):
    """An ArgumentParser that raises instead of exiting, so that main() returns exit codes."""

    def error(self, message: str) -> NoReturn:
        raise UsageError(f"{self.prog}: {message}")


# A command that calls the server; a local one (`local` in the parsed arguments) never connects.
Handler = Callable[[AirlockClient, argparse.Namespace, Output], Awaitable[None]]
LocalHandler = Callable[[argparse.Namespace, Output], Awaitable[None]]
# The subcommands of `airlock` or of one of its families (generic for the type checker only).
if TYPE_CHECKING:
    Group = argparse._SubParsersAction[argparse.ArgumentParser]
else:
    Group = argparse._SubParsersAction


def add_command(
    group: Group,
    name: str,
    help_text: str,
    handler: Handler | None = None,
) -> argparse.ArgumentParser:
    """A command in `group`; with a handler, it takes the connection and output options too."""
    sub: argparse.ArgumentParser = group.add_parser(
        name,
        help=help_text,
        description=help_text,
        epilog="Exit codes and environment: see `airlock --help`.",
    )
    if handler is not None:
        global_options(sub, root=False)
        sub.set_defaults(handler=handler)
    return sub


def add_family(group: Group, name: str, help_text: str) -> Group:
    """`airlock NAME SUBCOMMAND ...`: a command whose subcommands go in the group returned."""
    sub = add_command(group, name, help_text)
    return sub.add_subparsers(dest="subcommand", metavar="SUBCOMMAND", required=True)


def global_options(parser: argparse.ArgumentParser, *, root: bool) -> None:
    """The connection and output options, accepted before or after the subcommand.

    On subcommands they default to SUPPRESS, so a value given before the subcommand is kept.
    """

    def default(value: Any) -> Any:
        return value if root else argparse.SUPPRESS

    group = parser.add_argument_group("connection and output")
    group.add_argument(
        "--server",
        metavar="HOST:PORT",
        default=default(None),
        help=f"server address (env AIRLOCK_SERVER; default {DEFAULT_TARGET})",
    )
    group.add_argument(
        "--token",
        metavar="TOKEN",
        default=default(None),
        help="bearer token (env AIRLOCK_TOKEN); prefer --token-file",
    )
    group.add_argument(
        "--token-file",
        metavar="FILE",
        default=default(None),
        help="file holding the bearer token (env AIRLOCK_TOKEN_FILE)",
    )
    group.add_argument(
        "--json",
        action="store_true",
        default=default(False),
        help="print one JSON document (proto3 JSON mapping) instead of text",
    )
    group.add_argument(
        "--timeout",
        metavar="SECONDS",
        type=positive_float,
        default=default(DEFAULT_TIMEOUT),
        help=f"deadline of each call in seconds (default {DEFAULT_TIMEOUT:g})",
    )
    group.add_argument(
        "--tls",
        action="store_true",
        default=default(False),
        help="use TLS with the system's CAs (implied by --tls-ca/--tls-cert)",
    )
    group.add_argument(
        "--tls-ca",
        metavar="PEM",
        default=default(None),
        help="CA certificates to trust (env AIRLOCK_TLS_CA)",
    )
    group.add_argument(
        "--tls-cert",
        metavar="PEM",
        default=default(None),
        help="client certificate chain for mutual TLS (env AIRLOCK_TLS_CERT)",
    )
    group.add_argument(
        "--tls-key",
        metavar="PEM",
        default=default(None),
        help="client private key for mutual TLS (env AIRLOCK_TLS_KEY)",
    )
