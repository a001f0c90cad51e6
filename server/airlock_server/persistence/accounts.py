"""Accounts: the callers that own vaults."""

from __future__ import annotations

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from airlock_server.domain.identities import Account
from airlock_server.persistence.mappers import ACCOUNTS, account_fields, account_from_row, check
from airlock_server.persistence.models import AccountRecord
from airlock_server.persistence.seal import Sealer


class SqlAccountRepository:
    def __init__(self, session: AsyncSession, sealer: Sealer | None = None) -> None:
        self._s = session
        self._sealer = sealer or Sealer()

    def _to_domain(self, r: AccountRecord) -> Account:
        """An account row the server wrote; RECORD_NOT_AUTHENTIC otherwise."""
        a = account_from_row(r)
        check(self._sealer, ACCOUNTS, r.account_id, account_fields(a), r.mac)
        return a

    async def add(self, account: Account) -> None:
        self._s.add(
            AccountRecord(
                account_id=account.account_id,
                name=account.name,
                create_time=account.create_time,
                mac=self._sealer.mac(ACCOUNTS, account_fields(account)),
            )
        )
        await self._s.flush()

    async def get(self, account_id: str) -> Account | None:
        r = await self._s.get(AccountRecord, account_id)
        return self._to_domain(r) if r else None

    async def list_page(self, after: str | None, limit: int) -> list[Account]:
        q = select(AccountRecord).order_by(AccountRecord.account_id).limit(limit)
        if after is not None:
            q = q.where(AccountRecord.account_id > after)
        return [self._to_domain(r) for r in await self._s.scalars(q)]
