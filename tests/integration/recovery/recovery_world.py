"""Helpers of the recovery-flow tests (imported by name: a conftest is not importable).

A world for the recovery flow: the app wired on each backend, a team of three approvers with
Ed25519 keys (M = 2), a vault owner account and a recovery account the team is shared with.

Builds on the `database_url` fixture (a migrated database of its own per test, on SQLite and on
PostgreSQL) of tests/conftest.py; everything else here is self-contained.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

from airlock_client.proof import event_hash
from airlock_server.app.audit import AuditService, LogKey
from airlock_server.app.common import Deps
from airlock_server.app.identity import IdentityService
from airlock_server.app.ports import UnitOfWork
from airlock_server.app.sessions import SessionService, SessionView
from airlock_server.app.teams import TeamService
from airlock_server.app.vaults import VaultService
from airlock_server.domain.principals import Principal, PrincipalKind
from airlock_server.domain.sessions import Session, VoteDecision, vote_digest
from airlock_server.domain.teams import TeamSpec, key_proof_message
from airlock_server.persistence.activity import activity_writer_of
from airlock_server.persistence.db import create_engine, session_factory
from airlock_server.persistence.event_log import PollSignal, SqlEventLogReader, log_appender_of
from airlock_server.persistence.seal import Sealer
from airlock_server.persistence.uow import SqlUnitOfWork

OWNER = "111111111111"
RECOVERY = "222222222222"
STRANGER = "333333333333"
APPROVERS = ("alice", "bob", "carol")


class Clock:
    """A clock the test moves by hand."""

    def __init__(self) -> None:
        self.now = datetime.now(UTC).replace(microsecond=0)

    def __call__(self) -> datetime:
        return self.now

    def advance(self, delta: timedelta) -> None:
        self.now += delta


def raw_key(key: Ed25519PrivateKey) -> bytes:
    return key.public_key().public_bytes(Encoding.Raw, PublicFormat.Raw)


@dataclass
class Wiring:
    """One independent wiring (own engine and pool) of the use cases on the database."""

    engine: AsyncEngine
    deps: Deps
    identities: IdentityService
    teams: TeamService
    sessions: SessionService
    vaults: VaultService
    audit: AuditService | None = None

    async def count(self, table: str, where: str = "") -> int:
        async with self.engine.connect() as conn:
            value = await conn.scalar(
                text(f"SELECT count(*) FROM {table}" + (f" WHERE {where}" if where else ""))
            )
        return int(value or 0)

    async def snapshot(self) -> dict[str, object]:
        """What a refused call must leave as it was."""
        out: dict[str, object] = {}
        async with self.engine.connect() as conn:
            for table, order in (
                ("sessions", "session_id"),
                ("votes", "session_id, approver_id"),
                ("vaults", "vault_arn"),
                ("restore_access_grants", "grant_id"),
            ):
                rows = await conn.execute(text(f"SELECT * FROM {table} ORDER BY {order}"))
                out[table] = [tuple(r) for r in rows]
            out["events"] = await conn.scalar(text("SELECT count(*) FROM events"))
        return out


def wire(
    url: str, clock: Clock, watch_interval: float = 0.02, log_key: LogKey | None = None
) -> Wiring:
    """As bootstrap.wire(); with `log_key`, approval proofs carry a signed checkpoint."""
    engine = create_engine(url, pool_size=5)
    sessions = session_factory(engine)

    sealer = Sealer(log_key)
    activity_writer = activity_writer_of(engine)
    log_appender = log_appender_of(engine)

    def uow(*, read_only: bool = False, one_statement: bool = False) -> UnitOfWork:
        return SqlUnitOfWork(
            sessions,
            clock,
            read_only=read_only,
            one_statement=one_statement,
            sealer=sealer,
            activity_writer=activity_writer,
            log_appender=log_appender,
        )

    deps = Deps(uow=uow, clock=clock, region="eu-west-1")
    log = SqlEventLogReader(sessions)
    audit = AuditService(deps, log, PollSignal(0.05), log_key) if log_key is not None else None
    # Watchers follow the log through a polling signal (no connection of its own to close).
    session_service = SessionService(
        deps, watch_interval, anchor=audit, log=log, signal=PollSignal(watch_interval)
    )
    return Wiring(
        engine,
        deps,
        IdentityService(deps),
        TeamService(deps),
        session_service,
        VaultService(deps, session_service),
        audit,
    )


@dataclass
class World:
    url: str
    clock: Clock
    app: Wiring
    admin: Principal
    team_id: str
    keys: dict[str, Ed25519PrivateKey]
    wirings: list[Wiring] = field(default_factory=list)
    log_key: LogKey | None = None  # the key of `app`: its approval proofs are signed with it

    owner = Principal(PrincipalKind.ACCOUNT, OWNER)
    recovery = Principal(PrincipalKind.ACCOUNT, RECOVERY)
    stranger = Principal(PrincipalKind.ACCOUNT, STRANGER)
    service = Principal(PrincipalKind.SERVICE, "billing")
    auditor = Principal(PrincipalKind.AUDITOR, "")

    @staticmethod
    def approver(name: str) -> Principal:
        return Principal(PrincipalKind.APPROVER, name)

    def another_wiring(self, *, keyless: bool = False) -> Wiring:
        """Another replica of the server: same log key (it signs and MACs what it writes), or,
        `keyless`, a server without one (it writes nothing, or the keyed replicas refuse it)."""
        w = wire(self.url, self.clock, log_key=None if keyless else self.log_key)
        self.wirings.append(w)
        return w

    def pins(self, *names: str) -> list[bytes]:
        """The approvers' public keys as a verifier pins them (all of the team's by default)."""
        return [raw_key(self.keys[n]) for n in names or APPROVERS]

    def sign(self, name: str, session: Session, decision: VoteDecision) -> bytes:
        return self.keys[name].sign(vote_digest(session, decision))

    async def vote(
        self,
        name: str,
        session_id: str,
        decision: VoteDecision = VoteDecision.APPROVE,
        app: Wiring | None = None,
        comment: str = "",
    ) -> SessionView:
        app = app or self.app
        current = await app.sessions.get_session(self.admin, session_id)
        return await app.sessions.vote(
            self.approver(name),
            session_id,
            decision,
            comment,
            self.sign(name, current.session, decision),
            "",
        )

    async def make_team(self, name: str, approvers: tuple[str, ...] = APPROVERS, m: int = 2) -> str:
        team = await self.app.teams.create_team(
            self.admin,
            TeamSpec(name, "", approvers, m, timedelta(hours=24), timedelta(hours=24)),
            "",
        )
        for member in team.current.members:
            key = self.keys[member.approver_id]
            await self.app.teams.respond_to_invitation(
                self.approver(member.approver_id),
                member.invitation_id,
                True,
                raw_key(key),
                key.sign(key_proof_message(member.invitation_id)),
                "",
            )
        return team.team_id

    async def share(self, team_id: str, principal: Principal) -> None:
        await self.app.teams.share(self.admin, team_id, principal.kind, principal.subject, "")

    async def vault(self, name: str = "prod-lag", team_id: str | None = None) -> str:
        vault = await self.app.vaults.create_vault(self.owner, "", name, 7, 35, {"env": "p"}, "")
        await self.app.vaults.associate(
            self.owner, vault.vault_arn, team_id or self.team_id, "", ""
        )
        return vault.vault_arn


def rehash(events: list[dict[str, Any]]) -> None:
    """What a forger who also controls the log does to a proof's events: recompute each hash
    and relink consecutive ones."""
    previous: tuple[int, str] | None = None
    for e in events:
        if previous is not None and e["seq"] == previous[0] + 1:
            e["prev_hash"] = previous[1]
        e["hash"] = event_hash(
            seq=e["seq"],
            time=e["time"],
            type_=e["type"],
            actor=e["actor"],
            subjects=e["subjects"],
            details=e["details"],
            prev_hash=e["prev_hash"],
        )
        previous = (e["seq"], e["hash"])
