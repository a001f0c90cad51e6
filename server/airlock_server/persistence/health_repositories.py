"""Repositories of team health: each approver's last activity per team."""

from __future__ import annotations

from collections.abc import Sequence

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from airlock_server.domain.health import Activity, ActivityKind
from airlock_server.persistence.models import ApproverActivityRecord
from airlock_server.persistence.repositories import _insert


class SqlActivityRepository:
    def __init__(self, session: AsyncSession) -> None:
        self._s = session

    async def record(self, team_id: str, approver_id: str, activity: Activity) -> None:
        # One statement, no read-modify-write: concurrent votes of one approver in two sessions
        # of a team both land, and the later activity stays (a tie goes to the last writer).
        stmt = _insert(self._s)(ApproverActivityRecord).values(
            team_id=team_id,
            approver_id=approver_id,
            kind=activity.kind.value,
            activity_time=activity.time,
        )
        table = ApproverActivityRecord.__table__
        stmt = stmt.on_conflict_do_update(
            index_elements=[table.c.team_id, table.c.approver_id],
            set_={"kind": stmt.excluded.kind, "activity_time": stmt.excluded.activity_time},
            where=table.c.activity_time <= stmt.excluded.activity_time,
        )
        await self._s.execute(stmt)

    async def of_teams(self, team_ids: Sequence[str]) -> dict[str, dict[str, Activity]]:
        out: dict[str, dict[str, Activity]] = {t: {} for t in team_ids}
        if not team_ids:
            return out
        rows = await self._s.scalars(
            select(ApproverActivityRecord).where(ApproverActivityRecord.team_id.in_(team_ids))
        )
        for r in rows:
            out[r.team_id][r.approver_id] = Activity(ActivityKind(r.kind), r.activity_time)
        return out
