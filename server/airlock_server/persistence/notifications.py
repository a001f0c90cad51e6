"""The notification outbox and the webhook endpoints.

`Outbox` writes, in the business transaction, one notification per recipient of each notice
(domain/notifications.py decides the notices); `SqlNotificationRepository` serves the API and
the dispatchers, which claim due notifications with FOR UPDATE SKIP LOCKED on PostgreSQL
(SQLite has one writer at a time: BEGIN IMMEDIATE serializes the claims).
"""

from __future__ import annotations

import secrets
from collections.abc import Sequence
from datetime import datetime
from typing import Any

from sqlalchemy import and_, delete, func, or_, select, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.ext.asyncio import AsyncSession

from airlock_server.domain.events import CALL_DENIED, Event
from airlock_server.domain.notifications import (
    APPROVER_DISABLED,
    INVITATION_SENT,
    NOTIFICATION_TEST,
    Attempt,
    BodyFormat,
    Channel,
    Delivery,
    DeliveryState,
    Endpoint,
    Notice,
    Outgoing,
    Routing,
    portal_link,
)
from airlock_server.domain.webauthn import INVITATION_LINK_NONCE, invite_url
from airlock_server.persistence.models import (
    ApproverRecord,
    EventRecord,
    NotificationAttemptRecord,
    NotificationEndpointRecord,
    NotificationRecord,
    ReminderRecord,
    SessionApproverRecord,
    SessionRecord,
)
from airlock_server.persistence.passkeys import link_token, new_email_link
from airlock_server.persistence.seal import Sealer


def new_notification_id() -> str:
    return f"ntf-{secrets.token_hex(12)}"


def _insert_ignoring_duplicates(session: AsyncSession, table: Any) -> Any:
    """INSERT ... ON CONFLICT DO NOTHING on either database."""
    dialect = postgresql if session.get_bind().dialect.name == "postgresql" else sqlite
    return dialect.insert(table).on_conflict_do_nothing()


