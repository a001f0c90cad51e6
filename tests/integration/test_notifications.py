"""Notifications on SQLite and PostgreSQL: the outbox written with its events, dispatchers
delivering to a real HTTP receiver and a real SMTP server on loopback, retries, death, the
endpoint API, and who hears about what (docs/notifications.md).

Webhook signatures are checked with the `standardwebhooks` package's own verifier.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

import pytest
import pytest_asyncio
from integration.harness import Harness, HarnessFactory
from integration.receivers import SmtpServer, WebhookReceiver, smtp_server, webhook_receiver
from integration.test_event_types import (
    ADMIN,
    COMMENT,
    OWNER,
    RECOVERY,
    TRIO,
    World,
    approver,
)
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import InMemoryMetricReader, NumberDataPoint
from sqlalchemy import select, text
from sqlalchemy.ext.asyncio import AsyncSession
from standardwebhooks import Webhook
from standardwebhooks.webhooks import WebhookVerificationError

from airlock_server.app.notifications import (
    Dispatcher,
    DispatchSettings,
    EndpointChange,
    NotificationService,
)
from airlock_server.channels.email import EmailSender, SmtpSettings
from airlock_server.channels.webhook import WebhookSender
from airlock_server.domain.errors import Conflict, EtagMismatch, InvalidArgument, PermissionDenied
from airlock_server.domain.events import NewEvent
from airlock_server.domain.notifications import (
    BodyFormat,
    Channel,
    DeliveryState,
    RetryPolicy,
    Routing,
)
from airlock_server.domain.principals import Principal, PrincipalKind
from airlock_server.persistence.db import session_factory
from airlock_server.persistence.models import (
    ApproverRecord,
    EventRecord,
    NotificationRecord,
)
from airlock_server.persistence.uow import SqlUnitOfWork
from airlock_server.transport.metrics import Telemetry

ADMINS = ("secops@example.test", "ciso@example.test")
PORTAL = "https://airlock.example.test"


def email_of(name: str) -> str:
    return f"{name}@example.test"


@pytest.fixture
def receiver() -> Iterator[WebhookReceiver]:
    with webhook_receiver() as r:
        yield r


@pytest.fixture
def smtp() -> Iterator[SmtpServer]:
    with smtp_server() as s:
        yield s


@pytest_asyncio.fixture
async def mailed(harnesses: HarnessFactory) -> Harness:
    """The use cases with email on: approvers' addresses and the admins', portal links."""
    return harnesses(routing=Routing(email=True, admin_emails=ADMINS, portal_url=PORTAL))


def dispatcher(
    app: Harness, smtp: SmtpServer | None = None, retry: RetryPolicy | None = None
) -> Dispatcher:
    senders: dict[Channel, Any] = {Channel.WEBHOOK: WebhookSender(timeout=5)}
    if smtp is not None:
        senders[Channel.EMAIL] = EmailSender(
            SmtpSettings(host=smtp.host, port=smtp.port, security="none", sender="a@l.test")
        )
    return Dispatcher(
        app.deps,
        senders,
        DispatchSettings(retry=retry or RetryPolicy()),
        rand=lambda: 0.5,
    )


async def drain(d: Dispatcher) -> int:
    """Run the dispatcher until nothing is due; how many it claimed."""
    total = 0
    for _ in range(50):
        claimed = await d.run_once()
        if not claimed:
            return total
        total += claimed
    raise AssertionError("the dispatcher never ran out of due notifications")


async def rows(app: Harness) -> list[NotificationRecord]:
    async with AsyncSession(app.engine) as s:
        found = await s.scalars(select(NotificationRecord).order_by(NotificationRecord.create_time))
        return list(found)


def verified(received: Any, secret: str) -> dict[str, Any]:
    """The body, after the package's own verifier accepted the signature."""
    payload = Webhook(secret).verify(received.body, received.headers)
    assert isinstance(payload, dict)
    return payload


@dataclass
class Setup:
    w: World
    endpoint_id: str
    secret: str


