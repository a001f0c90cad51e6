"""Notifications: the admin's webhook endpoints, the dispatchers, the session reminders.

The outbox is written at commit by the unit of work (domain/notifications.py decides who hears
about which event). Here:
- NotificationService: the admin-only API (endpoints, a test send, deliveries with attempts);
- Dispatcher: on every replica, claims due notifications (row locks, SKIP LOCKED), delivers
  each at least once under its stable id, retries with exponential backoff and jitter up to a
  bounded age, then marks it DEAD and appends `notification.dead` (itself an alert to admins);
- remind(): the sweeper's reminders to approvers who have not voted yet.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import functools
import random
import secrets
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta

import structlog

from airlock_server.app.common import Deps, Done, check_request_id, run_once, transact
from airlock_server.app.ports import NotificationSender, UnitOfWork
from airlock_server.domain.errors import InvalidArgument
from airlock_server.domain.notification_events import endpoint_changed, notification_dead
from airlock_server.domain.notifications import (
    SECRET_PREFIX,
    Attempt,
    BodyFormat,
    Channel,
    Delivery,
    DeliveryState,
    Endpoint,
    Outgoing,
    RetryPolicy,
    check_etag,
    endpoint_disabled,
    endpoint_not_found,
    reminder_due,
    reminder_notice,
    validate_description,
    validate_kinds,
    validate_url,
)
from airlock_server.domain.paging import Page, decode_token, page_of, page_size
from airlock_server.domain.principals import Principal, require_admin

log = structlog.get_logger("airlock.notifications")

REMINDER_PAGE = 100


def new_secret() -> str:
    """A Standard Webhooks secret: `whsec_` and 32 random bytes in base64."""
    return SECRET_PREFIX + base64.b64encode(secrets.token_bytes(32)).decode()


@dataclass(frozen=True)
class EndpointChange:
    """UpdateEndpoint's fields; None leaves a field as it is."""

    url: str | None = None
    description: str | None = None
    body_format: BodyFormat | None = None
    kinds: tuple[str, ...] | None = None
    enabled: bool | None = None


