"""The email channel against a real SMTP server (aiosmtpd) on loopback: STARTTLS and implicit
TLS with a certificate the sender must trust, authentication, and the failures an attempt
records (no database: the channel is the same whichever stores the outbox)."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import pytest
from integration.receivers import self_signed, smtp_server

from airlock_server.channels.email import EmailSender, SmtpSettings
from airlock_server.domain.notifications import Channel, Outgoing

NOW = datetime(2026, 12, 7, tzinfo=UTC)


def outgoing(to: str = "alice@example.test") -> Outgoing:
    return Outgoing(
        "ntf-0123456789abcdef01234567",
        "session.opened",
        Channel.EMAIL,
        to,
        {"session_id": "ses-1", "action": "backup:RestoreAccess", "min_approvals": 2},
        NOW,
        0,
        "lease",
    )


@pytest.mark.asyncio
async def test_starttls_with_authentication_delivers_text_and_html(tmp_path: Path) -> None:
    cert, key = self_signed(tmp_path)
    with smtp_server(starttls=(cert, key), login=("airlock", "s3cret")) as smtp:
        sender = EmailSender(
            SmtpSettings(
                smtp.host,
                smtp.port,
                "starttls",
                "airlock",
                "s3cret",
                "airlock@example.test",
                ca_file=str(cert),
            )
        )
        attempt = await sender.send(outgoing())
        assert attempt.ok, attempt.error
        (message,) = smtp.to("alice@example.test")
        assert smtp.inbox.logins == ["airlock"]
    assert message["From"] == "airlock@example.test"
    assert message["X-Airlock-Notification-Id"] == "ntf-0123456789abcdef01234567"
    assert "ntf-0123456789abcdef01234567" in message["Message-ID"]
    plain, html = message.get_body(("plain",)), message.get_body(("html",))
    assert plain is not None
    assert html is not None
    assert "airlock approver vote ses-1" in plain.get_content()
    assert "<li>Session: ses-1</li>" in html.get_content()


@pytest.mark.asyncio
async def test_implicit_tls_delivers(tmp_path: Path) -> None:
    cert, key = self_signed(tmp_path)
    with smtp_server(implicit_tls=(cert, key)) as smtp:
        sender = EmailSender(SmtpSettings(smtp.host, smtp.port, "tls", ca_file=str(cert)))
        attempt = await sender.send(outgoing())
        assert attempt.ok, attempt.error
        assert len(smtp.to("alice@example.test")) == 1


@pytest.mark.asyncio
async def test_failures_are_attempts_not_exceptions(tmp_path: Path) -> None:
    cert, key = self_signed(tmp_path)
    (tmp_path / "other").mkdir()
    other, _ = self_signed(tmp_path / "other")  # a certificate the relay does not present
    with smtp_server(starttls=(cert, key), login=("airlock", "s3cret")) as smtp:
        wrong_password = EmailSender(
            SmtpSettings(smtp.host, smtp.port, "starttls", "airlock", "guess", ca_file=str(cert))
        )
        refused = await wrong_password.send(outgoing())
        assert not refused.ok
        assert refused.code == 535
        untrusted = EmailSender(
            SmtpSettings(smtp.host, smtp.port, "starttls", "airlock", "s3cret", ca_file=str(other))
        )
        unverified = await untrusted.send(outgoing())
        assert not unverified.ok
        assert "CERTIFICATE_VERIFY_FAILED" in unverified.error
        assert smtp.messages() == []
    down = await EmailSender(SmtpSettings("127.0.0.1", smtp.port, "none")).send(outgoing())
    assert not down.ok
    assert down.code == 0