async def people(app: Harness) -> World:
    w = World(app)
    await w.boot()
    for name in ("alice", "bob", "carol", "dave", "erin"):
        await app.identities.create_approver(ADMIN, name, name.title(), email_of(name), "")
    for account in (OWNER, RECOVERY):
        await app.identities.register_account(ADMIN, account.subject, "acct", "")
    return w


async def with_endpoint(
    app: Harness, url: str, kinds: tuple[str, ...] = (), fmt: BodyFormat = BodyFormat.STANDARD
) -> tuple[str, str]:
    endpoint, secret = await app.notifications.create_endpoint(
        ADMIN, url, "ops", fmt, kinds, True, ""
    )
    return endpoint.endpoint_id, secret


# --- the outbox -----------------------------------------------------------------------------


@pytest.mark.asyncio
async def test_a_committed_event_yields_its_notifications_and_a_rolled_back_one_none(
    mailed: Harness,
) -> None:
    app = mailed
    await people(app)
    endpoint_id, _ = await with_endpoint(app, "https://hooks.example.test/a")

    async def disable(name: str, fail: bool) -> None:
        async with SqlUnitOfWork(
            session_factory(app.engine), app.clock, routing=Routing(True, ADMINS)
        ) as uow:
            uow.record(
                NewEvent("approver.disabled", ADMIN, (f"approver:{name}",), {"approver_id": name})
            )
            if fail:
                # A row that breaks a constraint at the final flush: the commit fails after the
                # events and their notifications were written in the transaction.
                uow.session.add(
                    ApproverRecord(
                        approver_id="alice",
                        display_name="x",
                        email="",
                        enabled=True,
                        create_time=app.clock(),
                    )
                )
            await uow.commit()

    before_events = await app.count("events")
    with pytest.raises(Conflict):
        await disable("bob", fail=True)
    assert await app.count("events") == before_events
    assert [r for r in await rows(app) if r.data.get("approver_id") == "bob"] == []

    await disable("carol", fail=False)
    written = [r for r in await rows(app) if r.data.get("approver_id") == "carol"]
    async with AsyncSession(app.engine) as s:
        seq = await s.scalar(select(EventRecord.seq).where(EventRecord.type == "approver.disabled"))
    assert sorted((r.channel, r.target) for r in written) == sorted(
        [("webhook", endpoint_id), ("email", email_of("carol"))] + [("email", a) for a in ADMINS]
    )
    assert {r.event_seq for r in written} == {seq}
    assert {r.kind for r in written} == {"security.approver_disabled"}
    assert len({r.notification_id for r in written}) == len(written)


# --- webhooks -------------------------------------------------------------------------------


@pytest.mark.asyncio
async def test_a_webhook_is_signed_per_standard_webhooks_and_carries_the_documented_body(
    app: Harness, receiver: WebhookReceiver
) -> None:
    w = await people(app)
    endpoint_id, secret = await with_endpoint(app, receiver.url, ("invitation.sent",))
    assert secret.startswith("whsec_")
    team = await w.new_team("guards")

    d = dispatcher(app)
    assert await drain(d) == 3
    assert len(receiver.received) == 3
    bodies = [verified(r, secret) for r in receiver.received]
    assert sorted(b["data"]["approver_id"] for b in bodies) == list(TRIO)
    for r, body in zip(receiver.received, bodies, strict=True):
        assert body["schema"] == "airlock.notification.v1"
        assert body["type"] == "invitation.sent"
        assert body["id"] == r.headers["webhook-id"]
        assert body["data"]["team_id"] == team.team_id
        assert body["data"]["invitation_id"]
        assert r.headers["content-type"] == "application/json"
    # A forged body does not verify with the package's verifier.
    forged = receiver.received[0]
    with pytest.raises(WebhookVerificationError):
        Webhook(secret).verify(
            forged.body.replace(b"invitation.sent", b"invitation.SENT"), forged.headers
        )

    page = await app.notifications.list_deliveries(ADMIN, endpoint_id, None, 0, "")
    assert {d.state for d in page.items} == {DeliveryState.DELIVERED}
    assert {d.notification_id for d in page.items} == set(receiver.ids())
    assert all(len(d.attempts) == 1 and d.attempts[0].ok for d in page.items)
    assert all(d.attempts[0].code == 200 for d in page.items)


