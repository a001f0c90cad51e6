"""The events of notification endpoints and deliveries, one constructor per type
(docs/event-log.md): the one place each type's shape is written."""

from __future__ import annotations

from urllib.parse import urlsplit

from airlock_server.domain.events import NewEvent, format_time
from airlock_server.domain.notifications import Attempt, Channel, Endpoint, Outgoing
from airlock_server.domain.principals import SYSTEM, Principal


def endpoint_changed(kind: str, admin: Principal, e: Endpoint) -> NewEvent:
    """notification.endpoint_created, _updated or _deleted. Endpoint changes are
    security-relevant (where notifications go): logged with the URL's host only (an
    incoming-webhook URL's path is often a credential) and never the secret."""
    return NewEvent(
        kind,
        admin,
        (f"endpoint:{e.endpoint_id}",),
        {
            "endpoint_id": e.endpoint_id,
            "host": urlsplit(e.url).hostname or "",
            "body_format": e.body_format.value,
            "kinds": list(e.kinds),
            "enabled": e.enabled,
        },
    )


def notification_dead(out: Outgoing, attempt: Attempt) -> NewEvent:
    """A notification given up after its last attempt: an alert of its own, to the admins."""
    return NewEvent(
        "notification.dead",
        SYSTEM,
        (f"notification:{out.notification_id}",),
        {
            "notification_id": out.notification_id,
            "kind": out.kind,
            "channel": out.channel.value,
            "endpoint_id": out.target if out.channel is Channel.WEBHOOK else "",
            "attempts": attempt.number,
            "first_time": format_time(out.create_time),
            "error": attempt.error,
        },
    )
