"""The composition root: the only place that wires persistence into the app and transport."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta

from sqlalchemy.ext.asyncio import AsyncEngine

from airlock_server.app.audit import AuditService, LogKey
from airlock_server.app.common import Deps, utcnow
from airlock_server.app.credential_cache import CredentialCache
from airlock_server.app.feed import EventFeed
from airlock_server.app.identity import IdentityService
from airlock_server.app.notifications import Dispatcher, DispatchSettings, NotificationService
from airlock_server.app.passkeys import InvitationLinks, PortalService
from airlock_server.app.ports import Clock, NotificationSender, UnitOfWork
from airlock_server.app.sessions import SessionService
from airlock_server.app.teams import TeamService
from airlock_server.app.vaults import VaultService
from airlock_server.channels.email import EmailSender, SmtpSettings
from airlock_server.channels.webhook import WebhookSender
from airlock_server.config import Settings
from airlock_server.domain.notifications import Channel, RetryPolicy, Routing
from airlock_server.domain.webauthn import RelyingParty
from airlock_server.persistence.activity import activity_writer_of
from airlock_server.persistence.credential_watch import CredentialWatch
from airlock_server.persistence.db import create_engine, session_factory
from airlock_server.persistence.event_log import PgListenSignal, PollSignal
from airlock_server.persistence.events import SqlEventLogReader
from airlock_server.persistence.hot_reads import hot_reads_of
from airlock_server.persistence.seal import Sealer
from airlock_server.persistence.sequencer import Sequencer
from airlock_server.persistence.uow import SqlUnitOfWork
from airlock_server.transport.server import UseCases


@dataclass
class Wiring:
    engine: AsyncEngine
    deps: Deps
    app: UseCases
    signal: PgListenSignal | PollSignal
    feed: EventFeed
    dispatcher: Dispatcher
    webhooks: WebhookSender
    notifications: NotificationService
    # PostgreSQL: what keeps the credential cache honest across replicas (None on SQLite).
    credential_watch: CredentialWatch | None = None
    # The approval portal's use cases (passkeys); None without AIRLOCK_PORTAL_ORIGIN.
    portal: PortalService | None = None
    # PostgreSQL: what gives committed events their seq (persistence/sequencer.py).
    sequencer: Sequencer | None = None

    def start(self) -> None:
        """In the serving loop: the credential cache is used once the watch is listening; the
        sequencer bids for its lock."""
        if self.credential_watch is not None:
            self.credential_watch.start()
        if self.sequencer is not None:
            self.sequencer.start()

    async def close(self) -> None:
        if self.credential_watch is not None:
            await self.credential_watch.close()
        await self.webhooks.close()
        if self.sequencer is not None:
            await self.sequencer.close()
        await self.signal.close()
        await self.feed.close()
        await self.engine.dispose()


def routing_of(settings: Settings) -> Routing:
    return Routing(
        email=bool(settings.smtp_host),
        admin_emails=settings.admin_emails,
        portal_url=settings.portal_url,
        burst_threshold=settings.refusal_alert_count,
        burst_window=timedelta(seconds=settings.refusal_alert_window),
    )


def dispatcher_of(deps: Deps, settings: Settings) -> tuple[Dispatcher, WebhookSender]:
    # Well inside the lease: a delivery still in flight is not claimed by another dispatcher.
    webhooks = WebhookSender(timeout=min(10.0, settings.notify_lease / 2))
    senders: dict[Channel, NotificationSender] = {Channel.WEBHOOK: webhooks}
    if settings.smtp_host:
        senders[Channel.EMAIL] = EmailSender(
            SmtpSettings(
                host=settings.smtp_host,
                port=settings.smtp_port,
                security=settings.smtp_security,
                username=settings.smtp_username,
                password=settings.smtp_password,
                sender=settings.smtp_from,
                ca_file=settings.smtp_ca_file,
            )
        )
    retry = RetryPolicy(
        base=timedelta(seconds=settings.notify_retry_base),
        cap=timedelta(seconds=settings.notify_retry_cap),
        max_age=timedelta(seconds=settings.notify_max_age),
    )
    dispatch = DispatchSettings(lease=timedelta(seconds=settings.notify_lease), retry=retry)
    return Dispatcher(deps, senders, dispatch), webhooks


def wire(
    settings: Settings,
    log_key: LogKey | None = None,
    *,
    clock: Clock = utcnow,
    routing: Routing | None = None,
) -> Wiring:
    """The use cases on the database of `settings`. Tests pass their own `clock`, and the
    `routing` of notices that the settings would otherwise give (routing_of)."""
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

    # PostgreSQL: approvers' activity is written after the vote's COMMIT, batched (the row of
    # an approver was the hottest lock of a vote); SQLite writes it in the transaction.
    activity_writer = activity_writer_of(engine)
    # PostgreSQL: use cases commit their events unsequenced; one sequencer per database (this
    # process's while it holds the lock) gives them seq, in batches.
    sequencer = Sequencer(settings.database_url, sealer) if postgres else None

    def uow(*, read_only: bool = False, one_statement: bool = False) -> UnitOfWork:
        return SqlUnitOfWork(
            sessions,
            deps.clock,
            read_only=read_only,
            one_statement=one_statement,
            on_commit=committed,
            sealer=sealer,
            routing=routing,
            activity_writer=activity_writer,
            sequencer=sequencer,
        )

    routing = routing or routing_of(settings)

    # SQLite: one process, which drops what it revokes itself. PostgreSQL: replicas, so the
    # cache waits for the LISTEN connection that tells it what others changed.
    credentials = CredentialCache(live=not postgres)
    watch = CredentialWatch(settings.database_url, credentials) if postgres else None
    deps = Deps(
        uow=uow,
        clock=clock,
        region=settings.region,
        credentials=credentials,
        reads=hot_reads_of(engine, sealer),
    )
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
    notifications = NotificationService(deps, reminder_fractions=settings.reminders)
    app = UseCases(
        identities=IdentityService(deps),
        teams=TeamService(deps, sessions_app),
        sessions=sessions_app,
        vaults=VaultService(deps, sessions_app),
        audit=audit,
        notifications=notifications,
        links=InvitationLinks(deps, settings.portal_origin or settings.portal_url),
    )
    dispatcher, webhooks = dispatcher_of(deps, settings)
    portal = (
        PortalService(
            deps,
            app.teams,
            sessions_app,
            RelyingParty.from_origin(settings.portal_origin, settings.portal_rp_id),
        )
        if settings.portal_origin
        else None
    )
    return Wiring(
        engine,
        deps,
        app,
        signal,
        feed,
        dispatcher,
        webhooks,
        notifications,
        watch,
        portal,
        sequencer,
    )
