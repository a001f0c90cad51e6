"""Sessions: a request for approval, its frozen approver set and its votes."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import datetime
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
from airlock_server.domain.principals import PrincipalKind
from airlock_server.domain.sessions import Session, SessionState, Vote
from airlock_server.persistence.held import HeldUpdates
from airlock_server.persistence.mappers import (
    SESSIONS,
    VOTES,
    check,
    check_member,
    draft_to_row,
    session_fields,
    session_from_row,
    vote_fields,
    vote_from_row,
)
from airlock_server.persistence.models import (
    SessionApproverRecord,
    SessionRecord,
    TeamMemberRecord,
    TeamRecord,
    VaultRecord,
    VoteRecord,
)
from airlock_server.persistence.queries import after_cursor, ids_in
from airlock_server.persistence.seal import Sealer

_S = SessionRecord.__table__.c
_SA = SessionApproverRecord.__table__.c
_VO = VoteRecord.__table__.c
_SESSION_ROWS = select(*_S, TeamRecord.__table__.c.name.label("team_name")).join_from(
    SessionRecord.__table__,
    TeamRecord.__table__,
    TeamRecord.__table__.c.team_id == _S.team_id,
    isouter=True,
)


def _votes_and_approvers(of: Any = None, dialect: str = "sqlite") -> Any:
    """Votes (k = 1) and approvers (k = 0) of the sessions `ids` (or of the one session `of`),
    in one statement.

    Votes come first: the result takes its column types (UTC times) from the first branch."""
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
    ).where(ids_in(_VO.session_id, "ids", dialect) if of is None else _VO.session_id == of)
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
    ).where(ids_in(_SA.session_id, "ids", dialect) if of is None else _SA.session_id == of)
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


_VOTES_AND_APPROVERS = {d: _votes_and_approvers(dialect=d) for d in ("postgresql", "sqlite")}
_SESSION_BY_ID = _SESSION_ROWS.where(_S.session_id == bindparam("sid"))
_SESSION_READ = _session_read()
_SESSION_BY_ID_LOCKED = _SESSION_BY_ID.with_for_update(of=SessionRecord.__table__)
# Core statements built once (Table, not the mapped class): no ORM bulk-DML machinery and no
# cache key to compute per call. The SET clause / VALUES are the parameters' keys.
_SESSION_TABLE = cast(Table, SessionRecord.__table__)
_SESSION_UPDATE = update(_SESSION_TABLE).where(_SESSION_TABLE.c.session_id == bindparam("sid"))
_VOTE_INSERT = insert(cast(Table, VoteRecord.__table__))
_TM = TeamMemberRecord.__table__.c


def _sessions_and_keys_locked(dialect: str) -> Any:
    """Votes' read: the sessions `ids`, locked in id order (two batches of votes lock shared
    sessions in one order), each with its team's name and the member rows of the `voters`
    in its team version (the row's other columns come along: its MAC covers them,
    domain/integrity.py); a session repeated on each such row, once when there is none."""
    sessions = cast(Table, SessionRecord.__table__)
    teams = cast(Table, TeamRecord.__table__)
    members = cast(Table, TeamMemberRecord.__table__)
    joined = sessions.outerjoin(teams, teams.c.team_id == _S.team_id).outerjoin(
        members,
        and_(
            _TM.team_id == _S.team_id,
            _TM.version == _S.team_version,
            ids_in(_TM.approver_id, "voters", dialect),
        ),
    )
    return (
        select(
            *_S,
            teams.c.name.label("team_name"),
            _TM.approver_id.label("m_approver_id"),
            _TM.public_key.label("enrolled_key"),
            _TM.invitation_id.label("m_invitation_id"),
            _TM.invitation_state.label("m_invitation_state"),
            _TM.response_time.label("m_response_time"),
            _TM.approved_key.label("m_approved_key"),
            _TM.mac.label("m_mac"),
        )
        .select_from(joined)
        .where(ids_in(_S.session_id, "ids", dialect))
        .order_by(_S.session_id)
        .with_for_update(of=sessions)
    )


_SESSIONS_AND_KEYS_LOCKED = {d: _sessions_and_keys_locked(d) for d in ("postgresql", "sqlite")}


def _row(s: Session) -> tuple[Any, ...]:
    """What of a session's row a save may change (its MAC changes with these only)."""
    return (
        s.state,
        s.status,
        s.status_message,
        s.execution_status,
        s.execution_message,
        s.complete_time,
        s.execution_time,
        s.excluded_approver_ids,
    )


