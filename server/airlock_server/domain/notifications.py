"""Notifications: who hears about which event, what they are told, and when to try again.

Pure rules. The outbox (persistence) asks `notice_for` about every event appended and writes
one notification per recipient in the same transaction; dispatchers deliver them at least once
(app/notifications.py). The JSON body is the contract of docs/notifications.md.

Nothing here carries a token, a key or a signature: `data` is built from an allow-list of
event fields, and links point at the portal. A session's comment reaches only the emails to its
approvers (`Notice.comment_of`), who can read it through the API.
"""

from __future__ import annotations

import enum
import html
import json
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any
from urllib.parse import urlsplit

from airlock_server.domain.errors import (
    EtagMismatch,
    FailedPrecondition,
    InvalidArgument,
    NotFound,
    Reason,
)
from airlock_server.domain.events import NewEvent, format_time
from airlock_server.domain.sessions import Session

SCHEMA = "airlock.notification.v1"

# --- notification kinds: what an endpoint subscribes to --------------------------------------

INVITATION_SENT = "invitation.sent"
SESSION_OPENED = "session.opened"
SESSION_REMINDER = "session.reminder"
SESSION_APPROVED = "session.approved"
SESSION_REJECTED = "session.rejected"
SESSION_EXPIRED = "session.expired"
SESSION_CANCELLED = "session.cancelled"
CREDENTIAL_ISSUED = "security.credential_issued"
KEY_ENROLLED = "security.key_enrolled"
APPROVER_DISABLED = "security.approver_disabled"
VAULT_GUARD_CHANGE_REQUESTED = "security.vault_guard_change_requested"
TEAM_CHANGE_REQUESTED = "security.team_change_requested"
REFUSED_CALLS_BURST = "security.refused_calls_burst"
NOTIFICATION_DEAD = "notification.dead"
NOTIFICATION_TEST = "notification.test"

KINDS: tuple[str, ...] = (
    INVITATION_SENT,
    SESSION_OPENED,
    SESSION_REMINDER,
    SESSION_APPROVED,
    SESSION_REJECTED,
    SESSION_EXPIRED,
    SESSION_CANCELLED,
    CREDENTIAL_ISSUED,
    KEY_ENROLLED,
    APPROVER_DISABLED,
    VAULT_GUARD_CHANGE_REQUESTED,
    TEAM_CHANGE_REQUESTED,
    REFUSED_CALLS_BURST,
    NOTIFICATION_DEAD,
    NOTIFICATION_TEST,
)

# Error reasons of the notification API.
ENDPOINT_NOT_FOUND = Reason.NOTIFICATION_ENDPOINT_NOT_FOUND
ENDPOINT_DISABLED = Reason.NOTIFICATION_ENDPOINT_DISABLED


class Channel(enum.StrEnum):
    WEBHOOK = "webhook"
    EMAIL = "email"


class BodyFormat(enum.StrEnum):
    """A webhook's body: the documented JSON document, or `{"text": ...}` for Slack and
    Mattermost incoming webhooks."""

    STANDARD = "standard"
    SLACK = "slack"


class DeliveryState(enum.StrEnum):
    PENDING = "PENDING"
    DELIVERED = "DELIVERED"
    DEAD = "DEAD"
    # The endpoint was deleted before delivery.
    DROPPED = "DROPPED"


# --- who hears about which event -------------------------------------------------------------


@dataclass(frozen=True)
class Notice:
    """What one event tells, and to whom (before addresses are known).

    `approver_ids`: approvers to reach by email; `voters_of`: a session whose frozen approvers
    are to be reached too (the outcome's team); `admins`: the configured admin addresses.
    Webhook endpoints hear every notice of a kind they subscribe to.

    `comment_of`: a session whose comment the approvers' emails carry, since they can read it
    through the API anyway; webhooks and admin addresses never get it.
    `burst_of`: an actor whose refused calls are counted; the notice holds only for the refusal
    that reaches the threshold within the window (Routing), once per burst.
    """

    kind: str
    data: Mapping[str, Any]
    approver_ids: tuple[str, ...] = ()
    voters_of: str = ""
    admins: bool = False
    comment_of: str = ""
    burst_of: str = ""


