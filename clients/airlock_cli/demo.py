"""`airlock demo`: the whole recovery story (story.py) played against the server, with an admin
credential."""

from __future__ import annotations

import argparse
import sys

from airlock_cli.base import EXIT_DEMO_FAILED, CommandFailed, Group, add_command
from airlock_cli.connection import connect
from airlock_cli.output import Output
from airlock_cli.story import DemoFailed, run_demo
from airlock_client.client import AirlockClient
from airlock_client.errors import AirlockError, StatusCode


class StepFailed(CommandFailed):
    """A step did not behave as the story says."""

    exit_code = EXIT_DEMO_FAILED
    heading = "demo failed: "


async def _demo(client: AirlockClient, args: argparse.Namespace, out: Output) -> None:
    # With --json the narration goes to stderr and stdout holds only the summary document.
    narration = sys.stderr if out.as_json else out.out
    try:
        summary = await run_demo(client, lambda token: connect(args, token), narration)
    except DemoFailed as failed:
        # A server out of reach is no step misbehaving: the CLI's exit code for UNAVAILABLE.
        cause = failed.__cause__
        if isinstance(cause, AirlockError) and cause.code == StatusCode.UNAVAILABLE:
            raise cause from None
        raise StepFailed(str(failed)) from failed
    if out.as_json:
        out.document(summary.as_dict())


def add_commands(commands: Group) -> None:
    add_command(
        commands,
        "demo",
        "run the whole recovery story against the server (admin credential); "
        "--json prints a summary",
        _demo,
    )
