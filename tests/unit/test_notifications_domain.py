"""The notification rules (who hears about which event), the retry schedule and what a
recipient reads: pure functions of domain/notifications.py."""

from __future__ import annotations

import json
import random
from datetime import UTC, datetime, timedelta

import pytest

from airlock_server.config import ConfigError, Settings
from airlock_server.domain.errors import InvalidArgument
from airlock_server.domain.events import EVENT_TYPES, NewEvent
from airlock_server.domain.notifications import (
    ENDPOINT_DISABLED,
    ENDPOINT_NOT_FOUND,
    KINDS,
    RULES,
    BodyFormat,
    Channel,
    Outgoing,
    RetryPolicy,
    body_bytes,
    endpoint_disabled,
    endpoint_not_found,
    notice_for,
    parse_fractions,
    render_email,
    validate_url,
)
from airlock_server.domain.principals import SYSTEM, Principal, PrincipalKind

ADMIN = Principal(PrincipalKind.ADMIN, "root")
ALICE = Principal(PrincipalKind.APPROVER, "alice")
T0 = datetime(2026, 12, 7, tzinfo=UTC)
SECRETS = ("deadbeef" * 8, "c0ffee" * 10, "a comment body")


def test_every_rule_is_an_event_type_and_names_a_kind() -> None:
    assert set(RULES) <= set(EVENT_TYPES)
    assert {r.kind for r in RULES.values()} <= set(KINDS)


@pytest.mark.parametrize(
    ("event", "kind", "approvers", "voters_of", "admins"),
    [
        (
            NewEvent("invitation.sent", ADMIN, ("team:t1", "approver:bob"), {"approver_id": "bob"}),
            "invitation.sent",
            ("bob",),
            "",
            False,
        ),
        (
            NewEvent(
                "session.created",
                Principal(PrincipalKind.ACCOUNT, "111122223333"),
                ("session:s1",),
                {"session_id": "s1", "approver_ids": ["a", "b", "c"], "min_approvals": 2},
            ),
            "session.opened",
            ("a", "b", "c"),
            "",
            False,
        ),
        (
            NewEvent("session.rejected", ALICE, ("session:s1",), {"session_id": "s1"}),
            "session.rejected",
            (),
            "s1",
            False,
        ),
        (
            NewEvent("session.expired", SYSTEM, ("session:s1",), {"session_id": "s1"}),
            "session.expired",
            (),
            "s1",
            False,
        ),
        (
            NewEvent(
                "credential.issued",
                ADMIN,
                ("credential:c1", "approver:dave"),
                {"credential_id": "c1", "principal": "approver:dave"},
            ),
            "security.credential_issued",
            ("dave",),
            "",
            True,
        ),
        (
            NewEvent(
                "invitation.accepted",
                ALICE,
                ("team:t1", "approver:alice"),
                {"invitation_id": "i1", "version": 2, "public_key": SECRETS[0]},
            ),
            "security.key_enrolled",
            ("alice",),
            "",
            True,
        ),
        (
            NewEvent("approver.disabled", ADMIN, ("approver:erin",), {"approver_id": "erin"}),
            "security.approver_disabled",
            ("erin",),
            "",
            True,
        ),
        (
            NewEvent("team.deletion_requested", ADMIN, ("team:t1",), {"team_id": "t1"}),
            "security.team_change_requested",
            (),
            "",
            True,
        ),
    ],
    ids=lambda v: v.type if isinstance(v, NewEvent) else None,
)
def test_who_hears_about_which_event(
    event: NewEvent, kind: str, approvers: tuple[str, ...], voters_of: str, admins: bool
) -> None:
    notice = notice_for(event)
    assert notice is not None
    assert (notice.kind, notice.approver_ids, notice.voters_of, notice.admins) == (
        kind,
        approvers,
        voters_of,
        admins,
    )
    assert notice.data["event_type"] == event.type
    assert SECRETS[0] not in json.dumps(notice.data)


def test_events_without_a_rule_and_credentials_of_others_notify_nobody() -> None:
    assert notice_for(NewEvent("vote.cast", ALICE, (), {"signature": "ab"})) is None
    account = "account:111122223333"
    issued = NewEvent("credential.issued", ADMIN, (), {"principal": account})
    assert notice_for(issued) is None


