"""What use cases need from storage. Persistence implements these; app never imports it."""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from types import TracebackType
from typing import Any, Protocol

from airlock_server.domain.events import Checkpoint, Event, NewEvent
from airlock_server.domain.health import Activity
from airlock_server.domain.identities import Account, Approver, Credential
from airlock_server.domain.notifications import (
    Attempt,
    Delivery,
    DeliveryState,
    Endpoint,
    Notice,
    Outgoing,
)
from airlock_server.domain.paging import TimeCursor as TimeCursor
from airlock_server.domain.principals import Principal
from airlock_server.domain.sessions import Session, SessionKind, SessionState
from airlock_server.domain.team_changes import TeamDeletion
from airlock_server.domain.teams import Team, TeamShare
from airlock_server.domain.vaults import GrantState, RestoreAccessGrant, Vault
from airlock_server.domain.webauthn import InvitationLink, PasskeyCredential

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


@dataclass(frozen=True)
class TeamRead:
    """What GetApprovalTeam reads of a team (TeamRepository.view): the caller's share of it,
    the team, and `extras()`, its latest deletion request and its approvers' last activity,
    read (or, when the read brought them along, checked) once the caller may see them."""

    share: TeamShare | None
    team: Team | None
    extras: Callable[[], Awaitable[tuple[TeamDeletion | None, dict[str, Activity]]]]


class TeamRepository(Protocol):
    async def add(self, team: Team) -> None: ...
    async def get(self, team_id: str, *, for_update: bool = False) -> Team | None: ...
    async def view(self, team_id: str, sharer: Principal | None) -> TeamRead:
        """The team, with `sharer`'s share of it (None: none read): on PostgreSQL one
        statement brings all of TeamRead."""
        ...

    async def get_by_name(self, name: str) -> Team | None: ...
    async def list_page(
        self, visible_to: Principal | None, after: str | None, limit: int
    ) -> list[Team]: ...
    async def save(self, team: Team) -> None: ...
    async def find_by_invitation(
        self, invitation_id: str, *, for_update: bool = False
    ) -> Team | None: ...
    async def list_for_approver(
        self, approver_id: str, team_id: str | None, after: str | None, limit: int
    ) -> list[Team]: ...
    async def pending_past_expiry(self, now: datetime, limit: int) -> list[str]:
        """Ids of PENDING teams whose invitations have expired, claimed for this transaction."""
        ...

    async def names(self, team_ids: Sequence[str]) -> dict[str, str]:
        """Each team's name, by id (a team not found is left out)."""
        ...

    async def enrolled_key(self, team_id: str, version: int, approver_id: str) -> bytes | None:
        """The public key the approver enrolled in that team version, if any."""
        ...

    async def enrolled_keys(self, team_id: str, version: int) -> dict[str, bytes | None]:
        """Every member of that team version and the key it enrolled (None: not accepted)."""
        ...


class ShareRepository(Protocol):
    async def add(self, share: TeamShare) -> bool:
        """False when the share existed already."""
        ...

    async def remove(self, team_id: str, principal: Principal) -> bool: ...
    async def get(self, team_id: str, principal: Principal) -> TeamShare | None: ...
    async def list_page(self, team_id: str, after: str | None, limit: int) -> list[TeamShare]: ...


@dataclass(frozen=True)
class Claimed:
    """An earlier call's key: its result and the fingerprint of its request (None when the
    key predates fingerprints)."""

    result: str
    fingerprint: str | None


@dataclass(frozen=True)
class Claim:
    """A request_id to claim with its result known already (see IdempotencyRepository)."""

    scope: str
    request_id: str
    fingerprint: str
    result: str


class IdempotencyRepository(Protocol):
    async def claim(
        self,
        scope: str,
        request_id: str,
        fingerprint: str,
        now: datetime,
        result: str | None = None,
    ) -> Claimed | None:
        """Claim the key for this transaction (with its `result` when known already); what an
        earlier call stored if there was one."""
        ...

    async def complete(self, scope: str, request_id: str, result: str) -> None: ...

    async def claim_many(self, claims: Sequence[Claim], now: datetime) -> set[tuple[str, str]]:
        """Claim the keys that no call claimed before, each with its result; the (scope,
        request_id) of those claimed now. A key claimed before is left as it is."""
        ...


class SettingsRepository(Protocol):
    async def get(self, key: str) -> str | None: ...
    async def put_new(self, key: str, value: str) -> bool:
        """Insert once; False when the key exists already."""
        ...


