"""Approver activity: each approver's last activity per team (team health)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, cast

from sqlalchemy import Table, bindparam, select
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.ext.asyncio import AsyncSession

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


class SqlActivityRepository:
    def __init__(self, session: AsyncSession) -> None:
        self._s = session

    async def record(self, team_id: str, approver_id: str, activity: Activity) -> None:
        # One statement, no read-modify-write: concurrent votes of one approver in two sessions
        # of a team both land, and the later activity stays (a tie goes to the last writer).
        conn = await self._s.connection()
        await conn.execute(
            _UPSERT[conn.dialect.name],
            {
                "team_id": team_id,
                "approver_id": approver_id,
                "kind": activity.kind.value,
                "activity_time": activity.time,
            },
        )

    async def of_teams(self, team_ids: Sequence[str]) -> dict[str, dict[str, Activity]]:
        out: dict[str, dict[str, Activity]] = {t: {} for t in team_ids}
        if not team_ids:
            return out
        conn = await self._s.connection()
        for r in await conn.execute(_OF_TEAMS, {"ids": list(team_ids)}):
            out[r.team_id][r.approver_id] = Activity(ActivityKind(r.kind), r.activity_time)
        return out
