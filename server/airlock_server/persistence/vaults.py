"""Vaults: the backup vaults whose restores a team approves."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any, cast

from sqlalchemy import Table, bindparam, func, insert, or_, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from airlock_server.domain.vaults import OPEN_GRANT_STATES, RestoreAccessGrant, Vault
from airlock_server.persistence.grants import SqlGrantRepository, checked_grant
from airlock_server.persistence.mappers import VAULTS, check, vault_fields, vault_from_row
from airlock_server.persistence.models import RestoreAccessGrantRecord, VaultRecord
from airlock_server.persistence.queries import Fields
from airlock_server.persistence.seal import Sealer

_V = cast(Table, VaultRecord.__table__)
_VAULT_BY_ARN = select(*_V.c).where(_V.c.vault_arn == bindparam("arn"))
_VAULT_BY_ARN_LOCKED = _VAULT_BY_ARN.with_for_update()


def _vault_and_grants() -> Any:
    """CheckAccess's read on PostgreSQL, one statement (one snapshot): the vault and, as an
    array of whole rows, the account's open grants on it (the rows of grants.OPEN_FOR)."""
    g = cast(Table, RestoreAccessGrantRecord.__table__).alias("g")
    grants = select(func.array_agg(g.table_valued())).where(
        g.c.vault_arn == bindparam("arn"),
        g.c.account_id == bindparam("account"),
        g.c.state.in_([s.value for s in OPEN_GRANT_STATES]),
    )
    return _VAULT_BY_ARN.add_columns(grants.scalar_subquery().label("x_grants"))


_VAULT_AND_GRANTS = _vault_and_grants()


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

    async def with_open_grants(
        self, vault_arn: str, account_id: str
    ) -> tuple[Vault | None, Callable[[], Awaitable[list[RestoreAccessGrant]]]]:
        s, sealer = self._s, self._sealer
        if s.get_bind().dialect.name != "postgresql":

            async def read() -> list[RestoreAccessGrant]:
                return await SqlGrantRepository(s, sealer).open_for(vault_arn, account_id)

            return await self.get(vault_arn), read
        conn = await s.connection()
        r = (
            await conn.execute(_VAULT_AND_GRANTS, {"arn": vault_arn, "account": account_id})
        ).first()
        rows = (r.x_grants or ()) if r else ()

        async def checked() -> list[RestoreAccessGrant]:
            return [checked_grant(sealer, Fields(g)) for g in rows]

        return (self._checked(r) if r else None), checked

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
