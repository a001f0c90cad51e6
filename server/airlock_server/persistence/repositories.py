"""Repositories: given a session by the unit of work, never committing themselves."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import replace
from datetime import datetime, timedelta
from typing import Any, cast

from sqlalchemy import Row, Table, and_, bindparam, delete, exists, insert, or_, select, update
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.ext.asyncio import AsyncSession

from airlock_server.app.ports import Claimed
from airlock_server.domain.identities import Account, Approver, Credential
from airlock_server.domain.integrity import RowField, record_not_authentic
from airlock_server.domain.principals import Principal, PrincipalKind
from airlock_server.domain.teams import (
    InvitationState,
    Team,
    TeamMember,
    TeamShare,
    TeamState,
    TeamStatus,
    TeamVersion,
)
from airlock_server.persistence.models import (
    AccountRecord,
    ApproverRecord,
    CredentialRecord,
    IdempotencyKeyRecord,
    SettingRecord,
    TeamMemberRecord,
    TeamRecord,
    TeamShareRecord,
    TeamVersionRecord,
)
from airlock_server.persistence.seal import Sealer

# The tables whose rows carry a MAC by the log key (domain/integrity.py).
CREDENTIALS = "credentials"
TEAM_MEMBERS = "team_members"
TEAM_VERSIONS = "team_versions"
APPROVERS = "approvers"
ACCOUNTS = "accounts"
TEAMS = "teams"
TEAM_SHARES = "team_shares"


def approver_fields(a: Approver) -> tuple[RowField, ...]:
    """What an approver's MAC covers: every column, `enabled` above all (a disabled approver
    re-enabled through SQL is refused)."""
    return (
        a.approver_id,
        a.display_name,
        a.email,
        int(a.enabled),
        a.create_time,
        a.disable_time,
    )


def account_fields(a: Account) -> tuple[RowField, ...]:
    return (a.account_id, a.name, a.create_time)


def team_fields(r: Any) -> tuple[RowField, ...]:
    """What a team's own row's MAC covers, from a row or a dict of its columns: its state and
    which versions are current and pending (a `current_version` rolled back is refused)."""
    values = r if isinstance(r, dict) else r._mapping
    return tuple(values[c] for c in _TEAM_MACED)


_TEAM_MACED = (
    "team_id",
    "arn",
    "name",
    "state",
    "status",
    "status_message",
    "current_version",
    "pending_version",
    "update_session_id",
    "revision",
    "activation_deadline",
    "create_time",
    "update_time",
)


def share_fields(
    team_id: str, kind: str, subject: str, create_time: datetime
) -> tuple[RowField, ...]:
    return (team_id, kind, subject, create_time)


def stored_share_fields(r: Any) -> tuple[RowField, ...]:
    return share_fields(r.team_id, r.principal_kind, r.subject, r.create_time)


def version_fields(team_id: str, v: TeamVersion) -> tuple[RowField, ...]:
    """What a team version's MAC covers: its rules (M, TTLs), immutable once written."""
    return (
        team_id,
        v.version,
        v.description,
        v.min_approvals,
        int(v.session_ttl.total_seconds()),
        int(v.invitation_ttl.total_seconds()),
        v.create_time,
        v.invitation_expire_time,
    )


def member_fields(
    team_id: str,
    version: int,
    invitation_id: str,
    approver_id: str,
    invitation_state: str,
    response_time: datetime | None,
    public_key: bytes | None,
    approved_key: bytes | None = None,
) -> tuple[RowField, ...]:
    """What a team member row's MAC covers: which team version, which approver, its answer,
    the key it enrolled and, for an invitation bound to one, the key the team approved
    (position only orders the members)."""
    fields: tuple[RowField, ...] = (
        team_id,
        version,
        invitation_id,
        approver_id,
        invitation_state,
        response_time,
        bytes(public_key) if public_key is not None else None,
    )
    return fields if approved_key is None else (*fields, bytes(approved_key))


