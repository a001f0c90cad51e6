"""Approver activity: each approver's last activity per team (team health)."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from typing import Any, cast

import structlog
from sqlalchemy import Table, bindparam, select
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession

from airlock_server.domain.health import Activity, ActivityKind
from airlock_server.persistence.models import ApproverActivityRecord


def _upsert(insert: Any) -> Any:
    """The activity upsert in one dialect, built once: VALUES are the parameters' keys."""
    stmt = insert(_A)
    return stmt.on_conflict_do_update(
        index_elements=[_A.c.team_id, _A.c.approver_id],
        set_={"kind": stmt.excluded.kind, "activity_time": stmt.excluded.activity_time},
        where=_A.c.activity_time <= stmt.excluded.activity_time,
    )


_A = cast(Table, ApproverActivityRecord.__table__)
_UPSERT = {"postgresql": _upsert(pg_insert), "sqlite": _upsert(sqlite_insert)}
_OF_TEAMS = select(_A.c.team_id, _A.c.approver_id, _A.c.kind, _A.c.activity_time).where(
    _A.c.team_id.in_(bindparam("ids", expanding=True))
)


log = structlog.get_logger("airlock.activity")

Key = tuple[str, str]  # (team_id, approver_id)


def _row(key: Key, activity: Activity) -> dict[str, Any]:
    return {
        "team_id": key[0],
        "approver_id": key[1],
        "kind": activity.kind.value,
        "activity_time": activity.time,
    }


def _later(pending: dict[Key, Activity], key: Key, activity: Activity) -> None:
    known = pending.get(key)
    if known is None or known.time <= activity.time:
        pending[key] = activity


class ActivityWriter:
    """PostgreSQL: approvers' activity written after the transaction that caused it, outside it.

    One row per (team, approver) is the hottest row of a vote: upserted in the vote's
    transaction, its lock was held to COMMIT, and every vote of that approver queued on it
    (issue 11: the longest lock wait of a Vote). Here the vote commits first; then its
    activity joins the batch being gathered, and one autocommit upsert writes the whole batch
    (the later activity per row), holding each row's lock for that statement only. The caller
    waits for its batch, so the activity is stored when the vote is answered.

    Activity is a health hint, not evidence (it carries no MAC, docs/threat-model.md): a
    batch that fails is logged and dropped, the committed vote stands, the next activity of
    the approver writes the row again.
    """

    def __init__(self, engine: AsyncEngine) -> None:
        self._engine = engine
        self._pending: dict[Key, Activity] = {}
        self._gathered: asyncio.Future[None] | None = None  # done when the batch is written
        self._writer: asyncio.Task[None] | None = None

    async def write(self, entries: dict[Key, Activity]) -> None:
        for key, activity in entries.items():
            _later(self._pending, key, activity)
        if self._gathered is None:
            self._gathered = asyncio.get_running_loop().create_future()
        gathered = self._gathered
        if self._writer is None or self._writer.done():
            self._writer = asyncio.create_task(self._drain())
        await asyncio.shield(gathered)

    async def _drain(self) -> None:
        while self._pending:
            batch, self._pending = self._pending, {}
            done, self._gathered = self._gathered, None
            try:
                # Sorted: two replicas' batches lock shared rows in one order (no deadlock).
                rows = [_row(k, batch[k]) for k in sorted(batch)]
                async with self._engine.connect() as conn:
                    conn = await conn.execution_options(isolation_level="AUTOCOMMIT")
                    await conn.execute(_UPSERT["postgresql"], rows)
            except Exception as exc:  # a hint lost, never a vote: see the class's docstring
                log.warning("activity.write_failed", error=f"{type(exc).__name__}: {exc}")
            finally:
                if done is not None and not done.done():
                    done.set_result(None)


def activity_writer_of(engine: AsyncEngine) -> ActivityWriter | None:
    """One writer per engine (process) on PostgreSQL; none on SQLite, whose single writer has
    no row locks to queue on (the activity is written in the transaction)."""
    return ActivityWriter(engine) if engine.dialect.name == "postgresql" else None


class SqlActivityRepository:
    """With an ActivityWriter (PostgreSQL), record() keeps the activity for the writer, which
    the unit of work hands it after COMMIT (`deferred`); without one (SQLite, whose single
    writer has no row locks to queue on), it is written in the transaction."""

    def __init__(self, session: AsyncSession, writer: ActivityWriter | None = None) -> None:
        self._s = session
        self._writer = writer
        self.deferred: dict[Key, Activity] = {}

    async def record(self, team_id: str, approver_id: str, activity: Activity) -> None:
        await self.record_many([(team_id, approver_id, activity)])

    async def record_many(self, entries: Sequence[tuple[str, str, Activity]]) -> None:
        # One statement, no read-modify-write: concurrent votes of one approver in two sessions
        # of a team both land, and the later activity stays (a tie goes to the last writer).
        if self._writer is not None:
            for team_id, approver_id, activity in entries:
                _later(self.deferred, (team_id, approver_id), activity)
            return
        latest: dict[Key, Activity] = {}
        for team_id, approver_id, activity in entries:
            _later(latest, (team_id, approver_id), activity)
        if latest:
            conn = await self._s.connection()
            rows = [_row(k, latest[k]) for k in sorted(latest)]
            await conn.execute(_UPSERT[conn.dialect.name], rows)

    async def written(self) -> None:
        """After COMMIT: the deferred activity, written by the writer (a no-op without)."""
        if self._writer is not None and self.deferred:
            entries, self.deferred = self.deferred, {}
            await self._writer.write(entries)

    async def of_teams(self, team_ids: Sequence[str]) -> dict[str, dict[str, Activity]]:
        out: dict[str, dict[str, Activity]] = {t: {} for t in team_ids}
        if not team_ids:
            return out
        conn = await self._s.connection()
        for r in await conn.execute(_OF_TEAMS, {"ids": list(team_ids)}):
            out[r.team_id][r.approver_id] = Activity(ActivityKind(r.kind), r.activity_time)
        return out