@pytest.mark.asyncio
async def test_a_slack_endpoint_gets_a_text_body(app: Harness, receiver: WebhookReceiver) -> None:
    w = await people(app)
    _, secret = await with_endpoint(app, receiver.url, ("invitation.sent",), BodyFormat.SLACK)
    await w.new_team("guards")
    await drain(dispatcher(app))
    body = verified(receiver.received[0], secret)
    assert set(body) == {"text"}
    assert "invited" in body["text"]
    assert "airlock approver accept" in body["text"]


@pytest.mark.asyncio
async def test_a_receiver_down_for_a_while_gets_it_later_under_the_same_id(
    app: Harness, receiver: WebhookReceiver
) -> None:
    await people(app)
    endpoint_id, secret = await with_endpoint(app, receiver.url, ("security.approver_disabled",))
    receiver.stop()  # down: connection refused
    await app.identities.disable_approver(ADMIN, "erin", "")
    d = dispatcher(app)
    assert await drain(d) == 1
    assert await drain(d) == 0, "retried before its backoff"
    for _ in range(3):
        app.clock.advance(timedelta(minutes=5))
        assert await drain(d) == 1
    (row,) = await rows(app)
    assert row.state == "PENDING"
    assert row.attempts == 4
    receiver.start()  # back, on the same port
    app.clock.advance(timedelta(minutes=10))
    assert await drain(d) == 1
    assert receiver.ids() == [row.notification_id]
    assert verified(receiver.received[0], secret)["data"]["approver_id"] == "erin"
    (delivery,) = (await app.notifications.list_deliveries(ADMIN, endpoint_id, None, 0, "")).items
    assert delivery.state is DeliveryState.DELIVERED
    assert [a.ok for a in delivery.attempts] == [False, False, False, False, True]
    assert [a.number for a in delivery.attempts] == [1, 2, 3, 4, 5]
    assert all("Connect" in a.error for a in delivery.attempts[:4])


@pytest.mark.asyncio
async def test_retries_back_off_exponentially_then_the_notification_dies_and_alerts(
    mailed: Harness, receiver: WebhookReceiver, smtp: SmtpServer
) -> None:
    app = mailed
    await people(app)
    receiver.status = 503
    endpoint_id, _ = await with_endpoint(app, receiver.url, ("security.approver_disabled",))
    await app.identities.disable_approver(ADMIN, "erin", "")
    retry = RetryPolicy(
        base=timedelta(seconds=10), cap=timedelta(seconds=80), max_age=timedelta(minutes=5)
    )
    d = dispatcher(app, smtp, retry)
    reader = InMemoryMetricReader()
    d.observe(Telemetry(MeterProvider(metric_readers=[reader])).notification_attempt)
    await drain(d)  # the emails go out; the webhook fails once
    delays = []
    for _ in range(20):
        (webhook,) = [r for r in await rows(app) if r.channel == "webhook"]
        if webhook.state != "PENDING":
            break
        delays.append((webhook.next_attempt_time - app.clock()).total_seconds())
        app.clock.advance(webhook.next_attempt_time - app.clock())
        await drain(d)
    # Full jitter at 0.5: half-way between base/2 and min(cap, base * 2^(n-1)).
    assert delays[:4] == [7.5, 12.5, 22.5, 42.5]
    assert max(delays) <= 80
    assert webhook.state == "DEAD"
    assert len(receiver.received) == webhook.attempts
    assert len(set(receiver.ids())) == 1
    events = [e async for e in _events(app, "notification.dead")]
    assert len(events) == 1
    assert events[0]["notification_id"] == webhook.notification_id
    assert events[0]["endpoint_id"] == endpoint_id
    # The alert goes to the admins by email, and is itself not re-alerted if it dies.
    await drain(d)
    for admin in ADMINS:
        subjects = [m["Subject"] for m in smtp.to(admin)]
        assert "[Airlock] Airlock could not deliver a notification" in subjects
    # The metric counts every attempt by channel and outcome.
    emails = len(smtp.messages())
    assert attempts_counted(reader) == {
        ("webhook", "retry"): webhook.attempts - 1,
        ("webhook", "dead"): 1,
        ("email", "delivered"): emails,
    }


