"""Teams: a team row, its current and pending versions and their members (invitations)."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import replace
from datetime import datetime
from typing import Any, cast

from sqlalchemy import Table, and_, bindparam, delete, exists, func, insert, or_, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from airlock_server.app.ports import TeamRead
from airlock_server.domain.health import Activity, ActivityKind
from airlock_server.domain.principals import Principal
from airlock_server.domain.team_changes import TeamDeletion
from airlock_server.domain.teams import (
    InvitationState,
    Team,
    TeamMember,
    TeamState,
    TeamStatus,
    TeamVersion,
)
from airlock_server.persistence.activity import SqlActivityRepository
from airlock_server.persistence.mappers import (
    TEAM_MEMBERS,
    TEAM_VERSIONS,
    TEAMS,
    check,
    check_member,
    checked_share,
    member_fields,
    team_fields,
    version_fields,
    version_from_row,
)
from airlock_server.persistence.models import (
    ApproverActivityRecord,
    TeamDeletionRecord,
    TeamMemberRecord,
    TeamRecord,
    TeamShareRecord,
    TeamVersionRecord,
)
from airlock_server.persistence.queries import Fields
from airlock_server.persistence.seal import Sealer
from airlock_server.persistence.shares import SHARE_COLUMNS, SqlShareRepository
from airlock_server.persistence.team_deletions import SqlTeamDeletionRepository, checked_deletion

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


def _team_view() -> Any:
    """GetApprovalTeam's read on PostgreSQL, one statement (one snapshot, no transaction): the
    team's rows, each with the caller's share, the latest deletion request and the approvers'
    activity, each a whole row (a composite value) or an array of them."""
    sh = cast(Table, TeamShareRecord.__table__).alias("s")
    d = cast(Table, TeamDeletionRecord.__table__).alias("d")
    a = cast(Table, ApproverActivityRecord.__table__).alias("a")
    team_id: Any = bindparam("team_id")
    share = select(sh.table_valued()).where(
        sh.c.team_id == team_id,
        sh.c.principal_kind == bindparam("kind"),
        sh.c.subject == bindparam("subject"),
    )
    # The latest request, as SqlTeamDeletionRepository.latest_of orders them.
    deletion = (
        select(d.table_valued())
        .where(d.c.team_id == team_id)
        .order_by(d.c.request_time.desc(), d.c.session_id.desc())
        .limit(1)
    )
    activity = select(func.array_agg(a.table_valued())).where(a.c.team_id == team_id)
    return _TEAM_BY_ID.add_columns(
        share.scalar_subquery().label("x_share"),
        deletion.scalar_subquery().label("x_deletion"),
        activity.scalar_subquery().label("x_activity"),
    )


_TEAM_VIEW = _team_view()
_TEAM_BY_ID_LOCKED = _TEAM_BY_ID.with_for_update(of=TeamRecord.__table__)
_TEAM_BY_INVITATION = _TEAM_ROWS.where(
    _T.team_id
    == select(_M.team_id).where(_M.invitation_id == bindparam("invitation_id")).scalar_subquery()
)
_TEAM_BY_INVITATION_LOCKED = _TEAM_BY_INVITATION.with_for_update(of=TeamRecord.__table__)
_MEMBERS_OF_VERSION = select(
    _M.invitation_id,
    _M.approver_id,
    _M.invitation_state,
    _M.response_time,
    _M.public_key,
    _M.approved_key,
    _M.mac,
).where(_M.team_id == bindparam("team_id"), _M.version == bindparam("version"))


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
    def __init__(
        self,
        session: AsyncSession,
        sealer: Sealer | None = None,
        names: dict[str, str] | None = None,
    ) -> None:
        self._s = session
        self._sealer = sealer or Sealer()
        # Each team as this transaction last read or wrote it: save() writes only the changed
        # team row and member answers, without reading its versions back. Measured
        # (RespondToInvitation, in process, loaded 2-core machine, min of 6 runs of 40): 8.2
        # statements instead of 14.8 on PostgreSQL, 11.5 instead of 18 on SQLite; 26.5 instead
        # of 30.8 ms (PostgreSQL), 31.9 instead of 43.9 ms (SQLite).
        self._known: dict[str, Team] = {}
        # Team names never change: the ones the transaction's session reads joined serve names().
        self._names = {} if names is None else names

    async def _rows(self, q: Any, params: dict[str, Any] | None = None) -> list[Team]:
        """The teams of a query of _TEAM_ROWS."""
        conn = await self._s.connection()
        return self._teams(await conn.execute(q, params))

    def _teams(self, rows: Iterable[Any]) -> list[Team]:
        teams: list[Team] = []
        versions: dict[int, TeamVersion] = {}
        members: dict[int, list[TeamMember]] = {}
        first: Any = None

        def finish() -> None:
            # Its state and which version is current: never rolled back through SQL.
            check(self._sealer, TEAMS, first.team_id, team_fields(first), first.mac)
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

        for r in rows:
            if first is None or r.team_id != first.team_id:
                if first is not None:
                    finish()
                first, versions, members = r, {}, {}
            if r.v_version not in versions:
                version = version_from_row(r, "v_")
                key = f"{r.team_id}/{r.v_version}"
                # M and the TTLs every new session of the team freezes.
                check(self._sealer, TEAM_VERSIONS, key, version_fields(r.team_id, version), r.v_mac)
                versions[r.v_version] = version
                members[r.v_version] = []
            if r.m_invitation_id is not None:
                check_member(
                    self._sealer,
                    r.team_id,
                    r.v_version,
                    r.m_invitation_id,
                    r.m_approver_id,
                    r.m_invitation_state,
                    r.m_response_time,
                    r.m_public_key,
                    r.m_mac,
                    r.m_approved_key,
                )
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

    async def view(self, team_id: str, sharer: Principal | None) -> TeamRead:
        if self._s.get_bind().dialect.name != "postgresql":
            return await self._view_in_reads(team_id, sharer)
        conn = await self._s.connection()
        kind, subject = (sharer.kind.value, sharer.subject) if sharer else ("", "")
        rows = list(
            await conn.execute(_TEAM_VIEW, {"team_id": team_id, "kind": kind, "subject": subject})
        )
        if not rows:  # no such team: whether it is shared still decides the answer
            return await self._view_in_reads(team_id, sharer)
        first = rows[0]
        x_share = first.x_share
        share = checked_share(self._sealer, Fields(x_share)) if x_share is not None else None
        team = self._teams(rows)[0]
        sealer = self._sealer

        async def extras() -> tuple[TeamDeletion | None, dict[str, Activity]]:
            d = first.x_deletion
            activity = {
                a["approver_id"]: Activity(ActivityKind(a["kind"]), a["activity_time"])
                for a in first.x_activity or ()
            }
            return (checked_deletion(sealer, Fields(d)) if d is not None else None), activity

        return TeamRead(share if sharer else None, team, extras)

    async def _view_in_reads(self, team_id: str, sharer: Principal | None) -> TeamRead:
        """TeamRead by the reads of each part (SQLite; a team PostgreSQL did not find)."""
        s, sealer = self._s, self._sealer
        share = await SqlShareRepository(s, sealer).get(team_id, sharer) if sharer else None
        team = await self.get(team_id)

        async def extras() -> tuple[TeamDeletion | None, dict[str, Activity]]:
            deletion = (await SqlTeamDeletionRepository(s, sealer).latest_of([team_id])).get(
                team_id
            )
            activity = (await SqlActivityRepository(s).of_teams([team_id])).get(team_id, {})
            return deletion, activity

        return TeamRead(share, team, extras)

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
        rows = list(await self._s.execute(shared.with_only_columns(*SHARE_COLUMNS)))
        return await self._many([checked_share(self._sealer, r).team_id for r in rows])

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

    async def names(self, team_ids: Sequence[str]) -> dict[str, str]:
        missing = {t for t in team_ids if t not in self._names}
        if missing:
            rows = await self._s.execute(
                select(TeamRecord.team_id, TeamRecord.name).where(TeamRecord.team_id.in_(missing))
            )
            self._names.update({str(row[0]): str(row[1]) for row in rows})
        return {t: self._names[t] for t in team_ids if t in self._names}

    async def enrolled_key(self, team_id: str, version: int, approver_id: str) -> bytes | None:
        return (await self.enrolled_keys(team_id, version)).get(approver_id)

    async def enrolled_keys(self, team_id: str, version: int) -> dict[str, bytes | None]:
        rows = await self._s.execute(_MEMBERS_OF_VERSION, {"team_id": team_id, "version": version})
        keys: dict[str, bytes | None] = {}
        for r in rows:
            check_member(
                self._sealer,
                team_id,
                version,
                r.invitation_id,
                r.approver_id,
                r.invitation_state,
                r.response_time,
                r.public_key,
                r.mac,
                r.approved_key,
            )
            keys[r.approver_id] = r.public_key
        return keys


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