@dataclass(frozen=True)
class SessionQuery:
    """ListSessions' filters and who may see what; None or empty matches everything.

    `visible_account`: only sessions that account requested or that guard one of its vaults.
    `visible_approver`: only sessions whose frozen set holds that approver.
    `visible_requester`: only sessions that principal requested.
    `awaiting_vote_of`: pending, unexpired sessions that approver has not voted on.
    """

    team_id: str = ""
    state: SessionState | None = None
    kind: SessionKind | None = None
    action: str = ""
    protected_resource: str = ""
    requester_account_id: str = ""
    create_time_start: datetime | None = None
    create_time_end: datetime | None = None
    visible_account: str = ""
    visible_approver: str = ""
    visible_requester: Principal | None = None
    awaiting_vote_of: str = ""


class SessionRepository(Protocol):
    async def add(self, session: Session) -> None: ...
    async def get(self, session_id: str, *, for_update: bool = False) -> Session | None: ...
    async def get_for_vote(
        self, session_id: str, approver_id: str
    ) -> tuple[Session, bytes | None] | None:
        """The session, locked as get(for_update=True), and the public key `approver_id`
        enrolled in its team version (None: none), read together."""
        ...

    async def lock_for_votes(
        self, voters: Mapping[str, str]
    ) -> dict[str, tuple[Session, bytes | None]]:
        """For each session id of `voters`, the session, locked as get(for_update=True), and
        the public key its voter (`voters[session_id]`) enrolled in its team version (None:
        none); sessions not found are left out. One read, whatever their number."""
        ...

    async def add_votes(self, sessions: Sequence[Session]) -> None:
        """Insert the votes of these sessions (read in this transaction) not stored yet."""
        ...

    async def save(self, session: Session) -> None:
        """Write the session's state and insert its votes that are not stored yet."""
        ...

    def defer_saves(self) -> None:
        """Hold the session UPDATEs of the following saves, to send them together at flush()
        or before this repository's next read or write, whichever comes first."""
        ...

    async def flush(self) -> None:
        """Send the held saves (one statement) and stop holding them."""
        ...

    async def list_page(
        self, query: SessionQuery, now: datetime, after: TimeCursor | None, limit: int
    ) -> list[Session]:
        """Newest first. A PENDING session past its expiry counts as FAILED for `state`."""
        ...

    async def pending_past_expiry(self, now: datetime, limit: int) -> list[str]:
        """Ids of PENDING sessions past their expiry, claimed for this transaction."""
        ...

    async def pending_summary(self) -> tuple[int, datetime | None]:
        """How many sessions are PENDING, and the creation time of the oldest (metrics)."""
        ...

    async def pending_of_team(self, team_id: str) -> list[str]: ...


class VaultRepository(Protocol):
    async def add(self, vault: Vault) -> None: ...
    async def get(self, vault_arn: str, *, for_update: bool = False) -> Vault | None: ...
    async def with_open_grants(
        self, vault_arn: str, account_id: str
    ) -> tuple[Vault | None, Callable[[], Awaitable[list[RestoreAccessGrant]]]]:
        """The vault, and a function giving the account's open grants on it (GrantRepository
        .open_for), read or checked when called: on PostgreSQL one statement brings both."""
        ...

    async def save(self, vault: Vault) -> None: ...
    async def list_page(
        self, account_id: str, team_id: str, after: str | None, limit: int
    ) -> list[Vault]: ...
    async def of_team(self, team_id: str) -> list[str]:
        """ARNs of the vaults the team guards or is the pending team of."""
        ...


class GrantRepository(Protocol):
    async def add(self, grant: RestoreAccessGrant) -> None: ...
    async def get(
        self, grant_id: str, *, for_update: bool = False
    ) -> RestoreAccessGrant | None: ...
    async def save(self, grant: RestoreAccessGrant) -> None: ...
    async def open_for(self, vault_arn: str, account_id: str) -> list[RestoreAccessGrant]:
        """The (vault, account) pair's CREATING or AVAILABLE grants (at most one)."""
        ...

    async def open_of_vault(self, vault_arn: str) -> list[RestoreAccessGrant]:
        """The vault's CREATING or AVAILABLE grants, of every account."""
        ...

    async def by_session(
        self, session_id: str, *, for_update: bool = False
    ) -> RestoreAccessGrant | None:
        """The grant that `session_id` requests or revokes."""
        ...

    async def lock_by_sessions(self, session_ids: Sequence[str]) -> None:
        """Read (locked) the grants these sessions request or revoke, in one statement:
        by_session() of them then answers without a read."""
        ...

    def defer_saves(self) -> None:
        """As SessionRepository.defer_saves."""
        ...

    async def flush(self) -> None: ...

    async def list_page(
        self,
        vault_arn: str,
        state: GrantState | None,
        visible_account: str,
        after: TimeCursor | None,
        limit: int,
    ) -> list[RestoreAccessGrant]:
        """Newest first; `visible_account`: its own grants and all grants of its vaults."""
        ...

    async def open_of_vaults(self, vault_arns: Sequence[str]) -> list[str]: ...