def attempts_counted(reader: InMemoryMetricReader) -> dict[tuple[str, str], int]:
    data = reader.get_metrics_data()
    assert data is not None
    return {
        (str(p.attributes["channel"]), str(p.attributes["outcome"])): int(p.value)
        for rm in data.resource_metrics
        for sm in rm.scope_metrics
        for m in sm.metrics
        if m.name == "airlock.notifications.attempts"
        for p in m.data.data_points
        if isinstance(p, NumberDataPoint) and p.attributes is not None
    }


async def _events(app: Harness, type_: str) -> AsyncIterator[dict[str, Any]]:
    async with AsyncSession(app.engine) as s:
        for e in await s.scalars(select(EventRecord).where(EventRecord.type == type_)):
            yield dict(e.details)


# --- who hears about what, by email ---------------------------------------------------------


@pytest.mark.asyncio
async def test_each_trigger_reaches_exactly_its_recipients(
    mailed: Harness, smtp: SmtpServer, receiver: WebhookReceiver
) -> None:
    app = mailed
    w = await people(app)
    _, secret = await with_endpoint(app, receiver.url, ("session.opened",))
    d = dispatcher(app, smtp)

    async def sent() -> dict[str, list[str]]:
        """Per address, the subjects of the mails that arrived since the last call."""
        await drain(d)
        out: dict[str, list[str]] = {}
        for _, rcpt, m in smtp.messages():
            for a in rcpt:
                out.setdefault(a, []).append(str(m["Subject"]))
        smtp.inbox.messages.clear()
        return out

    await sent()
    # Invitation sent -> each invitee, with the command and the portal link.
    team = await w.new_team("guards")
    got = await sent()
    assert got == {
        email_of(n): ["[Airlock] You are invited to an Airlock approval team"] for n in TRIO
    }
    # Key enrolled (accepting) -> the approver concerned and the admins.
    for name in TRIO:
        await w.answer(name, team.team_id)
    got = await sent()
    key = "[Airlock] Security: an approver enrolled a signing key"
    assert got == {**{email_of(n): [key] for n in TRIO}, **{a: [key] * 3 for a in ADMINS}}
    await w.share(team.team_id, RECOVERY)
    await w.share(team.team_id, OWNER)
    await sent()

    # Session opened -> every approver who can vote, with what and how to answer.
    vault = await w.vault(team.team_id)
    await sent()
    _, session_id = await w.request_restore(RECOVERY, vault, "restore-1")
    opened = "[Airlock] Your approval is requested"
    inbox = smtp
    await drain(d)
    mails = {a: m for _, rcpt, m in inbox.messages() for a in rcpt}
    assert sorted(mails) == sorted(email_of(n) for n in TRIO)
    body = mails[email_of("alice")]
    assert body["Subject"] == opened
    plain = body.get_body(("plain",))
    html = body.get_body(("html",))
    assert plain is not None
    assert html is not None
    text_part = plain.get_content()
    for needle in (
        session_id,
        vault,
        str(RECOVERY),
        "Approvals needed: 2",
        f"airlock approver vote {session_id}",
        f"{PORTAL}/sessions/{session_id}",
    ):
        assert needle in text_part, needle
    # The approvers may read the comment through the API: their email carries it; a webhook
    # (a channel others may read) never does.
    assert f"Comment: {COMMENT}" in text_part
    (hook,) = receiver.received
    assert verified(hook, secret)["data"]["session_id"] == session_id
    assert COMMENT.encode() not in hook.body
    assert session_id in html.get_content()
    await sent()

    # Outcome -> the session's approvers (the requester hears through webhooks and --wait).
    await w.approve(session_id)
    got = await sent()
    assert got == {email_of(n): ["[Airlock] Approval session approved"] for n in TRIO}

    # Credential issued for an approver -> that approver and the admins; not for an account.
    await app.identities.issue_credential(ADMIN, PrincipalKind.APPROVER, "dave", "", None, "")
    await app.identities.issue_credential(
        ADMIN, PrincipalKind.ACCOUNT, RECOVERY.subject, "", None, ""
    )
    got = await sent()
    cred = "[Airlock] Security: a credential was issued for an approver"
    assert got == {email_of("dave"): [cred], **{a: [cred] for a in ADMINS}}

    # A vault's guard change requested -> the admins (and the team votes on it: opened).
    other = await w.team("other-guards", ("dave", "erin", "carol"), shared=(OWNER,))
    second = await app.vaults.create_vault(OWNER, "", "second", 7, 35, {}, "")
    await app.vaults.associate(OWNER, second.vault_arn, team.team_id, "", "")
    await sent()
    await app.vaults.associate(OWNER, second.vault_arn, other.team_id, "switch", "")
    got = await sent()
    guard = "[Airlock] Security: a change of a vault's approval team was requested"
    assert {a: got[a] for a in ADMINS} == {a: [guard] for a in ADMINS}
    assert got[email_of("alice")] == [opened]

    # A disabled approver hears that it was disabled, and nothing after.
    third = await app.vaults.create_vault(OWNER, "", "third", 7, 35, {}, "")
    await app.vaults.associate(OWNER, third.vault_arn, team.team_id, "", "")
    _, pending = await w.request_restore(RECOVERY, third.vault_arn, "restore-3")
    await sent()
    await app.identities.disable_approver(ADMIN, "carol", "")
    disabled = "[Airlock] Security: an approver was disabled"
    assert await sent() == {email_of("carol"): [disabled], **{a: [disabled] for a in ADMINS}}
    await app.sessions.cancel_session(ADMIN, pending, "")
    cancelled = "[Airlock] Approval session cancelled"
    assert await sent() == {email_of(n): [cancelled] for n in ("alice", "bob")}