def test_no_key_signature_or_comment_digest_leaves() -> None:
    event = NewEvent(
        "session.created",
        ALICE,
        ("session:s1",),
        {
            "session_id": "s1",
            "approver_ids": ["a"],
            "comment_sha256": SECRETS[1],
            "signature": SECRETS[0],
            "public_key": SECRETS[0],
            "comment": SECRETS[2],
        },
    )
    notice = notice_for(event)
    assert notice is not None
    out = Outgoing("ntf-1", notice.kind, Channel.WEBHOOK, "ep", notice.data, T0, 0, "l")
    rendered = [
        body_bytes(out, T0).decode(),
        body_bytes(
            Outgoing(
                "ntf-1",
                notice.kind,
                Channel.WEBHOOK,
                "ep",
                notice.data,
                T0,
                0,
                "l",
                body_format=BodyFormat.SLACK,
            ),
            T0,
        ).decode(),
        *render_email(notice.kind, notice.data),
    ]
    for text in rendered:
        for secret in SECRETS:
            assert secret not in text


def test_the_retry_schedule_backs_off_with_jitter_up_to_the_cap_then_gives_up() -> None:
    policy = RetryPolicy(
        base=timedelta(seconds=4), cap=timedelta(seconds=30), max_age=timedelta(minutes=2)
    )
    # The bounds of the jitter, attempt by attempt: [base/2, min(cap, base * 2^(n-1))].
    for attempt, ceiling in ((1, 4), (2, 8), (3, 16), (4, 30), (9, 30)):
        low = policy.next_attempt(attempt, T0, T0, 0.0)
        high = policy.next_attempt(attempt, T0, T0, 0.999999)
        assert low == T0 + timedelta(seconds=2)
        assert high is not None
        assert T0 + timedelta(seconds=ceiling - 0.001) < high <= T0 + timedelta(seconds=ceiling)
    rng = random.Random(7)
    spread = {policy.next_attempt(5, T0, T0, rng.random()) for _ in range(50)}
    assert len(spread) > 40, "jitter spreads the retries"
    # Past the bounded age: give up.
    assert policy.next_attempt(3, T0, T0 + timedelta(seconds=110), 0.9) is None
    assert policy.next_attempt(3, T0, T0 + timedelta(seconds=110), 0.0) is not None


def test_the_email_has_text_and_html_with_the_answer_and_escapes() -> None:
    subject, text, html = render_email(
        "session.opened",
        {"session_id": "s1", "action": "<script>", "link": "https://portal/sessions/s1"},
    )
    assert subject == "[Airlock] Your approval is requested"
    assert "airlock approver vote s1 --approve|--reject --key KEY_FILE" in text
    assert "Portal: https://portal/sessions/s1" in text
    assert "<script>" not in html
    assert "&lt;script&gt;" in html


def test_the_error_reasons_are_the_named_constants() -> None:
    assert endpoint_not_found("ep-1").reason == ENDPOINT_NOT_FOUND
    assert endpoint_disabled("ep-1").reason == ENDPOINT_DISABLED


def test_urls_and_settings() -> None:
    for bad in ("ftp://x", "https://user:pw@x.test/", "not a url", "https://"):
        with pytest.raises(InvalidArgument):
            validate_url(bad)
    validate_url("http://127.0.0.1:8080/hook")
    assert parse_fractions("0.9, 0.5,0.5") == (0.5, 0.9)
    assert parse_fractions("") == ()
    with pytest.raises(ValueError, match="between 0 and 1"):
        parse_fractions("1.5")
    s = Settings.from_env(
        {
            "AIRLOCK_SMTP_HOST": "smtp.example.test",
            "AIRLOCK_SMTP_PORT": "465",
            "AIRLOCK_SMTP_SECURITY": "TLS",
            "AIRLOCK_ADMIN_EMAILS": "a@x.test, b@x.test,",
            "AIRLOCK_REMINDERS": "0.25,0.75",
        }
    )
    assert (s.smtp_host, s.smtp_port, s.smtp_security) == ("smtp.example.test", 465, "tls")
    assert s.admin_emails == ("a@x.test", "b@x.test")
    assert s.reminders == (0.25, 0.75)
    for name, value in (
        ("AIRLOCK_SMTP_SECURITY", "ssl"),
        ("AIRLOCK_SMTP_PORT", "70000"),
        ("AIRLOCK_REMINDERS", "0.5,2"),
        ("AIRLOCK_NOTIFY_MAX_AGE", "0"),
    ):
        with pytest.raises(ConfigError, match=f"^{name}: "):
            Settings.from_env({name: value})
