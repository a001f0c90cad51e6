"""Settings: the server's own key-value rows (the bootstrap credential, claimed once)."""

from __future__ import annotations

from sqlalchemy.ext.asyncio import AsyncSession

from airlock_server.persistence.models import SettingRecord
from airlock_server.persistence.queries import dialect_insert


class SqlSettingsRepository:
    def __init__(self, session: AsyncSession) -> None:
        self._s = session

    async def get(self, key: str) -> str | None:
        r = await self._s.get(SettingRecord, key)
        return r.value if r else None

    async def put_new(self, key: str, value: str) -> bool:
        stmt = (
            dialect_insert(self._s)(SettingRecord)
            .values(key=key, value=value)
            .on_conflict_do_nothing()
        )
        return bool((await self._s.execute(stmt)).rowcount)  # type: ignore[attr-defined]