class Outbox:
    """Turns notices into notification rows, inside the transaction that causes them."""

    def __init__(
        self, session: AsyncSession, routing: Routing, now: datetime, sealer: Sealer | None = None
    ) -> None:
        self._s = session
        self._routing = routing
        self._now = now
        self._sealer = sealer or Sealer()
        self._endpoints: list[Endpoint] | None = None

    async def _bursts_now(self, actor: str) -> bool:
        """Whether this refusal is the one that brings the actor's refused calls within the
        window to the threshold (those before it are committed events; a bounded read of the
        (actor, seq) index)."""
        threshold = self._routing.burst_threshold
        recent = (
            select(EventRecord.seq)
            .where(
                EventRecord.actor == actor,
                EventRecord.type == CALL_DENIED,
                EventRecord.time >= self._now - self._routing.burst_window,
            )
            .order_by(EventRecord.seq.desc())
            .limit(threshold)
            .subquery()
        )
        before = await self._s.scalar(select(func.count()).select_from(recent))
        return int(before or 0) == threshold - 1

    async def _webhooks(self, kind: str) -> list[str]:
        if self._endpoints is None:
            rows = await self._s.scalars(
                select(NotificationEndpointRecord).where(NotificationEndpointRecord.enabled)
            )
            self._endpoints = [endpoint_of(r) for r in rows]
        return [e.endpoint_id for e in self._endpoints if e.hears(kind)]

    async def _emails(self, notice: Notice) -> tuple[list[str], list[str]]:
        """The addresses of a notice: its approvers' (enabled ones, except to tell one that it
        was disabled) and, for alerts, the admins' (not already among the approvers')."""
        if not self._routing.email:
            return [], []
        approver_ids = set(notice.approver_ids)
        if notice.voters_of:
            approver_ids.update(
                await self._s.scalars(
                    select(SessionApproverRecord.approver_id).where(
                        SessionApproverRecord.session_id == notice.voters_of
                    )
                )
            )
        approvers: list[str] = []
        if approver_ids:
            query = select(ApproverRecord.email).where(
                ApproverRecord.approver_id.in_(sorted(approver_ids)),
                ApproverRecord.email != "",
            )
            if notice.kind != APPROVER_DISABLED:
                query = query.where(ApproverRecord.enabled)
            approvers = list(dict.fromkeys(sorted(await self._s.scalars(query))))
        admins = [a for a in self._routing.admin_emails if notice.admins and a not in approvers]
        return approvers, list(dict.fromkeys(admins))

    async def _comment(self, session_id: str) -> str:
        found = await self._s.scalar(
            select(SessionRecord.comment).where(SessionRecord.session_id == session_id)
        )
        return found or ""

    async def _requester(self, session_id: str) -> str:
        row = (
            await self._s.execute(
                select(SessionRecord.requester_kind, SessionRecord.requester_subject).where(
                    SessionRecord.session_id == session_id
                )
            )
        ).first()
        return f"{row[0]}:{row[1]}" if row else ""

    async def plan(self, notice: Notice) -> list[tuple[Channel, str, dict[str, Any]]]:
        """(channel, target, data) of each recipient of a notice: read before the log's lock."""
        webhooks = await self._webhooks(notice.kind)
        if not webhooks and not self._routing.email:
            return []  # nobody to tell: no lookups
        if notice.burst_of:
            if not await self._bursts_now(notice.burst_of):
                return []
            data = {
                **notice.data,
                "refused_calls": self._routing.burst_threshold,
                "window_seconds": int(self._routing.burst_window.total_seconds()),
            }
        else:
            data = dict(notice.data)
        if notice.voters_of and "requester" not in data:
            data["requester"] = await self._requester(notice.voters_of)
        link = portal_link(self._routing.portal_url, notice.kind, data)
        if link:
            data["link"] = link
        targets = [(Channel.WEBHOOK, e, data) for e in webhooks]
        approvers, admins = await self._emails(notice)
        comment = await self._comment(notice.comment_of) if notice.comment_of and approvers else ""
        # Only approvers of the session get its comment: they can read it through the API.
        to_approvers = {**data, "comment": comment} if comment else data
        if approvers and notice.kind == INVITATION_SENT and self._routing.portal_url:
            # Only the invited approver's email gets the one-time link (never a webhook).
            to_approvers = {**to_approvers, **await self._invitation_link(data)}
        targets += [(Channel.EMAIL, a, to_approvers) for a in approvers]
        targets += [(Channel.EMAIL, a, data) for a in admins]
        return targets

    async def _invitation_link(self, data: dict[str, Any]) -> dict[str, Any]:
        invitation_id = str(data.get("invitation_id") or "")
        if not invitation_id:
            return {}
        nonce, token = await new_email_link(self._s, self._sealer, invitation_id, self._now)
        if token is not None:  # a keyless server, which trusts its database
            return {"link": invite_url(self._routing.portal_url, token)}
        return {INVITATION_LINK_NONCE: nonce}

    async def write(
        self,
        planned: Sequence[tuple[Channel, str, dict[str, Any]]],
        kind: str,
        cause: str,
        event_seq: int | None,
        now: datetime,
    ) -> int:
        """Insert one notification per target; `cause` makes the dedupe key (an event's seq, a
        reminder's session and step), so a second writer of the same cause adds nothing."""
        rows = notification_rows(planned, kind, cause, event_seq, now)
        if rows:
            await self._s.execute(_insert_ignoring_duplicates(self._s, NotificationRecord), rows)
        return len(rows)


def notification_rows(
    planned: Sequence[tuple[Channel, str, dict[str, Any]]],
    kind: str,
    cause: str,
    event_seq: int | None,
    now: datetime,
) -> list[dict[str, Any]]:
    """The notifications table's rows of one cause (Outbox.write; the sequencer's, with the
    seq it gave the event)."""
    return [
        {
            "notification_id": new_notification_id(),
            "dedupe_key": f"{cause}:{channel.value}:{target}",
            "kind": kind,
            "channel": channel.value,
            "target": target,
            "event_seq": event_seq,
            "data": {**data, **({"event_seq": event_seq} if event_seq else {})},
            "state": DeliveryState.PENDING.value,
            "attempts": 0,
            "next_attempt_time": now,
            "lease": None,
            "create_time": now,
            "deliver_time": None,
        }
        for channel, target, data in planned
    ]


