"""Team shares: who, besides its approvers, may see and use a team."""

from __future__ import annotations

from typing import cast

from sqlalchemy import Table, bindparam, delete, select
from sqlalchemy.ext.asyncio import AsyncSession

from airlock_server.domain.principals import Principal
from airlock_server.domain.teams import TeamShare
from airlock_server.persistence.mappers import TEAM_SHARES, checked_share, share_fields
from airlock_server.persistence.models import TeamShareRecord
from airlock_server.persistence.queries import dialect_insert
from airlock_server.persistence.seal import Sealer

_SH = cast(Table, TeamShareRecord.__table__)
# Every column of a share, for reads that check it (its MAC covers them).
SHARE_COLUMNS = tuple(_SH.c)
# Every share check (GetApprovalTeam, vault association) reads through this, prebuilt.
_SHARE_BY_KEY = select(*_SH.c).where(
    _SH.c.team_id == bindparam("team_id"),
    _SH.c.principal_kind == bindparam("kind"),
    _SH.c.subject == bindparam("subject"),
)


class SqlShareRepository:
    def __init__(self, session: AsyncSession, sealer: Sealer | None = None) -> None:
        self._s = session
        self._sealer = sealer or Sealer()

    async def add(self, share: TeamShare) -> bool:
        stmt = (
            dialect_insert(self._s)(TeamShareRecord)
            .values(
                team_id=share.team_id,
                principal_kind=share.principal_kind,
                subject=share.subject,
                create_time=share.create_time,
                mac=self._sealer.mac(
                    TEAM_SHARES,
                    share_fields(
                        share.team_id, share.principal_kind, share.subject, share.create_time
                    ),
                ),
            )
            .on_conflict_do_nothing()
        )
        result = await self._s.execute(stmt)
        return bool(result.rowcount)  # type: ignore[attr-defined]

    async def remove(self, team_id: str, principal: Principal) -> bool:
        result = await self._s.execute(
            delete(TeamShareRecord).where(
                TeamShareRecord.team_id == team_id,
                TeamShareRecord.principal_kind == principal.kind.value,
                TeamShareRecord.subject == principal.subject,
            )
        )
        return bool(result.rowcount)  # type: ignore[attr-defined]

    async def get(self, team_id: str, principal: Principal) -> TeamShare | None:
        conn = await self._s.connection()
        params = {"team_id": team_id, "kind": principal.kind.value, "subject": principal.subject}
        r = (await conn.execute(_SHARE_BY_KEY, params)).first()
        return checked_share(self._sealer, r) if r else None

    async def list_page(self, team_id: str, after: str | None, limit: int) -> list[TeamShare]:
        key = TeamShareRecord.principal_kind + ":" + TeamShareRecord.subject
        q = (
            select(TeamShareRecord)
            .where(TeamShareRecord.team_id == team_id)
            .order_by(key)
            .limit(limit)
        )
        if after is not None:
            q = q.where(key > after)
        return [checked_share(self._sealer, r) for r in await self._s.scalars(q)]