class NotificationService:
    def __init__(
        self,
        deps: Deps,
        *,
        reminder_fractions: tuple[float, ...] = (0.5, 0.9),
        reminder_page: int = REMINDER_PAGE,
    ) -> None:
        self._deps = deps
        self._fractions = reminder_fractions
        self._page = reminder_page

    # --- endpoints (admin) ----------------------------------------------------------------

    async def create_endpoint(
        self,
        caller: Principal,
        url: str,
        description: str,
        body_format: BodyFormat,
        kinds: tuple[str, ...],
        enabled: bool,
        request_id: str,
    ) -> tuple[Endpoint, str]:
        """The endpoint and its secret, which is never shown again ("" on a replayed retry)."""
        require_admin(caller)
        validate_url(url)
        validate_description(description)
        validate_kinds(kinds)
        check_request_id(request_id)

        async def act(uow: UnitOfWork) -> Done[tuple[Endpoint, str]]:
            now = self._deps.clock()
            endpoint = Endpoint(
                self._deps.new_id("ep"),
                url,
                description,
                body_format,
                tuple(dict.fromkeys(kinds)),
                enabled,
                1,
                now,
                now,
            )
            secret = new_secret()
            await uow.notifications.add_endpoint(endpoint, secret)
            uow.record(endpoint_changed("notification.endpoint_created", caller, endpoint))
            return Done(
                endpoint.endpoint_id, (await self._endpoint(uow, endpoint.endpoint_id), secret)
            )

        async def read(uow: UnitOfWork, endpoint_id: str) -> tuple[Endpoint, str]:
            # A retry gets the endpoint, never its secret again.
            return await self._endpoint(uow, endpoint_id), ""

        return await run_once(self._deps, caller, "CreateEndpoint", request_id, act, read)

    @staticmethod
    async def _endpoint(uow: UnitOfWork, endpoint_id: str) -> Endpoint:
        endpoint = await uow.notifications.get_endpoint(endpoint_id)
        if endpoint is None:
            raise endpoint_not_found(endpoint_id)
        return endpoint

    async def get_endpoint(self, caller: Principal, endpoint_id: str) -> Endpoint:
        require_admin(caller)

        async def work(uow: UnitOfWork) -> Endpoint:
            found = await uow.notifications.get_endpoint(endpoint_id)
            if found is None:
                raise endpoint_not_found(endpoint_id)
            return found

        return await transact(self._deps, work, read_only=True)

    async def list_endpoints(self, caller: Principal, size: int, token: str) -> Page[Endpoint]:
        require_admin(caller)
        limit = page_size(size)
        query = {"m": "ListEndpoints"}
        after = decode_token(token, query)

        async def work(uow: UnitOfWork) -> Page[Endpoint]:
            rows = await uow.notifications.list_endpoints(after, limit + 1)
            return page_of(rows, limit, lambda e: e.endpoint_id, query)

        return await transact(self._deps, work, read_only=True)

    async def update_endpoint(
        self, caller: Principal, endpoint_id: str, change: EndpointChange, etag: str
    ) -> Endpoint:
        require_admin(caller)
        if change.url is not None:
            validate_url(change.url)
        if change.description is not None:
            validate_description(change.description)
        if change.kinds is not None:
            validate_kinds(change.kinds)

        async def work(uow: UnitOfWork) -> Endpoint:
            before = await uow.notifications.get_endpoint(endpoint_id, for_update=True)
            if before is None:
                raise endpoint_not_found(endpoint_id)
            check_etag(before, etag)
            after = replace(
                before,
                url=before.url if change.url is None else change.url,
                description=(
                    before.description if change.description is None else change.description
                ),
                body_format=before.body_format
                if change.body_format is None
                else change.body_format,
                kinds=before.kinds if change.kinds is None else tuple(dict.fromkeys(change.kinds)),
                enabled=before.enabled if change.enabled is None else change.enabled,
                revision=before.revision + 1,
                update_time=self._deps.clock(),
            )
            await uow.notifications.save_endpoint(after)
            uow.record(endpoint_changed("notification.endpoint_updated", caller, after))
            await uow.commit()
            return after

        return await transact(self._deps, work)

    async def delete_endpoint(self, caller: Principal, endpoint_id: str, etag: str) -> None:
        require_admin(caller)

        async def work(uow: UnitOfWork) -> None:
            before = await uow.notifications.get_endpoint(endpoint_id, for_update=True)
            if before is None:
                raise endpoint_not_found(endpoint_id)
            check_etag(before, etag)
            await uow.notifications.delete_endpoint(endpoint_id)
            uow.record(endpoint_changed("notification.endpoint_deleted", caller, before))
            await uow.commit()

        await transact(self._deps, work)

    async def send_test(self, caller: Principal, endpoint_id: str, request_id: str) -> str:
        """Queue a `notification.test` for one endpoint; the notification id."""
        require_admin(caller)
        check_request_id(request_id)

        async def act(uow: UnitOfWork) -> Done[str]:
            endpoint = await uow.notifications.get_endpoint(endpoint_id)
            if endpoint is None:
                raise endpoint_not_found(endpoint_id)
            if not endpoint.enabled:
                raise endpoint_disabled(endpoint_id)
            now = self._deps.clock()
            notification_id = await uow.notifications.add_test(
                endpoint_id,
                {"endpoint_id": endpoint_id, "actor": str(caller)},
                f"test:{self._deps.new_id('t')}",
                now,
            )
            return Done(notification_id)

        async def read(uow: UnitOfWork, notification_id: str) -> str:
            return notification_id

        return await run_once(self._deps, caller, "SendTestNotification", request_id, act, read)

    async def list_deliveries(
        self,
        caller: Principal,
        target: str,
        state: DeliveryState | None,
        size: int,
        token: str,
    ) -> Page[Delivery]:
        """Newest first, each with its attempts; `target` an endpoint id or an address."""
        require_admin(caller)
        limit = page_size(size)
        query = {"m": "ListDeliveries", "t": target, "s": state.value if state else ""}
        cursor = decode_token(token, query)
        after: tuple[datetime, str] | None = None
        if cursor is not None:
            time_text, _, nid = cursor.partition("|")
            try:
                after = (datetime.fromisoformat(time_text), nid)
            except ValueError as exc:
                raise InvalidArgument.field("page_token", "not a page token of this list") from exc

        async def work(uow: UnitOfWork) -> Page[Delivery]:
            rows = await uow.notifications.list_deliveries(target, state, after, limit + 1)
            return page_of(
                rows, limit, lambda d: f"{d.create_time.isoformat()}|{d.notification_id}", query
            )

        return await transact(self._deps, work, read_only=True)

    # --- reminders (the sweeper) ----------------------------------------------------------

    async def remind(self) -> int:
        """Notify the approvers who have not voted on a pending session, once per reminder
        point of its TTL that has passed (only the latest passed point, when several did).
        Every pending session is looked at, a page per transaction; notifications written."""
        if not self._fractions:
            return 0
        written, after = 0, ""
        while True:
            count, after = await transact(
                self._deps, functools.partial(self._remind_page, after=after)
            )
            written += count
            if not after:
                return written

    async def _remind_page(self, uow: UnitOfWork, *, after: str) -> tuple[int, str]:
        """(notifications written, the last session id of a full page or "")."""
        now = self._deps.clock()
        ids = await uow.notifications.pending_sessions(now, after, self._page)
        done = await uow.notifications.reminded_steps(ids)
        written = 0
        for session_id in ids:
            session = await uow.sessions.get(session_id)
            if session is None:
                continue
            due = [
                step
                for step, f in enumerate(self._fractions, start=1)
                if reminder_due(session.create_time, session.expire_time, f, now)
            ]
            if not due or (session_id, due[-1]) in done:
                continue
            step = due[-1]
            # Every point up to the latest is settled: one reminder, not a burst; a replica
            # that claimed it first wins.
            claimed = [await uow.notifications.mark_reminded(session_id, s, now) for s in due]
            if not claimed[-1]:
                continue
            notice = reminder_notice(session, step, self._fractions[step - 1])
            if notice.approver_ids:
                written += await uow.notifications.add_notice(notice, f"r:{session_id}:{step}", now)
        await uow.commit()
        return written, ids[-1] if len(ids) == self._page else ""


