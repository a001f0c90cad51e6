"""`airlock notifications ...`: webhook endpoints and notification deliveries
(NotificationService, admin)."""

from __future__ import annotations

import argparse

from airlock.v1 import notification_pb2, notification_service_pb2
from airlock_cli.base import Group, add_command, add_family
from airlock_cli.output import Output
from airlock_client.client import AirlockClient

_FORMATS = {"standard": False, "slack": True}
_DELIVERY_STATES = {
    name.removeprefix("STATE_").lower(): value
    for name, value in notification_pb2.Delivery.State.items()
    if value
}


async def _create(client: AirlockClient, args: argparse.Namespace, out: Output) -> None:
    response = await client.create_endpoint(
        args.url,
        description=args.description,
        slack=_FORMATS[args.format],
        event_kinds=args.kind,
        enabled=not args.disabled,
    )
    out.message(response)
    if not out.as_json:
        out.note("the secret is shown once: store it now (receivers verify signatures with it)")


async def _list(client: AirlockClient, args: argparse.Namespace, out: Output) -> None:
    items = [e async for e in client.list_endpoints()]
    out.listing(notification_service_pb2.ListEndpointsResponse(endpoints=items), items, "endpoints")


async def _update(client: AirlockClient, args: argparse.Namespace, out: Output) -> None:
    endpoint = notification_pb2.NotificationEndpoint(endpoint_id=args.endpoint_id, etag=args.etag)
    paths: list[str] = []
    if args.url is not None:
        endpoint.url = args.url
        paths.append("url")
    if args.description is not None:
        endpoint.description = args.description
        paths.append("description")
    if args.format is not None:
        endpoint.body_format = (
            notification_pb2.NotificationEndpoint.BODY_FORMAT_SLACK
            if _FORMATS[args.format]
            else notification_pb2.NotificationEndpoint.BODY_FORMAT_STANDARD
        )
        paths.append("body_format")
    if args.kind is not None:
        endpoint.event_kinds.extend(k for k in args.kind if k)
        paths.append("event_kinds")
    if args.enabled is not None:
        endpoint.enabled = args.enabled
        paths.append("enabled")
    out.message(await client.update_endpoint(endpoint, paths))


async def _delete(client: AirlockClient, args: argparse.Namespace, out: Output) -> None:
    await client.delete_endpoint(args.endpoint_id, etag=args.etag)
    out.note(f"endpoint {args.endpoint_id} deleted")


async def _test(client: AirlockClient, args: argparse.Namespace, out: Output) -> None:
    notification_id = await client.send_test_notification(args.endpoint_id)
    out.message(
        notification_service_pb2.SendTestNotificationResponse(notification_id=notification_id)
    )


async def _deliveries(client: AirlockClient, args: argparse.Namespace, out: Output) -> None:
    state = _DELIVERY_STATES[args.state] if args.state else 0
    items: list[notification_pb2.Delivery] = []
    async for d in client.list_deliveries(target=args.target, state=state):
        items.append(d)
        if len(items) >= args.limit:
            break
    out.listing(
        notification_service_pb2.ListDeliveriesResponse(deliveries=items), items, "deliveries"
    )


def add_commands(commands: Group) -> None:
    group = add_family(
        commands, "notifications", "webhook endpoints and notification deliveries (admin)"
    )
    p = add_command(group, "create", "create a webhook endpoint; its secret is shown once", _create)
    p.add_argument("url", metavar="URL", help="http(s) URL the notifications are POSTed to")
    p.add_argument("--description", default="")
    p.add_argument(
        "--format",
        choices=sorted(_FORMATS),
        default="standard",
        help='standard: the documented JSON; slack: {"text": ...} (Slack, Mattermost)',
    )
    p.add_argument(
        "--kind",
        action="append",
        default=[],
        metavar="KIND",
        help="a notification kind to hear (repeat; none: every kind), e.g. session.opened",
    )
    p.add_argument("--disabled", action="store_true", help="create it disabled")
    add_command(group, "list", "list webhook endpoints (never a secret)", _list)
    p = add_command(group, "update", "change a webhook endpoint", _update)
    p.add_argument("endpoint_id", metavar="ENDPOINT_ID")
    p.add_argument("--url")
    p.add_argument("--description")
    p.add_argument("--format", choices=sorted(_FORMATS))
    p.add_argument(
        "--kind", action="append", metavar="KIND", help="the new kinds (repeat; '' for every)"
    )
    enabled = p.add_mutually_exclusive_group()
    enabled.add_argument("--enable", dest="enabled", action="store_const", const=True)
    enabled.add_argument("--disable", dest="enabled", action="store_const", const=False)
    p.add_argument("--etag", default="", help="refuse the change if the endpoint changed since")
    p = add_command(group, "delete", "delete a webhook endpoint", _delete)
    p.add_argument("endpoint_id", metavar="ENDPOINT_ID")
    p.add_argument("--etag", default="")
    p = add_command(group, "test", "send a test notification to an endpoint", _test)
    p.add_argument("endpoint_id", metavar="ENDPOINT_ID")
    p = add_command(
        group, "deliveries", "notifications and their attempts, newest first", _deliveries
    )
    p.add_argument("--target", default="", help="an endpoint id or an email address")
    p.add_argument("--state", choices=sorted(_DELIVERY_STATES))
    p.add_argument("--limit", type=int, default=50, help="at most this many (default 50)")
