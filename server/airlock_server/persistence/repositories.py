"""Every aggregate's repository on one session: what a unit of work hands its use case.

One list for both units of work (uow.SqlUnitOfWork, hot_reads.HotReadUnit), so a repository
added here reaches every use case, whichever unit serves it."""

from __future__ import annotations

from sqlalchemy.ext.asyncio import AsyncSession

from airlock_server.app import ports
from airlock_server.domain.notifications import Routing
from airlock_server.persistence.accounts import SqlAccountRepository
from airlock_server.persistence.activity import SqlActivityRepository
from airlock_server.persistence.approvers import SqlApproverRepository
from airlock_server.persistence.credentials import SqlCredentialRepository
from airlock_server.persistence.events import SqlEventRepository
from airlock_server.persistence.grants import SqlGrantRepository
from airlock_server.persistence.idempotency import SqlIdempotencyRepository
from airlock_server.persistence.notifications import SqlNotificationRepository
from airlock_server.persistence.passkeys import SqlPasskeyRepository
from airlock_server.persistence.seal import Sealer
from airlock_server.persistence.sessions import SqlSessionRepository
from airlock_server.persistence.settings import SqlSettingsRepository
from airlock_server.persistence.shares import SqlShareRepository
from airlock_server.persistence.team_deletions import SqlTeamDeletionRepository
from airlock_server.persistence.teams import SqlTeamRepository
from airlock_server.persistence.vaults import SqlVaultRepository


class Repositories:
    def _attach(
        self,
        s: AsyncSession,
        sealer: Sealer,
        routing: Routing,
        activity: SqlActivityRepository,
    ) -> None:
        self.approvers: ports.ApproverRepository = SqlApproverRepository(s, sealer)
        self.accounts: ports.AccountRepository = SqlAccountRepository(s, sealer)
        self.credentials: ports.CredentialRepository = SqlCredentialRepository(s, sealer)
        # Team names never change: the ones a session read brings are shared, read once.
        names: dict[str, str] = {}
        self.teams: ports.TeamRepository = SqlTeamRepository(s, sealer, names)
        self.shares: ports.ShareRepository = SqlShareRepository(s, sealer)
        self.idempotency: ports.IdempotencyRepository = SqlIdempotencyRepository(s)
        self.settings: ports.SettingsRepository = SqlSettingsRepository(s)
        self.sessions: ports.SessionRepository = SqlSessionRepository(s, sealer, names)
        self.vaults: ports.VaultRepository = SqlVaultRepository(s, sealer)
        self.grants: ports.GrantRepository = SqlGrantRepository(s, sealer)
        self.deletions: ports.TeamDeletionRepository = SqlTeamDeletionRepository(s, sealer)
        self.activity: ports.ActivityRepository = activity
        self.events: ports.EventRepository = SqlEventRepository(s)
        self.notifications: ports.NotificationRepository = SqlNotificationRepository(
            s, routing, sealer
        )
        self.passkeys: ports.PasskeyRepository = SqlPasskeyRepository(s)
