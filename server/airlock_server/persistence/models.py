"""SQLAlchemy records. They stay inside persistence; mappers turn them into domain objects."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    DateTime,
    Dialect,
    ForeignKey,
    ForeignKeyConstraint,
    Index,
    Integer,
    LargeBinary,
    MetaData,
    String,
    Text,
    TypeDecorator,
    text,
)
from sqlalchemy.ext.compiler import compiles
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column
from sqlalchemy.sql.compiler import SQLCompiler
from sqlalchemy.sql.functions import FunctionElement

NAMING_CONVENTION = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}


class UTCDateTime(TypeDecorator[datetime]):
    """Aware UTC datetimes on both databases (SQLite forgets the zone)."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("naive datetime")
        return value.astimezone(UTC)

    def process_result_value(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


class Base(DeclarativeBase):
    metadata = MetaData(naming_convention=NAMING_CONVENTION)
    type_annotation_map = {datetime: UTCDateTime(), dict[str, Any]: JSON(), bytes: LargeBinary()}


class ApproverRecord(Base):
    __tablename__ = "approvers"

    approver_id: Mapped[str] = mapped_column(String(64), primary_key=True)
    display_name: Mapped[str] = mapped_column(String(128))
    email: Mapped[str] = mapped_column(String(320))
    enabled: Mapped[bool] = mapped_column(Boolean)
    create_time: Mapped[datetime]
    disable_time: Mapped[datetime | None]
    # HMAC by the log key over the row (domain/integrity.py); NULL on a keyless server.
    mac: Mapped[bytes | None] = mapped_column(LargeBinary(32))


class AccountRecord(Base):
    __tablename__ = "accounts"

    account_id: Mapped[str] = mapped_column(String(12), primary_key=True)
    name: Mapped[str] = mapped_column(String(64))
    create_time: Mapped[datetime]
    # HMAC by the log key over the row (domain/integrity.py); NULL on a keyless server.
    mac: Mapped[bytes | None] = mapped_column(LargeBinary(32))


class CredentialRecord(Base):
    __tablename__ = "credentials"

    credential_id: Mapped[str] = mapped_column(String(64), primary_key=True)
    principal_kind: Mapped[str] = mapped_column(String(16))
    subject: Mapped[str] = mapped_column(String(64))
    description: Mapped[str] = mapped_column(String(256))
    # SHA-256 of the token: the token itself is never stored.
    token_hash: Mapped[bytes] = mapped_column(LargeBinary(32), unique=True)
    create_time: Mapped[datetime]
    expire_time: Mapped[datetime | None]
    revoke_time: Mapped[datetime | None]
    # HMAC by the log key over the row (domain/integrity.py); NULL on a keyless server.
    mac: Mapped[bytes | None] = mapped_column(LargeBinary(32))

    __table_args__ = (Index("ix_credentials_principal", "principal_kind", "subject"),)


class TeamRecord(Base):
    __tablename__ = "teams"

    team_id: Mapped[str] = mapped_column(String(64), primary_key=True)
    arn: Mapped[str] = mapped_column(String(256))
    name: Mapped[str] = mapped_column(String(64), unique=True)
    state: Mapped[str] = mapped_column(String(32))
    status: Mapped[str] = mapped_column(String(32))
    status_message: Mapped[str] = mapped_column(String(500))
    current_version: Mapped[int] = mapped_column(Integer)
    pending_version: Mapped[int | None] = mapped_column(Integer)
    update_session_id: Mapped[str | None] = mapped_column(String(64))
    revision: Mapped[int] = mapped_column(Integer)
    # When the current activation's invitations expire; indexed for the sweeper.
    activation_deadline: Mapped[datetime | None] = mapped_column(index=True)
    create_time: Mapped[datetime]
    update_time: Mapped[datetime]
    # HMAC by the log key over the row (domain/integrity.py); NULL on a keyless server.
    mac: Mapped[bytes | None] = mapped_column(LargeBinary(32))


class TeamVersionRecord(Base):
    __tablename__ = "team_versions"

    team_id: Mapped[str] = mapped_column(ForeignKey("teams.team_id"), primary_key=True)
    version: Mapped[int] = mapped_column(Integer, primary_key=True)
    description: Mapped[str] = mapped_column(String(256))
    min_approvals: Mapped[int] = mapped_column(Integer)
    session_ttl_seconds: Mapped[int] = mapped_column(Integer)
    invitation_ttl_seconds: Mapped[int] = mapped_column(Integer)
    create_time: Mapped[datetime]
    invitation_expire_time: Mapped[datetime]
    # HMAC by the log key over the row (domain/integrity.py); NULL on a keyless server.
    mac: Mapped[bytes | None] = mapped_column(LargeBinary(32))


class TeamMemberRecord(Base):
    """An approver of one team version together with its invitation."""

    __tablename__ = "team_members"

    invitation_id: Mapped[str] = mapped_column(String(64), primary_key=True)
    team_id: Mapped[str] = mapped_column(String(64))
    version: Mapped[int] = mapped_column(Integer)
    position: Mapped[int] = mapped_column(Integer)
    approver_id: Mapped[str] = mapped_column(ForeignKey("approvers.approver_id"), index=True)
    invitation_state: Mapped[str] = mapped_column(String(16))
    response_time: Mapped[datetime | None]
    public_key: Mapped[bytes | None] = mapped_column(LargeBinary(32))
    # An invited member (re-enrolled, or new with a named key): the key the team approved, the
    # only one it may enroll.
    approved_key: Mapped[bytes | None] = mapped_column(LargeBinary(32))
    # HMAC by the log key over the row (domain/integrity.py); NULL on a keyless server.
    mac: Mapped[bytes | None] = mapped_column(LargeBinary(32))

    __table_args__ = (
        ForeignKeyConstraint(
            ["team_id", "version"], ["team_versions.team_id", "team_versions.version"]
        ),
        Index("ix_team_members_team_version", "team_id", "version", "approver_id", unique=True),
    )


class TeamShareRecord(Base):
    __tablename__ = "team_shares"

    team_id: Mapped[str] = mapped_column(ForeignKey("teams.team_id"), primary_key=True)
    principal_kind: Mapped[str] = mapped_column(String(16), primary_key=True)
    subject: Mapped[str] = mapped_column(String(64), primary_key=True)
    create_time: Mapped[datetime]
    # HMAC by the log key over the row (domain/integrity.py); NULL on a keyless server.
    mac: Mapped[bytes | None] = mapped_column(LargeBinary(32))


class IdempotencyKeyRecord(Base):
    """A mutation's request_id and the first call's result (AIP-155)."""

    __tablename__ = "idempotency_keys"

    scope: Mapped[str] = mapped_column(String(160), primary_key=True)
    request_id: Mapped[str] = mapped_column(String(64), primary_key=True)
    result: Mapped[str | None] = mapped_column(Text)
    create_time: Mapped[datetime]
    # SHA-256 (hex) of the first request, request_id cleared; NULL for keys older than it.
    fingerprint: Mapped[str | None] = mapped_column(String(64))


class SettingRecord(Base):
    __tablename__ = "settings"

    key: Mapped[str] = mapped_column(String(64), primary_key=True)
    value: Mapped[str] = mapped_column(Text)


class _FirstPart(FunctionElement[str]):
    """The part of a string before the first `separator`, or all of it. Spelled identically in
    an expression index and in the queries, with the separator as a literal: both databases use
    an expression index only for an expression that matches it, and a bound one does not."""

    type = String()
    inherit_cache = True
    separator = ""


@compiles(_FirstPart, "postgresql")
def _first_part_pg(element: _FirstPart, compiler: SQLCompiler, **kw: Any) -> str:
    return f"split_part({compiler.process(element.clauses, **kw)}, '{element.separator}', 1)"


@compiles(_FirstPart, "sqlite")
def _first_part_sqlite(element: _FirstPart, compiler: SQLCompiler, **kw: Any) -> str:
    value, sep = compiler.process(element.clauses, **kw), element.separator
    return f"substr({value}, 1, instr({value} || '{sep}', '{sep}') - 1)"


class ActorKind(_FirstPart):
    """The kind of an actor string: "auditor" of "auditor:ann", or all of it ("system"); the
    expression of ix_events_actor_kind_seq (migration 0006)."""

    name = "actor_kind"
    inherit_cache = True
    separator = ":"


class EventFamily(_FirstPart):
    """The family of an event type: "team" of "team.created"; the expression of
    ix_events_family_seq (migration 0014), which serves a family filter ("team.")."""

    name = "event_family"
    inherit_cache = True
    separator = "."


class EventRecord(Base):
    """The append-only log. A migration's triggers refuse UPDATE and DELETE."""

    __tablename__ = "events"
    # ListEvents filters: an ordered range of (type, seq), (type family, seq), (actor, seq),
    # (actor kind, seq) or (time, seq) serves a page or its bounds (persistence/events.py).
    __table_args__ = (
        Index("ix_events_type_seq", "type", "seq"),
        Index("ix_events_actor_seq", "actor", "seq"),
        Index("ix_events_time_seq", "time", "seq"),
    )

    seq: Mapped[int] = mapped_column(BigInteger, primary_key=True, autoincrement=False)
    time: Mapped[datetime]
    type: Mapped[str] = mapped_column(String(64))
    actor: Mapped[str] = mapped_column(String(96))
    subjects: Mapped[list[str]] = mapped_column(JSON)
    details: Mapped[dict[str, Any]]
    prev_hash: Mapped[bytes] = mapped_column(LargeBinary(32))
    hash: Mapped[bytes] = mapped_column(LargeBinary(32))
    # On the last event of each transaction of a keyed server: the log key's signature of the
    # head it made (the checkpoint message with this event's seq, hash and time).
    head_signature: Mapped[bytes | None] = mapped_column(LargeBinary(64))
    # PostgreSQL: the unsequenced event it was (its transaction's nonce and its position in
    # it, UnsequencedEventRecord): unique, so a copy of a sequenced one is never sequenced again.
    origin: Mapped[bytes | None] = mapped_column(LargeBinary(20))


Index("ix_events_actor_kind_seq", ActorKind(EventRecord.__table__.c.actor), EventRecord.seq)
Index("ix_events_origin", EventRecord.__table__.c.origin, unique=True)
Index("ix_events_family_seq", EventFamily(EventRecord.__table__.c.type), EventRecord.seq)


class EventSubjectRecord(Base):
    """Index of events by subject, so a subject filter does not scan the log."""

    __tablename__ = "event_subjects"

    subject: Mapped[str] = mapped_column(String(256), primary_key=True)
    seq: Mapped[int] = mapped_column(
        BigInteger, ForeignKey("events.seq"), primary_key=True, autoincrement=False
    )


class UnsequencedEventRecord(Base):
    """PostgreSQL: an event committed by its use case and not yet in the log. The sequencer
    (persistence/sequencer.py) gives each its seq and hashes, in id order, and deletes it in
    the same transaction. Rows are MACed: the sequencer signs heads over them."""

    __tablename__ = "unsequenced_events"

    id: Mapped[int] = mapped_column(BigInteger, primary_key=True, autoincrement=True)
    # The transaction's random nonce and the event's place in it: the event's `origin`.
    txn: Mapped[bytes] = mapped_column(LargeBinary(16))
    position: Mapped[int] = mapped_column(Integer)
    time: Mapped[datetime]
    type: Mapped[str] = mapped_column(String(64))
    actor: Mapped[str] = mapped_column(String(96))
    subjects: Mapped[list[str]] = mapped_column(JSON)
    details: Mapped[dict[str, Any]]
    # Its notice's planned notifications ({"kind", "targets": [[channel, target, data]]}),
    # written by the sequencer with the event's seq; NULL when nobody is told.
    notice: Mapped[dict[str, Any] | None]
    # HMAC by the log key over the row (domain/integrity.py); NULL on a keyless server.
    mac: Mapped[bytes | None] = mapped_column(LargeBinary(32))


class LogHeadRecord(Base):
    """One row: the last seq, hash and time. Appenders lock it, so seq follows commit order
    and time never decreases along seq."""

    __tablename__ = "log_head"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=False)
    seq: Mapped[int] = mapped_column(BigInteger)
    hash: Mapped[bytes] = mapped_column(LargeBinary(32))
    # NULL before the first event.
    time: Mapped[datetime | None]
    # Events up to this seq predate the monotone-time rule (migration 0006): 0 on a new log.
    time_ordered_after: Mapped[int] = mapped_column(BigInteger, server_default="0")
    # The log key's signature of this head (NULL at genesis and on a keyless server).
    signature: Mapped[bytes | None] = mapped_column(LargeBinary(64))


