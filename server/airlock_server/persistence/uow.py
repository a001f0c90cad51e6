"""The unit of work: one transaction per use case, events appended at commit."""

from __future__ import annotations

import contextlib
from collections.abc import Callable
from types import TracebackType

from sqlalchemy.exc import DBAPIError, IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from airlock_server.app.ports import Clock
from airlock_server.domain.errors import Conflict
from airlock_server.domain.events import NewEvent
from airlock_server.domain.notifications import Routing, notice_for
from airlock_server.persistence.activity import ActivityWriter, SqlActivityRepository
from airlock_server.persistence.db import (
    ONE_STATEMENT_OPTION,
    READ_ONLY_OPTION,
    TRACKER_OPTION,
    StatementTracker,
    is_outage,
    outage,
)
from airlock_server.persistence.event_log import append_events
from airlock_server.persistence.notifications import (
    Outbox,
    plan_events,
    write_events,
)
from airlock_server.persistence.repositories import Repositories
from airlock_server.persistence.seal import Sealer
from airlock_server.persistence.sequencer import (
    Sequencer,
    enqueue,
    planned_notice,
    sequence_pending,
)

# Serialization failure, deadlock, unique violation: a concurrent change won; retry.
RETRYABLE_SQLSTATES = {"40001", "40P01", "23505", "55P03"}


def _is_conflict(exc: BaseException) -> bool:
    if isinstance(exc, IntegrityError):
        return True
    if isinstance(exc, DBAPIError):
        orig = exc.orig
        code = getattr(orig, "sqlstate", None) or getattr(orig, "pgcode", None)
        if code in RETRYABLE_SQLSTATES:
            return True
        return "database is locked" in str(orig)
    return False


class SqlUnitOfWork(Repositories):
    def __init__(
        self,
        sessions: async_sessionmaker[AsyncSession],
        clock: Clock,
        *,
        read_only: bool = False,
        one_statement: bool = False,
        on_commit: Callable[[int], None] | None = None,
        sealer: Sealer | None = None,
        routing: Routing | None = None,
        activity_writer: ActivityWriter | None = None,
        sequencer: Sequencer | None = None,
    ) -> None:
        # PostgreSQL: events are committed unsequenced, and this process's sequencer (or the
        # one of another replica) gives them seq (persistence/sequencer.py); None: the unit of
        # work sequences them itself after its COMMIT.
        self._sequencer = sequencer
        # PostgreSQL: approvers' activity is written after COMMIT, outside the transaction
        # (activity.ActivityWriter); None: in it.
        self._activity_writer = activity_writer
        self._on_commit = on_commit  # told the last seq appended, once committed
        self._sessions = sessions
        # The log key: signs each append's head, keys the rows' MACs (none when keyless).
        self._sealer = sealer or Sealer()
        self._routing = routing or Routing()
        self._clock = clock
        self._read_only = read_only or one_statement
        self._one_statement = one_statement
        self._events: list[NewEvent] = []
        self._tracker = StatementTracker()

    async def __aenter__(self) -> SqlUnitOfWork:
        self.session = self._sessions()
        try:
            await self._begin()
        except Exception as error:
            await self._discard()
            unavailable = outage(error, sent=self._tracker.sent)
            if unavailable is None:
                raise
            raise unavailable from error
        s = self.session
        self._activity = SqlActivityRepository(s, self._activity_writer)
        self._attach(s, self._sealer, self._routing, self._activity)
        self._events = []
        return self

    async def _begin(self) -> None:
        await self.session.begin()
        # The tracker tells an outage on a connection found dead before anything was sent
        # (retried once, StaleConnection) from one mid-transaction.
        options: dict[str, object] = {TRACKER_OPTION: self._tracker}
        if self._read_only:
            # One snapshot for all the reads of a use case: a session and its votes, read by
            # two statements, must not straddle another transaction's commit. SQLite: the begin
            # hook (persistence/db.py) begins deferred. PostgreSQL: REPEATABLE READ, READ ONLY
            # (READ COMMITTED would give each statement a snapshot of its own).
            # A use case of one SELECT (authentication, on every RPC) needs no snapshot of
            # its own: autocommit spares PostgreSQL's BEGIN and ROLLBACK round trips and
            # SQLite's BEGIN (a hop to aiosqlite's thread).
            options[READ_ONLY_OPTION] = True
            postgres = self.session.get_bind().dialect.name == "postgresql"
            if self._one_statement:
                options[ONE_STATEMENT_OPTION] = True
                if postgres:
                    options["isolation_level"] = "AUTOCOMMIT"
            elif postgres:
                options["isolation_level"] = "REPEATABLE READ"
                options["postgresql_readonly"] = True
        await self.session.connection(execution_options=options)

    async def _discard(self) -> None:
        """Roll back and let the connection go. On a dead connection there is nothing to roll
        back (the database dropped the transaction): that error is not the story."""
        try:
            if self.session.in_transaction():
                await self.session.rollback()
        except Exception as error:
            if not is_outage(error):
                raise
        finally:
            with contextlib.suppress(Exception):
                await self.session.close()

    def record(self, event: NewEvent) -> None:
        if self._read_only:
            raise RuntimeError("a read-only unit of work records no events")
        self._events.append(event)

    async def commit(self) -> None:
        # Saves held back (defer_saves) are sent before anything else commits.
        await self.sessions.flush()
        await self.grants.flush()
        last = 0
        committed = False
        if self._events:
            # The transactional outbox: each event's notifications are planned in its
            # transaction (recipients read), so a committed event always has them and a
            # rolled-back one never.
            now = self._clock()
            notices = [notice_for(e) for e in self._events]
            outbox = Outbox(self.session, self._routing, now, self._sealer)
            planned = await plan_events(outbox, notices)
            if self.session.get_bind().dialect.name == "postgresql":
                # No lock on the log's head: the events are committed unsequenced, with their
                # planned notifications, which the sequencer writes with their seq.
                queued = [
                    planned_notice(n.kind, p) if n is not None and p else None
                    for n, p in zip(notices, planned, strict=True)
                ]
                ids = await enqueue(self.session, self._events, now, self._sealer, queued)
                await self._commit_queued(ids)
                committed = True
            else:
                events = await append_events(self.session, self._events, now, self._sealer)
                await write_events(outbox, notices, planned, events, now)
                last = events[-1].seq
            self._events = []
        if not committed:
            await self.session.commit()
        if last and self._on_commit is not None:
            self._on_commit(last)
        await self._activity.written()

    async def _commit_queued(self, ids: list[int]) -> None:
        """COMMIT, then wait until the events are in the log (what the caller reads after
        the answer holds them)."""
        sequencer = self._sequencer
        if sequencer is None:
            await self.session.commit()
            await sequence_pending(self.session, self._sealer, ids)
            return
        waiting = sequencer.expect(ids)
        try:
            await self.session.commit()
        except BaseException:
            sequencer.forget(ids)
            raise
        sequencer.committed(ids)
        await sequencer.wait(waiting)

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self._discard()
        if exc is not None and _is_conflict(exc):
            raise Conflict("a concurrent change won the race; retry the call") from exc
        # An outage mid-transaction: PostgreSQL committed all of it or none (a lost COMMIT's
        # outcome is the caller's to learn by retrying with its request_id).
        unavailable = outage(exc, sent=self._tracker.sent) if isinstance(exc, Exception) else None
        if unavailable is not None:
            raise unavailable from exc
