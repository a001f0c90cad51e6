"""Reading the event log: ListEvents' pages, the ranges VerifyLog, WatchEvents and proofs walk,
the head; and, inside a unit of work, the events about a subject (proofs of approval).

Every page of ListEvents, whatever its filters, is one ordered index range of seq with a LIMIT,
so it costs the same whatever the size of the log (docs/benchmarks.md, "The event log"):

- no filter, after_seq: pk_events;
- a type: ix_events_type_seq (type, seq); a family ("team."): ix_events_family_seq (the
  type's part before its first '.', seq); an actor: ix_events_actor_seq; an actor kind:
  ix_events_actor_kind_seq;
- a subject: pk_event_subjects (subject, seq), walked in seq order, each event then fetched by
  its key (the page is ordered by event_subjects.seq, so the planner walks that index);
- a time range: the seq range [first seq at or after start, first seq at or after end), two
  probes of ix_events_time_seq inside the page's statement (time never decreases along seq).
"""

from __future__ import annotations

import contextlib
import functools
from collections.abc import AsyncIterator
from typing import Any

from sqlalchemy import (
    BigInteger,
    ColumnElement,
    ScalarSelect,
    Select,
    bindparam,
    func,
    select,
    text,
)
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker
from sqlalchemy.ext.compiler import compiles
from sqlalchemy.sql.compiler import SQLCompiler
from sqlalchemy.sql.functions import FunctionElement

from airlock_server.app.ports import EventQuery
from airlock_server.domain.events import Checkpoint, Event
from airlock_server.persistence.db import (
    ONE_STATEMENT_OPTION,
    READ_ONLY_OPTION,
    read_retried,
    reading,
)
from airlock_server.persistence.event_log import to_event
from airlock_server.persistence.models import (
    ActorKind,
    EventFamily,
    EventRecord,
    EventSubjectRecord,
    LogHeadRecord,
)

# Rows of the table's columns, not mapped records: a page of reads needs no identity map.
_COLUMNS = tuple(EventRecord.__table__.c)
_TIME_TYPE = EventRecord.__table__.c["time"].type
# No event at or after the end of a time range: the range has no upper bound.
_NO_END = 2**63 - 1
_ORDERED_AFTER = select(LogHeadRecord.time_ordered_after).where(LogHeadRecord.id == 1)
# How PostgreSQL plans a filtered page, set for its transaction in one round trip:
# - for its own values: asyncpg prepares statements, and after five runs PostgreSQL may keep a
#   generic plan, made without the values: for `type = $1` it assumes an average type and walks
#   pk_events until :limit rows match, in proportion to the log for a rare one (measured at
#   100,000 events: 1,428 buffers for a rare type's page, against 5 planned for its value);
# - as a walk of an index in seq order that stops at :limit, and nothing else: no bitmap scan
#   and sort of every match (chosen for a type of few events: its cost grows with them), no
#   sequential scan, and a subject's page walks pk_event_subjects and fetches each event by its
#   key (a nested loop), where a merge with pk_events reads every event of the range until
#   :limit of the subject's are found (2,508 rows for a subject of 2 % of the log).
_PAGE_PLANNING = text(
    "SELECT set_config('plan_cache_mode', 'force_custom_plan', true),"
    " set_config('enable_bitmapscan', 'off', true), set_config('enable_sort', 'off', true),"
    " set_config('enable_seqscan', 'off', true), set_config('enable_mergejoin', 'off', true),"
    " set_config('enable_hashjoin', 'off', true)"
)


class _Greatest(FunctionElement[int]):
    """The greater of two integers, neither NULL."""

    name = "greatest"
    type = BigInteger()
    inherit_cache = True


@compiles(_Greatest)
def _greatest(element: _Greatest, compiler: SQLCompiler, **kw: Any) -> str:
    return f"greatest({compiler.process(element.clauses, **kw)})"


@compiles(_Greatest, "sqlite")
def _greatest_sqlite(element: _Greatest, compiler: SQLCompiler, **kw: Any) -> str:
    return f"max({compiler.process(element.clauses, **kw)})"


def _first_seq_at(name: str) -> ScalarSelect[int]:
    """The first seq after :ordered_after with time >= :name (NULL if none): one probe of
    ix_events_time_seq (it steps over the older events of the unordered prefix, if any)."""
    return (
        select(EventRecord.seq)
        .where(
            EventRecord.time >= bindparam(name, type_=_TIME_TYPE),
            EventRecord.seq > bindparam("ordered_after"),
        )
        .order_by(EventRecord.time, EventRecord.seq)
        .limit(1)
        .scalar_subquery()
    )


