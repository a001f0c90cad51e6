"""One reader of the event log per process, fanning new events out to every follower.

Followers (WatchEvents, WatchSession) subscribe instead of reading the log themselves: when
the signal says events may have been committed, the feed reads them once and hands each
follower those it asked for. A follower's buffer is bounded; one that does not keep up is
dropped (its buffer freed at once) and told so by STREAM_BUFFER_FULL.
"""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
from collections import deque
from collections.abc import Awaitable, Callable
from typing import Any, Generic, TypeVar

import structlog

from airlock_server.app.ports import EventLogReader, EventQuery, EventSignal
from airlock_server.domain.errors import STREAM_BUFFER_FULL, ResourceExhausted
from airlock_server.domain.events import Event

log = structlog.get_logger("airlock.events")

FEED_BATCH = 500
# After a failed read, the feed waits this long before it reads again.
RETRY_AFTER_FAILURE = 1.0

# Set by the transport around a stream: the subscription made while serving it sets this
# event when it overflows, so that a stream blocked writing to a client that does not read
# is ended too (transport/limits.py).
overflow_alarm: contextvars.ContextVar[asyncio.Event | None] = contextvars.ContextVar(
    "airlock_overflow_alarm", default=None
)


T = TypeVar("T")
K = TypeVar("K")


def _retrieve(task: asyncio.Future[Any]) -> None:
    if not task.cancelled():
        task.exception()  # retrieved: a failure after the caller left is not logged as lost


async def finished_read(read: Awaitable[T]) -> T:
    """`read`, run to its end even when the caller is cancelled (its client went away):
    cancelled midway, a read aborts its database connection, which asyncpg and SQLAlchemy's
    pool then log at ERROR. The caller's cancellation still takes effect at once."""
    task = asyncio.ensure_future(read)
    task.add_done_callback(_retrieve)
    return await asyncio.shield(task)


class SharedReads(Generic[K, T]):
    """Identical reads at the same time share one: the first caller starts it, the others
    await the same result. The key must name everything the result depends on."""

    def __init__(self) -> None:
        self._running: dict[K, asyncio.Future[T]] = {}

    @property
    def running(self) -> int:
        return len(self._running)

    async def read(self, key: K, start: Callable[[], Awaitable[T]]) -> T:
        """As finished_read: a caller cancelled leaves the read to the others."""
        task = self._running.get(key)
        if task is None:
            task = asyncio.ensure_future(start())
            self._running[key] = task
            task.add_done_callback(_retrieve)
            task.add_done_callback(lambda _: self._running.pop(key, None))
        return await asyncio.shield(task)


def buffer_full() -> ResourceExhausted:
    return ResourceExhausted(
        "this stream fell too far behind the event log and was closed; "
        "resume it after the last event received",
        reason=STREAM_BUFFER_FULL,
    )


class Subscription:
    """The events after `after` that match, in seq order, for one follower."""

    def __init__(
        self,
        feed: EventFeed,
        after: int,
        match: Callable[[Event], bool] | None,
        capacity: int,
    ) -> None:
        self.after = after
        self._feed = feed
        self._match = match
        self._capacity = capacity
        self._events: deque[Event] = deque()
        self._ready = asyncio.Event()
        self._alarm = overflow_alarm.get()
        self.overflowed = False

    @property
    def buffered(self) -> int:
        return len(self._events)

    def offer(self, event: Event) -> bool:
        """False when the buffer was full: the subscription is then over."""
        if self._match is not None and not self._match(event):
            return True
        if len(self._events) >= self._capacity:
            self.overflowed = True
            self._events.clear()
            self._ready.set()
            if self._alarm is not None:
                self._alarm.set()
            return False
        self._events.append(event)
        self._ready.set()
        return True

    async def next(self, within: float) -> list[Event]:
        """What arrived, waiting up to `within` seconds for something (then []).
        Raises RESOURCE_EXHAUSTED STREAM_BUFFER_FULL once the buffer overflowed."""
        if not self._events and not self.overflowed:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._ready.wait(), within)
        if self.overflowed:
            raise buffer_full()
        got = list(self._events)
        self._events.clear()
        self._ready.clear()
        return got

    def close(self) -> None:
        self._events.clear()
        self._feed.unsubscribe(self)


class EventFeed:
    """The process's one follower of the log; see the module docstring."""

    def __init__(
        self, log_reader: EventLogReader, signal: EventSignal, poll: float, capacity: int = 1000
    ) -> None:
        self._log = log_reader
        self._signal = signal
        self._poll = poll
        self.capacity = capacity
        self._subs: set[Subscription] = set()
        self._position = 0
        self._pump: asyncio.Task[None] | None = None
        self.reads = 0  # reads of the log by the feed (for tests and metrics)

    @property
    def subscribers(self) -> int:
        return len(self._subs)

    @property
    def position(self) -> int:
        """The last seq handed out."""
        return self._position

    @property
    def buffered(self) -> int:
        """Events held for followers, in all."""
        return sum(s.buffered for s in self._subs)

    def _running(self) -> bool:
        return self._pump is not None and not self._pump.done()

    async def subscribe(self, match: Callable[[Event], bool] | None = None) -> Subscription:
        """Every matching event after the log's head now (`after` of the result)."""
        if not self._running():
            head = await finished_read(self._log.head_seq())
            if not self._running():  # no other subscriber started it meanwhile
                self._position = head
        sub = Subscription(self, self._position, match, self.capacity)
        self._subs.add(sub)
        if not self._running():
            # A context of its own: not the first subscriber's (its caller, its stream's alarm).
            self._pump = asyncio.create_task(
                self._run(), name="airlock-event-feed", context=contextvars.Context()
            )
        return sub

    def unsubscribe(self, sub: Subscription) -> None:
        # The pump is not cancelled here: it stops by itself when nobody is left (cancelling a
        # read in flight would abort its database connection).
        self._subs.discard(sub)

    async def _run(self) -> None:
        while self._subs:
            try:
                batch = await finished_read(
                    self._log.list_page(EventQuery(), self._position, FEED_BATCH)
                )
            except Exception as exc:
                log.warning("events.feed_read_failed", error=f"{type(exc).__name__}: {exc}")
                await asyncio.sleep(RETRY_AFTER_FAILURE)
                continue
            self.reads += 1
            for event in batch:
                for sub in list(self._subs):
                    if not sub.offer(event):
                        self._subs.discard(sub)
            if batch:
                self._position = batch[-1].seq
            if len(batch) < FEED_BATCH and self._subs:
                await self._signal.wait(self._position, self._poll)

    async def close(self) -> None:
        pump, self._pump = self._pump, None
        self._subs.clear()
        if pump is not None and not pump.done():
            pump.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await pump
