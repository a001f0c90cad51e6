"""Repositories of the recovery flow: sessions and votes, vaults, restore access grants."""

from __future__ import annotations

import json
from collections.abc import Sequence
from datetime import datetime, timedelta
from typing import Any, NamedTuple, cast

from sqlalchemy import (
    Table,
    and_,
    bindparam,
    exists,
    func,
    insert,
    literal_column,
    null,
    or_,
    select,
    true,
    union_all,
    update,
)
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.sql import ColumnElement

from airlock_server.app.ports import SessionQuery, TimeCursor
from airlock_server.domain.events import Event
from airlock_server.domain.integrity import RowField, record_not_authentic
from airlock_server.domain.principals import Principal, PrincipalKind
from airlock_server.domain.sessions import (
    DraftMember,
    ExecutionStatus,
    KeyChange,
    Session,
    SessionKind,
    SessionState,
    SessionStatus,
    TeamDraft,
    Vote,
    VoteDecision,
)
from airlock_server.domain.team_changes import TeamDeletion
from airlock_server.domain.vaults import (
    OPEN_GRANT_STATES,
    GrantState,
    PendingAssociation,
    RestoreAccessGrant,
    Vault,
)
from airlock_server.persistence.event_log import to_event
from airlock_server.persistence.models import (
    EventRecord,
    EventSubjectRecord,
    RestoreAccessGrantRecord,
    SessionApproverRecord,
    SessionRecord,
    TeamDeletionRecord,
    TeamMemberRecord,
    TeamRecord,
    VaultRecord,
    VoteRecord,
)
from airlock_server.persistence.repositories import TEAM_MEMBERS, member_fields
from airlock_server.persistence.seal import Sealer

SESSIONS = "sessions"
VOTES = "votes"
GRANTS = "restore_access_grants"
VAULTS = "vaults"
TEAM_DELETIONS = "team_deletions"


def deletion_fields(d: TeamDeletion, due_time: datetime | None) -> tuple[RowField, ...]:
    """What a team deletion's MAC covers: every column (its session, window, outcome, due)."""
    return (
        d.session_id,
        d.team_id,
        d.pending_window_days,
        d.request_time,
        d.approve_time,
        d.complete_time,
        due_time,
    )


def session_fields(s: Session) -> tuple[RowField, ...]:
    """What a session's MAC covers: every fact its votes and approval rest on (the frozen
    approver set of session_approvers included), and its state."""
    return (
        s.session_id,
        s.kind.value,
        s.team_id,
        s.team_version,
        json.dumps(list(s.approver_ids)),
        s.min_approvals,
        s.requester.kind.value,
        s.requester.subject,
        s.requester_account_id,
        s.action,
        s.protected_resource,
        s.comment,
        json.dumps(dict(s.metadata), sort_keys=True),
        s.create_time,
        s.expire_time,
        s.state.value,
        s.status.value,
        s.status_message,
        s.execution_status.value,
        s.execution_message,
        s.complete_time,
        s.execution_time,
        # A team update's draft (what its votes sign) and the approvers disabled meanwhile.
        json.dumps(draft_to_row(s.draft), sort_keys=True),
        json.dumps(list(s.excluded_approver_ids)),
    )


def vote_fields(session_id: str, position: int, v: Vote) -> tuple[RowField, ...]:
    return (
        session_id,
        v.approver_id,
        position,
        v.decision.value,
        v.comment,
        v.time,
        bytes(v.signature),
    )


def vault_fields(v: Vault) -> tuple[RowField, ...]:
    """What a vault's MAC covers: its owner, its rules and its team association (and a
    pending change of it)."""
    p = v.pending_association
    return (
        v.vault_arn,
        v.account_id,
        v.name,
        v.region,
        v.min_retention_days,
        v.max_retention_days,
        json.dumps(dict(v.tags), sort_keys=True),
        v.create_time,
        v.update_time,
        v.team_id,
        p.team_id if p else None,
        p.session_id if p else None,
        p.create_time if p else None,
    )


def grant_fields(g: RestoreAccessGrant) -> tuple[RowField, ...]:
    return (
        g.grant_id,
        g.vault_arn,
        g.account_id,
        g.restore_vault_name,
        g.restore_vault_arn,
        g.state.value,
        g.status_message,
        g.session_id,
        g.revoke_session_id,
        g.comment,
        g.create_time,
        g.update_time,
    )


