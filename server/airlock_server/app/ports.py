"""What use cases need from storage. Persistence implements these; app never imports it."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from datetime import datetime
from types import TracebackType
from typing import Protocol

from airlock_server.domain.events import NewEvent
from airlock_server.domain.identities import Account, Approver, Credential
from airlock_server.domain.principals import Principal
from airlock_server.domain.teams import Team, TeamShare

Clock = Callable[[], datetime]


class ApproverRepository(Protocol):
    async def add(self, approver: Approver) -> None: ...
    async def get(self, approver_id: str) -> Approver | None: ...
    async def get_many(self, approver_ids: Sequence[str]) -> dict[str, Approver]: ...
    async def list_page(
        self, enabled: bool | None, after: str | None, limit: int
    ) -> list[Approver]: ...
    async def save(self, approver: Approver) -> None: ...


class AccountRepository(Protocol):
    async def add(self, account: Account) -> None: ...
    async def get(self, account_id: str) -> Account | None: ...
    async def list_page(self, after: str | None, limit: int) -> list[Account]: ...


class CredentialRepository(Protocol):
    async def add(self, credential: Credential, token_hash: bytes) -> None: ...
    async def get(self, credential_id: str) -> Credential | None: ...
    async def find_by_token_hash(self, token_hash: bytes) -> Credential | None: ...
    async def list_page(
        self,
        principal: Principal | None,
        kind: str | None,
        state: str | None,
        now: datetime,
        after: str | None,
        limit: int,
    ) -> list[Credential]: ...
    async def save(self, credential: Credential) -> None: ...


class TeamRepository(Protocol):
    async def add(self, team: Team) -> None: ...
    async def get(self, team_id: str, *, for_update: bool = False) -> Team | None: ...
    async def get_by_name(self, name: str) -> Team | None: ...
    async def list_page(
        self, visible_to: Principal | None, after: str | None, limit: int
    ) -> list[Team]: ...
    async def save(self, team: Team) -> None: ...
    async def find_by_invitation(
        self, invitation_id: str, *, for_update: bool = False
    ) -> Team | None: ...
    async def list_for_approver(
        self, approver_id: str, after: str | None, limit: int
    ) -> list[Team]: ...
    async def pending_past_expiry(self, now: datetime, limit: int) -> list[str]:
        """Ids of PENDING teams whose invitations have expired, claimed for this transaction."""
        ...


class ShareRepository(Protocol):
    async def add(self, share: TeamShare) -> bool:
        """False when the share existed already."""
        ...

    async def remove(self, team_id: str, principal: Principal) -> bool: ...
    async def get(self, team_id: str, principal: Principal) -> TeamShare | None: ...
    async def list_page(self, team_id: str, after: str | None, limit: int) -> list[TeamShare]: ...


class IdempotencyRepository(Protocol):
    async def claim(self, scope: str, request_id: str, now: datetime) -> str | None:
        """Claim the key for this transaction; the stored result if an earlier call finished."""
        ...

    async def complete(self, scope: str, request_id: str, result: str) -> None: ...


class SettingsRepository(Protocol):
    async def get(self, key: str) -> str | None: ...
    async def put_new(self, key: str, value: str) -> bool:
        """Insert once; False when the key exists already."""
        ...


class UnitOfWork(Protocol):
    """One transaction. Leaving without commit() rolls back; events are appended at commit."""

    approvers: ApproverRepository
    accounts: AccountRepository
    credentials: CredentialRepository
    teams: TeamRepository
    shares: ShareRepository
    idempotency: IdempotencyRepository
    settings: SettingsRepository

    def record(self, event: NewEvent) -> None: ...
    async def commit(self) -> None: ...
    async def __aenter__(self) -> UnitOfWork: ...
    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None: ...


UnitOfWorkFactory = Callable[[], UnitOfWork]