# Event fields a notification may carry; everything else (keys, signatures, digests) stays out.
_SAFE_FIELDS = (
    "session_id",
    "kind",
    "team_id",
    "action",
    "protected_resource",
    "state",
    "status",
    "approvals",
    "rejections",
    "min_approvals",
    "expire_time",
    "message",
    "invitation_id",
    "approver_id",
    "version",
    "credential_id",
    "principal",
    "vault_arn",
    "name",
    "notification_id",
    "endpoint_id",
    "channel",
    "attempts",
    "error",
    "method",
    "code",
    "reason",
)


def _safe(event: NewEvent) -> dict[str, Any]:
    data = {k: event.details[k] for k in _SAFE_FIELDS if k in event.details}
    data["actor"] = str(event.actor)
    for subject in event.subjects:
        # An invitation's event names its team only as a subject.
        if subject.startswith("team:") and "team_id" not in data:
            data["team_id"] = subject.removeprefix("team:")
    return data


def _approver_of_principal(principal: object) -> str:
    text = str(principal)
    return text.split(":", 1)[1] if text.startswith("approver:") else ""


@dataclass(frozen=True)
class _Rule:
    kind: str
    # The approvers concerned, from the event.
    approvers: Callable[[NewEvent], tuple[str, ...]] = lambda e: ()
    voters: bool = False
    admins: bool = False
    applies: Callable[[NewEvent], bool] = lambda e: True
    # The approvers' emails carry the session's comment (they may read it through the API).
    comment: bool = False
    # Only a burst of these events by one actor is worth telling (refused calls).
    burst: bool = False


def _detail_approver(e: NewEvent) -> tuple[str, ...]:
    value = e.details.get("approver_id")
    return (str(value),) if value else ()


def _session_voters(e: NewEvent) -> tuple[str, ...]:
    return tuple(str(a) for a in e.details.get("approver_ids", ()))


def _actor_approver(e: NewEvent) -> tuple[str, ...]:
    found = _approver_of_principal(e.actor)
    return (found,) if found else ()


def _credential_approver(e: NewEvent) -> tuple[str, ...]:
    found = _approver_of_principal(e.details.get("principal", ""))
    return (found,) if found else ()


# Event type -> the notification it causes. The one table of "who hears about what".
RULES: Mapping[str, _Rule] = {
    "invitation.sent": _Rule(INVITATION_SENT, approvers=_detail_approver),
    "session.created": _Rule(SESSION_OPENED, approvers=_session_voters, comment=True),
    "session.approved": _Rule(SESSION_APPROVED, voters=True),
    "session.rejected": _Rule(SESSION_REJECTED, voters=True),
    "session.expired": _Rule(SESSION_EXPIRED, voters=True),
    "session.cancelled": _Rule(SESSION_CANCELLED, voters=True),
    "credential.issued": _Rule(
        CREDENTIAL_ISSUED,
        approvers=_credential_approver,
        admins=True,
        applies=lambda e: bool(_credential_approver(e)),
    ),
    # Accepting an invitation enrolls the approver's signing key (a new or changed key).
    "invitation.accepted": _Rule(KEY_ENROLLED, approvers=_actor_approver, admins=True),
    "approver.disabled": _Rule(APPROVER_DISABLED, approvers=_detail_approver, admins=True),
    "vault.association_change_requested": _Rule(VAULT_GUARD_CHANGE_REQUESTED, admins=True),
    "team.update_requested": _Rule(TEAM_CHANGE_REQUESTED, admins=True),
    "team.deletion_requested": _Rule(TEAM_CHANGE_REQUESTED, admins=True),
    "notification.dead": _Rule(NOTIFICATION_DEAD, admins=True),
    "call.denied": _Rule(REFUSED_CALLS_BURST, approvers=_actor_approver, admins=True, burst=True),
}