# --- the recovery flow: sessions, votes, vaults, restore access grants, team deletions ---


class SessionRecord(Base):
    """An approval session. The frozen approver set lives in session_approvers, votes in votes."""

    __tablename__ = "sessions"

    session_id: Mapped[str] = mapped_column(String(64), primary_key=True)
    kind: Mapped[str] = mapped_column(String(32))
    team_id: Mapped[str] = mapped_column(ForeignKey("teams.team_id"), index=True)
    team_version: Mapped[int] = mapped_column(Integer)
    min_approvals: Mapped[int] = mapped_column(Integer)
    requester_kind: Mapped[str] = mapped_column(String(16))
    requester_subject: Mapped[str] = mapped_column(String(64))
    requester_account_id: Mapped[str] = mapped_column(String(12), index=True)
    action: Mapped[str] = mapped_column(String(128))
    protected_resource: Mapped[str] = mapped_column(String(2048))
    comment: Mapped[str] = mapped_column(String(200))
    session_metadata: Mapped[dict[str, Any]]
    state: Mapped[str] = mapped_column(String(16))
    status: Mapped[str] = mapped_column(String(32))
    status_message: Mapped[str] = mapped_column(String(500))
    execution_status: Mapped[str] = mapped_column(String(16))
    execution_message: Mapped[str] = mapped_column(String(256))
    create_time: Mapped[datetime]
    expire_time: Mapped[datetime]
    complete_time: Mapped[datetime | None]
    execution_time: Mapped[datetime | None]
    # TEAM_UPDATE: the draft its votes sign (domain TeamDraft, as JSON); NULL otherwise.
    team_draft: Mapped[dict[str, Any] | None]
    # Approvers disabled while the session was open (a JSON list); NULL: none.
    excluded_approvers: Mapped[list[str] | None] = mapped_column(JSON)
    # HMAC by the log key over the row (domain/integrity.py); NULL on a keyless server.
    mac: Mapped[bytes | None] = mapped_column(LargeBinary(32))

    __table_args__ = (
        Index("ix_sessions_create_time_id", "create_time", "session_id"),
        # The sweeper's query: pending sessions by expiry.
        Index("ix_sessions_state_expire", "state", "expire_time"),
    )


