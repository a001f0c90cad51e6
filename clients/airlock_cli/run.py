"""Running one `airlock` command: parse, connect with the credential, call the command's
handler, and turn how it ended into the exit code `airlock --help` lists."""

from __future__ import annotations

import argparse
import asyncio
import sys
from collections.abc import Callable, Sequence

from airlock_cli import connection
from airlock_cli.base import (
    EXIT_INTERRUPTED,
    EXIT_LOCAL,
    EXIT_OK,
    EXIT_RPC_BASE,
    EXIT_USAGE,
    CommandFailed,
    Handler,
    LocalError,
    LocalHandler,
    UsageError,
)
from airlock_cli.output import Output
from airlock_cli.parser import build_parser
from airlock_client import checkpoints, keys
from airlock_client.errors import AirlockError, StatusCode


def print_error(error: AirlockError, *, plaintext: bool = False) -> None:
    """`error: CODE REASON: message`, then each invalid field, on stderr; each thing once (the
    reason when it is not the code again, the message when it is not the fields again). With
    `plaintext`, an UNAVAILABLE of the connection itself (no reason: not the server's answer)
    that is not a refused connection gets a hint: a TLS server closes a plaintext client's
    connection at the handshake."""
    head = error.heading
    fields = [f"{v.field}: {v.description}" for v in error.field_violations]
    if error.message and error.message != "; ".join(fields):
        head += f": {error.message}"
    elif fields:
        head += ": invalid fields"
    sys.stderr.write(f"error: {head}\n")
    for line in fields:
        sys.stderr.write(f"  {line}\n")
    closed = not error.reason and "refused" not in error.message
    if plaintext and error.code == StatusCode.UNAVAILABLE and closed:
        sys.stderr.write("hint: is the server using TLS? try --tls-ca PEM (or --tls)\n")


async def main_async(argv: Sequence[str] | None = None) -> int:
    """Runs one command in the running event loop; returns the exit code."""
    args: argparse.Namespace | None = None
    try:
        try:
            args = build_parser().parse_args(argv)
        except SystemExit as exit_:  # --help, --version
            return exit_.code if isinstance(exit_.code, int) else EXIT_OK
        out = Output(as_json=args.json)
        local: LocalHandler | None = getattr(args, "local", None)
        if local is not None:
            await local(args, out)
            return EXIT_OK
        prepare: Callable[[argparse.Namespace], None] | None = getattr(
            args, "before_connecting", None
        )
        if prepare is not None:
            prepare(args)
        token = connection.resolve_token(args)
        async with connection.connect(args, token) as client:
            handler: Handler = args.handler
            await handler(client, args, out)
        return EXIT_OK
    except UsageError as exc:
        sys.stderr.write(f"{exc}\nTry 'airlock --help'.\n")
        return EXIT_USAGE
    except (LocalError, keys.KeyFileError, checkpoints.CheckpointError) as exc:
        sys.stderr.write(f"error: {exc}\n")
        return EXIT_LOCAL
    except CommandFailed as exc:
        sys.stderr.write(exc.report())
        return exc.exit_code
    except AirlockError as exc:
        print_error(exc, plaintext=connection.plaintext(args))
        return EXIT_RPC_BASE + int(exc.code)


def main(argv: Sequence[str] | None = None) -> int:
    """The `airlock` entry point. Call it from synchronous code (it runs its own event loop);
    from a coroutine use `await main_async(argv)`."""
    try:
        return asyncio.run(main_async(argv))
    except KeyboardInterrupt:
        sys.stderr.write("interrupted\n")
        return EXIT_INTERRUPTED
