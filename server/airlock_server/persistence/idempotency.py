"""Idempotency keys: a retried request_id answers what its first call did."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any

from sqlalchemy import select, text, update
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.ext.asyncio import AsyncSession

from airlock_server.app.ports import Claim, Claimed
from airlock_server.persistence.models import IdempotencyKeyRecord
from airlock_server.persistence.queries import dialect_insert

# Many keys claimed in one statement. PostgreSQL: the rows as arrays (one statement text, one
# prepared statement, whatever their number); a key in flight in another transaction makes
# this one wait for its outcome, as claim() does.
_CLAIM_MANY_PG = text(
    "INSERT INTO idempotency_keys (scope, request_id, result, create_time, fingerprint) "
    "SELECT k.scope, k.request_id, k.result, :now, k.fingerprint FROM unnest("
    "CAST(:scopes AS VARCHAR[]), CAST(:request_ids AS VARCHAR[]), CAST(:results AS TEXT[]), "
    "CAST(:fingerprints AS VARCHAR[])) AS k(scope, request_id, result, fingerprint) "
    "ON CONFLICT DO NOTHING RETURNING scope, request_id"
)


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

    async def claim_many(self, claims: Sequence[Claim], now: datetime) -> set[tuple[str, str]]:
        if not claims:
            return set()
        conn = await self._s.connection()
        stmt: Any
        params: Any
        if conn.dialect.name == "postgresql":
            stmt = _CLAIM_MANY_PG
            params = {
                "now": now,
                "scopes": [c.scope for c in claims],
                "request_ids": [c.request_id for c in claims],
                "results": [c.result for c in claims],
                "fingerprints": [c.fingerprint for c in claims],
            }
        else:
            stmt = (
                sqlite_insert(IdempotencyKeyRecord)
                .values(
                    [
                        {
                            "scope": c.scope,
                            "request_id": c.request_id,
                            "result": c.result,
                            "create_time": now,
                            "fingerprint": c.fingerprint,
                        }
                        for c in claims
                    ]
                )
                .on_conflict_do_nothing()
                .returning(IdempotencyKeyRecord.scope, IdempotencyKeyRecord.request_id)
            )
            params = None
        return {(r.scope, r.request_id) for r in await conn.execute(stmt, params)}