class SessionApproverRecord(Base):
    """One approver of a session's frozen set (accepted members of the frozen version)."""

    __tablename__ = "session_approvers"

    session_id: Mapped[str] = mapped_column(ForeignKey("sessions.session_id"), primary_key=True)
    approver_id: Mapped[str] = mapped_column(String(64), primary_key=True, index=True)
    position: Mapped[int] = mapped_column(Integer)


class VoteRecord(Base):
    """One final vote. The primary key is the backstop against a second vote of an approver."""

    __tablename__ = "votes"

    session_id: Mapped[str] = mapped_column(ForeignKey("sessions.session_id"), primary_key=True)
    approver_id: Mapped[str] = mapped_column(String(64), primary_key=True)
    position: Mapped[int] = mapped_column(Integer)
    decision: Mapped[str] = mapped_column(String(16))
    comment: Mapped[str] = mapped_column(String(200))
    vote_time: Mapped[datetime]
    signature: Mapped[bytes] = mapped_column(LargeBinary(64))
    # HMAC by the log key over the row (domain/integrity.py); NULL on a keyless server.
    mac: Mapped[bytes | None] = mapped_column(LargeBinary(32))


class VaultRecord(Base):
    __tablename__ = "vaults"

    vault_arn: Mapped[str] = mapped_column(String(256), primary_key=True)
    account_id: Mapped[str] = mapped_column(String(12))
    name: Mapped[str] = mapped_column(String(64))
    region: Mapped[str] = mapped_column(String(32))
    min_retention_days: Mapped[int] = mapped_column(Integer)
    max_retention_days: Mapped[int] = mapped_column(Integer)
    tags: Mapped[dict[str, Any]]
    team_id: Mapped[str | None] = mapped_column(ForeignKey("teams.team_id"), index=True)
    # A pending association change exists when pending_session_id is set; pending_team_id None
    # then means a disassociation.
    pending_team_id: Mapped[str | None] = mapped_column(String(64))
    pending_session_id: Mapped[str | None] = mapped_column(String(64))
    pending_create_time: Mapped[datetime | None]
    create_time: Mapped[datetime]
    update_time: Mapped[datetime]
    # HMAC by the log key over the row (domain/integrity.py); NULL on a keyless server.
    mac: Mapped[bytes | None] = mapped_column(LargeBinary(32))

    __table_args__ = (Index("ix_vaults_account_name", "account_id", "name", unique=True),)