def _insert(session: AsyncSession):  # type: ignore[no-untyped-def]
    """The dialect's INSERT, for ON CONFLICT DO NOTHING."""
    return pg_insert if session.get_bind().dialect.name == "postgresql" else sqlite_insert


class SqlApproverRepository:
    def __init__(self, session: AsyncSession, sealer: Sealer | None = None) -> None:
        self._s = session
        self._sealer = sealer or Sealer()

    def _to_domain(self, r: ApproverRecord) -> Approver:
        """An approver row the server wrote; RECORD_NOT_AUTHENTIC otherwise."""
        a = Approver(
            r.approver_id, r.display_name, r.email, r.enabled, r.create_time, r.disable_time
        )
        if not self._sealer.authentic(APPROVERS, r.approver_id, approver_fields(a), r.mac):
            raise record_not_authentic(APPROVERS, r.approver_id)
        return a

    async def add(self, approver: Approver) -> None:
        self._s.add(
            ApproverRecord(
                approver_id=approver.approver_id,
                display_name=approver.display_name,
                email=approver.email,
                enabled=approver.enabled,
                create_time=approver.create_time,
                disable_time=approver.disable_time,
                mac=self._sealer.mac(APPROVERS, approver_fields(approver)),
            )
        )
        await self._s.flush()

    async def get(self, approver_id: str) -> Approver | None:
        r = await self._s.get(ApproverRecord, approver_id)
        return self._to_domain(r) if r else None

    async def get_many(self, approver_ids: Sequence[str]) -> dict[str, Approver]:
        rows = await self._s.scalars(
            select(ApproverRecord).where(ApproverRecord.approver_id.in_(list(approver_ids)))
        )
        return {r.approver_id: self._to_domain(r) for r in rows}

    async def list_page(
        self, enabled: bool | None, after: str | None, limit: int
    ) -> list[Approver]:
        q = select(ApproverRecord).order_by(ApproverRecord.approver_id).limit(limit)
        if enabled is not None:
            q = q.where(ApproverRecord.enabled == enabled)
        if after is not None:
            q = q.where(ApproverRecord.approver_id > after)
        return [self._to_domain(r) for r in await self._s.scalars(q)]

    async def save(self, approver: Approver) -> None:
        await self._s.execute(
            update(ApproverRecord)
            .where(ApproverRecord.approver_id == approver.approver_id)
            .values(
                display_name=approver.display_name,
                email=approver.email,
                enabled=approver.enabled,
                disable_time=approver.disable_time,
                mac=self._sealer.mac(APPROVERS, approver_fields(approver)),
            )
        )


class SqlAccountRepository:
    def __init__(self, session: AsyncSession, sealer: Sealer | None = None) -> None:
        self._s = session
        self._sealer = sealer or Sealer()

    def _to_domain(self, r: AccountRecord) -> Account:
        """An account row the server wrote; RECORD_NOT_AUTHENTIC otherwise."""
        a = Account(r.account_id, r.name, r.create_time)
        if not self._sealer.authentic(ACCOUNTS, r.account_id, account_fields(a), r.mac):
            raise record_not_authentic(ACCOUNTS, r.account_id)
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


def _credential_fields(
    credential_id: str,
    kind: str,
    subject: str,
    description: str,
    token_hash: bytes,
    create_time: datetime,
    expire_time: datetime | None,
    revoke_time: datetime | None,
) -> tuple[RowField, ...]:
    """What a credential's MAC covers: every column but the MAC."""
    return (
        credential_id,
        kind,
        subject,
        description,
        bytes(token_hash),
        create_time,
        expire_time,
        revoke_time,
    )


