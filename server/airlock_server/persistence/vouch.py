"""`airlock-server seal`: the operator vouches for the database as it stands.

Rows and events written before migration 0008, by a server without a log key, or under a key
since lost, carry no MAC or signature the key verifies: a server with the key refuses them
(RECORD_NOT_AUTHENTIC, LOG_NOT_AUTHENTIC). After checking the hash chain, `seal` MACs every
authenticated row with the key and signs the log's head row, so the server trusts exactly
what the database holds now. Run it only on a database you trust (docs/threat-model.md).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta
from typing import Any

from sqlalchemy import Table, select, update
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from airlock_server.domain.events import GENESIS_HASH, ChainVerifier, Finding
from airlock_server.domain.integrity import RowField
from airlock_server.domain.sessions import Vote, VoteDecision
from airlock_server.domain.teams import TeamVersion
from airlock_server.persistence.event_log import to_event
from airlock_server.persistence.models import (
    CredentialRecord,
    EventRecord,
    LogHeadRecord,
    RestoreAccessGrantRecord,
    SessionRecord,
    TeamMemberRecord,
    TeamVersionRecord,
    VoteRecord,
)
from airlock_server.persistence.recovery_repositories import (
    GRANTS,
    SESSIONS,
    VOTES,
    SqlGrantRepository,
    SqlSessionRepository,
    grant_fields,
    session_fields,
    vote_fields,
)
from airlock_server.persistence.repositories import (
    CREDENTIALS,
    TEAM_MEMBERS,
    TEAM_VERSIONS,
    member_fields,
    stored_credential_fields,
    version_fields,
)
from airlock_server.persistence.seal import Sealer

BATCH = 2000


@dataclass(frozen=True)
class Sealed:
    """What `seal` did, or the chain problem that stopped it (then it changed nothing)."""

    finding: Finding | None
    events: int
    rows: dict[str, int]
    head_seq: int


async def _check_chain(s: AsyncSession) -> tuple[int, Finding | None]:
    verifier = ChainVerifier(1, GENESIS_HASH)
    cursor = 1
    while True:
        batch = list(
            await s.scalars(
                select(EventRecord)
                .where(EventRecord.seq >= cursor)
                .order_by(EventRecord.seq)
                .limit(BATCH)
            )
        )
        for record in batch:
            finding = verifier.feed(to_event(record))
            if finding is not None:
                return verifier.checked, finding
        if len(batch) < BATCH:
            return verifier.checked, None
        cursor = batch[-1].seq + 1


def _version(r: Any) -> TeamVersion:
    return TeamVersion(
        version=r.version,
        description=r.description,
        min_approvals=r.min_approvals,
        session_ttl=timedelta(seconds=r.session_ttl_seconds),
        invitation_ttl=timedelta(seconds=r.invitation_ttl_seconds),
        members=(),
        create_time=r.create_time,
        invitation_expire_time=r.invitation_expire_time,
    )


async def _mac_rows(
    s: AsyncSession, sealer: Sealer, record: type[Any], table: str, fields: Any, key: Any
) -> int:
    """Every row of `record`'s table given the MAC of its current fields."""
    t: Table = record.__table__
    rows = list(await s.execute(select(*t.c)))
    for r in rows:
        mac = sealer.mac(table, fields(r))
        await s.execute(update(t).where(*key(t, r)).values(mac=mac))
    return len(rows)


async def seal_database(sessions: async_sessionmaker[AsyncSession], sealer: Sealer) -> Sealed:
    """Check the chain, then, in one transaction, MAC every authenticated row and sign the
    head row with the log key."""
    assert sealer.keyed, "sealing needs the log key"
    async with sessions() as s, s.begin():
        checked, finding = await _check_chain(s)
        if finding is not None:
            return Sealed(finding, checked, {}, 0)
        counts: dict[str, int] = {}

        def vote_of(r: Any) -> tuple[RowField, ...]:
            vote = Vote(
                r.approver_id, VoteDecision(r.decision), r.comment, r.vote_time, r.signature
            )
            return vote_fields(r.session_id, r.position, vote)

        plain = [
            (CredentialRecord, CREDENTIALS, stored_credential_fields, ("credential_id",)),
            (
                TeamVersionRecord,
                TEAM_VERSIONS,
                lambda r: version_fields(r.team_id, _version(r)),
                ("team_id", "version"),
            ),
            (
                TeamMemberRecord,
                TEAM_MEMBERS,
                lambda r: member_fields(
                    r.team_id,
                    r.version,
                    r.invitation_id,
                    r.approver_id,
                    r.invitation_state,
                    r.response_time,
                    r.public_key,
                ),
                ("invitation_id",),
            ),
            (VoteRecord, VOTES, vote_of, ("session_id", "approver_id")),
            (
                RestoreAccessGrantRecord,
                GRANTS,
                lambda r: grant_fields(SqlGrantRepository.to_domain(r)),
                ("grant_id",),
            ),
        ]
        for record, table, fields, columns in plain:
            counts[table] = await _mac_rows(
                s,
                sealer,
                record,
                table,
                fields,
                lambda t, r, columns=columns: [t.c[c] == getattr(r, c) for c in columns],
            )
        # A session's MAC covers its approver set and is computed from the whole session: read
        # each through the repository, trusting what is stored (no sealer).
        reader = SqlSessionRepository(s)
        ids = list(await s.scalars(select(SessionRecord.session_id)))
        for sid in ids:
            session = await reader.get(sid)
            assert session is not None
            await s.execute(
                update(SessionRecord)
                .where(SessionRecord.session_id == sid)
                .values(mac=sealer.mac(SESSIONS, session_fields(session)))
            )
        counts[SESSIONS] = len(ids)

        head = (
            await s.execute(
                select(LogHeadRecord.seq, LogHeadRecord.hash, LogHeadRecord.time)
                .where(LogHeadRecord.id == 1)
                .with_for_update()
            )
        ).one()
        signature = (
            sealer.sign_head(head.seq, head.hash, head.time)
            if head.seq > 0 and head.time is not None
            else None
        )
        await s.execute(
            update(LogHeadRecord).where(LogHeadRecord.id == 1).values(signature=signature)
        )
        return Sealed(None, checked, counts, int(head.seq))