class SqlSessionRepository:
    def __init__(
        self,
        session: AsyncSession,
        sealer: Sealer | None = None,
        names: dict[str, str] | None = None,
    ) -> None:
        self._s = session
        self._sealer = sealer or Sealer()
        # Each session's row values and stored voters as this transaction read or wrote them:
        # save() skips an unchanged row and inserts the new votes without reading the stored
        # ones back. Measured (a non-deciding Vote, in process, loaded 2-core machine, min of 6
        # runs of 40): 6 statements instead of 8 on PostgreSQL, 9 instead of 11 on SQLite;
        # 12.9 instead of 15.3 ms (PostgreSQL), 15.9 instead of 24.9 ms (SQLite).
        # (The row as _row() puts it: no MAC is computed to tell whether it changed.)
        self._known: dict[str, tuple[tuple[Any, ...], set[str]]] = {}
        # Team names never change: the ones read joined with sessions are shared with the
        # transaction's team repository, whose names() then needs no read for them.
        self._names = {} if names is None else names
        self._held = HeldUpdates(session, _SESSION_UPDATE)

    def defer_saves(self) -> None:
        self._held.holding = True

    async def flush(self) -> None:
        await self._held.flush()

    async def _conn(self) -> Any:
        """The connection, every held save sent first: whatever this repository reads or
        writes next sees them."""
        return await self._held.send()

    async def _scalars(self, q: Any) -> Any:
        await self._held.send()
        return await self._s.scalars(q)

    async def _load(self, q: Any, params: dict[str, Any] | None = None) -> list[Session]:
        conn = await self._conn()
        return await self._build(list(await conn.execute(q, params)))

    async def _build(self, rows: list[Any], parts: list[Any] | None = None) -> list[Session]:
        """Sessions of `rows`; their votes and approvers are `parts`, or read here."""
        if not rows:
            return []
        ids = [r.session_id for r in rows]
        approvers: dict[str, list[tuple[int, str]]] = {i: [] for i in ids}
        votes: dict[str, list[tuple[int, Vote]]] = {i: [] for i in ids}
        if parts is None:
            conn = await self._conn()
            parts = list(await conn.execute(_VOTES_AND_APPROVERS[conn.dialect.name], {"ids": ids}))
        for x in parts:
            if x.k == 1:
                vote = vote_from_row(x)
                key = f"{x.session_id}/{x.approver_id}"
                check(self._sealer, VOTES, key, vote_fields(x.session_id, x.position, vote), x.mac)
                votes[x.session_id].append((x.position, vote))
            else:
                approvers[x.session_id].append((x.position, x.approver_id))
        out = []
        for r in rows:
            if r.team_name is not None:
                self._names[r.team_id] = r.team_name
            session = session_from_row(
                r,
                tuple(a for _, a in sorted(approvers[r.session_id])),
                tuple(v for _, v in sorted(votes[r.session_id], key=lambda pv: pv[0])),
            )
            # The session's facts, state or frozen approver set (session_approvers).
            check(self._sealer, SESSIONS, session.session_id, session_fields(session), r.mac)
            self._known[session.session_id] = (
                _row(session),
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
        await self._held.send()
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
            _row(session),
            {v.approver_id for v in session.votes},
        )

    def _new_vote_rows(self, session: Session, stored: set[str]) -> list[dict[str, Any]]:
        return [
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

    async def _insert_votes(self, session: Session, stored: set[str]) -> None:
        rows = self._new_vote_rows(session, stored)
        if rows:
            # A second vote of one approver fails here (primary key), whatever the app did.
            conn = await self._conn()
            await conn.execute(_VOTE_INSERT, rows)

    async def get(self, session_id: str, *, for_update: bool = False) -> Session | None:
        # Always read: a locked read must see the row as committed now.
        if for_update:
            sessions = await self._load(_SESSION_BY_ID_LOCKED, {"sid": session_id})
            return sessions[0] if sessions else None
        conn = await self._conn()
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
        return (await self._build(rows[:1], parts))[0]

    async def get_for_vote(
        self, session_id: str, approver_id: str
    ) -> tuple[Session, bytes | None] | None:
        return (await self.lock_for_votes({session_id: approver_id})).get(session_id)

    async def lock_for_votes(
        self, voters: Mapping[str, str]
    ) -> dict[str, tuple[Session, bytes | None]]:
        conn = await self._conn()
        params = {"ids": list(voters), "voters": sorted(set(voters.values()))}
        rows = list(await conn.execute(_SESSIONS_AND_KEYS_LOCKED[conn.dialect.name], params))
        first: dict[str, Any] = {}
        member: dict[str, Any] = {}
        for r in rows:
            first.setdefault(r.session_id, r)
            if r.m_approver_id is not None and r.m_approver_id == voters[r.session_id]:
                member[r.session_id] = r
        out: dict[str, tuple[Session, bytes | None]] = {}
        for s in await self._build(list(first.values())):
            m = member.get(s.session_id)
            if m is None:
                out[s.session_id] = (s, None)
                continue
            check_member(
                self._sealer,
                s.team_id,
                s.team_version,
                m.m_invitation_id,
                m.m_approver_id,
                m.m_invitation_state,
                m.m_response_time,
                m.enrolled_key,
                m.m_mac,
                m.m_approved_key,
            )
            out[s.session_id] = (s, m.enrolled_key)
        return out

    async def add_votes(self, sessions: Sequence[Session]) -> None:
        rows = [row for s in sessions for row in self._new_vote_rows(s, self._stored(s))]
        if rows:
            conn = await self._conn()
            await conn.execute(_VOTE_INSERT, rows)
        for s in sessions:
            known = self._known.get(s.session_id)
            if known is not None:
                self._known[s.session_id] = (known[0], {v.approver_id for v in s.votes})

    def _stored(self, session: Session) -> set[str]:
        known = self._known.get(session.session_id)
        if known is None:
            raise RuntimeError(f"session {session.session_id} was not read in this transaction")
        return known[1]

    async def save(self, session: Session) -> None:
        row = _row(session)
        known = self._known.get(session.session_id)
        if known is None or known[0] != row:
            update = {"sid": session.session_id, **self._values(session)}
            if not self._held.hold(session.session_id, update):
                conn = await self._conn()
                await conn.execute(_SESSION_UPDATE, update)
        if known is not None:
            stored = known[1]
        else:
            stored = set(
                await self._scalars(
                    select(VoteRecord.approver_id).where(
                        VoteRecord.session_id == session.session_id
                    )
                )
            )
        await self._insert_votes(session, stored)
        self._known[session.session_id] = (row, {v.approver_id for v in session.votes})

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
        cursor = after_cursor(r.create_time, r.session_id, after)
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
        return list(await self._scalars(q))

    async def pending_summary(self) -> tuple[int, datetime | None]:
        row = (
            await (await self._conn()).execute(
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
        return list(await self._scalars(q))