@pytest.mark.asyncio
async def test_reminders_reach_only_who_has_not_voted_once_per_point(
    mailed: Harness, smtp: SmtpServer
) -> None:
    app = mailed
    w = await people(app)
    team = await w.team("guards", TRIO, shared=(RECOVERY, OWNER))
    vault = await w.vault(team.team_id)
    _, session_id = await w.request_restore(RECOVERY, vault, "restore-1")
    other = await app.vaults.create_vault(OWNER, "", "other", 7, 35, {}, "")
    await app.vaults.associate(OWNER, other.vault_arn, team.team_id, "", "")
    _, other_id = await w.request_restore(RECOVERY, other.vault_arn, "restore-2")
    await w.vote("alice", session_id)
    d = dispatcher(app, smtp)
    await drain(d)
    smtp.inbox.messages.clear()
    # Pages of one session: the sweep still looks at every pending session.
    reminders = NotificationService(app.deps, reminder_fractions=(0.5, 0.9), reminder_page=1)

    session = (await app.sessions.get_session(ADMIN, session_id)).session
    ttl = session.expire_time - session.create_time
    assert await reminders.remind() == 0, "no point of the TTL passed yet"
    app.clock.advance(ttl * 0.5)
    # Two replicas' sweepers, one after the other: each point is reminded once.
    assert (await reminders.remind(), await app.notifications.remind()) == (5, 0)
    await drain(d)
    reminded = sorted(a for _, rcpt, _m in smtp.messages() for a in rcpt)
    # bob and carol for the first session (alice voted), all three for the second.
    assert reminded == sorted([email_of("bob"), email_of("carol"), *map(email_of, TRIO)])
    assert all(
        m["Subject"] == "[Airlock] Reminder: your vote is still awaited"
        for _, _r, m in smtp.messages()
    )
    await w.vote("bob", session_id, approve=False)
    await app.sessions.cancel_session(ADMIN, other_id, "")
    app.clock.advance(ttl * 0.41)
    assert await reminders.remind() == 1  # carol only: alice and bob voted, the other ended
    assert await reminders.remind() == 0