class TeamDeletionRepository(Protocol):
    async def add(self, deletion: TeamDeletion) -> None: ...
    async def get(self, session_id: str, *, for_update: bool = False) -> TeamDeletion | None: ...
    async def save(self, deletion: TeamDeletion, *, done: bool = False) -> None:
        """Write approve and complete times; approved and not `done`, the deletion is due at
        its complete time (for the sweeper)."""
        ...

    async def latest_of(self, team_ids: Sequence[str]) -> dict[str, TeamDeletion]:
        """Each team's most recent deletion request."""
        ...

    async def due(self, now: datetime, limit: int) -> list[str]:
        """Session ids of approved deletions whose window ended, claimed for this transaction."""
        ...


class EventRepository(Protocol):
    async def about(self, subject: str, type_: str | None = None) -> list[Event]:
        """The log's events with this subject (event_subjects index), by seq; of one type."""
        ...


class ActivityRepository(Protocol):
    async def record(self, team_id: str, approver_id: str, activity: Activity) -> None:
        """Store the approver's activity for the team unless a later one is stored."""
        ...

    async def record_many(self, entries: Sequence[tuple[str, str, Activity]]) -> None:
        """record() of each (team_id, approver_id, activity), in one statement."""
        ...

    async def of_teams(self, team_ids: Sequence[str]) -> dict[str, dict[str, Activity]]:
        """Per team, per approver, the last activity."""
        ...


class PasskeyRepository(Protocol):
    """The portal's passkeys, its single-use WebAuthn challenges and invitation links."""

    async def add(self, passkey: PasskeyCredential) -> None: ...

    async def get(
        self, credential_id: str, *, for_update: bool = False
    ) -> PasskeyCredential | None: ...

    async def used(self, credential_id: str, sign_count: int, now: datetime) -> None:
        """Record a use: the new signature counter and its time."""
        ...

    async def add_challenge(
        self, challenge_sha256: str, purpose: str, subject: str, expire_time: datetime
    ) -> None: ...

    async def take_challenge(
        self, challenge_sha256: str, purpose: str
    ) -> tuple[str, datetime] | None:
        """Delete the challenge and return (subject, expire_time); None if there is none of that
        purpose (never issued, or already taken: each is single use)."""
        ...

    async def drop_expired_challenges(self, now: datetime) -> int: ...

    async def add_link(self, link: InvitationLink) -> None:
        """Store a link; earlier unspent links of the same invitation are spent (one link open
        per invitation)."""
        ...

    async def find_link(
        self, token_sha256: str, *, for_update: bool = False
    ) -> InvitationLink | None: ...

    async def spend_links(self, invitation_id: str, now: datetime) -> None:
        """Every link of the invitation is spent (it was answered)."""
        ...


class NotificationRepository(Protocol):
    """Webhook endpoints and the outbox (notifications of events are written at commit)."""

    async def add_endpoint(self, endpoint: Endpoint, secret: str) -> None: ...
    async def get_endpoint(
        self, endpoint_id: str, *, for_update: bool = False
    ) -> Endpoint | None: ...
    async def list_endpoints(self, after: str | None, limit: int) -> list[Endpoint]: ...
    async def save_endpoint(self, endpoint: Endpoint) -> None: ...
    async def delete_endpoint(self, endpoint_id: str) -> None:
        """Its pending notifications are dropped."""
        ...

    async def add_notice(self, notice: Notice, cause: str, now: datetime) -> int:
        """Write a notice no event carries (a reminder), once per `cause`; rows written."""
        ...

    async def add_test(
        self, endpoint_id: str, data: dict[str, Any], cause: str, now: datetime
    ) -> str: ...
    async def any_due(self, now: datetime) -> bool: ...
    async def claim_due(self, now: datetime, lease_until: datetime, limit: int) -> list[Outgoing]:
        """Due notifications, leased to the caller until `lease_until`; others' are skipped."""
        ...

    async def finish_attempt(
        self,
        notification_id: str,
        lease: str,
        attempt: Attempt,
        state: DeliveryState,
        next_attempt_time: datetime | None,
    ) -> bool:
        """False (nothing written) when the lease was lost."""
        ...

    async def list_deliveries(
        self,
        target: str,
        state: DeliveryState | None,
        after: tuple[datetime, str] | None,
        limit: int,
    ) -> list[Delivery]: ...
    async def get_delivery(self, notification_id: str) -> Delivery | None: ...
    async def pending_sessions(self, now: datetime, after: str, limit: int) -> list[str]:
        """Pending, unexpired sessions with an id after `after`, by id."""
        ...

    async def reminded_steps(self, session_ids: Sequence[str]) -> set[tuple[str, int]]: ...
    async def mark_reminded(self, session_id: str, step: int, now: datetime) -> bool:
        """Claim a reminder point once across replicas; False when another did it."""
        ...


