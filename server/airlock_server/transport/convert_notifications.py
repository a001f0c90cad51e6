"""Notification endpoints and deliveries: domain <-> protobuf."""

from __future__ import annotations

from airlock.v1 import notification_pb2 as pb
from airlock_server.app.notifications import EndpointChange
from airlock_server.domain.errors import InvalidArgument
from airlock_server.domain.notifications import BodyFormat, Delivery, DeliveryState, Endpoint
from airlock_server.transport.convert import ts

_FORMATS = {
    BodyFormat.STANDARD: pb.NotificationEndpoint.BODY_FORMAT_STANDARD,
    BodyFormat.SLACK: pb.NotificationEndpoint.BODY_FORMAT_SLACK,
}
_FORMATS_IN: dict[int, BodyFormat] = {int(v): k for k, v in _FORMATS.items()} | {
    int(pb.NotificationEndpoint.BODY_FORMAT_UNSPECIFIED): BodyFormat.STANDARD
}
_STATES = {
    DeliveryState.PENDING: pb.Delivery.STATE_PENDING,
    DeliveryState.DELIVERED: pb.Delivery.STATE_DELIVERED,
    DeliveryState.DEAD: pb.Delivery.STATE_DEAD,
    DeliveryState.DROPPED: pb.Delivery.STATE_DROPPED,
}
_STATES_IN: dict[int, DeliveryState] = {int(v): k for k, v in _STATES.items()}
UPDATABLE = ("url", "description", "body_format", "event_kinds", "enabled")


def body_format(value: int, field: str) -> BodyFormat:
    found = _FORMATS_IN.get(value)
    if found is None:
        raise InvalidArgument.field(field, f"unknown body format {value}")
    return found


def delivery_state(value: int) -> DeliveryState | None:
    if value == pb.Delivery.STATE_UNSPECIFIED:
        return None
    found = _STATES_IN.get(value)
    if found is None:
        raise InvalidArgument.field("state", f"unknown state {value}")
    return found


def endpoint_pb(e: Endpoint) -> pb.NotificationEndpoint:
    return pb.NotificationEndpoint(
        endpoint_id=e.endpoint_id,
        url=e.url,
        description=e.description,
        body_format=_FORMATS[e.body_format],
        event_kinds=list(e.kinds),
        enabled=e.enabled,
        etag=e.etag,
        create_time=ts(e.create_time),
        update_time=ts(e.update_time),
    )


def delivery_pb(d: Delivery) -> pb.Delivery:
    return pb.Delivery(
        notification_id=d.notification_id,
        kind=d.kind,
        channel=d.channel.value,
        target=d.target,
        state=_STATES[d.state],
        event_seq=d.event_seq,
        create_time=ts(d.create_time),
        next_attempt_time=ts(d.next_attempt_time),
        deliver_time=ts(d.deliver_time),
        attempts=[
            pb.DeliveryAttempt(
                attempt=a.number, attempt_time=ts(a.time), ok=a.ok, code=a.code, error=a.error
            )
            for a in d.attempts
        ],
    )


def endpoint_change(e: pb.NotificationEndpoint, paths: list[str]) -> EndpointChange:
    """The fields of `e` that update_mask names (it is required: a PATCH names what changes)."""
    if not paths:
        raise InvalidArgument.field("update_mask", f"name the fields to change: {UPDATABLE}")
    unknown = sorted(set(paths) - set(UPDATABLE))
    if unknown:
        raise InvalidArgument.field("update_mask", f"unknown fields: {', '.join(unknown)}")
    return EndpointChange(
        url=e.url if "url" in paths else None,
        description=e.description if "description" in paths else None,
        body_format=(
            body_format(e.body_format, "endpoint.body_format") if "body_format" in paths else None
        ),
        kinds=tuple(e.event_kinds) if "event_kinds" in paths else None,
        enabled=e.enabled if "enabled" in paths else None,
    )
