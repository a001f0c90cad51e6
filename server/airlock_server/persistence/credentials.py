"""Credentials: bearer tokens, stored only as hashes."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import bindparam, or_, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from airlock_server.domain.identities import Credential
from airlock_server.domain.integrity import record_not_authentic
from airlock_server.domain.principals import Principal
from airlock_server.persistence.mappers import (
    CREDENTIALS,
    credential_fields,
    credential_from_row,
    stored_credential_fields,
)
from airlock_server.persistence.models import CredentialRecord
from airlock_server.persistence.seal import Sealer

_CRED = CredentialRecord.__table__.c
_BY_TOKEN_HASH = select(
    _CRED.credential_id,
    _CRED.principal_kind,
    _CRED.subject,
    _CRED.description,
    _CRED.token_hash,
    _CRED.create_time,
    _CRED.expire_time,
    _CRED.revoke_time,
    _CRED.mac,
).where(_CRED.token_hash == bindparam("h"))


class SqlCredentialRepository:
    def __init__(self, session: AsyncSession, sealer: Sealer | None = None) -> None:
        self._s = session
        self._sealer = sealer or Sealer()

    def _authentic(self, r: Any) -> bool:
        return self._sealer.authentic(
            CREDENTIALS, r.credential_id, stored_credential_fields(r), r.mac
        )

    def _checked(self, r: Any) -> Credential:
        """A credential row the server wrote; RECORD_NOT_AUTHENTIC otherwise."""
        if not self._authentic(r):
            raise record_not_authentic(CREDENTIALS, r.credential_id)
        return credential_from_row(r)

    async def add(self, credential: Credential, token_hash: bytes) -> None:
        record = CredentialRecord(
            credential_id=credential.credential_id,
            principal_kind=credential.principal.kind.value,
            subject=credential.principal.subject,
            description=credential.description,
            token_hash=token_hash,
            create_time=credential.create_time,
            expire_time=credential.expire_time,
            revoke_time=credential.revoke_time,
        )
        record.mac = self._sealer.mac(CREDENTIALS, stored_credential_fields(record))
        self._s.add(record)
        await self._s.flush()

    async def get(self, credential_id: str) -> Credential | None:
        r = await self._s.get(CredentialRecord, credential_id)
        return self._checked(r) if r else None

    async def find_by_token_hash(self, token_hash: bytes) -> Credential | None:
        # Every RPC: one Core SELECT on the connection, no ORM identity map or loading.
        conn = await self._s.connection()
        r = (await conn.execute(_BY_TOKEN_HASH, {"h": token_hash})).first()
        # A row the server did not write (or changed since) authenticates nobody.
        return credential_from_row(r) if r is not None and self._authentic(r) else None

    async def list_page(
        self,
        principal: Principal | None,
        kind: str | None,
        state: str | None,
        now: datetime,
        after: str | None,
        limit: int,
    ) -> list[Credential]:
        q = select(CredentialRecord).order_by(CredentialRecord.credential_id).limit(limit)
        c = CredentialRecord
        unexpired = or_(c.expire_time.is_(None), c.expire_time > now)
        if state == "active":
            q = q.where(c.revoke_time.is_(None), unexpired)
        elif state == "expired":
            q = q.where(c.revoke_time.is_(None), c.expire_time <= now)
        elif state == "revoked":
            q = q.where(c.revoke_time.is_not(None))
        if principal is not None:
            q = q.where(
                CredentialRecord.principal_kind == principal.kind.value,
                CredentialRecord.subject == principal.subject,
            )
        elif kind is not None:
            q = q.where(CredentialRecord.principal_kind == kind)
        if after is not None:
            q = q.where(CredentialRecord.credential_id > after)
        return [self._checked(r) for r in await self._s.scalars(q)]

    async def save(self, credential: Credential) -> None:
        r = await self._s.get(CredentialRecord, credential.credential_id)
        if r is None:
            return
        self._checked(r)
        fields = credential_fields(
            r.credential_id,
            r.principal_kind,
            r.subject,
            credential.description,
            r.token_hash,
            r.create_time,
            r.expire_time,
            credential.revoke_time,
        )
        await self._s.execute(
            update(CredentialRecord)
            .where(CredentialRecord.credential_id == credential.credential_id)
            .values(
                revoke_time=credential.revoke_time,
                description=credential.description,
                mac=self._sealer.mac(CREDENTIALS, fields),
            )
        )
