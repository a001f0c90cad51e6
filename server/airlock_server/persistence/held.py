"""UPDATEs a repository holds back while saves are deferred (defer_saves), sent together."""

from __future__ import annotations

from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession


class HeldUpdates:
    """One UPDATE statement's rows held back by key (a later save of a row replaces its
    earlier one), sent as one executemany by send(): before the repository's next read or
    write, at flush(), and at the latest before COMMIT (the unit of work flushes)."""

    def __init__(self, session: AsyncSession, statement: Any) -> None:
        self._s = session
        self._statement = statement
        self.holding = False
        self._rows: dict[str, dict[str, Any]] = {}

    def hold(self, key: str, row: dict[str, Any]) -> bool:
        """Keep `row` for later if holding; False: the caller sends it now."""
        if self.holding:
            self._rows[key] = row
        return self.holding

    async def send(self) -> Any:
        """The connection, with every held row sent."""
        conn = await self._s.connection()
        if self._rows:
            rows, self._rows = list(self._rows.values()), {}
            await conn.execute(self._statement, rows)
        return conn

    async def flush(self) -> None:
        self.holding = False
        await self.send()