# Open grant states (domain.vaults.OPEN_GRANT_STATES), spelled out for the partial index.
_OPEN_GRANT = "state IN ('CREATING', 'AVAILABLE')"


class RestoreAccessGrantRecord(Base):
    __tablename__ = "restore_access_grants"

    grant_id: Mapped[str] = mapped_column(String(64), primary_key=True)
    vault_arn: Mapped[str] = mapped_column(ForeignKey("vaults.vault_arn"))
    account_id: Mapped[str] = mapped_column(String(12), index=True)
    restore_vault_name: Mapped[str] = mapped_column(String(64))
    restore_vault_arn: Mapped[str] = mapped_column(String(256))
    state: Mapped[str] = mapped_column(String(16))
    status_message: Mapped[str] = mapped_column(String(500))
    session_id: Mapped[str] = mapped_column(String(64), unique=True)
    revoke_session_id: Mapped[str | None] = mapped_column(String(64), index=True)
    comment: Mapped[str] = mapped_column(String(200))
    create_time: Mapped[datetime]
    update_time: Mapped[datetime]
    # HMAC by the log key over the row (domain/integrity.py); NULL on a keyless server.
    mac: Mapped[bytes | None] = mapped_column(LargeBinary(32))

    __table_args__ = (
        Index("ix_restore_access_grants_vault_account", "vault_arn", "account_id"),
        # The database's backstop for "one open request per (vault, account)".
        Index(
            "uq_restore_access_grants_open",
            "vault_arn",
            "account_id",
            unique=True,
            sqlite_where=text(_OPEN_GRANT),
            postgresql_where=text(_OPEN_GRANT),
        ),
    )


