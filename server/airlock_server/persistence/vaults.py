"""Vaults: the backup vaults whose restores a team approves."""

from __future__ import annotations

from typing import Any, cast

from sqlalchemy import Table, bindparam, insert, or_, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from airlock_server.domain.vaults import Vault
from airlock_server.persistence.mappers import VAULTS, check, vault_fields, vault_from_row
from airlock_server.persistence.models import VaultRecord
from airlock_server.persistence.seal import Sealer

_V = cast(Table, VaultRecord.__table__)
_VAULT_BY_ARN = select(*_V.c).where(_V.c.vault_arn == bindparam("arn"))
_VAULT_BY_ARN_LOCKED = _VAULT_BY_ARN.with_for_update()


class SqlVaultRepository:
    """Core statements and rows, no ORM objects: vault reads are on hot paths."""

    def __init__(self, session: AsyncSession, sealer: Sealer | None = None) -> None:
        self._s = session
        self._sealer = sealer or Sealer()

    def _checked(self, r: Any) -> Vault:
        """A vault row the server wrote (its team association above all: the team that
        approves its restores); RECORD_NOT_AUTHENTIC otherwise."""
        vault = vault_from_row(r)
        check(self._sealer, VAULTS, vault.vault_arn, vault_fields(vault), r.mac)
        return vault

    def _values(self, v: Vault) -> dict[str, Any]:
        p = v.pending_association
        return {
            "team_id": v.team_id,
            "pending_team_id": p.team_id if p else None,
            "pending_session_id": p.session_id if p else None,
            "pending_create_time": p.create_time if p else None,
            "update_time": v.update_time,
            "mac": self._sealer.mac(VAULTS, vault_fields(v)),
        }

    async def add(self, vault: Vault) -> None:
        conn = await self._s.connection()
        await conn.execute(
            insert(_V).values(
                vault_arn=vault.vault_arn,
                account_id=vault.account_id,
                name=vault.name,
                region=vault.region,
                min_retention_days=vault.min_retention_days,
                max_retention_days=vault.max_retention_days,
                tags=dict(vault.tags),
                create_time=vault.create_time,
                **self._values(vault),
            )
        )

    async def get(self, vault_arn: str, *, for_update: bool = False) -> Vault | None:
        conn = await self._s.connection()
        q = _VAULT_BY_ARN_LOCKED if for_update else _VAULT_BY_ARN
        r = (await conn.execute(q, {"arn": vault_arn})).first()
        return self._checked(r) if r else None

    async def save(self, vault: Vault) -> None:
        await self._s.execute(
            update(VaultRecord)
            .where(VaultRecord.vault_arn == vault.vault_arn)
            .values(**self._values(vault))
        )

    async def list_page(
        self, account_id: str, team_id: str, after: str | None, limit: int
    ) -> list[Vault]:
        q = select(*_V.c).order_by(_V.c.vault_arn).limit(limit)
        if account_id:
            q = q.where(_V.c.account_id == account_id)
        if team_id:
            q = q.where(_V.c.team_id == team_id)
        if after is not None:
            q = q.where(_V.c.vault_arn > after)
        conn = await self._s.connection()
        return [self._checked(r) for r in await conn.execute(q)]

    async def of_team(self, team_id: str) -> list[str]:
        q = (
            select(VaultRecord.vault_arn)
            .where(or_(VaultRecord.team_id == team_id, VaultRecord.pending_team_id == team_id))
            .order_by(VaultRecord.vault_arn)
        )
        return list(await self._s.scalars(q))
