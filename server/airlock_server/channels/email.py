"""Email over SMTP (aiosmtplib): STARTTLS or implicit TLS, optional authentication, a plain
text part and an HTML alternative."""

from __future__ import annotations

import ssl
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from email.message import EmailMessage
from email.utils import format_datetime, make_msgid

import aiosmtplib

from airlock_server.domain.notifications import Attempt, Outgoing, render_email


@dataclass(frozen=True)
class SmtpSettings:
    host: str
    port: int = 587
    # "starttls" (upgrade a plain connection), "tls" (implicit TLS, port 465) or "none".
    security: str = "starttls"
    username: str = ""
    password: str = ""
    sender: str = "airlock@localhost"
    timeout: float = 30.0
    # PEM of a CA to trust instead of the system's (a private relay).
    ca_file: str = ""


def message_of(out: Outgoing, sender: str, now: datetime) -> EmailMessage:
    subject, text, html = render_email(out.kind, out.data)
    msg = EmailMessage()
    msg["From"] = sender
    msg["To"] = out.target
    msg["Subject"] = subject
    msg["Date"] = format_datetime(now)
    domain = sender.rpartition("@")[2] or "airlock"
    # Stable across retries: a mail system can drop a second copy of the same notification.
    msg["Message-ID"] = make_msgid(idstring=out.notification_id, domain=domain)
    msg["X-Airlock-Notification-Id"] = out.notification_id
    msg["X-Airlock-Notification-Kind"] = out.kind
    msg.set_content(text)
    msg.add_alternative(html, subtype="html")
    return msg


class EmailSender:
    def __init__(
        self, settings: SmtpSettings, clock: Callable[[], datetime] = lambda: datetime.now(UTC)
    ) -> None:
        self._settings = settings
        self._clock = clock

    async def send(self, out: Outgoing) -> Attempt:
        s = self._settings
        now = self._clock()
        context = ssl.create_default_context(cafile=s.ca_file or None)
        try:
            await aiosmtplib.send(
                message_of(out, s.sender, now),
                hostname=s.host,
                port=s.port,
                use_tls=s.security == "tls",
                start_tls=s.security == "starttls",
                username=s.username or None,
                password=s.password or None,
                timeout=s.timeout,
                tls_context=context if s.security != "none" else None,
            )
        except aiosmtplib.SMTPResponseException as exc:
            return Attempt(0, now, False, exc.code, f"SMTP {exc.code}: {exc.message}"[:500])
        except (aiosmtplib.SMTPException, OSError) as exc:
            return Attempt(0, now, False, 0, f"{type(exc).__name__}: {exc}"[:500])
        return Attempt(0, now, True, 250)