@pytest.mark.asyncio
async def test_a_burst_of_refused_calls_alerts_once_per_burst(
    harnesses: HarnessFactory, smtp: SmtpServer
) -> None:
    routing = Routing(
        email=True, admin_emails=ADMINS, burst_threshold=3, burst_window=timedelta(minutes=5)
    )
    app = harnesses(routing=routing)
    await people(app)
    d = dispatcher(app, smtp)
    erin = approver("erin")
    method = "/airlock.v1.SessionService/GetSession"

    async def refuse(times: int) -> dict[str, list[str]]:
        for _ in range(times):
            await app.audit.record_denial(erin, method, "PERMISSION_DENIED", "DENIED", [])
            app.clock.advance(timedelta(seconds=10))
        await drain(d)
        got: dict[str, list[str]] = {}
        for _, rcpt, m in smtp.messages():
            for a in rcpt:
                got.setdefault(a, []).append(str(m["Subject"]))
        smtp.inbox.messages.clear()
        return got

    burst = "[Airlock] Security: a burst of refused calls by one principal"
    assert await refuse(2) == {}
    assert await refuse(1) == {email_of("erin"): [burst], **{a: [burst] for a in ADMINS}}
    assert await refuse(5) == {}, "one alert per burst, not one per refusal"
    # Another principal's refusals are counted apart.
    await app.audit.record_denial(approver("dave"), method, "PERMISSION_DENIED", "DENIED", [])
    app.clock.advance(timedelta(minutes=10))
    assert await refuse(2) == {}
    assert await refuse(1) == {email_of("erin"): [burst], **{a: [burst] for a in ADMINS}}
    (mail,) = [r for r in await rows(app) if r.target == ADMINS[0]][-1:]
    assert mail.data["refused_calls"] == 3
    assert mail.data["method"] == method


# --- dispatchers on several replicas --------------------------------------------------------


@pytest.mark.asyncio
async def test_three_dispatchers_deliver_each_notification_once(
    harnesses: HarnessFactory, receiver: WebhookReceiver
) -> None:
    app = harnesses()
    w = await people(app)
    await with_endpoint(app, receiver.url)
    for i in range(4):
        await w.new_team(f"team-{i}")
    expected = {r.notification_id for r in await rows(app)}
    assert len(expected) >= 12
    replicas = [harnesses(), harnesses(), harnesses()]
    ds = [
        Dispatcher(r.deps, {Channel.WEBHOOK: WebhookSender(timeout=5)}, DispatchSettings(batch=3))
        for r in replicas
    ]
    claimed = await asyncio.gather(*(drain(d) for d in ds))
    assert sum(claimed) == len(expected)
    assert sorted(receiver.ids()) == sorted(expected)
    assert {r.state for r in await rows(app)} == {"DELIVERED"}


@pytest.mark.asyncio
async def test_a_lost_lease_is_claimed_again_and_delivered_under_the_same_id(
    app: Harness, receiver: WebhookReceiver
) -> None:
    """A dispatcher that claimed and then died (its lease runs out) loses nothing."""
    await people(app)
    await with_endpoint(app, receiver.url, ("security.approver_disabled",))
    await app.identities.disable_approver(ADMIN, "erin", "")

    async def claim_and_die() -> None:
        async with app.deps.uow() as uow:
            now = app.clock()
            assert len(await uow.notifications.claim_due(now, now + timedelta(seconds=60), 5))
            await uow.commit()

    await claim_and_die()
    d = dispatcher(app)
    assert await drain(d) == 0, "claimed by the dead dispatcher until its lease runs out"
    app.clock.advance(timedelta(seconds=61))
    assert await drain(d) == 1
    (row,) = await rows(app)
    assert receiver.ids() == [row.notification_id]
    assert row.state == "DELIVERED"