def _before(time_col: Any, id_col: Any, after: TimeCursor | None) -> ColumnElement[bool] | None:
    """Newest-first keyset paging: rows strictly after the cursor."""
    if after is None:
        return None
    t, key = after
    return or_(time_col < t, and_(time_col == t, id_col < key))


def draft_to_row(draft: TeamDraft | None) -> dict[str, Any] | None:
    """A session's team draft as its JSON column holds it (keys hex, TTLs in seconds)."""
    if draft is None:
        return None
    return {
        "team_id": draft.team_id,
        "version": draft.version,
        "description": draft.description,
        "min_approvals": draft.min_approvals,
        "session_ttl_seconds": int(draft.session_ttl.total_seconds()),
        "invitation_ttl_seconds": int(draft.invitation_ttl.total_seconds()),
        "members": [
            {
                "approver_id": m.approver_id,
                "change": m.change.value,
                "public_key": m.public_key.hex() if m.public_key else None,
                "signed_by_current_key": m.signed_by_current_key,
            }
            for m in draft.members
        ],
    }


def draft_from_row(row: dict[str, Any] | None) -> TeamDraft | None:
    if row is None:
        return None
    return TeamDraft(
        team_id=row["team_id"],
        version=row["version"],
        description=row["description"],
        min_approvals=row["min_approvals"],
        session_ttl=timedelta(seconds=row["session_ttl_seconds"]),
        invitation_ttl=timedelta(seconds=row["invitation_ttl_seconds"]),
        members=tuple(
            DraftMember(
                approver_id=m["approver_id"],
                change=KeyChange(m["change"]),
                public_key=bytes.fromhex(m["public_key"]) if m["public_key"] else None,
                signed_by_current_key=m["signed_by_current_key"],
            )
            for m in row["members"]
        ),
    )


_S = SessionRecord.__table__.c
_SA = SessionApproverRecord.__table__.c
_VO = VoteRecord.__table__.c
_SESSION_ROWS = select(*_S, TeamRecord.__table__.c.name.label("team_name")).join_from(
    SessionRecord.__table__,
    TeamRecord.__table__,
    TeamRecord.__table__.c.team_id == _S.team_id,
    isouter=True,
)


def _votes_and_approvers(of: Any = None) -> Any:
    """Votes (k = 1) and approvers (k = 0) of the sessions `ids` (or of the one session `of`),
    in one statement.

    Votes come first: the result takes its column types (UTC times) from the first branch."""
    ids: Any = bindparam("ids", expanding=True)
    votes = select(
        _VO.session_id,
        literal_column("1").label("k"),
        _VO.position,
        _VO.approver_id,
        _VO.decision,
        _VO.comment,
        _VO.vote_time,
        _VO.signature,
        _VO.mac,
    ).where(_VO.session_id.in_(ids) if of is None else _VO.session_id == of)
    approvers = select(
        _SA.session_id,
        literal_column("0"),
        _SA.position,
        _SA.approver_id,
        null(),
        null(),
        null(),
        null(),
        null(),
    ).where(_SA.session_id.in_(ids) if of is None else _SA.session_id == of)
    return union_all(votes, approvers)


def _session_read() -> Any:
    """A session, its team's name, its votes and approvers, in one statement (GetSession: one
    round trip and one snapshot, so no transaction around it): the session row repeated on
    each vote and approver row (x_*), or once with x_k NULL when it has neither."""
    sid: Any = bindparam("sid")
    x = _votes_and_approvers(sid).subquery("x")
    teams = cast(Table, TeamRecord.__table__)
    joined = (
        cast(Table, SessionRecord.__table__)
        .outerjoin(teams, teams.c.team_id == _S.team_id)
        .outerjoin(x, true())
    )
    return (
        select(*_S, teams.c.name.label("team_name"), *(c.label(f"x_{c.name}") for c in x.c))
        .select_from(joined)
        .where(_S.session_id == sid)
    )


class _Part(NamedTuple):
    """A vote or approver row of _session_read, as _build reads those of _VOTES_AND_APPROVERS."""

    session_id: str
    k: int
    position: int
    approver_id: str
    decision: str | None
    comment: str | None
    vote_time: datetime | None
    signature: bytes | None
    mac: bytes | None


