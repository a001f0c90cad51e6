"""The `airlock-server` command's entry point.

gRPC's C core writes its own lines (a refused TLS handshake, for one) to stderr as plain text,
at the verbosity GRPC_VERBOSITY names, read once when grpc is first imported. With JSON logs
every line of stderr must be JSON, so the core is silenced (GRPC_VERBOSITY=NONE) before
anything imports grpc, unless the operator set GRPC_VERBOSITY (to debug the core) themselves.
What the core refuses still reaches callers as a status, and the server logs its own lines.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Mapping, MutableMapping, Sequence


def json_logs(argv: Sequence[str], env: Mapping[str, str], tty: bool) -> bool:
    """Whether the command will log JSON: --log-format, else AIRLOCK_LOG_FORMAT, else auto
    (JSON unless stderr is a terminal), as cli.py decides it."""
    fmt = env.get("AIRLOCK_LOG_FORMAT") or "auto"
    for i, arg in enumerate(argv):
        if arg == "--log-format" and i + 1 < len(argv):
            fmt = argv[i + 1]
        elif arg.startswith("--log-format="):
            fmt = arg.partition("=")[2]
    fmt = fmt.lower()
    return fmt == "json" or (fmt == "auto" and not tty)


def quiet_grpc_core(argv: Sequence[str], env: MutableMapping[str, str], tty: bool) -> None:
    if json_logs(argv, env, tty) and "GRPC_VERBOSITY" not in env:
        env["GRPC_VERBOSITY"] = "NONE"


def main() -> int:
    quiet_grpc_core(sys.argv[1:], os.environ, sys.stderr.isatty())
    from airlock_server.cli import main as run  # grpc is first imported here

    return run()
