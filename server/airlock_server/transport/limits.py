"""Load bounds at the edge: open streams per process and per principal, a stream whose reader
does not keep up, and refused calls per principal (each would be a `call.denied` event).

The interceptor calls `Limits.stream` to serve a server-streaming call and `Limits.refusal`
when a call is refused; everything else of the bounds lives here.
"""

from __future__ import annotations

import asyncio
import contextlib
import math
import time
from collections.abc import AsyncGenerator, Callable, Iterator
from dataclasses import dataclass
from typing import Any

import grpc

from airlock_server.app.feed import buffer_full, overflow_alarm
from airlock_server.domain.errors import (
    TOO_MANY_REFUSED_CALLS,
    TOO_MANY_STREAMS,
    DomainError,
    ResourceExhausted,
)

Ctx = grpc.aio.ServicerContext[Any, Any]

# Buckets kept at most; beyond it, the full ones (principals quiet for a while) are dropped.
MAX_BUCKETS = 10_000


class StreamSlots:
    """How many streams are open, in all and per principal, each under its cap."""

    def __init__(self, total: int, per_principal: int) -> None:
        self.total = total
        self.per_principal = per_principal
        self.open = 0
        self._by_principal: dict[str, int] = {}

    @contextlib.contextmanager
    def hold(self, principal: str) -> Iterator[None]:
        """One slot while the block runs; RESOURCE_EXHAUSTED TOO_MANY_STREAMS when full."""
        mine = self._by_principal.get(principal, 0)
        if self.open >= self.total:
            raise _too_many(f"this server has {self.total} streams open, its limit")
        if mine >= self.per_principal:
            raise _too_many(
                f"{principal} has {self.per_principal} streams open, the limit per caller"
            )
        self.open += 1
        self._by_principal[principal] = mine + 1
        try:
            yield
        finally:
            self.open -= 1
            left = self._by_principal[principal] - 1
            if left:
                self._by_principal[principal] = left
            else:
                del self._by_principal[principal]


def _too_many(message: str) -> ResourceExhausted:
    return ResourceExhausted(
        f"{message}; close a stream or retry later",
        reason=TOO_MANY_STREAMS,
        retry_after=1.0,
    )


class RefusalBudget:
    """A token bucket per principal: `burst` refusals at once, then `rate` a second."""

    def __init__(
        self, rate: float, burst: int, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self.rate = rate
        self.burst = burst
        self._clock = clock
        self._buckets: dict[str, tuple[float, float]] = {}  # principal -> (tokens, at)

    def take(self, principal: str) -> float:
        """0 when a refusal may be recorded now, else the seconds until one may."""
        now = self._clock()
        tokens, at = self._buckets.get(principal, (float(self.burst), now))
        tokens = min(float(self.burst), tokens + (now - at) * self.rate)
        if tokens >= 1.0:
            self._buckets[principal] = (tokens - 1.0, now)
            self._prune(now)
            return 0.0
        self._buckets[principal] = (tokens, now)
        return (1.0 - tokens) / self.rate

    def _prune(self, now: float) -> None:
        if len(self._buckets) <= MAX_BUCKETS:
            return
        refill = self.burst / self.rate
        for key, (_, at) in list(self._buckets.items()):
            if now - at >= refill:
                del self._buckets[key]


@dataclass
class Limits:
    streams: StreamSlots
    refusals: RefusalBudget

    @classmethod
    def of(
        cls,
        *,
        max_streams: int = 1000,
        max_streams_per_principal: int = 32,
        refusal_rate: float = 1.0,
        refusal_burst: int = 20,
    ) -> Limits:
        return cls(
            StreamSlots(max_streams, max_streams_per_principal),
            RefusalBudget(refusal_rate, refusal_burst),
        )

    def refusal(self, principal: str, error: DomainError) -> DomainError:
        """The error to answer for a refused call of `principal` that the log would record:
        itself while the principal's budget lasts, else RESOURCE_EXHAUSTED with RetryInfo
        (not recorded: the log does not grow with a caller's retries)."""
        wait = self.refusals.take(principal)
        if not wait:
            return error
        return ResourceExhausted(
            f"too many refused calls from {principal}; retry after the delay given",
            reason=TOO_MANY_REFUSED_CALLS,
            retry_after=math.ceil(wait * 1000) / 1000,
        )

    async def stream(
        self, principal: str, responses: AsyncGenerator[Any, None], context: Ctx
    ) -> None:
        """Serve a server-streaming call within the stream caps, writing each response."""
        async with contextlib.aclosing(responses):
            with self.streams.hold(principal):
                await write_all(responses, context)


async def write_all(responses: AsyncGenerator[Any, None], context: Ctx) -> None:
    """Write each response. The event feed raises the alarm when this stream's buffer
    overflowed; a write blocked on a client that does not read is then given up, and the
    call ends RESOURCE_EXHAUSTED STREAM_BUFFER_FULL (what was buffered is freed)."""
    alarm = asyncio.Event()
    token = overflow_alarm.set(alarm)
    alarmed = asyncio.ensure_future(alarm.wait())
    try:
        async for response in responses:
            write = asyncio.ensure_future(context.write(response))
            done, _ = await asyncio.wait({write, alarmed}, return_when=asyncio.FIRST_COMPLETED)
            if write not in done:
                write.cancel()
                raise buffer_full()
            write.result()
    finally:
        alarmed.cancel()
        overflow_alarm.reset(token)