@dataclass(frozen=True)
class DispatchSettings:
    batch: int = 20
    # A claimed notification is another dispatcher's to take after this (the sender's timeout
    # is well inside it).
    lease: timedelta = timedelta(seconds=60)
    retry: RetryPolicy = field(default_factory=RetryPolicy)


class Dispatcher:
    """Delivers due notifications; safe on any number of replicas."""

    def __init__(
        self,
        deps: Deps,
        senders: Mapping[Channel, NotificationSender],
        settings: DispatchSettings | None = None,
        rand: Callable[[], float] = random.random,
    ) -> None:
        self._deps = deps
        self._senders = senders
        self._settings = settings or DispatchSettings()
        self._rand = rand
        self._observers: list[Callable[[str, str], None]] = []

    def observe(self, observer: Callable[[str, str], None]) -> None:
        """Tell `observer(channel, outcome)` each recorded attempt; outcome is "delivered",
        "retry" or "dead" (metrics)."""
        self._observers.append(observer)

    async def run_once(self) -> int:
        """Claim one batch, deliver it concurrently, record each outcome; how many claimed."""

        async def due(uow: UnitOfWork) -> bool:
            return await uow.notifications.any_due(self._deps.clock())

        # A read first: an idle dispatcher (most of the time) takes no write lock, which on
        # SQLite would queue every writer behind it once per interval.
        if not await transact(self._deps, due, one_statement=True):
            return 0

        async def claim(uow: UnitOfWork) -> list[Outgoing]:
            now = self._deps.clock()
            claimed = await uow.notifications.claim_due(
                now, now + self._settings.lease, self._settings.batch
            )
            await uow.commit()
            return claimed

        batch = await transact(self._deps, claim)
        if batch:
            await asyncio.gather(*(self._deliver(out) for out in batch))
        return len(batch)

    async def _deliver(self, out: Outgoing) -> None:
        sender = self._senders.get(out.channel)
        if sender is None:
            result = Attempt(0, self._deps.clock(), False, 0, f"no {out.channel} channel")
        elif out.channel is Channel.WEBHOOK and not out.url:
            result = Attempt(0, self._deps.clock(), False, 0, "the endpoint no longer exists")
        else:
            try:
                result = await sender.send(out)
            except Exception as exc:  # a sender's bug must not stop the dispatcher
                log.exception("dispatcher.sender_failed", notification_id=out.notification_id)
                result = Attempt(0, self._deps.clock(), False, 0, type(exc).__name__)
        attempt = replace(result, number=out.attempts + 1)
        await self._finish(out, attempt)

    async def _finish(self, out: Outgoing, attempt: Attempt) -> None:
        async def work(uow: UnitOfWork) -> DeliveryState | None:
            now = self._deps.clock()
            if attempt.ok:
                state, when = DeliveryState.DELIVERED, None
            else:
                when = self._settings.retry.next_attempt(
                    attempt.number, out.create_time, now, self._rand()
                )
                state = DeliveryState.PENDING if when is not None else DeliveryState.DEAD
            if not await uow.notifications.finish_attempt(
                out.notification_id, out.lease, attempt, state, when
            ):
                return None  # the lease ran out; the dispatcher that holds it now records
            if state is DeliveryState.DEAD and out.kind != "notification.dead":
                # An alert of its own, to the admins; a dead alert raises no further one.
                uow.record(notification_dead(out, attempt))
            await uow.commit()
            return state

        recorded = await transact(self._deps, work)
        if recorded is not None:
            outcome = {
                DeliveryState.DELIVERED: "delivered",
                DeliveryState.PENDING: "retry",
                DeliveryState.DEAD: "dead",
            }[recorded]
            for observer in self._observers:
                observer(out.channel.value, outcome)
        log.info(
            "dispatcher.attempt",
            notification_id=out.notification_id,
            kind=out.kind,
            channel=out.channel.value,
            attempt=attempt.number,
            ok=attempt.ok,
            code=attempt.code,
            error=attempt.error,
        )

    async def run(self, stop: asyncio.Event, interval: float) -> None:
        """Until `stop`: batches back to back while there is work, else wait `interval`."""
        while not stop.is_set():
            try:
                claimed = await self.run_once()
            except Exception:
                log.exception("dispatcher.failed")
                claimed = 0
            if claimed:
                continue
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), interval)