_VOTES_AND_APPROVERS = _votes_and_approvers()
_SESSION_BY_ID = _SESSION_ROWS.where(_S.session_id == bindparam("sid"))
_SESSION_READ = _session_read()
_SESSION_BY_ID_LOCKED = _SESSION_BY_ID.with_for_update(of=SessionRecord.__table__)
# Core statements built once (Table, not the mapped class): no ORM bulk-DML machinery and no
# cache key to compute per call. The SET clause / VALUES are the parameters' keys.
_SESSION_TABLE = cast(Table, SessionRecord.__table__)
_SESSION_UPDATE = update(_SESSION_TABLE).where(_SESSION_TABLE.c.session_id == bindparam("sid"))
_VOTE_INSERT = insert(cast(Table, VoteRecord.__table__))
_TM = TeamMemberRecord.__table__.c


# A vote's read: the session, locked, and the key its voter enrolled in the session's team
# version, in one statement.
def _voter_column(column: Any, label: str) -> Any:
    """One column of the voter's member row in the session's team version (unique index)."""
    return (
        select(column)
        .where(
            _TM.team_id == _S.team_id,
            _TM.version == _S.team_version,
            _TM.approver_id == bindparam("voter"),
        )
        .scalar_subquery()
        .label(label)
    )


# The member row's other columns come along: its MAC covers them (domain/integrity.py).
_SESSION_AND_KEY_LOCKED = (
    _SESSION_ROWS.add_columns(
        _voter_column(_TM.public_key, "enrolled_key"),
        _voter_column(_TM.invitation_id, "m_invitation_id"),
        _voter_column(_TM.invitation_state, "m_invitation_state"),
        _voter_column(_TM.response_time, "m_response_time"),
        _voter_column(_TM.approved_key, "m_approved_key"),
        _voter_column(_TM.mac, "m_mac"),
    )
    .where(_S.session_id == bindparam("sid"))
    .with_for_update(of=SessionRecord.__table__)
)
_MEMBERS_OF_VERSION = select(
    _TM.invitation_id,
    _TM.approver_id,
    _TM.invitation_state,
    _TM.response_time,
    _TM.public_key,
    _TM.approved_key,
    _TM.mac,
).where(_TM.team_id == bindparam("team_id"), _TM.version == bindparam("version"))


