"""Group commit of votes: the votes a process receives together are written in one transaction.

A vote's fixed cost (BEGIN, the locked reads, the claim of its request_id, the insert, the
log append, COMMIT: one round trip each, issue 11) is paid once per batch instead of once per
vote. While a batch is in the database the next one gathers; it starts as soon as the one
before ends, so a vote that finds no batch running waits for nothing.

Each vote keeps its own outcome. The batch's writer validates every vote before anything is
written and answers a refused one on its own (`Refused`), leaves a vote out of the batch to be
cast alone after it (`ALONE`: a replayed request_id, a passkey's vote, an expired session) and
commits the others; a batch that fails as a whole casts each of its votes alone. A batch holds
at most one vote per session and one per request_id: the second waits for the next batch,
where it sees the first one's outcome.
"""

from __future__ import annotations

import asyncio
import contextvars
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Final, Generic, TypeVar

import structlog

from airlock_server.domain.errors import DomainError
from airlock_server.domain.principals import Principal
from airlock_server.domain.sessions import VoteDecision

V = TypeVar("V")

log = structlog.get_logger("airlock.votes")

# Enough to amortise a transaction's fixed cost; small enough that one batch's statements
# (each carries every vote of the batch) stay short.
MAX_BATCH = 64


class Alone:
    """The answer "cast this vote on its own, after the batch"."""


ALONE: Final = Alone()


@dataclass(frozen=True)
class Refused:
    """A vote refused in the batch, with its error (the others go on)."""

    error: DomainError


@dataclass(eq=False)
class Ballot(Generic[V]):
    """One Vote call waiting for its batch; `answer` is set when the batch is done."""

    caller: Principal
    session_id: str
    decision: VoteDecision
    comment: str
    signature: bytes
    request_id: str
    fingerprint: str  # of the request (common.request_fingerprint), read in the caller's task
    channel: str
    answer: asyncio.Future[V | Refused | Alone] = field(init=False)

    def __post_init__(self) -> None:
        self.answer = asyncio.get_running_loop().create_future()


class Ballots(Generic[V]):
    """This process's votes, gathered and written a batch at a time by `write`, which answers
    each of them (a ballot it leaves without an answer is cast alone)."""

    def __init__(self, write: Callable[[list[Ballot[V]]], Awaitable[None]]) -> None:
        self._write = write
        self._queue: list[Ballot[V]] = []
        self._runner: asyncio.Task[None] | None = None
        self._loop: asyncio.AbstractEventLoop | None = None

    async def cast(self, ballot: Ballot[V]) -> V | Refused | Alone:
        loop = asyncio.get_running_loop()
        if self._loop is not loop:  # a new event loop (tests): nothing of the old one carries
            self._loop, self._queue, self._runner = loop, [], None
        self._queue.append(ballot)
        if self._runner is None or self._runner.done():
            # A context of its own: the batch belongs to no one caller's request.
            self._runner = loop.create_task(self._run(), context=contextvars.Context())
        # The caller going away does not take the batch (or the other votes) with it.
        return await asyncio.shield(ballot.answer)

    async def _run(self) -> None:
        while self._queue:
            batch = self._next_batch()
            try:
                await self._write(batch)
            except Exception as error:
                # Each vote is cast alone next (below): the batch's failure is nobody's answer,
                # but an operator sees that batches fail.
                log.warning("votes.batch_failed", votes=len(batch), error=type(error).__name__)
            finally:
                for ballot in batch:
                    if not ballot.answer.done():
                        ballot.answer.set_result(ALONE)

    def _next_batch(self) -> list[Ballot[V]]:
        batch: list[Ballot[V]] = []
        later: list[Ballot[V]] = []
        sessions: set[str] = set()
        request_ids: set[tuple[str, str]] = set()
        for ballot in self._queue:
            rid = (str(ballot.caller), ballot.request_id)
            if (
                len(batch) >= MAX_BATCH
                or ballot.session_id in sessions
                or (ballot.request_id and rid in request_ids)
            ):
                later.append(ballot)
                continue
            batch.append(ballot)
            sessions.add(ballot.session_id)
            if ballot.request_id:
                request_ids.add(rid)
        self._queue = later
        return batch
