"""The portal's storage: passkeys, single-use WebAuthn challenges, one-time invitation links."""

from __future__ import annotations

import secrets
from datetime import datetime

from sqlalchemy import delete, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from airlock_server.domain.webauthn import (
    InvitationLink,
    PasskeyCredential,
    b64url,
    token_digest,
)
from airlock_server.persistence.mappers import link_from_row, passkey_from_row
from airlock_server.persistence.models import (
    InvitationLinkRecord,
    PasskeyRecord,
    WebAuthnChallengeRecord,
)
from airlock_server.persistence.seal import Sealer


def link_token(sealer: Sealer, invitation_id: str, nonce: str) -> str | None:
    """The one-time link token an invitation email carries: a MAC by the log key over the
    invitation and a nonce, so the outbox stores only the nonce; None on a keyless server."""
    mac = sealer.mac("invitation_links", (invitation_id, nonce))
    return b64url(mac) if mac is not None else None


async def new_email_link(
    session: AsyncSession, sealer: Sealer, invitation_id: str, now: datetime
) -> tuple[str, str | None]:
    """A new link of the invitation for its email: (nonce, token). On a keyless server (which
    trusts its database) the token is random and the email's data carries it; else only the
    nonce, and the token is derived again when the email is sent."""
    nonce = secrets.token_hex(16)
    token = link_token(sealer, invitation_id, nonce)
    stored_token = token or secrets.token_urlsafe(32)
    await SqlPasskeyRepository(session).add_link(
        InvitationLink(token_digest(stored_token), invitation_id, now)
    )
    return nonce, (None if token else stored_token)


class SqlPasskeyRepository:
    def __init__(self, session: AsyncSession) -> None:
        self._s = session

    async def add(self, passkey: PasskeyCredential) -> None:
        self._s.add(
            PasskeyRecord(
                credential_id=passkey.credential_id,
                approver_id=passkey.approver_id,
                team_id=passkey.team_id,
                invitation_id=passkey.invitation_id,
                public_key=passkey.public_key,
                cose_public_key=passkey.cose_public_key,
                sign_count=passkey.sign_count,
                create_time=passkey.create_time,
                last_used_time=passkey.last_used_time,
            )
        )
        await self._s.flush()

    async def get(
        self, credential_id: str, *, for_update: bool = False
    ) -> PasskeyCredential | None:
        q = select(PasskeyRecord).where(PasskeyRecord.credential_id == credential_id)
        if for_update:
            q = q.with_for_update()
        r = (await self._s.execute(q)).scalar_one_or_none()
        return passkey_from_row(r) if r else None

    async def used(self, credential_id: str, sign_count: int, now: datetime) -> None:
        await self._s.execute(
            update(PasskeyRecord)
            .where(PasskeyRecord.credential_id == credential_id)
            .values(sign_count=sign_count, last_used_time=now)
        )

    async def add_challenge(
        self, challenge_sha256: str, purpose: str, subject: str, expire_time: datetime
    ) -> None:
        self._s.add(
            WebAuthnChallengeRecord(
                challenge_sha256=challenge_sha256,
                purpose=purpose,
                subject=subject,
                expire_time=expire_time,
            )
        )
        await self._s.flush()

    async def take_challenge(
        self, challenge_sha256: str, purpose: str
    ) -> tuple[str, datetime] | None:
        # DELETE ... RETURNING: of two concurrent answers over one challenge, one gets it.
        row = (
            await self._s.execute(
                delete(WebAuthnChallengeRecord)
                .where(
                    WebAuthnChallengeRecord.challenge_sha256 == challenge_sha256,
                    WebAuthnChallengeRecord.purpose == purpose,
                )
                .returning(WebAuthnChallengeRecord.subject, WebAuthnChallengeRecord.expire_time)
            )
        ).first()
        return (row.subject, row.expire_time) if row else None

    async def drop_expired_challenges(self, now: datetime) -> int:
        result = await self._s.execute(
            delete(WebAuthnChallengeRecord).where(WebAuthnChallengeRecord.expire_time <= now)
        )
        return int(getattr(result, "rowcount", 0) or 0)

    async def add_link(self, link: InvitationLink) -> None:
        await self.spend_links(link.invitation_id, link.create_time)
        self._s.add(
            InvitationLinkRecord(
                token_sha256=link.token_sha256,
                invitation_id=link.invitation_id,
                create_time=link.create_time,
                spent_time=link.spent_time,
            )
        )
        await self._s.flush()

    async def find_link(
        self, token_sha256: str, *, for_update: bool = False
    ) -> InvitationLink | None:
        q = select(InvitationLinkRecord).where(InvitationLinkRecord.token_sha256 == token_sha256)
        if for_update:
            q = q.with_for_update()
        r = (await self._s.execute(q)).scalar_one_or_none()
        return link_from_row(r) if r else None

    async def spend_links(self, invitation_id: str, now: datetime) -> None:
        await self._s.execute(
            update(InvitationLinkRecord)
            .where(
                InvitationLinkRecord.invitation_id == invitation_id,
                InvitationLinkRecord.spent_time.is_(None),
            )
            .values(spent_time=now)
        )
