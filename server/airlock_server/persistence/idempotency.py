"""Idempotency keys: a retried request_id answers what its first call did."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import select, update
from sqlalchemy.ext.asyncio import AsyncSession

from airlock_server.app.ports import Claimed
from airlock_server.persistence.models import IdempotencyKeyRecord
from airlock_server.persistence.queries import dialect_insert


class SqlIdempotencyRepository:
    def __init__(self, session: AsyncSession) -> None:
        self._s = session

    async def claim(
        self,
        scope: str,
        request_id: str,
        fingerprint: str,
        now: datetime,
        result: str | None = None,
    ) -> Claimed | None:
        # A racing twin blocks on this insert until the first commits, then sees its result.
        stmt = (
            dialect_insert(self._s)(IdempotencyKeyRecord)
            .values(
                scope=scope,
                request_id=request_id,
                result=result,
                create_time=now,
                fingerprint=fingerprint,
            )
            .on_conflict_do_nothing()
        )
        inserted = (await self._s.execute(stmt)).rowcount  # type: ignore[attr-defined]
        if inserted:
            return None
        row = (
            await self._s.execute(
                select(IdempotencyKeyRecord.result, IdempotencyKeyRecord.fingerprint).where(
                    IdempotencyKeyRecord.scope == scope,
                    IdempotencyKeyRecord.request_id == request_id,
                )
            )
        ).one()
        return Claimed(row.result or "", row.fingerprint)

    async def complete(self, scope: str, request_id: str, result: str) -> None:
        await self._s.execute(
            update(IdempotencyKeyRecord)
            .where(
                IdempotencyKeyRecord.scope == scope, IdempotencyKeyRecord.request_id == request_id
            )
            .values(result=result)
        )