@functools.lru_cache(maxsize=256)
def _page(
    type_: str, subject: bool, actor: bool, kind: bool, start: bool, end: bool, prefix: bool
) -> Select[Any]:
    """A page of events with seq >= :first, ascending, at most :limit, built once per shape.

    `type_`: "" (any), "=" (:type) or "family" (a filter ending with '.': :family, its part
    before the first '.', and :type_like, the whole prefix). `prefix`: the page reads
    seq < :stop, the events stamped before the monotone rule (migration 0006), with their times
    checked row by row; otherwise a time range is turned into its seq range by two probes of
    ix_events_time_seq.
    """
    # The seq the page walks in order: event_subjects' for a subject, so that the plan walks
    # pk_event_subjects in order and fetches each event by its key. The bounds are set on both
    # tables' seq (the join implies neither), so whichever the planner ranges is bounded.
    seq = EventSubjectRecord.seq if subject else EventRecord.seq
    stmt = select(*_COLUMNS)
    if subject:
        stmt = (
            stmt.select_from(EventSubjectRecord)
            .join(EventRecord, EventRecord.seq == EventSubjectRecord.seq)
            .where(EventSubjectRecord.subject == bindparam("subject"))
        )
    lower: ColumnElement[int] = bindparam("first")
    if start and not prefix:
        # One lower bound per column: SQLite ranges an index by one of them only. A NULL
        # probe (no event that late) is past every seq: the page is empty.
        lower = _Greatest(lower, func.coalesce(_first_seq_at("start_time"), _NO_END))
    for bounded in (EventSubjectRecord.seq, EventRecord.seq) if subject else (EventRecord.seq,):
        stmt = stmt.where(bounded >= lower)
        if prefix:
            stmt = stmt.where(bounded < bindparam("stop"))
        elif end:
            stmt = stmt.where(bounded < func.coalesce(_first_seq_at("end_time"), _NO_END))
    if type_ == "=":
        stmt = stmt.where(EventRecord.type == bindparam("type"))
    elif type_ == "family":
        # The range of the filter's first part ("team" of "team." or of "team.update."), each
        # type matched by the whole prefix (a type without '.' has itself as its first part).
        stmt = stmt.where(
            EventFamily(EventRecord.type) == bindparam("family"),
            EventRecord.type.like(bindparam("type_like"), escape="/"),
        )
    if actor:
        stmt = stmt.where(EventRecord.actor == bindparam("actor"))
    if kind:
        stmt = stmt.where(ActorKind(EventRecord.actor) == bindparam("actor_kind"))
    # Also checked row by row: the seq bounds already imply it for events appended under the
    # monotone rule (migration 0006 on); for older ones it keeps every event returned in range.
    if start:
        stmt = stmt.where(EventRecord.time >= bindparam("start_time", type_=_TIME_TYPE))
    if end:
        stmt = stmt.where(EventRecord.time < bindparam("end_time", type_=_TIME_TYPE))
    return stmt.order_by(seq).limit(bindparam("limit"))


def _like_prefix(prefix: str) -> str:
    return prefix.replace("/", "//").replace("%", "/%").replace("_", "/_") + "%"


