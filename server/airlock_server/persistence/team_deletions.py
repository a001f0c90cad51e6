"""Team deletions: a request to delete a team, its approval window and its outcome."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any, cast

from sqlalchemy import Table, bindparam, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from airlock_server.domain.team_changes import TeamDeletion
from airlock_server.persistence.mappers import (
    TEAM_DELETIONS,
    check,
    deletion_fields,
    deletion_from_row,
)
from airlock_server.persistence.models import TeamDeletionRecord
from airlock_server.persistence.seal import Sealer

_D = cast(Table, TeamDeletionRecord.__table__)
# The latest request per team is the last one in this order (GetApprovalTeam reads it).
_DELETIONS_OF_TEAMS = (
    select(*_D.c)
    .where(_D.c.team_id.in_(bindparam("ids", expanding=True)))
    .order_by(_D.c.request_time, _D.c.session_id)
)


def checked_deletion(sealer: Sealer, r: Any) -> TeamDeletion:
    """From a TeamDeletionRecord or a row of its columns, that the server wrote;
    RECORD_NOT_AUTHENTIC otherwise."""
    d = deletion_from_row(r)
    check(sealer, TEAM_DELETIONS, r.session_id, deletion_fields(d, r.due_time), r.mac)
    return d


class SqlTeamDeletionRepository:
    def __init__(self, session: AsyncSession, sealer: Sealer | None = None) -> None:
        self._s = session
        self._sealer = sealer or Sealer()

    def _to_domain(self, r: Any) -> TeamDeletion:
        return checked_deletion(self._sealer, r)

    @staticmethod
    def _due(d: TeamDeletion, done: bool) -> datetime | None:
        return None if done else d.complete_time

    async def add(self, deletion: TeamDeletion) -> None:
        self._s.add(
            TeamDeletionRecord(
                session_id=deletion.session_id,
                team_id=deletion.team_id,
                pending_window_days=deletion.pending_window_days,
                request_time=deletion.request_time,
                approve_time=deletion.approve_time,
                complete_time=deletion.complete_time,
                due_time=None,
                mac=self._sealer.mac(TEAM_DELETIONS, deletion_fields(deletion, None)),
            )
        )
        await self._s.flush()

    async def get(self, session_id: str, *, for_update: bool = False) -> TeamDeletion | None:
        q = select(TeamDeletionRecord).where(TeamDeletionRecord.session_id == session_id)
        if for_update:
            q = q.with_for_update().execution_options(populate_existing=True)
        r = await self._s.scalar(q)
        return self._to_domain(r) if r else None

    async def save(self, deletion: TeamDeletion, *, done: bool = False) -> None:
        await self._s.execute(
            update(TeamDeletionRecord)
            .where(TeamDeletionRecord.session_id == deletion.session_id)
            .values(
                approve_time=deletion.approve_time,
                complete_time=deletion.complete_time,
                due_time=self._due(deletion, done),
                mac=self._sealer.mac(
                    TEAM_DELETIONS, deletion_fields(deletion, self._due(deletion, done))
                ),
            )
        )

    async def latest_of(self, team_ids: Sequence[str]) -> dict[str, TeamDeletion]:
        if not team_ids:
            return {}
        conn = await self._s.connection()
        rows = await conn.execute(_DELETIONS_OF_TEAMS, {"ids": list(set(team_ids))})
        return {r.team_id: self._to_domain(r) for r in rows}

    async def due(self, now: datetime, limit: int) -> list[str]:
        q = (
            select(TeamDeletionRecord.session_id)
            .where(TeamDeletionRecord.due_time.is_not(None), TeamDeletionRecord.due_time <= now)
            .order_by(TeamDeletionRecord.due_time)
            .limit(limit)
            .with_for_update(skip_locked=True)
        )
        return list(await self._s.scalars(q))