class TeamDeletionRecord(Base):
    """A requested team deletion: its session, pending window and outcome."""

    __tablename__ = "team_deletions"

    session_id: Mapped[str] = mapped_column(String(64), primary_key=True)
    team_id: Mapped[str] = mapped_column(ForeignKey("teams.team_id"), index=True)
    pending_window_days: Mapped[int] = mapped_column(Integer)
    request_time: Mapped[datetime]
    approve_time: Mapped[datetime | None]
    complete_time: Mapped[datetime | None]
    # When an approved deletion is due; indexed for the sweeper.
    due_time: Mapped[datetime | None] = mapped_column(index=True)
    # HMAC by the log key over the row (domain/integrity.py); NULL on a keyless server.
    mac: Mapped[bytes | None] = mapped_column(LargeBinary(32))


# --- health: what each approver last did for each team ---


class ApproverActivityRecord(Base):
    """An approver's last activity for a team (vote, baseline answer, invitation answer).

    Written in the same transaction as the answer; a vote's on PostgreSQL just after its
    commit, outside it (activity.ActivityWriter: no vote holds this hot row's lock).
    Only a later activity replaces the stored one.
    """

    __tablename__ = "approver_activity"

    team_id: Mapped[str] = mapped_column(ForeignKey("teams.team_id"), primary_key=True)
    approver_id: Mapped[str] = mapped_column(ForeignKey("approvers.approver_id"), primary_key=True)
    kind: Mapped[str] = mapped_column(String(32))
    activity_time: Mapped[datetime]


# --- notifications: webhook endpoints and the transactional outbox ---


class NotificationEndpointRecord(Base):
    """A webhook endpoint. The secret signs each delivery (Standard Webhooks); it must be
    kept readable to sign, and is never returned by the API after creation."""

    __tablename__ = "notification_endpoints"

    endpoint_id: Mapped[str] = mapped_column(String(64), primary_key=True)
    url: Mapped[str] = mapped_column(String(2048))
    description: Mapped[str] = mapped_column(String(256))
    body_format: Mapped[str] = mapped_column(String(16))
    kinds: Mapped[list[str]] = mapped_column(JSON)
    secret: Mapped[str] = mapped_column(String(128))
    enabled: Mapped[bool] = mapped_column(Boolean)
    revision: Mapped[int] = mapped_column(Integer)
    create_time: Mapped[datetime]
    update_time: Mapped[datetime]