def notice_for(event: NewEvent) -> Notice | None:
    """The notice an event causes, or None."""
    rule = RULES.get(event.type)
    if rule is None or not rule.applies(event):
        return None
    data = _safe(event)
    data["event_type"] = event.type
    if event.type == "session.created":
        data["requester"] = str(event.actor)
    session_id = str(event.details.get("session_id", ""))
    return Notice(
        rule.kind,
        data,
        approver_ids=rule.approvers(event),
        voters_of=session_id if rule.voters else "",
        admins=rule.admins,
        comment_of=session_id if rule.comment else "",
        burst_of=str(event.actor) if rule.burst else "",
    )


@dataclass(frozen=True)
class Routing:
    """Where notices go besides webhooks: email (when SMTP is configured) to approvers and to
    the admin addresses; `portal_url` makes the links."""

    email: bool = False
    admin_emails: tuple[str, ...] = ()
    portal_url: str = ""
    # A security alert when one principal is refused this many calls within the window.
    burst_threshold: int = 10
    burst_window: timedelta = timedelta(minutes=5)


# --- reminders ---------------------------------------------------------------------------


def reminder_notice(session: Session, step: int, fraction: float) -> Notice:
    """A reminder to the approvers of a pending session who have not voted yet."""
    voted = {v.approver_id for v in session.votes}
    return Notice(
        SESSION_REMINDER,
        {
            "session_id": session.session_id,
            "kind": session.kind.value,
            "team_id": session.team_id,
            "action": session.action,
            "protected_resource": session.protected_resource,
            "requester": str(session.requester),
            "min_approvals": session.min_approvals,
            "approvals": session.approval_count,
            "expire_time": format_time(session.expire_time),
            "reminder": step,
            "ttl_fraction": fraction,
        },
        approver_ids=tuple(a for a in session.approver_ids if a not in voted),
        comment_of=session.session_id,
    )


def reminder_due(
    create_time: datetime, expire_time: datetime, fraction: float, now: datetime
) -> bool:
    """A reminder at `fraction` of a session's TTL is due once that point has passed."""
    return now >= create_time + (expire_time - create_time) * fraction


def parse_fractions(raw: str) -> tuple[float, ...]:
    """ "0.5,0.9" -> (0.5, 0.9): points of a session's TTL, each strictly between 0 and 1."""
    out: list[float] = []
    for part in (p.strip() for p in raw.split(",")):
        if not part:
            continue
        value = float(part)
        if not 0 < value < 1:
            raise ValueError(f"{part} is not strictly between 0 and 1")
        out.append(value)
    return tuple(sorted(set(out)))


# --- endpoints -------------------------------------------------------------------------------

SECRET_PREFIX = "whsec_"
MAX_URL = 2048
MAX_DESCRIPTION = 256


@dataclass(frozen=True)
class Endpoint:
    """A webhook endpoint. `kinds` empty: every kind. The secret is never shown again."""

    endpoint_id: str
    url: str
    description: str
    body_format: BodyFormat
    kinds: tuple[str, ...]
    enabled: bool
    revision: int
    create_time: datetime
    update_time: datetime

    @property
    def etag(self) -> str:
        return f'W/"{self.revision}"'

    def hears(self, kind: str) -> bool:
        return self.enabled and (not self.kinds or kind in self.kinds)


def validate_url(url: str, field_name: str = "endpoint.url") -> None:
    parts = urlsplit(url)
    if len(url) > MAX_URL or parts.scheme not in ("http", "https") or not parts.hostname:
        raise InvalidArgument.field(
            field_name, f"an http:// or https:// URL of at most {MAX_URL} characters"
        )
    if parts.username or parts.password:
        raise InvalidArgument.field(field_name, "must not carry credentials")


def validate_kinds(kinds: tuple[str, ...], field_name: str = "endpoint.event_kinds") -> None:
    unknown = sorted(set(kinds) - set(KINDS))
    if unknown:
        raise InvalidArgument.field(
            field_name, f"unknown kinds {unknown}; known: {', '.join(KINDS)}"
        )


