"""The composition root: the only place that wires persistence into the app and transport."""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy.ext.asyncio import AsyncEngine

from airlock_server.app.audit import AuditService, LogKey
from airlock_server.app.common import Deps
from airlock_server.app.feed import EventFeed
from airlock_server.app.identity import IdentityService
from airlock_server.app.ports import UnitOfWork
from airlock_server.app.sessions import SessionService
from airlock_server.app.teams import TeamService
from airlock_server.app.vaults import VaultService
from airlock_server.config import Settings
from airlock_server.persistence.db import create_engine, session_factory
from airlock_server.persistence.event_log import PgListenSignal, PollSignal, SqlEventLogReader
from airlock_server.persistence.seal import Sealer
from airlock_server.persistence.uow import SqlUnitOfWork
from airlock_server.transport.server import UseCases


@dataclass
class Wiring:
    engine: AsyncEngine
    deps: Deps
    app: UseCases
    signal: PgListenSignal | PollSignal
    feed: EventFeed

    async def close(self) -> None:
        await self.signal.close()
        await self.feed.close()
        await self.engine.dispose()


def wire(settings: Settings, log_key: LogKey | None = None) -> Wiring:
    engine = create_engine(settings.database_url, pool_size=settings.db_pool_size)
    sessions = session_factory(engine)
    # The log key signs every append's head and keys the rows' MACs: the database is not
    # trusted (docs/threat-model.md). Without one, nothing is signed and the database is.
    sealer = Sealer(log_key)

    postgres = engine.dialect.name == "postgresql"
    signal: PgListenSignal | PollSignal
    committed = None
    if postgres:
        signal = PgListenSignal(settings.database_url)
    else:
        # SQLite: a commit here wakes the feed at once (PostgreSQL's NOTIFY does it in SQL).
        signal = PollSignal(settings.events_poll_interval)
        committed = signal.committed

    def uow(*, read_only: bool = False, one_statement: bool = False) -> UnitOfWork:
        return SqlUnitOfWork(
            sessions,
            deps.clock,
            read_only=read_only,
            one_statement=one_statement,
            on_commit=committed,
            sealer=sealer,
        )

    deps = Deps(uow=uow, region=settings.region)
    log = SqlEventLogReader(sessions)
    # One follower of the log per process (WatchEvents, WatchSession): it waits on the
    # signal, and reads again after `poll` at the latest (a lost notification, SQLite's
    # other processes).
    poll = settings.events_safety_poll if postgres else settings.events_poll_interval
    feed = EventFeed(log, signal, poll, settings.stream_buffer)
    safety = settings.events_safety_poll
    audit = AuditService(deps, log, signal, log_key, watch_poll=safety, feed=feed)
    # Approval proofs carry a checkpoint signed with the same log key, by the same code.
    sessions_app = SessionService(deps, safety, anchor=audit, log=log, signal=signal, feed=feed)
    app = UseCases(
        identities=IdentityService(deps),
        teams=TeamService(deps, sessions_app),
        sessions=sessions_app,
        vaults=VaultService(deps, sessions_app),
        audit=audit,
    )
    return Wiring(engine, deps, app, signal, feed)