# --- the endpoint API -----------------------------------------------------------------------


@pytest.mark.asyncio
async def test_the_endpoint_api_is_the_admins_and_shows_the_secret_once(app: Harness) -> None:
    await people(app)
    # An incoming-webhook URL: its path is a credential of the receiving service.
    url = "https://hooks.example.test/services/T0/B0/tok3n"
    endpoint, secret = await app.notifications.create_endpoint(
        ADMIN, url, "ops", BodyFormat.STANDARD, (), True, "req-1"
    )
    again, replayed_secret = await app.notifications.create_endpoint(
        ADMIN, url, "ops", BodyFormat.STANDARD, (), True, "req-1"
    )
    assert again.endpoint_id == endpoint.endpoint_id
    assert replayed_secret == ""
    assert secret.startswith("whsec_")
    assert len(secret) > 40
    listed = (await app.notifications.list_endpoints(ADMIN, 0, "")).items
    assert [e.endpoint_id for e in listed] == [endpoint.endpoint_id]
    assert secret not in repr(listed)

    for who in (
        Principal(PrincipalKind.AUDITOR, "a"),
        approver("alice"),
        RECOVERY,
    ):
        with pytest.raises(PermissionDenied):
            await app.notifications.list_endpoints(who, 0, "")
    with pytest.raises(InvalidArgument) as bad:
        await app.notifications.create_endpoint(
            ADMIN, "ftp://x", "", BodyFormat.STANDARD, (), True, ""
        )
    assert bad.value.violations[0].field == "endpoint.url"
    with pytest.raises(InvalidArgument) as bad:
        await app.notifications.create_endpoint(
            ADMIN, "https://x.test", "", BodyFormat.STANDARD, ("session.nope",), True, ""
        )
    assert bad.value.violations[0].field == "endpoint.event_kinds"

    changed = await app.notifications.update_endpoint(
        ADMIN, endpoint.endpoint_id, EndpointChange(enabled=False), endpoint.etag
    )
    assert not changed.enabled
    assert changed.etag != endpoint.etag
    with pytest.raises(EtagMismatch):
        await app.notifications.update_endpoint(
            ADMIN, endpoint.endpoint_id, EndpointChange(enabled=True), endpoint.etag
        )
    with pytest.raises(Exception, match="disabled") as refused:
        await app.notifications.send_test(ADMIN, endpoint.endpoint_id, "")
    assert getattr(refused.value, "reason", "") == "NOTIFICATION_ENDPOINT_DISABLED"
    await app.notifications.update_endpoint(
        ADMIN, endpoint.endpoint_id, EndpointChange(enabled=True), ""
    )
    test_id = await app.notifications.send_test(ADMIN, endpoint.endpoint_id, "")
    await app.notifications.delete_endpoint(ADMIN, endpoint.endpoint_id, "")
    (dropped,) = (await app.notifications.list_deliveries(ADMIN, "", None, 0, "")).items
    assert dropped.notification_id == test_id
    assert dropped.state is DeliveryState.DROPPED
    with pytest.raises(Exception, match="not found") as missing:
        await app.notifications.get_endpoint(ADMIN, endpoint.endpoint_id)
    assert getattr(missing.value, "reason", "") == "NOTIFICATION_ENDPOINT_NOT_FOUND"
    logged = [
        t
        for (t,) in (
            await _raw(app, "SELECT type FROM events WHERE type LIKE 'notification.%' ORDER BY seq")
        )
    ]
    assert logged == [
        "notification.endpoint_created",
        "notification.endpoint_updated",
        "notification.endpoint_updated",
        "notification.endpoint_deleted",
    ]
    logged_details = json.dumps(
        [r for r in await _raw(app, "SELECT details FROM events")], default=str
    )
    assert secret not in logged_details
    assert "tok3n" not in logged_details
    assert "hooks.example.test" in logged_details


async def _raw(app: Harness, sql: str) -> list[Any]:
    async with app.engine.connect() as conn:
        return list((await conn.execute(text(sql))).all())