async def plan_events(
    outbox: Outbox, notices: Sequence[Notice | None]
) -> list[list[tuple[Channel, str, dict[str, Any]]]]:
    return [await outbox.plan(n) if n is not None else [] for n in notices]


async def write_events(
    outbox: Outbox,
    notices: Sequence[Notice | None],
    planned: Sequence[Sequence[tuple[Channel, str, dict[str, Any]]]],
    events: Sequence[Event],
    now: datetime,
) -> None:
    for notice, targets, event in zip(notices, planned, events, strict=True):
        if notice is not None and targets:
            await outbox.write(targets, notice.kind, f"e{event.seq}", event.seq, now)


def endpoint_of(r: NotificationEndpointRecord) -> Endpoint:
    return Endpoint(
        r.endpoint_id,
        r.url,
        r.description,
        BodyFormat(r.body_format),
        tuple(r.kinds),
        r.enabled,
        r.revision,
        r.create_time,
        r.update_time,
    )


def _delivery_of(r: NotificationRecord, attempts: Sequence[Attempt]) -> Delivery:
    return Delivery(
        r.notification_id,
        r.kind,
        Channel(r.channel),
        r.target,
        DeliveryState(r.state),
        r.event_seq or 0,
        r.create_time,
        r.next_attempt_time if r.state == DeliveryState.PENDING.value else None,
        r.deliver_time,
        tuple(attempts),
    )


