"""The invitation email carries the approver's one-time portal link; the outbox does not.

On a server with a log key the notification row holds only a nonce: the link's token is a MAC
by the log key, derived again when the email is sent, so a database reader finds no usable
link. The link opens the invitation in the portal's use cases, once; webhooks never get it.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from datetime import timedelta

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from integration.harness import Harness, HarnessFactory
from integration.passkey_device import Authenticator
from integration.receivers import SmtpServer, WebhookReceiver, smtp_server, webhook_receiver
from sqlalchemy import text

from airlock_server.app.audit import LogKey
from airlock_server.app.notifications import Dispatcher, DispatchSettings
from airlock_server.app.passkeys import PortalService
from airlock_server.channels.email import EmailSender, SmtpSettings
from airlock_server.channels.webhook import WebhookSender
from airlock_server.domain.errors import NotFound
from airlock_server.domain.notifications import BodyFormat, Channel, Routing
from airlock_server.domain.principals import Principal
from airlock_server.domain.teams import InvitationState, TeamSpec
from airlock_server.domain.webauthn import RelyingParty

pytestmark = pytest.mark.asyncio

PORTAL = "http://localhost:8080"
LINK = re.compile(r"Portal: (http://localhost:8080/invite/([A-Za-z0-9_-]+))")


@pytest.fixture
def smtp() -> Iterator[SmtpServer]:
    with smtp_server() as s:
        yield s


@pytest.fixture
def receiver() -> Iterator[WebhookReceiver]:
    with webhook_receiver() as r:
        yield r


async def _admin(app: Harness) -> Principal:
    issued = await app.identities.bootstrap_admin()
    return (await app.identities.authenticate(issued.token)).principal


async def _invite(app: Harness, admin: Principal) -> str:
    await app.identities.create_approver(admin, "alice", "Alice", "alice@example.test", "")
    team = await app.teams.create_team(
        admin,
        TeamSpec("guards", "", ("alice",), 1, timedelta(hours=24), timedelta(hours=24)),
        "",
    )
    return team.team_id


async def _send(app: Harness, smtp: SmtpServer) -> None:
    d = Dispatcher(
        app.deps,
        {
            Channel.EMAIL: EmailSender(
                SmtpSettings(host=smtp.host, port=smtp.port, security="none", sender="a@l.test")
            ),
            Channel.WEBHOOK: WebhookSender(timeout=5),
        },
        DispatchSettings(),
        rand=lambda: 0.5,
    )
    for _ in range(20):
        if not await d.run_once():
            return


def _mailed_link(smtp: SmtpServer) -> tuple[str, str]:
    (mail,) = smtp.to("alice@example.test")
    plain = mail.get_body(("plain",))
    assert plain is not None
    found = LINK.search(plain.get_content())
    assert found, plain.get_content()
    return found.group(1), found.group(2)


@pytest.mark.parametrize("keyed", [True, False], ids=["log-key", "keyless"])
async def test_the_invitation_email_carries_a_one_time_link(
    harnesses: HarnessFactory, smtp: SmtpServer, receiver: WebhookReceiver, keyed: bool
) -> None:
    log_key = LogKey(Ed25519PrivateKey.generate()) if keyed else None
    app = harnesses(log_key, routing=Routing(email=True, portal_url=PORTAL))
    admin = await _admin(app)
    endpoint, _ = await app.notifications.create_endpoint(
        admin,
        receiver.url,
        "ops",
        BodyFormat.STANDARD,
        ("invitation.sent",),
        True,
        "",
    )
    assert endpoint.endpoint_id
    team_id = await _invite(app, admin)
    async with app.engine.connect() as conn:
        stored = [
            json.loads(d) if isinstance(d, str) else d
            for d in await conn.scalars(
                text("SELECT data FROM notifications WHERE kind = 'invitation.sent'")
            )
        ]
    await _send(app, smtp)
    url, token = _mailed_link(smtp)
    # The webhook got the plain portal page of the invitation, never the one-time link.
    (hook,) = receiver.received
    assert token not in hook.body.decode()
    # With a log key the outbox holds no token, only the nonce it is derived from.
    dumped = json.dumps(stored)
    if keyed:
        assert token not in dumped
        assert "invitation_link_nonce" in dumped
    assert url == f"{PORTAL}/invite/{token}"

    portal = PortalService(
        app.deps, app.teams, app.sessions, RelyingParty.from_origin("http://localhost:8080")
    )
    details = await portal.invitation_by_link(token, None)
    assert (details.approver_id, details.team_id) == ("alice", team_id)
    device = Authenticator(PORTAL)
    view = await portal.finish_registration(
        token, device.create(await portal.begin_registration(token, None)), None, ""
    )
    assert view.member.invitation_state is InvitationState.ACCEPTED
    with pytest.raises(NotFound):
        await portal.invitation_by_link(token, None)