class SqlEventLogReader:
    """Reads committed events. A read of one statement runs without a transaction around it
    (autocommit: one statement is one snapshot), sparing PostgreSQL's BEGIN and ROLLBACK round
    trips; a filtered page on PostgreSQL is a transaction of its own, for its planning settings
    (_PAGE_PLANNING, local to that transaction)."""

    def __init__(self, sessions: async_sessionmaker[AsyncSession]) -> None:
        self._sessions = sessions
        # log_head.time_ordered_after: set once by migration 0006, never written after.
        self._ordered_after: int | None = None

    @contextlib.asynccontextmanager
    async def _reading(self, *, page_planning: bool = False) -> AsyncIterator[AsyncSession]:
        async with reading(self._sessions) as s:
            if page_planning and s.get_bind().dialect.name == "postgresql":
                await s.connection(execution_options={READ_ONLY_OPTION: True})
                await s.execute(_PAGE_PLANNING)
            else:
                options: dict[str, object] = {ONE_STATEMENT_OPTION: True, READ_ONLY_OPTION: True}
                if s.get_bind().dialect.name == "postgresql":
                    options["isolation_level"] = "AUTOCOMMIT"
                await s.connection(execution_options=options)
            yield s

    async def _all(self, stmt: Select[Any]) -> list[Event]:
        async with self._reading() as s:
            return [to_event(r) for r in await s.execute(stmt)]

    @read_retried
    async def list_page(self, query: EventQuery, after_seq: int, limit: int) -> list[Event]:
        params: dict[str, object] = {
            name: value
            for name, value in (
                ("limit", limit),
                ("subject", query.subject),
                ("actor", query.actor),
                ("actor_kind", query.actor_kind),
                ("start_time", query.start_time),
                ("end_time", query.end_time),
            )
            if value
        }
        if not query.type:
            type_ = ""
        elif not query.type.endswith("."):
            type_, params["type"] = "=", query.type
        else:
            type_ = "family"
            params["family"] = query.type.split(".", 1)[0]
            params["type_like"] = _like_prefix(query.type)
        start, end = query.start_time is not None, query.end_time is not None
        first = after_seq + 1

        def page(prefix: bool) -> Select[Any]:
            return _page(
                type_,
                bool(query.subject),
                bool(query.actor),
                bool(query.actor_kind),
                start,
                end,
                prefix,
            )

        older: list[Event] = []
        # No filter: the pk_events range whatever the values (WatchEvents, first pages).
        async with self._reading(page_planning=bool(type_) or len(params) > 1) as s:
            if start or end:
                ordered_after = self._ordered_after
                if ordered_after is None:
                    ordered_after = self._ordered_after = int(await s.scalar(_ORDERED_AFTER) or 0)
                if first <= ordered_after:
                    params.update(first=first, stop=ordered_after + 1)
                    older = [to_event(r) for r in await s.execute(page(True), params)]
                    if len(older) >= limit:
                        return older
                    params["limit"] = limit - len(older)
                    first = ordered_after + 1
                    del params["stop"]
                params["ordered_after"] = ordered_after
            params["first"] = first
            return older + [to_event(r) for r in await s.execute(page(False), params)]

    @read_retried
    async def range(self, from_seq: int, to_seq: int, limit: int) -> list[Event]:
        stmt = select(*_COLUMNS).where(EventRecord.seq >= from_seq)
        if to_seq:
            stmt = stmt.where(EventRecord.seq <= to_seq)
        return await self._all(stmt.order_by(EventRecord.seq).limit(limit))

    @read_retried
    async def subject_rows(self, from_seq: int, to_seq: int) -> list[tuple[str, int]]:
        async with self._reading() as s:
            rows = await s.execute(
                select(EventSubjectRecord.subject, EventSubjectRecord.seq).where(
                    EventSubjectRecord.seq >= from_seq, EventSubjectRecord.seq <= to_seq
                )
            )
            return [(str(subject), int(seq)) for subject, seq in rows]

    @read_retried
    async def get(self, seq: int) -> Event | None:
        found = await self._all(select(*_COLUMNS).where(EventRecord.seq == seq))
        return found[0] if found else None

    @read_retried
    async def last(self) -> Event | None:
        found = await self._all(select(*_COLUMNS).order_by(EventRecord.seq.desc()).limit(1))
        return found[0] if found else None

    @read_retried
    async def head(self) -> Checkpoint | None:
        """The head row as a checkpoint: its seq, hash, time and signature (None at genesis)."""
        async with self._reading() as s:
            row = (
                await s.execute(
                    select(
                        LogHeadRecord.seq,
                        LogHeadRecord.hash,
                        LogHeadRecord.time,
                        LogHeadRecord.signature,
                    ).where(LogHeadRecord.id == 1)
                )
            ).first()
        if row is None or row.time is None or not row.seq:
            return None
        return Checkpoint(int(row.seq), bytes(row.hash), row.time, bytes(row.signature or b""))

    @read_retried
    async def head_seq(self) -> int:
        async with self._reading() as s:
            value = await s.scalar(select(LogHeadRecord.seq).where(LogHeadRecord.id == 1))
        return int(value or 0)


class SqlEventRepository:
    def __init__(self, session: AsyncSession) -> None:
        self._s = session

    async def about(self, subject: str, type_: str | None = None) -> list[Event]:
        query = (
            select(EventRecord)
            .join(EventSubjectRecord, EventSubjectRecord.seq == EventRecord.seq)
            .where(EventSubjectRecord.subject == subject)
            .order_by(EventRecord.seq)
        )
        if type_ is not None:
            query = query.where(EventRecord.type == type_)
        records = (await self._s.scalars(query)).all()
        # event_subjects is an index outside the chain: keep only the events whose chained
        # subjects name `subject` (a row inserted there adds nothing).
        return [to_event(r) for r in records if subject in r.subjects]