class SqlNotificationRepository:
    def __init__(
        self, session: AsyncSession, routing: Routing, sealer: Sealer | None = None
    ) -> None:
        self._s = session
        self._routing = routing
        self._sealer = sealer or Sealer()

    # --- endpoints ---

    async def add_endpoint(self, endpoint: Endpoint, secret: str) -> None:
        self._s.add(
            NotificationEndpointRecord(
                endpoint_id=endpoint.endpoint_id,
                url=endpoint.url,
                description=endpoint.description,
                body_format=endpoint.body_format.value,
                kinds=list(endpoint.kinds),
                secret=secret,
                enabled=endpoint.enabled,
                revision=endpoint.revision,
                create_time=endpoint.create_time,
                update_time=endpoint.update_time,
            )
        )
        await self._s.flush()

    async def get_endpoint(self, endpoint_id: str, *, for_update: bool = False) -> Endpoint | None:
        stmt = select(NotificationEndpointRecord).where(
            NotificationEndpointRecord.endpoint_id == endpoint_id
        )
        if for_update:
            stmt = stmt.with_for_update()
        r = await self._s.scalar(stmt)
        return endpoint_of(r) if r is not None else None

    async def list_endpoints(self, after: str | None, limit: int) -> list[Endpoint]:
        stmt = select(NotificationEndpointRecord).order_by(NotificationEndpointRecord.endpoint_id)
        if after is not None:
            stmt = stmt.where(NotificationEndpointRecord.endpoint_id > after)
        return [endpoint_of(r) for r in await self._s.scalars(stmt.limit(limit))]

    async def save_endpoint(self, endpoint: Endpoint) -> None:
        await self._s.execute(
            update(NotificationEndpointRecord)
            .where(NotificationEndpointRecord.endpoint_id == endpoint.endpoint_id)
            .values(
                url=endpoint.url,
                description=endpoint.description,
                body_format=endpoint.body_format.value,
                kinds=list(endpoint.kinds),
                enabled=endpoint.enabled,
                revision=endpoint.revision,
                update_time=endpoint.update_time,
            )
        )

    async def delete_endpoint(self, endpoint_id: str) -> None:
        """Its pending notifications are dropped; delivered ones stay, as history."""
        await self._s.execute(
            update(NotificationRecord)
            .where(
                NotificationRecord.channel == Channel.WEBHOOK.value,
                NotificationRecord.target == endpoint_id,
                NotificationRecord.state == DeliveryState.PENDING.value,
            )
            .values(state=DeliveryState.DROPPED.value, lease=None)
        )
        await self._s.execute(
            delete(NotificationEndpointRecord).where(
                NotificationEndpointRecord.endpoint_id == endpoint_id
            )
        )

    # --- the outbox ---

    async def add_notice(self, notice: Notice, cause: str, now: datetime) -> int:
        """Write a notice that no event carries (a reminder): one row per recipient."""
        outbox = Outbox(self._s, self._routing, now, self._sealer)
        return await outbox.write(await outbox.plan(notice), notice.kind, cause, None, now)

    async def add_test(
        self, endpoint_id: str, data: dict[str, Any], cause: str, now: datetime
    ) -> str:
        notification_id = new_notification_id()
        stmt = _insert_ignoring_duplicates(self._s, NotificationRecord).values(
            notification_id=notification_id,
            dedupe_key=f"{cause}:webhook:{endpoint_id}",
            kind=NOTIFICATION_TEST,
            channel=Channel.WEBHOOK.value,
            target=endpoint_id,
            event_seq=None,
            data=data,
            state=DeliveryState.PENDING.value,
            attempts=0,
            next_attempt_time=now,
            lease=None,
            create_time=now,
            deliver_time=None,
        )
        await self._s.execute(stmt)
        return notification_id

    async def any_due(self, now: datetime) -> bool:
        found = await self._s.scalar(
            select(NotificationRecord.notification_id)
            .where(
                NotificationRecord.state == DeliveryState.PENDING.value,
                NotificationRecord.next_attempt_time <= now,
            )
            .limit(1)
        )
        return found is not None

    async def claim_due(self, now: datetime, lease_until: datetime, limit: int) -> list[Outgoing]:
        """Claim up to `limit` due notifications until `lease_until`, each with a new lease
        token; rows another dispatcher holds are skipped, not waited for."""
        stmt = (
            select(NotificationRecord)
            .where(
                NotificationRecord.state == DeliveryState.PENDING.value,
                NotificationRecord.next_attempt_time <= now,
            )
            .order_by(NotificationRecord.next_attempt_time)
            .limit(limit)
        )
        if self._s.get_bind().dialect.name == "postgresql":
            stmt = stmt.with_for_update(skip_locked=True)
        rows = list(await self._s.scalars(stmt))
        if not rows:
            return []
        endpoint_ids = {r.target for r in rows if r.channel == Channel.WEBHOOK.value}
        endpoints = {
            e.endpoint_id: e
            for e in await self._s.scalars(
                select(NotificationEndpointRecord).where(
                    NotificationEndpointRecord.endpoint_id.in_(sorted(endpoint_ids))
                )
            )
        }
        out: list[Outgoing] = []
        for r in rows:
            lease = secrets.token_hex(8)
            await self._s.execute(
                update(NotificationRecord)
                .where(NotificationRecord.notification_id == r.notification_id)
                .values(lease=lease, next_attempt_time=lease_until)
            )
            endpoint = endpoints.get(r.target) if r.channel == Channel.WEBHOOK.value else None
            out.append(
                Outgoing(
                    r.notification_id,
                    r.kind,
                    Channel(r.channel),
                    r.target,
                    self._with_link(dict(r.data)),
                    r.create_time,
                    r.attempts,
                    lease,
                    url=endpoint.url if endpoint else "",
                    secret=endpoint.secret if endpoint else "",
                    body_format=BodyFormat(endpoint.body_format)
                    if endpoint
                    else BodyFormat.STANDARD,
                )
            )
        return out

    def _with_link(self, data: dict[str, Any]) -> dict[str, Any]:
        """An invitation email's one-time link, derived again from its nonce as it is sent."""
        nonce = data.pop(INVITATION_LINK_NONCE, None)
        if isinstance(nonce, str) and self._routing.portal_url:
            token = link_token(self._sealer, str(data.get("invitation_id", "")), nonce)
            if token is not None:
                data["link"] = invite_url(self._routing.portal_url, token)
        return data

    async def finish_attempt(
        self,
        notification_id: str,
        lease: str,
        attempt: Attempt,
        state: DeliveryState,
        next_attempt_time: datetime | None,
    ) -> bool:
        """Record an attempt of the lease holder; False (nothing written) when the lease was
        lost (it ran out and another dispatcher claimed the notification)."""
        values: dict[str, Any] = {"attempts": attempt.number, "lease": None, "state": state.value}
        if next_attempt_time is not None:
            values["next_attempt_time"] = next_attempt_time
        if state is DeliveryState.DELIVERED:
            values["deliver_time"] = attempt.time
        moved = await self._s.execute(
            update(NotificationRecord)
            .where(
                NotificationRecord.notification_id == notification_id,
                NotificationRecord.lease == lease,
            )
            .values(**values)
        )
        if getattr(moved, "rowcount", 0) != 1:
            return False
        self._s.add(
            NotificationAttemptRecord(
                notification_id=notification_id,
                attempt=attempt.number,
                attempt_time=attempt.time,
                ok=attempt.ok,
                code=attempt.code,
                error=attempt.error[:500],
            )
        )
        await self._s.flush()
        return True

    async def list_deliveries(
        self,
        target: str,
        state: DeliveryState | None,
        after: tuple[datetime, str] | None,
        limit: int,
    ) -> list[Delivery]:
        """Newest first."""
        stmt = select(NotificationRecord)
        if target:
            stmt = stmt.where(NotificationRecord.target == target)
        if state is not None:
            stmt = stmt.where(NotificationRecord.state == state.value)
        if after is not None:
            t, nid = after
            stmt = stmt.where(
                or_(
                    NotificationRecord.create_time < t,
                    and_(
                        NotificationRecord.create_time == t,
                        NotificationRecord.notification_id < nid,
                    ),
                )
            )
        stmt = stmt.order_by(
            NotificationRecord.create_time.desc(), NotificationRecord.notification_id.desc()
        ).limit(limit)
        rows = list(await self._s.scalars(stmt))
        attempts: dict[str, list[Attempt]] = {}
        if rows:
            found = await self._s.scalars(
                select(NotificationAttemptRecord)
                .where(
                    NotificationAttemptRecord.notification_id.in_([r.notification_id for r in rows])
                )
                .order_by(NotificationAttemptRecord.attempt)
            )
            for a in found:
                attempts.setdefault(a.notification_id, []).append(
                    Attempt(a.attempt, a.attempt_time, a.ok, a.code, a.error)
                )
        return [_delivery_of(r, attempts.get(r.notification_id, ())) for r in rows]

    async def get_delivery(self, notification_id: str) -> Delivery | None:
        r = await self._s.get(NotificationRecord, notification_id)
        if r is None:
            return None
        found = await self._s.scalars(
            select(NotificationAttemptRecord)
            .where(NotificationAttemptRecord.notification_id == notification_id)
            .order_by(NotificationAttemptRecord.attempt)
        )
        return _delivery_of(
            r, [Attempt(a.attempt, a.attempt_time, a.ok, a.code, a.error) for a in found]
        )

    # --- reminders ---

    async def pending_sessions(self, now: datetime, after: str, limit: int) -> list[str]:
        """Pending, unexpired sessions with an id after `after`, by id."""
        return list(
            await self._s.scalars(
                select(SessionRecord.session_id)
                .where(
                    SessionRecord.state == "PENDING",
                    SessionRecord.expire_time > now,
                    SessionRecord.session_id > after,
                )
                .order_by(SessionRecord.session_id)
                .limit(limit)
            )
        )

    async def reminded_steps(self, session_ids: Sequence[str]) -> set[tuple[str, int]]:
        if not session_ids:
            return set()
        rows = await self._s.execute(
            select(ReminderRecord.session_id, ReminderRecord.step).where(
                ReminderRecord.session_id.in_(list(session_ids))
            )
        )
        return {(r[0], r[1]) for r in rows}

    async def mark_reminded(self, session_id: str, step: int, now: datetime) -> bool:
        """Claim a reminder point once across replicas; False when another did it."""
        result = await self._s.execute(
            _insert_ignoring_duplicates(self._s, ReminderRecord).values(
                session_id=session_id, step=step, create_time=now
            )
        )
        return getattr(result, "rowcount", 0) == 1
