"""Restore access grants: an account's approved access to restore from a vault."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, cast

from sqlalchemy import Table, bindparam, exists, insert, or_, select, update
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.sql import ColumnElement

from airlock_server.app.ports import TimeCursor
from airlock_server.domain.vaults import OPEN_GRANT_STATES, GrantState, RestoreAccessGrant
from airlock_server.persistence.held import HeldUpdates
from airlock_server.persistence.mappers import GRANTS, check, grant_fields, grant_from_row
from airlock_server.persistence.models import RestoreAccessGrantRecord, VaultRecord
from airlock_server.persistence.queries import after_cursor, ids_in
from airlock_server.persistence.seal import Sealer

_G = cast(Table, RestoreAccessGrantRecord.__table__)
_GRANT_UPDATE = update(_G).where(_G.c.grant_id == bindparam("gid"))
# CheckAccess's read, prebuilt.
OPEN_FOR = select(*_G.c).where(
    _G.c.vault_arn == bindparam("arn"),
    _G.c.account_id == bindparam("account"),
    _G.c.state.in_([s.value for s in OPEN_GRANT_STATES]),
)


def checked_grant(sealer: Sealer, r: Any) -> RestoreAccessGrant:
    """A grant row the server wrote (CheckAccess reads these: a grant the server did not write
    grants nothing); RECORD_NOT_AUTHENTIC otherwise."""
    grant = grant_from_row(r)
    check(sealer, GRANTS, grant.grant_id, grant_fields(grant), r.mac)
    return grant


def _by_sessions_locked(dialect: str) -> Any:
    """The grants that the sessions `ids` request or revoke, locked."""
    g = _G.c
    where = or_(ids_in(g.session_id, "ids", dialect), ids_in(g.revoke_session_id, "ids", dialect))
    return select(*_G.c).where(where).order_by(g.grant_id).with_for_update()


_BY_SESSIONS_LOCKED = {d: _by_sessions_locked(d) for d in ("postgresql", "sqlite")}


class SqlGrantRepository:
    """Core statements and rows, no ORM objects: grant reads are on the vote path."""

    def __init__(self, session: AsyncSession, sealer: Sealer | None = None) -> None:
        self._s = session
        self._sealer = sealer or Sealer()
        # Grants read by lock_by_sessions (locked: only this transaction changes them), by the
        # session id that requests or revokes them; None: that session has none.
        self._of_session: dict[str, RestoreAccessGrant | None] = {}
        self._held = HeldUpdates(session, _GRANT_UPDATE)

    def defer_saves(self) -> None:
        self._held.holding = True

    async def flush(self) -> None:
        await self._held.flush()

    async def _conn(self) -> Any:
        """The connection, every held save sent first."""
        return await self._held.send()

    async def lock_by_sessions(self, session_ids: Sequence[str]) -> None:
        ids = [i for i in session_ids if i not in self._of_session]
        if not ids:
            return
        conn = await self._conn()
        q = _BY_SESSIONS_LOCKED[conn.dialect.name]
        found: dict[str, RestoreAccessGrant | None] = dict.fromkeys(ids)
        for grant in await self._rows(q, {"ids": ids}):
            for i in (grant.session_id, grant.revoke_session_id):
                if i in found:
                    found[i] = grant
        self._of_session.update(found)

    async def _rows(self, q: Any, params: Any = None) -> list[RestoreAccessGrant]:
        conn = await self._conn()
        return [checked_grant(self._sealer, r) for r in await conn.execute(q, params)]

    async def add(self, grant: RestoreAccessGrant) -> None:
        self._of_session.clear()  # a session's grant may be this one now
        conn = await self._conn()
        await conn.execute(
            insert(_G).values(
                grant_id=grant.grant_id,
                vault_arn=grant.vault_arn,
                account_id=grant.account_id,
                restore_vault_name=grant.restore_vault_name,
                restore_vault_arn=grant.restore_vault_arn,
                state=grant.state.value,
                status_message=grant.status_message,
                session_id=grant.session_id,
                revoke_session_id=grant.revoke_session_id,
                comment=grant.comment,
                create_time=grant.create_time,
                update_time=grant.update_time,
                mac=self._sealer.mac(GRANTS, grant_fields(grant)),
            )
        )

    async def _one(self, where: ColumnElement[bool], for_update: bool) -> RestoreAccessGrant | None:
        q = select(*_G.c).where(where)
        if for_update:
            q = q.with_for_update()
        found = await self._rows(q)
        return found[0] if found else None

    async def get(self, grant_id: str, *, for_update: bool = False) -> RestoreAccessGrant | None:
        return await self._one(RestoreAccessGrantRecord.grant_id == grant_id, for_update)

    async def save(self, grant: RestoreAccessGrant) -> None:
        update = {
            "gid": grant.grant_id,
            "state": grant.state.value,
            "status_message": grant.status_message,
            "revoke_session_id": grant.revoke_session_id,
            "update_time": grant.update_time,
            "mac": self._sealer.mac(GRANTS, grant_fields(grant)),
        }
        # What lock_by_sessions read follows the grant (its revocation session may change).
        for sid, held in list(self._of_session.items()):
            if sid in (grant.session_id, grant.revoke_session_id):
                self._of_session[sid] = grant
            elif held is not None and held.grant_id == grant.grant_id:
                self._of_session[sid] = None
        if self._held.hold(grant.grant_id, update):
            return
        conn = await self._conn()
        await conn.execute(_GRANT_UPDATE, update)

    async def open_for(self, vault_arn: str, account_id: str) -> list[RestoreAccessGrant]:
        return await self._rows(OPEN_FOR, {"arn": vault_arn, "account": account_id})

    async def open_of_vault(self, vault_arn: str) -> list[RestoreAccessGrant]:
        g = _G.c
        q = (
            select(*_G.c)
            .where(g.vault_arn == vault_arn, g.state.in_([s.value for s in OPEN_GRANT_STATES]))
            .order_by(g.create_time, g.grant_id)
        )
        return await self._rows(q)

    async def by_session(
        self, session_id: str, *, for_update: bool = False
    ) -> RestoreAccessGrant | None:
        if session_id in self._of_session:
            return self._of_session[session_id]
        g = _G.c
        return await self._one(
            or_(g.session_id == session_id, g.revoke_session_id == session_id), for_update
        )

    async def list_page(
        self,
        vault_arn: str,
        state: GrantState | None,
        visible_account: str,
        after: TimeCursor | None,
        limit: int,
    ) -> list[RestoreAccessGrant]:
        g = _G.c
        q = select(*_G.c).order_by(g.create_time.desc(), g.grant_id.desc()).limit(limit)
        if vault_arn:
            q = q.where(g.vault_arn == vault_arn)
        if state is not None:
            q = q.where(g.state == state.value)
        if visible_account:
            q = q.where(
                or_(
                    g.account_id == visible_account,
                    exists().where(
                        VaultRecord.vault_arn == g.vault_arn,
                        VaultRecord.account_id == visible_account,
                    ),
                )
            )
        cursor = after_cursor(g.create_time, g.grant_id, after)
        if cursor is not None:
            q = q.where(cursor)
        return await self._rows(q)

    async def open_of_vaults(self, vault_arns: Sequence[str]) -> list[str]:
        if not vault_arns:
            return []
        g = RestoreAccessGrantRecord
        q = (
            select(g.grant_id)
            .where(
                g.vault_arn.in_(list(vault_arns)),
                g.state.in_([s.value for s in OPEN_GRANT_STATES]),
            )
            .order_by(g.grant_id)
        )
        await self._conn()
        return list(await self._s.scalars(q))