def stored_credential_fields(r: Any) -> tuple[RowField, ...]:
    return _credential_fields(
        r.credential_id,
        r.principal_kind,
        r.subject,
        r.description,
        r.token_hash,
        r.create_time,
        r.expire_time,
        r.revoke_time,
    )


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
        return self._to_domain(r)

    @staticmethod
    def _to_domain(r: CredentialRecord | Row[*tuple[Any, ...]]) -> Credential:
        return Credential(
            credential_id=r.credential_id,
            principal=Principal(PrincipalKind(r.principal_kind), r.subject),
            description=r.description,
            create_time=r.create_time,
            expire_time=r.expire_time,
            revoke_time=r.revoke_time,
        )

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
        return self._to_domain(r) if r is not None and self._authentic(r) else None

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
        fields = _credential_fields(
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


_T = TeamRecord.__table__.c
_V = TeamVersionRecord.__table__.c
_M = TeamMemberRecord.__table__.c
# A team with its current and pending versions and their members, in one statement.
_TEAM_ROWS = (
    select(
        *_T,
        _V.version.label("v_version"),
        _V.description.label("v_description"),
        _V.min_approvals.label("v_min_approvals"),
        _V.session_ttl_seconds.label("v_session_ttl_seconds"),
        _V.invitation_ttl_seconds.label("v_invitation_ttl_seconds"),
        _V.create_time.label("v_create_time"),
        _V.invitation_expire_time.label("v_invitation_expire_time"),
        _V.mac.label("v_mac"),
        _M.invitation_id.label("m_invitation_id"),
        _M.approver_id.label("m_approver_id"),
        _M.invitation_state.label("m_invitation_state"),
        _M.response_time.label("m_response_time"),
        _M.public_key.label("m_public_key"),
        _M.approved_key.label("m_approved_key"),
        _M.mac.label("m_mac"),
    )
    .select_from(
        TeamRecord.__table__.join(
            TeamVersionRecord.__table__,
            and_(
                _V.team_id == _T.team_id,
                or_(_V.version == _T.current_version, _V.version == _T.pending_version),
            ),
        ).outerjoin(
            TeamMemberRecord.__table__,
            and_(_M.team_id == _V.team_id, _M.version == _V.version),
        )
    )
    .order_by(_T.team_id, _V.version, _M.position)
)


_TEAM_BY_ID = _TEAM_ROWS.where(_T.team_id == bindparam("team_id"))
_TEAM_BY_ID_LOCKED = _TEAM_BY_ID.with_for_update(of=TeamRecord.__table__)
_TEAM_BY_INVITATION = _TEAM_ROWS.where(
    _T.team_id
    == select(_M.team_id).where(_M.invitation_id == bindparam("invitation_id")).scalar_subquery()
)
_TEAM_BY_INVITATION_LOCKED = _TEAM_BY_INVITATION.with_for_update(of=TeamRecord.__table__)


def _team_row_values(team: Team, deadline: datetime | None) -> dict[str, Any]:
    """The team's own row but its MAC (which save() adds)."""
    return {
        "state": team.state.value,
        "status": team.status.value,
        "status_message": team.status_message,
        "current_version": team.current.version,
        "pending_version": team.pending.version if team.pending else None,
        "update_session_id": team.update_session_id,
        "revision": team.revision,
        "activation_deadline": deadline,
        "update_time": team.update_time,
    }


def _member_values(m: TeamMember) -> tuple[str, datetime | None, bytes | None]:
    return (m.invitation_state.value, m.response_time, m.public_key)


class SqlTeamRepository:
    def __init__(self, session: AsyncSession, sealer: Sealer | None = None) -> None:
        self._s = session
        self._sealer = sealer or Sealer()
        # Each team as this transaction last read or wrote it: save() writes only what changed.
        self._known: dict[str, Team] = {}

    async def _rows(self, q: Any, params: dict[str, Any] | None = None) -> list[Team]:
        """The teams of a query of _TEAM_ROWS."""
        conn = await self._s.connection()
        teams: list[Team] = []
        versions: dict[int, TeamVersion] = {}
        members: dict[int, list[TeamMember]] = {}
        first: Any = None

        def finish() -> None:
            if not self._sealer.authentic(TEAMS, first.team_id, team_fields(first), first.mac):
                # Its state and which version is current: never rolled back through SQL.
                raise record_not_authentic(TEAMS, first.team_id)
            built = {n: replace(v, members=tuple(members[n])) for n, v in versions.items()}
            team = Team(
                team_id=first.team_id,
                arn=first.arn,
                name=first.name,
                state=TeamState(first.state),
                status=TeamStatus(first.status),
                status_message=first.status_message,
                current=built[first.current_version],
                revision=first.revision,
                create_time=first.create_time,
                update_time=first.update_time,
                pending=built[first.pending_version] if first.pending_version is not None else None,
                update_session_id=first.update_session_id,
            )
            self._known[team.team_id] = team
            teams.append(team)

        for r in await conn.execute(q, params):
            if first is None or r.team_id != first.team_id:
                if first is not None:
                    finish()
                first, versions, members = r, {}, {}
            if r.v_version not in versions:
                version = TeamVersion(
                    version=r.v_version,
                    description=r.v_description,
                    min_approvals=r.v_min_approvals,
                    session_ttl=timedelta(seconds=r.v_session_ttl_seconds),
                    invitation_ttl=timedelta(seconds=r.v_invitation_ttl_seconds),
                    members=(),
                    create_time=r.v_create_time,
                    invitation_expire_time=r.v_invitation_expire_time,
                )
                key = f"{r.team_id}/{r.v_version}"
                fields = version_fields(r.team_id, version)
                if not self._sealer.authentic(TEAM_VERSIONS, key, fields, r.v_mac):
                    # M and the TTLs every new session of the team freezes.
                    raise record_not_authentic(TEAM_VERSIONS, key)
                versions[r.v_version] = version
                members[r.v_version] = []
            if r.m_invitation_id is not None:
                fields = member_fields(
                    r.team_id,
                    r.v_version,
                    r.m_invitation_id,
                    r.m_approver_id,
                    r.m_invitation_state,
                    r.m_response_time,
                    r.m_public_key,
                    r.m_approved_key,
                )
                if not self._sealer.authentic(TEAM_MEMBERS, r.m_invitation_id, fields, r.m_mac):
                    raise record_not_authentic(TEAM_MEMBERS, r.m_invitation_id)
                members[r.v_version].append(
                    TeamMember(
                        approver_id=r.m_approver_id,
                        invitation_id=r.m_invitation_id,
                        invitation_state=InvitationState(r.m_invitation_state),
                        response_time=r.m_response_time,
                        public_key=r.m_public_key,
                        approved_key=r.m_approved_key,
                    )
                )
        if first is not None:
            finish()
        return teams

    async def _many(self, ids: Sequence[str]) -> list[Team]:
        if not ids:
            return []
        by_id = {t.team_id: t for t in await self._rows(_TEAM_ROWS.where(_T.team_id.in_(ids)))}
        return [by_id[i] for i in ids if i in by_id]

    @staticmethod
    def _deadline(team: Team) -> datetime | None:
        if team.state is TeamState.PENDING:
            return team.current.invitation_expire_time
        if team.pending is not None and team.status is TeamStatus.UPDATE_PENDING_ACTIVATION:
            # Only approved drafts wait on invitations; failed drafts are kept for reading.
            return team.pending.invitation_expire_time
        return None

    async def _write_version(self, team_id: str, v: TeamVersion, *, new: bool = False) -> None:
        """Write a version; `new`: of a team being added, so certainly not stored yet."""
        rec = None if new else await self._s.get(TeamVersionRecord, (team_id, v.version))
        if rec is not None:
            stored = set(
                await self._s.scalars(
                    select(TeamMemberRecord.invitation_id).where(
                        TeamMemberRecord.team_id == team_id, TeamMemberRecord.version == v.version
                    )
                )
            )
            if stored != {m.invitation_id for m in v.members}:
                # A new draft replaces a failed one of the same number: write it afresh.
                await self._s.execute(
                    delete(TeamMemberRecord).where(
                        TeamMemberRecord.team_id == team_id, TeamMemberRecord.version == v.version
                    )
                )
                await self._s.delete(rec)
                await self._s.flush()
                rec = None
        if rec is None:
            await self._s.execute(
                insert(TeamVersionRecord).values(
                    team_id=team_id,
                    version=v.version,
                    description=v.description,
                    min_approvals=v.min_approvals,
                    session_ttl_seconds=int(v.session_ttl.total_seconds()),
                    invitation_ttl_seconds=int(v.invitation_ttl.total_seconds()),
                    create_time=v.create_time,
                    invitation_expire_time=v.invitation_expire_time,
                    mac=self._sealer.mac(TEAM_VERSIONS, version_fields(team_id, v)),
                )
            )
            if v.members:
                await self._s.execute(
                    insert(TeamMemberRecord),
                    [
                        {
                            "invitation_id": m.invitation_id,
                            "team_id": team_id,
                            "version": v.version,
                            "position": i,
                            "approver_id": m.approver_id,
                            "invitation_state": m.invitation_state.value,
                            "response_time": m.response_time,
                            "public_key": m.public_key,
                            "approved_key": m.approved_key,
                            "mac": self._member_mac(team_id, v.version, m),
                        }
                        for i, m in enumerate(v.members)
                    ],
                )
            return
        # Versions are immutable but for their invitations' answers.
        for m in v.members:
            await self._s.execute(
                update(TeamMemberRecord)
                .where(TeamMemberRecord.invitation_id == m.invitation_id)
                .values(
                    invitation_state=m.invitation_state.value,
                    response_time=m.response_time,
                    public_key=m.public_key,
                    mac=self._member_mac(team_id, v.version, m),
                )
            )

    def _member_mac(self, team_id: str, version: int, m: TeamMember) -> bytes | None:
        return self._sealer.mac(
            TEAM_MEMBERS,
            member_fields(
                team_id,
                version,
                m.invitation_id,
                m.approver_id,
                m.invitation_state.value,
                m.response_time,
                m.public_key,
                m.approved_key,
            ),
        )

    def _team_row(self, team: Team) -> dict[str, Any]:
        """Every column of the team's own row, its MAC included."""
        values = {
            "team_id": team.team_id,
            "arn": team.arn,
            "name": team.name,
            "create_time": team.create_time,
            **_team_row_values(team, self._deadline(team)),
        }
        return {**values, "mac": self._sealer.mac(TEAMS, team_fields(values))}

    async def add(self, team: Team) -> None:
        await self._s.execute(insert(TeamRecord).values(**self._team_row(team)))
        await self._write_version(team.team_id, team.current, new=True)
        if team.pending is not None:
            await self._write_version(team.team_id, team.pending, new=True)
        self._known[team.team_id] = team

    async def get(self, team_id: str, *, for_update: bool = False) -> Team | None:
        # Always read: a locked read must see the row as committed now.
        q = _TEAM_BY_ID_LOCKED if for_update else _TEAM_BY_ID
        teams = await self._rows(q, {"team_id": team_id})
        return teams[0] if teams else None

    async def get_by_name(self, name: str) -> Team | None:
        teams = await self._rows(_TEAM_ROWS.where(_T.name == name))
        return teams[0] if teams else None

    async def list_page(
        self, visible_to: Principal | None, after: str | None, limit: int
    ) -> list[Team]:
        q = (
            select(TeamRecord)
            .where(TeamRecord.state != TeamState.DELETED.value)
            .order_by(TeamRecord.team_id)
            .limit(limit)
        )
        if after is not None:
            q = q.where(TeamRecord.team_id > after)
        if visible_to is None:
            return await self._many(list(await self._s.scalars(q.with_only_columns(_T.team_id))))
        # The shares it goes by, checked: a share inserted through SQL shows no team.
        shared = q.join(TeamShareRecord, TeamShareRecord.team_id == TeamRecord.team_id).where(
            TeamShareRecord.principal_kind == visible_to.kind.value,
            TeamShareRecord.subject == visible_to.subject,
        )
        shares = SqlShareRepository(self._s, self._sealer)
        rows = list(await self._s.execute(shared.with_only_columns(*_SH.c)))
        return await self._many([shares._checked(r).team_id for r in rows])

    async def save(self, team: Team) -> None:
        known = self._known.get(team.team_id)
        values = _team_row_values(team, self._deadline(team))
        if known is None or _team_row_values(known, self._deadline(known)) != values:
            row = self._team_row(team)
            del row["team_id"]
            await self._s.execute(
                update(TeamRecord).where(TeamRecord.team_id == team.team_id).values(**row)
            )
        for version in (team.current, team.pending):
            if version is None:
                continue
            before = _same_version(known, version)
            if before is None:
                await self._write_version(team.team_id, version)
                continue
            # Known to this transaction with the same invitations: write the changed answers.
            for old, new in zip(before.members, version.members, strict=True):
                if _member_values(old) != _member_values(new):
                    await self._s.execute(
                        update(TeamMemberRecord)
                        .where(TeamMemberRecord.invitation_id == new.invitation_id)
                        .values(
                            invitation_state=new.invitation_state.value,
                            response_time=new.response_time,
                            public_key=new.public_key,
                            mac=self._member_mac(team.team_id, version.version, new),
                        )
                    )
        self._known[team.team_id] = team

    async def find_by_invitation(
        self, invitation_id: str, *, for_update: bool = False
    ) -> Team | None:
        q = _TEAM_BY_INVITATION_LOCKED if for_update else _TEAM_BY_INVITATION
        teams = await self._rows(q, {"invitation_id": invitation_id})
        return teams[0] if teams else None

    async def list_for_approver(
        self, approver_id: str, team_id: str | None, after: str | None, limit: int
    ) -> list[Team]:
        q = (
            select(TeamRecord)
            .where(
                exists().where(
                    TeamMemberRecord.team_id == TeamRecord.team_id,
                    TeamMemberRecord.approver_id == approver_id,
                    or_(
                        TeamMemberRecord.version == TeamRecord.current_version,
                        TeamMemberRecord.version == TeamRecord.pending_version,
                    ),
                )
            )
            .order_by(TeamRecord.team_id)
            .limit(limit)
        )
        if team_id is not None:
            q = q.where(TeamRecord.team_id == team_id)
        if after is not None:
            q = q.where(TeamRecord.team_id > after)
        return await self._many(list(await self._s.scalars(q.with_only_columns(_T.team_id))))

    async def pending_past_expiry(self, now: datetime, limit: int) -> list[str]:
        q = (
            select(TeamRecord.team_id)
            .where(
                and_(
                    TeamRecord.activation_deadline.is_not(None),
                    TeamRecord.activation_deadline <= now,
                )
            )
            .order_by(TeamRecord.activation_deadline)
            .limit(limit)
            .with_for_update(skip_locked=True)
        )
        return list(await self._s.scalars(q))


def _same_version(known: Team | None, version: TeamVersion) -> TeamVersion | None:
    """The version as this transaction knows it, if it has the same invitations."""
    if known is None:
        return None
    for v in (known.current, known.pending):
        if (
            v is not None
            and v.version == version.version
            and [m.invitation_id for m in v.members] == [m.invitation_id for m in version.members]
        ):
            return v
    return None


_SH = cast(Table, TeamShareRecord.__table__)
# Every share check (GetApprovalTeam, vault association) reads through this, prebuilt.
_SHARE_BY_KEY = select(*_SH.c).where(
    _SH.c.team_id == bindparam("team_id"),
    _SH.c.principal_kind == bindparam("kind"),
    _SH.c.subject == bindparam("subject"),
)


class SqlShareRepository:
    def __init__(self, session: AsyncSession, sealer: Sealer | None = None) -> None:
        self._s = session
        self._sealer = sealer or Sealer()

    def _checked(self, r: Any) -> TeamShare:
        """A share the server wrote; RECORD_NOT_AUTHENTIC otherwise (a share inserted through
        SQL opens no team to anyone)."""
        key = f"{r.team_id}/{r.principal_kind}:{r.subject}"
        if not self._sealer.authentic(TEAM_SHARES, key, stored_share_fields(r), r.mac):
            raise record_not_authentic(TEAM_SHARES, key)
        return TeamShare(r.team_id, r.principal_kind, r.subject, r.create_time)

    async def add(self, share: TeamShare) -> bool:
        stmt = (
            _insert(self._s)(TeamShareRecord)
            .values(
                team_id=share.team_id,
                principal_kind=share.principal_kind,
                subject=share.subject,
                create_time=share.create_time,
                mac=self._sealer.mac(
                    TEAM_SHARES,
                    share_fields(
                        share.team_id, share.principal_kind, share.subject, share.create_time
                    ),
                ),
            )
            .on_conflict_do_nothing()
        )
        result = await self._s.execute(stmt)
        return bool(result.rowcount)  # type: ignore[attr-defined]

    async def remove(self, team_id: str, principal: Principal) -> bool:
        result = await self._s.execute(
            delete(TeamShareRecord).where(
                TeamShareRecord.team_id == team_id,
                TeamShareRecord.principal_kind == principal.kind.value,
                TeamShareRecord.subject == principal.subject,
            )
        )
        return bool(result.rowcount)  # type: ignore[attr-defined]

    async def get(self, team_id: str, principal: Principal) -> TeamShare | None:
        conn = await self._s.connection()
        params = {"team_id": team_id, "kind": principal.kind.value, "subject": principal.subject}
        r = (await conn.execute(_SHARE_BY_KEY, params)).first()
        return self._checked(r) if r else None

    async def list_page(self, team_id: str, after: str | None, limit: int) -> list[TeamShare]:
        key = TeamShareRecord.principal_kind + ":" + TeamShareRecord.subject
        q = (
            select(TeamShareRecord)
            .where(TeamShareRecord.team_id == team_id)
            .order_by(key)
            .limit(limit)
        )
        if after is not None:
            q = q.where(key > after)
        return [self._checked(r) for r in await self._s.scalars(q)]


class SqlIdempotencyRepository:
    def __init__(self, session: AsyncSession) -> None:
        self._s = session

    async def claim(
        self,
        scope: str,
        request_id: str,
        fingerprint: str,
        now: datetime,
        result: str | None = None,
    ) -> Claimed | None:
        # A racing twin blocks on this insert until the first commits, then sees its result.
        stmt = (
            _insert(self._s)(IdempotencyKeyRecord)
            .values(
                scope=scope,
                request_id=request_id,
                result=result,
                create_time=now,
                fingerprint=fingerprint,
            )
            .on_conflict_do_nothing()
        )
        inserted = (await self._s.execute(stmt)).rowcount  # type: ignore[attr-defined]
        if inserted:
            return None
        row = (
            await self._s.execute(
                select(IdempotencyKeyRecord.result, IdempotencyKeyRecord.fingerprint).where(
                    IdempotencyKeyRecord.scope == scope,
                    IdempotencyKeyRecord.request_id == request_id,
                )
            )
        ).one()
        return Claimed(row.result or "", row.fingerprint)

    async def complete(self, scope: str, request_id: str, result: str) -> None:
        await self._s.execute(
            update(IdempotencyKeyRecord)
            .where(
                IdempotencyKeyRecord.scope == scope, IdempotencyKeyRecord.request_id == request_id
            )
            .values(result=result)
        )


class SqlSettingsRepository:
    def __init__(self, session: AsyncSession) -> None:
        self._s = session

    async def get(self, key: str) -> str | None:
        r = await self._s.get(SettingRecord, key)
        return r.value if r else None

    async def put_new(self, key: str, value: str) -> bool:
        stmt = _insert(self._s)(SettingRecord).values(key=key, value=value).on_conflict_do_nothing()
        return bool((await self._s.execute(stmt)).rowcount)  # type: ignore[attr-defined]
