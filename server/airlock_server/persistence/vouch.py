"""`airlock-server seal`: the operator vouches for the database as it stands.

Rows and events written before migration 0008, by a server without a log key, or under a key
since lost, carry no MAC or signature the key verifies: a server with the key refuses them
(RECORD_NOT_AUTHENTIC, LOG_NOT_AUTHENTIC). After checking the hash chain, `seal` MACs every
authenticated row with the key and signs the log's head row, so the server trusts exactly
what the database holds now. Run it only on a database you trust (docs/threat-model.md).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from sqlalchemy import Table, select, update
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from airlock_server.domain.events import GENESIS_HASH, ChainVerifier, Finding
from airlock_server.persistence.event_log import to_event
from airlock_server.persistence.mappers import (
    ACCOUNTS,
    APPROVERS,
    CREDENTIALS,
    GRANTS,
    SESSIONS,
    TEAM_DELETIONS,
    TEAM_MEMBERS,
    TEAM_SHARES,
    TEAM_VERSIONS,
    TEAMS,
    VAULTS,
    VOTES,
    account_fields,
    account_from_row,
    approver_fields,
    approver_from_row,
    deletion_fields,
    deletion_from_row,
    grant_fields,
    grant_from_row,
    session_fields,
    stored_credential_fields,
    stored_member_fields,
    stored_share_fields,
    stored_vote_fields,
    team_fields,
    vault_fields,
    vault_from_row,
    version_fields,
    version_from_row,
)
from airlock_server.persistence.models import (
    AccountRecord,
    ApproverRecord,
    CredentialRecord,
    EventRecord,
    LogHeadRecord,
    RestoreAccessGrantRecord,
    SessionRecord,
    TeamDeletionRecord,
    TeamMemberRecord,
    TeamRecord,
    TeamShareRecord,
    TeamVersionRecord,
    UnsequencedEventRecord,
    VaultRecord,
    VoteRecord,
)
from airlock_server.persistence.seal import Sealer
from airlock_server.persistence.sequencer import TABLE as UNSEQUENCED
from airlock_server.persistence.sequencer import unsequenced_fields
from airlock_server.persistence.sessions import SqlSessionRepository

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


MACED_TABLES = (
    APPROVERS,
    ACCOUNTS,
    CREDENTIALS,
    TEAMS,
    TEAM_VERSIONS,
    TEAM_MEMBERS,
    TEAM_SHARES,
    TEAM_DELETIONS,
    VOTES,
    GRANTS,
    VAULTS,
    SESSIONS,
    # Events committed and not yet sequenced (PostgreSQL): the sequencer signs only MACed ones.
    UNSEQUENCED,
)


# Each table with a MAC: its record, the fields its MAC covers (from a row) and its key.
_PLAIN: dict[str, tuple[type[Any], Any, tuple[str, ...]]] = {
    APPROVERS: (
        ApproverRecord,
        lambda r: approver_fields(approver_from_row(r)),
        ("approver_id",),
    ),
    ACCOUNTS: (
        AccountRecord,
        lambda r: account_fields(account_from_row(r)),
        ("account_id",),
    ),
    TEAMS: (TeamRecord, team_fields, ("team_id",)),
    TEAM_SHARES: (TeamShareRecord, stored_share_fields, ("team_id", "principal_kind", "subject")),
    TEAM_DELETIONS: (
        TeamDeletionRecord,
        lambda r: deletion_fields(deletion_from_row(r), r.due_time),
        ("session_id",),
    ),
    CREDENTIALS: (CredentialRecord, stored_credential_fields, ("credential_id",)),
    TEAM_VERSIONS: (
        TeamVersionRecord,
        lambda r: version_fields(r.team_id, version_from_row(r)),
        ("team_id", "version"),
    ),
    TEAM_MEMBERS: (TeamMemberRecord, stored_member_fields, ("invitation_id",)),
    VOTES: (VoteRecord, stored_vote_fields, ("session_id", "approver_id")),
    GRANTS: (
        RestoreAccessGrantRecord,
        lambda r: grant_fields(grant_from_row(r)),
        ("grant_id",),
    ),
    VAULTS: (
        VaultRecord,
        lambda r: vault_fields(vault_from_row(r)),
        ("vault_arn",),
    ),
    UNSEQUENCED: (UnsequencedEventRecord, unsequenced_fields, ("id",)),
}


async def mac_rows(
    s: AsyncSession, sealer: Sealer, tables: Sequence[str] = MACED_TABLES
) -> dict[str, int]:
    """Every row of `tables` given the MAC of its fields as stored, in the caller's
    transaction: the rows are vouched for as they stand."""
    assert sealer.keyed, "MACs need the log key"
    counts: dict[str, int] = {}
    for table in tables:
        if table == SESSIONS:
            # A session's MAC covers its approver set and is computed from the whole session:
            # read each through the repository, trusting what is stored (no sealer).
            reader = SqlSessionRepository(s)
            ids = list(await s.scalars(select(SessionRecord.session_id)))
            for sid in ids:
                # Locked: a concurrent vote's MAC is never overwritten with a stale one.
                session = await reader.get(sid, for_update=True)
                assert session is not None
                await s.execute(
                    update(SessionRecord)
                    .where(SessionRecord.session_id == sid)
                    .values(mac=sealer.mac(SESSIONS, session_fields(session)))
                )
            counts[SESSIONS] = len(ids)
            continue
        record, fields, columns = _PLAIN[table]
        t: Table = record.__table__
        rows = list(await s.execute(select(*t.c).with_for_update()))
        for r in rows:
            mac = sealer.mac(table, fields(r))
            await s.execute(
                update(t).where(*[t.c[c] == getattr(r, c) for c in columns]).values(mac=mac)
            )
        counts[table] = len(rows)
    return counts


async def sign_head_row(s: AsyncSession, sealer: Sealer) -> int:
    """The head row signed with the log key, in the caller's transaction; its seq."""
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
    await s.execute(update(LogHeadRecord).where(LogHeadRecord.id == 1).values(signature=signature))
    return int(head.seq)


async def seal_database(sessions: async_sessionmaker[AsyncSession], sealer: Sealer) -> Sealed:
    """Check the chain, then, in one transaction, MAC every authenticated row and sign the
    head row with the log key."""
    assert sealer.keyed, "sealing needs the log key"
    async with sessions() as s, s.begin():
        checked, finding = await _check_chain(s)
        if finding is not None:
            return Sealed(finding, checked, {}, 0)
        counts = await mac_rows(s, sealer)
        return Sealed(None, checked, counts, await sign_head_row(s, sealer))
