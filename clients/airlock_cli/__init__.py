"""`airlock`: the command line for admins, approvers and auditors, on top of the SDK
(`airlock_client`).

Human-readable output by default; `--json` prints one JSON document (the proto message in the
proto3 JSON mapping) for scripts. `main(argv)` can be called in-process and returns the exit code.

One module per service adds its commands (`add_commands`): identity, teams, approver, proof,
sessions, vaults, health, audit, notifications, and demo (the recovery story, story.py). base.py
holds what they share (exit codes, `add_family`/`add_command`), parser.py puts them together,
run.py runs one command.
"""

from airlock_cli.parser import build_parser
from airlock_cli.run import main, main_async

__all__ = ["build_parser", "main", "main_async"]