class SqlSessionRepository:
    def __init__(self, session: AsyncSession, sealer: Sealer | None = None) -> None:
        self._s = session
        self._sealer = sealer or Sealer()
        # Each session's row values and stored voters as this transaction read or wrote them:
        # save() writes only what changed. Team names never change.
        self._known: dict[str, tuple[dict[str, Any], set[str]]] = {}
        self._names: dict[str, str] = {}

    async def _load(self, q: Any, params: dict[str, Any] | None = None) -> list[Session]:
        conn = await self._s.connection()
        return await self._build(list(await conn.execute(q, params)))

    async def _build(self, rows: list[Any], parts: list[Any] | None = None) -> list[Session]:
        """Sessions of `rows`; their votes and approvers are `parts`, or read here."""
        if not rows:
            return []
        ids = [r.session_id for r in rows]
        approvers: dict[str, list[tuple[int, str]]] = {i: [] for i in ids}
        votes: dict[str, list[tuple[int, Vote]]] = {i: [] for i in ids}
        if parts is None:
            conn = await self._s.connection()
            parts = list(await conn.execute(_VOTES_AND_APPROVERS, {"ids": ids}))
        for x in parts:
            if x.k == 1:
                vote = Vote(
                    x.approver_id, VoteDecision(x.decision), x.comment, x.vote_time, x.signature
                )
                key = f"{x.session_id}/{x.approver_id}"
                fields = vote_fields(x.session_id, x.position, vote)
                if not self._sealer.authentic(VOTES, key, fields, x.mac):
                    raise record_not_authentic(VOTES, key)
                votes[x.session_id].append((x.position, vote))
            else:
                approvers[x.session_id].append((x.position, x.approver_id))
        out = []
        for r in rows:
            if r.team_name is not None:
                self._names[r.team_id] = r.team_name
            session = Session(
                session_id=r.session_id,
                kind=SessionKind(r.kind),
                team_id=r.team_id,
                team_version=r.team_version,
                approver_ids=tuple(a for _, a in sorted(approvers[r.session_id])),
                min_approvals=r.min_approvals,
                requester=Principal(PrincipalKind(r.requester_kind), r.requester_subject),
                requester_account_id=r.requester_account_id,
                action=r.action,
                protected_resource=r.protected_resource,
                comment=r.comment,
                create_time=r.create_time,
                expire_time=r.expire_time,
                metadata=dict(r.session_metadata),
                votes=tuple(v for _, v in sorted(votes[r.session_id], key=lambda pv: pv[0])),
                state=SessionState(r.state),
                status=SessionStatus(r.status),
                status_message=r.status_message,
                execution_status=ExecutionStatus(r.execution_status),
                execution_message=r.execution_message,
                complete_time=r.complete_time,
                execution_time=r.execution_time,
                draft=draft_from_row(r.team_draft),
                excluded_approver_ids=tuple(r.excluded_approvers or ()),
            )
            if not self._sealer.authentic(
                SESSIONS, session.session_id, session_fields(session), r.mac
            ):
                # The session's facts, state or frozen approver set (session_approvers).
                raise record_not_authentic(SESSIONS, session.session_id)
            self._known[session.session_id] = (
                self._values(session),
                {v.approver_id for v in session.votes},
            )
            out.append(session)
        return out

    def _values(self, s: Session) -> dict[str, Any]:
        """The columns that change, and the MAC over the whole session (which changes with
        them)."""
        return {
            "state": s.state.value,
            "status": s.status.value,
            "status_message": s.status_message,
            "execution_status": s.execution_status.value,
            "execution_message": s.execution_message,
            "complete_time": s.complete_time,
            "execution_time": s.execution_time,
            "excluded_approvers": list(s.excluded_approver_ids) or None,
            "mac": self._sealer.mac(SESSIONS, session_fields(s)),
        }

    async def add(self, session: Session) -> None:
        await self._s.execute(
            insert(SessionRecord).values(
                session_id=session.session_id,
                kind=session.kind.value,
                team_id=session.team_id,
                team_version=session.team_version,
                min_approvals=session.min_approvals,
                requester_kind=session.requester.kind.value,
                requester_subject=session.requester.subject,
                requester_account_id=session.requester_account_id,
                action=session.action,
                protected_resource=session.protected_resource,
                comment=session.comment,
                session_metadata=dict(session.metadata),
                create_time=session.create_time,
                expire_time=session.expire_time,
                team_draft=draft_to_row(session.draft),
                **self._values(session),
            )
        )
        if session.approver_ids:
            await self._s.execute(
                insert(SessionApproverRecord),
                [
                    {"session_id": session.session_id, "approver_id": a, "position": i}
                    for i, a in enumerate(session.approver_ids)
                ],
            )
        await self._insert_votes(session, set())
        self._known[session.session_id] = (
            self._values(session),
            {v.approver_id for v in session.votes},
        )

    async def _insert_votes(self, session: Session, stored: set[str]) -> None:
        rows = [
            {
                "session_id": session.session_id,
                "approver_id": v.approver_id,
                "position": i,
                "decision": v.decision.value,
                "comment": v.comment,
                "vote_time": v.time,
                "signature": v.signature,
                "mac": self._sealer.mac(VOTES, vote_fields(session.session_id, i, v)),
            }
            for i, v in enumerate(session.votes)
            if v.approver_id not in stored
        ]
        if rows:
            # A second vote of one approver fails here (primary key), whatever the app did.
            conn = await self._s.connection()
            await conn.execute(_VOTE_INSERT, rows)

    async def get(self, session_id: str, *, for_update: bool = False) -> Session | None:
        # Always read: a locked read must see the row as committed now.
        if for_update:
            sessions = await self._load(_SESSION_BY_ID_LOCKED, {"sid": session_id})
            return sessions[0] if sessions else None
        conn = await self._s.connection()
        rows = list(await conn.execute(_SESSION_READ, {"sid": session_id}))
        if not rows:
            return None
        parts = [
            _Part(
                r.x_session_id,
                r.x_k,
                r.x_position,
                r.x_approver_id,
                r.x_decision,
                r.x_comment,
                r.x_vote_time,
                r.x_signature,
                r.x_mac,
            )
            for r in rows
            if r.x_k is not None
        ]
        sessions = await self._build(rows[:1], parts)
        return sessions[0]

    async def get_for_vote(
        self, session_id: str, approver_id: str
    ) -> tuple[Session, bytes | None] | None:
        conn = await self._s.connection()
        rows = list(
            await conn.execute(_SESSION_AND_KEY_LOCKED, {"sid": session_id, "voter": approver_id})
        )
        sessions = await self._build(rows)
        if not sessions:
            return None
        s, r = sessions[0], rows[0]
        if r.m_invitation_id is not None:
            self._check_member(
                s.team_id,
                s.team_version,
                r.m_invitation_id,
                approver_id,
                r.m_invitation_state,
                r.m_response_time,
                r.enrolled_key,
                r.m_mac,
                r.m_approved_key,
            )
        return s, r.enrolled_key

    def _check_member(
        self,
        team_id: str,
        version: int,
        invitation_id: str,
        approver_id: str,
        state: str,
        response_time: datetime | None,
        key: bytes | None,
        mac: bytes | None,
        approved_key: bytes | None = None,
    ) -> None:
        """A member row the server wrote (its enrolled key above all); RECORD_NOT_AUTHENTIC
        otherwise."""
        fields = member_fields(
            team_id, version, invitation_id, approver_id, state, response_time, key, approved_key
        )
        if not self._sealer.authentic(TEAM_MEMBERS, invitation_id, fields, mac):
            raise record_not_authentic(TEAM_MEMBERS, invitation_id)

    async def save(self, session: Session) -> None:
        values = self._values(session)
        known = self._known.get(session.session_id)
        if known is None or known[0] != values:
            conn = await self._s.connection()
            await conn.execute(_SESSION_UPDATE, {"sid": session.session_id, **values})
        if known is not None:
            stored = known[1]
        else:
            stored = set(
                await self._s.scalars(
                    select(VoteRecord.approver_id).where(
                        VoteRecord.session_id == session.session_id
                    )
                )
            )
        await self._insert_votes(session, stored)
        self._known[session.session_id] = (values, {v.approver_id for v in session.votes})

    async def list_page(
        self, query: SessionQuery, now: datetime, after: TimeCursor | None, limit: int
    ) -> list[Session]:
        r = SessionRecord
        q = _SESSION_ROWS.order_by(r.create_time.desc(), r.session_id.desc()).limit(limit)
        conditions: list[ColumnElement[bool]] = []
        if query.team_id:
            conditions.append(r.team_id == query.team_id)
        if query.state is SessionState.PENDING:
            conditions += [r.state == SessionState.PENDING.value, r.expire_time > now]
        elif query.state is SessionState.FAILED:
            conditions.append(
                or_(
                    r.state == SessionState.FAILED.value,
                    and_(r.state == SessionState.PENDING.value, r.expire_time <= now),
                )
            )
        elif query.state is not None:
            conditions.append(r.state == query.state.value)
        if query.kind is not None:
            conditions.append(r.kind == query.kind.value)
        if query.action:
            conditions.append(r.action == query.action)
        if query.protected_resource:
            conditions.append(r.protected_resource == query.protected_resource)
        if query.requester_account_id:
            conditions.append(r.requester_account_id == query.requester_account_id)
        if query.create_time_start is not None:
            conditions.append(r.create_time >= query.create_time_start)
        if query.create_time_end is not None:
            conditions.append(r.create_time < query.create_time_end)
        if query.visible_account:
            conditions.append(
                or_(
                    and_(
                        r.requester_kind == PrincipalKind.ACCOUNT.value,
                        r.requester_subject == query.visible_account,
                    ),
                    exists().where(
                        VaultRecord.vault_arn == r.protected_resource,
                        VaultRecord.account_id == query.visible_account,
                    ),
                )
            )
        if query.visible_approver:
            conditions.append(
                exists().where(
                    SessionApproverRecord.session_id == r.session_id,
                    SessionApproverRecord.approver_id == query.visible_approver,
                )
            )
        if query.visible_requester is not None:
            conditions += [
                r.requester_kind == query.visible_requester.kind.value,
                r.requester_subject == query.visible_requester.subject,
            ]
        if query.awaiting_vote_of:
            conditions += [
                r.state == SessionState.PENDING.value,
                r.expire_time > now,
                exists().where(
                    SessionApproverRecord.session_id == r.session_id,
                    SessionApproverRecord.approver_id == query.awaiting_vote_of,
                ),
                ~exists().where(
                    VoteRecord.session_id == r.session_id,
                    VoteRecord.approver_id == query.awaiting_vote_of,
                ),
            ]
        cursor = _before(r.create_time, r.session_id, after)
        if cursor is not None:
            conditions.append(cursor)
        if conditions:
            q = q.where(*conditions)
        return await self._load(q)

    async def pending_past_expiry(self, now: datetime, limit: int) -> list[str]:
        q = (
            select(SessionRecord.session_id)
            .where(
                SessionRecord.state == SessionState.PENDING.value,
                SessionRecord.expire_time <= now,
            )
            .order_by(SessionRecord.expire_time)
            .limit(limit)
            .with_for_update(skip_locked=True)
        )
        return list(await self._s.scalars(q))

    async def pending_summary(self) -> tuple[int, datetime | None]:
        row = (
            await self._s.execute(
                select(func.count(), func.min(SessionRecord.create_time)).where(
                    SessionRecord.state == SessionState.PENDING.value
                )
            )
        ).one()
        return int(row[0]), row[1]

    async def pending_of_team(self, team_id: str) -> list[str]:
        q = (
            select(SessionRecord.session_id)
            .where(
                SessionRecord.team_id == team_id,
                SessionRecord.state == SessionState.PENDING.value,
            )
            .order_by(SessionRecord.session_id)
        )
        return list(await self._s.scalars(q))

    async def team_names(self, team_ids: Sequence[str]) -> dict[str, str]:
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
            self._check_member(
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

    async def events_about(self, subject: str, type_: str | None = None) -> list[Event]:
        query = (
            select(EventRecord)
            .join(EventSubjectRecord, EventSubjectRecord.seq == EventRecord.seq)
            .where(EventSubjectRecord.subject == subject)
            .order_by(EventRecord.seq)
        )
        if type_ is not None:
            query = query.where(EventRecord.type == type_)
        records = (await self._s.scalars(query)).all()
        # event_subjects is an index outside the chain: keep only the events whose chained
        # subjects name `subject` (a row inserted there adds nothing).
        return [to_event(r) for r in records if subject in r.subjects]


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
        vault = self.to_domain(r)
        if not self._sealer.authentic(VAULTS, vault.vault_arn, vault_fields(vault), r.mac):
            raise record_not_authentic(VAULTS, vault.vault_arn)
        return vault

    @staticmethod
    def to_domain(r: Any) -> Vault:
        pending = (
            PendingAssociation(r.pending_team_id, r.pending_session_id, r.pending_create_time)
            if r.pending_session_id is not None and r.pending_create_time is not None
            else None
        )
        return Vault(
            vault_arn=r.vault_arn,
            account_id=r.account_id,
            name=r.name,
            region=r.region,
            min_retention_days=r.min_retention_days,
            max_retention_days=r.max_retention_days,
            create_time=r.create_time,
            update_time=r.update_time,
            tags=dict(r.tags),
            team_id=r.team_id,
            pending_association=pending,
        )

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


_G = cast(Table, RestoreAccessGrantRecord.__table__)
_GRANT_UPDATE = update(_G).where(_G.c.grant_id == bindparam("gid"))


class SqlGrantRepository:
    """Core statements and rows, no ORM objects: grant reads are on the vote path."""

    def __init__(self, session: AsyncSession, sealer: Sealer | None = None) -> None:
        self._s = session
        self._sealer = sealer or Sealer()

    async def _rows(self, q: Any) -> list[RestoreAccessGrant]:
        conn = await self._s.connection()
        out = []
        for r in await conn.execute(q):
            grant = self.to_domain(r)
            if not self._sealer.authentic(GRANTS, grant.grant_id, grant_fields(grant), r.mac):
                # CheckAccess reads these: a grant the server did not write grants nothing.
                raise record_not_authentic(GRANTS, grant.grant_id)
            out.append(grant)
        return out

    @staticmethod
    def to_domain(r: Any) -> RestoreAccessGrant:
        return RestoreAccessGrant(
            grant_id=r.grant_id,
            vault_arn=r.vault_arn,
            account_id=r.account_id,
            restore_vault_name=r.restore_vault_name,
            restore_vault_arn=r.restore_vault_arn,
            state=GrantState(r.state),
            status_message=r.status_message,
            session_id=r.session_id,
            comment=r.comment,
            create_time=r.create_time,
            update_time=r.update_time,
            revoke_session_id=r.revoke_session_id,
        )

    async def add(self, grant: RestoreAccessGrant) -> None:
        conn = await self._s.connection()
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
        conn = await self._s.connection()
        await conn.execute(
            _GRANT_UPDATE,
            {
                "gid": grant.grant_id,
                "state": grant.state.value,
                "status_message": grant.status_message,
                "revoke_session_id": grant.revoke_session_id,
                "update_time": grant.update_time,
                "mac": self._sealer.mac(GRANTS, grant_fields(grant)),
            },
        )

    async def open_for(self, vault_arn: str, account_id: str) -> list[RestoreAccessGrant]:
        g = _G.c
        q = select(*_G.c).where(
            g.vault_arn == vault_arn,
            g.account_id == account_id,
            g.state.in_([s.value for s in OPEN_GRANT_STATES]),
        )
        return await self._rows(q)

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
        cursor = _before(g.create_time, g.grant_id, after)
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
        return list(await self._s.scalars(q))


_D = cast(Table, TeamDeletionRecord.__table__)
# The latest request per team is the last one in this order (GetApprovalTeam reads it).
_DELETIONS_OF_TEAMS = (
    select(*_D.c)
    .where(_D.c.team_id.in_(bindparam("ids", expanding=True)))
    .order_by(_D.c.request_time, _D.c.session_id)
)


class SqlTeamDeletionRepository:
    def __init__(self, session: AsyncSession, sealer: Sealer | None = None) -> None:
        self._s = session
        self._sealer = sealer or Sealer()

    def _to_domain(self, r: Any) -> TeamDeletion:
        """From a TeamDeletionRecord or a Core row of its columns, that the server wrote;
        RECORD_NOT_AUTHENTIC otherwise."""
        d = self.unchecked(r)
        if not self._sealer.authentic(
            TEAM_DELETIONS, r.session_id, deletion_fields(d, r.due_time), r.mac
        ):
            raise record_not_authentic(TEAM_DELETIONS, r.session_id)
        return d

    @staticmethod
    def unchecked(r: Any) -> TeamDeletion:
        return TeamDeletion(
            team_id=r.team_id,
            session_id=r.session_id,
            pending_window_days=r.pending_window_days,
            request_time=r.request_time,
            approve_time=r.approve_time,
            complete_time=r.complete_time,
        )

    @staticmethod
    def _due(d: TeamDeletion, done: bool) -> datetime | None:
        return None if done else d.complete_time

    async def add(self, deletion: TeamDeletion) -> None:
        self._s.add(
            TeamDeletionRecord(
                session_id=deletion.session_id,
                team_id=deletion.team_id,
                pending_window_days=deletion.pending_window_days,
                request_time=deletion.request_time,
                approve_time=deletion.approve_time,
                complete_time=deletion.complete_time,
                due_time=None,
                mac=self._sealer.mac(TEAM_DELETIONS, deletion_fields(deletion, None)),
            )
        )
        await self._s.flush()

    async def get(self, session_id: str, *, for_update: bool = False) -> TeamDeletion | None:
        q = select(TeamDeletionRecord).where(TeamDeletionRecord.session_id == session_id)
        if for_update:
            q = q.with_for_update().execution_options(populate_existing=True)
        r = await self._s.scalar(q)
        return self._to_domain(r) if r else None

    async def save(self, deletion: TeamDeletion, *, done: bool = False) -> None:
        await self._s.execute(
            update(TeamDeletionRecord)
            .where(TeamDeletionRecord.session_id == deletion.session_id)
            .values(
                approve_time=deletion.approve_time,
                complete_time=deletion.complete_time,
                due_time=self._due(deletion, done),
                mac=self._sealer.mac(
                    TEAM_DELETIONS, deletion_fields(deletion, self._due(deletion, done))
                ),
            )
        )

    async def latest_of(self, team_ids: Sequence[str]) -> dict[str, TeamDeletion]:
        if not team_ids:
            return {}
        conn = await self._s.connection()
        rows = await conn.execute(_DELETIONS_OF_TEAMS, {"ids": list(set(team_ids))})
        return {r.team_id: self._to_domain(r) for r in rows}

    async def due(self, now: datetime, limit: int) -> list[str]:
        q = (
            select(TeamDeletionRecord.session_id)
            .where(TeamDeletionRecord.due_time.is_not(None), TeamDeletionRecord.due_time <= now)
            .order_by(TeamDeletionRecord.due_time)
            .limit(limit)
            .with_for_update(skip_locked=True)
        )
        return list(await self._s.scalars(q))