def validate_description(description: str) -> None:
    if len(description) > MAX_DESCRIPTION:
        raise InvalidArgument.field("description", f"at most {MAX_DESCRIPTION} characters")


def check_etag(endpoint: Endpoint, etag: str) -> None:
    if etag and etag != endpoint.etag:
        raise EtagMismatch(etag, endpoint.etag)


def endpoint_not_found(endpoint_id: str) -> NotFound:
    """NOT_FOUND, reason NOTIFICATION_ENDPOINT_NOT_FOUND (ENDPOINT_NOT_FOUND)."""
    return NotFound("notification endpoint", endpoint_id)


def endpoint_disabled(endpoint_id: str) -> FailedPrecondition:
    return FailedPrecondition(
        f"endpoint {endpoint_id!r} is disabled; enable it to send to it",
        reason=ENDPOINT_DISABLED,
        metadata={"endpointId": endpoint_id},
    )


# --- delivery --------------------------------------------------------------------------------


@dataclass(frozen=True)
class Outgoing:
    """A claimed notification, with what its channel needs to deliver it."""

    notification_id: str
    kind: str
    channel: Channel
    target: str
    data: Mapping[str, Any]
    create_time: datetime
    attempts: int
    lease: str
    # Webhooks only: the endpoint's URL, secret and body format.
    url: str = ""
    secret: str = ""
    body_format: BodyFormat = BodyFormat.STANDARD


@dataclass(frozen=True)
class Attempt:
    number: int
    time: datetime
    ok: bool
    # An HTTP status or an SMTP reply code; 0 when nothing answered.
    code: int = 0
    error: str = ""


@dataclass(frozen=True)
class Delivery:
    """A notification as ListDeliveries shows it."""

    notification_id: str
    kind: str
    channel: Channel
    target: str
    state: DeliveryState
    event_seq: int
    create_time: datetime
    next_attempt_time: datetime | None
    deliver_time: datetime | None
    attempts: tuple[Attempt, ...] = field(default=())


@dataclass(frozen=True)
class RetryPolicy:
    """Exponential backoff with full jitter, up to a bounded age (then the notification dies)."""

    base: timedelta = timedelta(seconds=5)
    cap: timedelta = timedelta(hours=1)
    max_age: timedelta = timedelta(hours=24)

    def next_attempt(
        self, attempt: int, create_time: datetime, now: datetime, rand: float
    ) -> datetime | None:
        """When to try again after failed attempt number `attempt` (1-based); None: give up.

        `rand` in [0, 1): the jitter spreads retries of many notifications (one receiver's
        outage) over the whole window instead of a thundering herd."""
        ceiling = min(self.cap, self.base * (1 << min(attempt - 1, 32)))
        delay = self.base / 2 + (ceiling - self.base / 2) * rand
        when = now + delay
        if when - create_time > self.max_age:
            return None
        return when


# --- what the recipient reads ----------------------------------------------------------------


def document(
    notification_id: str, kind: str, data: Mapping[str, Any], time: datetime
) -> dict[str, Any]:
    """The JSON body of a standard webhook (docs/notifications.md)."""
    return {
        "schema": SCHEMA,
        "id": notification_id,
        "type": kind,
        "timestamp": format_time(time),
        "data": dict(data),
    }


def body_bytes(out: Outgoing, time: datetime) -> bytes:
    if out.body_format is BodyFormat.SLACK:
        subject, lines = describe(out.kind, out.data)
        payload: dict[str, Any] = {"text": "\n".join([f"*{subject}*", *lines])}
    else:
        payload = document(out.notification_id, out.kind, out.data, time)
    return json.dumps(payload, separators=(",", ":"), sort_keys=True).encode("utf-8")


