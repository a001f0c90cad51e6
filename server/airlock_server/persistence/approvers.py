"""Approvers: the people who vote."""

from __future__ import annotations

from collections.abc import Sequence

from sqlalchemy import select, update
from sqlalchemy.ext.asyncio import AsyncSession

from airlock_server.domain.identities import Approver
from airlock_server.persistence.mappers import (
    APPROVERS,
    approver_fields,
    approver_from_row,
    check,
)
from airlock_server.persistence.models import ApproverRecord
from airlock_server.persistence.seal import Sealer


class SqlApproverRepository:
    def __init__(self, session: AsyncSession, sealer: Sealer | None = None) -> None:
        self._s = session
        self._sealer = sealer or Sealer()

    def _to_domain(self, r: ApproverRecord) -> Approver:
        """An approver row the server wrote; RECORD_NOT_AUTHENTIC otherwise."""
        a = approver_from_row(r)
        check(self._sealer, APPROVERS, r.approver_id, approver_fields(a), r.mac)
        return a

    async def add(self, approver: Approver) -> None:
        self._s.add(
            ApproverRecord(
                approver_id=approver.approver_id,
                display_name=approver.display_name,
                email=approver.email,
                enabled=approver.enabled,
                create_time=approver.create_time,
                disable_time=approver.disable_time,
                mac=self._sealer.mac(APPROVERS, approver_fields(approver)),
            )
        )
        await self._s.flush()

    async def get(self, approver_id: str) -> Approver | None:
        r = await self._s.get(ApproverRecord, approver_id)
        return self._to_domain(r) if r else None

    async def get_many(self, approver_ids: Sequence[str]) -> dict[str, Approver]:
        rows = await self._s.scalars(
            select(ApproverRecord).where(ApproverRecord.approver_id.in_(list(approver_ids)))
        )
        return {r.approver_id: self._to_domain(r) for r in rows}

    async def list_page(
        self, enabled: bool | None, after: str | None, limit: int
    ) -> list[Approver]:
        q = select(ApproverRecord).order_by(ApproverRecord.approver_id).limit(limit)
        if enabled is not None:
            q = q.where(ApproverRecord.enabled == enabled)
        if after is not None:
            q = q.where(ApproverRecord.approver_id > after)
        return [self._to_domain(r) for r in await self._s.scalars(q)]

    async def save(self, approver: Approver) -> None:
        await self._s.execute(
            update(ApproverRecord)
            .where(ApproverRecord.approver_id == approver.approver_id)
            .values(
                display_name=approver.display_name,
                email=approver.email,
                enabled=approver.enabled,
                disable_time=approver.disable_time,
                mac=self._sealer.mac(APPROVERS, approver_fields(approver)),
            )
        )