class NotificationRecord(Base):
    """The outbox: one notification for one recipient, written in the transaction of the
    event that causes it. `notification_id` is the webhook-id every retry repeats."""

    __tablename__ = "notifications"

    notification_id: Mapped[str] = mapped_column(String(64), primary_key=True)
    # One notification per (cause, recipient), whichever replica writes it (reminders).
    dedupe_key: Mapped[str] = mapped_column(String(400), unique=True)
    kind: Mapped[str] = mapped_column(String(64))
    channel: Mapped[str] = mapped_column(String(16))
    # The endpoint id (webhook) or the address (email).
    target: Mapped[str] = mapped_column(String(320), index=True)
    event_seq: Mapped[int | None] = mapped_column(BigInteger)
    data: Mapped[dict[str, Any]]
    state: Mapped[str] = mapped_column(String(16))
    attempts: Mapped[int] = mapped_column(Integer)
    # Due time while PENDING; a claim moves it a lease ahead, so a dispatcher killed
    # mid-delivery leaves the notification to be claimed again when the lease runs out.
    next_attempt_time: Mapped[datetime]
    lease: Mapped[str | None] = mapped_column(String(32))
    create_time: Mapped[datetime]
    deliver_time: Mapped[datetime | None]

    __table_args__ = (
        # The dispatchers' query: pending notifications by due time.
        Index("ix_notifications_state_due", "state", "next_attempt_time"),
        Index("ix_notifications_create_time_id", "create_time", "notification_id"),
    )


class NotificationAttemptRecord(Base):
    """One delivery attempt and its outcome."""

    __tablename__ = "notification_attempts"

    notification_id: Mapped[str] = mapped_column(
        ForeignKey("notifications.notification_id"), primary_key=True
    )
    attempt: Mapped[int] = mapped_column(Integer, primary_key=True)
    attempt_time: Mapped[datetime]
    ok: Mapped[bool] = mapped_column(Boolean)
    code: Mapped[int] = mapped_column(Integer)
    error: Mapped[str] = mapped_column(String(500))


class ReminderRecord(Base):
    """A reminder point of a session already handled, so replicas remind once."""

    __tablename__ = "session_reminders"

    session_id: Mapped[str] = mapped_column(ForeignKey("sessions.session_id"), primary_key=True)
    step: Mapped[int] = mapped_column(Integer, primary_key=True)
    create_time: Mapped[datetime]


# --- the approval portal: passkeys, their challenges, invitation links ---


class PasskeyRecord(Base):
    """A passkey an approver enrolled through an invitation (its key is also the member's
    public_key); the signature counter moves on every use."""

    __tablename__ = "passkeys"

    # base64url of the WebAuthn credential id, as the browser names it.
    credential_id: Mapped[str] = mapped_column(String(1400), primary_key=True)
    approver_id: Mapped[str] = mapped_column(ForeignKey("approvers.approver_id"), index=True)
    team_id: Mapped[str] = mapped_column(String(64))
    invitation_id: Mapped[str] = mapped_column(String(64))
    # The passkey key encoding (domain/webauthn.py) enrolled as the member's key.
    public_key: Mapped[bytes] = mapped_column(LargeBinary)
    cose_public_key: Mapped[bytes] = mapped_column(LargeBinary)
    sign_count: Mapped[int] = mapped_column(BigInteger)
    create_time: Mapped[datetime]
    last_used_time: Mapped[datetime | None]


class WebAuthnChallengeRecord(Base):
    """A challenge handed to a browser: single use (deleted when used), short-lived."""

    __tablename__ = "webauthn_challenges"

    challenge_sha256: Mapped[str] = mapped_column(String(64), primary_key=True)
    purpose: Mapped[str] = mapped_column(String(16))
    # What it was issued for: the invitation of a registration, "" for a sign-in.
    subject: Mapped[str] = mapped_column(String(64))
    expire_time: Mapped[datetime] = mapped_column(index=True)


class InvitationLinkRecord(Base):
    """A one-time invitation link; only the SHA-256 of its token is stored."""

    __tablename__ = "invitation_links"

    token_sha256: Mapped[str] = mapped_column(String(64), primary_key=True)
    invitation_id: Mapped[str] = mapped_column(String(64), index=True)
    create_time: Mapped[datetime]
    spent_time: Mapped[datetime | None]