class NotificationSender(Protocol):
    """One channel (webhook, email): delivers one notification, says how it went."""

    async def send(self, out: Outgoing) -> Attempt:
        """`Attempt.number` is ignored; never raises for a delivery failure."""
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
    sessions: SessionRepository
    vaults: VaultRepository
    grants: GrantRepository
    deletions: TeamDeletionRepository
    activity: ActivityRepository
    events: EventRepository
    notifications: NotificationRepository
    passkeys: PasskeyRepository

    def record(self, event: NewEvent) -> None: ...
    async def commit(self) -> None: ...
    async def __aenter__(self) -> UnitOfWork: ...
    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None: ...


class UnitOfWorkFactory(Protocol):
    """A new unit of work. `read_only`: the use case means to read (it may still write, e.g. to
    settle what a read finds expired); SQLite then begins deferred instead of taking the write
    lock up front, so reads do not queue behind writers of other processes. `one_statement`:
    reads that need no common snapshot (one statement, or several whose answer does not depend
    on seeing the same instant), each its own transaction: no BEGIN and ROLLBACK round trips
    (implies read_only)."""

    def __call__(self, *, read_only: bool = False, one_statement: bool = False) -> UnitOfWork: ...


# --- reading the event log (AuditService) ------------------------------------------------------


@dataclass(frozen=True)
class EventQuery:
    """ListEvents' filters; empty matches everything.

    `type`: exact, or a family prefix ending with '.'. `actor`: an exact actor string
    ("account:111122223333"); `actor_kind`: every actor of that kind ("account", "admin:x").
    """

    type: str = ""
    actor: str = ""
    actor_kind: str = ""
    subject: str = ""
    start_time: datetime | None = None
    end_time: datetime | None = None


class EventLogReader(Protocol):
    """Reads committed events; never writes (the log is appended only through a UnitOfWork)."""

    async def list_page(self, query: EventQuery, after_seq: int, limit: int) -> list[Event]:
        """Ascending seq, seq > after_seq."""
        ...

    async def range(self, from_seq: int, to_seq: int, limit: int) -> list[Event]:
        """Stored events with from_seq <= seq <= to_seq (0: no upper bound), ascending."""
        ...

    async def subject_rows(self, from_seq: int, to_seq: int) -> list[tuple[str, int]]:
        """The (subject, seq) rows of the subject index with from_seq <= seq <= to_seq."""
        ...

    async def get(self, seq: int) -> Event | None: ...
    async def last(self) -> Event | None:
        """The stored event with the highest seq."""
        ...

    async def head_seq(self) -> int:
        """The seq the log's head row names."""
        ...

    async def head(self) -> Checkpoint | None:
        """The head row (seq, hash, time, signature) as stored; None at genesis."""
        ...


class LogSigner(Protocol):
    """The server's log key as storage uses it (app.audit.LogKey): it signs the head of every
    append, verifies a head before chaining after it, and keys the MACs of the rows the server
    decides with (domain/integrity.py)."""

    public_key: bytes
    key_id: str
    row_mac_key: bytes

    def sign(self, message: bytes) -> bytes: ...
    def verify(self, signature: bytes, message: bytes) -> bool: ...


class LogAnchor(Protocol):
    """Signs a checkpoint of the log's head and reads the chain up to it (AuditService)."""

    @property
    def can_sign(self) -> bool:
        """False when the server has no log key."""
        ...

    async def anchor(self, from_seq: int, last_seq: int) -> tuple[Checkpoint, list[Event]]:
        """The head the server signed at the end of the transaction of event `last_seq`, and
        the chain from `from_seq` up to it. FAILED_PRECONDITION LOG_KEY_MISSING when the server
        has no log key, LOG_NOT_AUTHENTIC when no signed head covers `last_seq`."""
        ...


class EventSignal(Protocol):
    """Wakes followers of the log (WatchEvents) when events may have been committed."""

    async def wait(self, after_seq: int, within: float) -> None:
        """Return when an event beyond after_seq may exist, or after `within` seconds."""
        ...
