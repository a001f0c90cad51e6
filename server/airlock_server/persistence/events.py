"""The log's events read inside a unit of work, by subject (proofs of approval)."""

from __future__ import annotations

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from airlock_server.domain.events import Event
from airlock_server.persistence.event_log import to_event
from airlock_server.persistence.models import EventRecord, EventSubjectRecord


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