_TITLES = {
    INVITATION_SENT: "You are invited to an Airlock approval team",
    SESSION_OPENED: "Your approval is requested",
    SESSION_REMINDER: "Reminder: your vote is still awaited",
    SESSION_APPROVED: "Approval session approved",
    SESSION_REJECTED: "Approval session rejected (quorum unreachable)",
    SESSION_EXPIRED: "Approval session expired",
    SESSION_CANCELLED: "Approval session cancelled",
    CREDENTIAL_ISSUED: "Security: a credential was issued for an approver",
    KEY_ENROLLED: "Security: an approver enrolled a signing key",
    APPROVER_DISABLED: "Security: an approver was disabled",
    VAULT_GUARD_CHANGE_REQUESTED: "Security: a change of a vault's approval team was requested",
    TEAM_CHANGE_REQUESTED: "Security: a change of an approval team was requested",
    REFUSED_CALLS_BURST: "Security: a burst of refused calls by one principal",
    NOTIFICATION_DEAD: "Airlock could not deliver a notification",
    NOTIFICATION_TEST: "Airlock test notification",
}

_LABELS = (
    ("session_id", "Session"),
    ("action", "Action"),
    ("protected_resource", "Resource"),
    ("requester", "Requester"),
    ("team_id", "Team"),
    ("min_approvals", "Approvals needed"),
    ("approvals", "Approvals"),
    ("rejections", "Rejections"),
    ("expire_time", "Expires"),
    ("status", "Status"),
    ("message", "Outcome"),
    ("comment", "Comment"),
    ("invitation_id", "Invitation"),
    ("approver_id", "Approver"),
    ("principal", "Principal"),
    ("credential_id", "Credential"),
    ("vault_arn", "Vault"),
    ("notification_id", "Notification"),
    ("endpoint_id", "Endpoint"),
    ("actor", "By"),
    ("method", "Last refused call"),
    ("reason", "Reason"),
    ("refused_calls", "Refused calls"),
    ("window_seconds", "Within (seconds)"),
)

_SAFE_TEXT = re.compile(r"[\x00-\x08\x0b-\x1f\x7f]")


def answer_hint(kind: str, data: Mapping[str, Any]) -> str:
    """How to answer, as a CLI command (the portal link is added by the renderer)."""
    if kind == INVITATION_SENT and data.get("invitation_id"):
        invitation = data["invitation_id"]
        return (
            f"airlock approver accept {invitation} --key KEY_FILE   "
            f"(or: airlock approver decline {invitation})"
        )
    if kind in (SESSION_OPENED, SESSION_REMINDER) and data.get("session_id"):
        return f"airlock approver vote {data['session_id']} --approve|--reject --key KEY_FILE"
    return ""


def portal_link(portal_url: str, kind: str, data: Mapping[str, Any]) -> str:
    if not portal_url:
        return ""
    base = portal_url.rstrip("/")
    if data.get("session_id"):
        return f"{base}/sessions/{data['session_id']}"
    if kind == INVITATION_SENT and data.get("invitation_id"):
        return f"{base}/invitations/{data['invitation_id']}"
    return base


def describe(kind: str, data: Mapping[str, Any]) -> tuple[str, list[str]]:
    """A subject line and `Label: value` lines, the same in every channel."""
    lines = [
        f"{label}: {_SAFE_TEXT.sub('', str(data[key]))}"
        for key, label in _LABELS
        if data.get(key) not in (None, "")
    ]
    hint = answer_hint(kind, data)
    if hint:
        lines.append(f"How to answer: {hint}")
    if data.get("link"):
        lines.append(f"Portal: {data['link']}")
    return _TITLES.get(kind, kind), lines


def render_email(kind: str, data: Mapping[str, Any]) -> tuple[str, str, str]:
    """(subject, plain text, HTML) of an email notification."""
    subject, lines = describe(kind, data)
    text = "\n".join([subject, "", *lines, "", "-- Airlock"]) + "\n"
    items = "".join(f"<li>{html.escape(line)}</li>" for line in lines)
    body = (
        f"<html><body><h2>{html.escape(subject)}</h2><ul>{items}</ul>"
        "<p>-- Airlock</p></body></html>"
    )
    return f"[Airlock] {subject}", text, body
