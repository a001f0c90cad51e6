"""Following a live stream through lost connections: `sessions watch`, `sessions wait`,
`restore request --wait` and `audit tail` keep going while the server or its database restarts."""

from __future__ import annotations

import asyncio
import random
from collections.abc import Callable

from airlock.v1 import session_pb2
from airlock_cli.output import Output
from airlock_client.client import AirlockClient
from airlock_client.errors import AirlockError, StatusCode

# What a stream rides through: the server restarting, or unreachable for a while.
RETRYABLE = frozenset(
    {
        StatusCode.UNAVAILABLE,
        StatusCode.ABORTED,
        StatusCode.CANCELLED,
        StatusCode.DEADLINE_EXCEEDED,
    }
)
# The longest wait between two attempts.
MAX_BACKOFF = 5.0


class Reconnect:
    """When to open a lost stream again. Anything but an outage is raised; an outage is told once
    on stderr, and each attempt in a row waits longer (exponential backoff, jittered so that the
    clients of a restarted server do not all come back at the same moment)."""

    def __init__(self) -> None:
        self.failures = 0

    def received(self) -> None:
        """A message arrived: the connection is back, and the next outage is told again."""
        self.failures = 0

    async def lost(self, error: AirlockError | None, what: str) -> None:
        """After the stream failed with `error`, or ended early (None): raises the error unless
        it is an outage, then waits before the next attempt; `what` is told with the outage
        ("reopening the watch")."""
        if error is not None:
            if error.code not in RETRYABLE:
                raise error
            if self.failures == 0:
                Output.note(f"connection lost ({error.reason or error.code.name}); {what}")
        self.failures += 1
        await asyncio.sleep(min(MAX_BACKOFF, 0.1 * 2**self.failures) * random.uniform(0.5, 1.0))


async def follow_session(
    client: AirlockClient,
    session_id: str,
    on_change: Callable[[session_pb2.Session], None],
) -> session_pb2.Session:
    """Follows a session until it is final and returns it; `on_change` sees each state as the
    server sends it (after a reconnection, the current state again). The watch is opened again
    after an outage, or when it ends before the session does (a server going away)."""
    reconnect = Reconnect()
    while True:
        try:
            async for session in client.watch_session(session_id):
                reconnect.received()
                on_change(session)
                if session.state != session_pb2.Session.STATE_PENDING:
                    return session
        except AirlockError as exc:
            await reconnect.lost(exc, "reopening the watch")
            continue
        await reconnect.lost(None, "reopening the watch")
