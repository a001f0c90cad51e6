"""`airlock notifications ...` (webhook endpoints, deliveries) and waiting for a session's end
(`airlock sessions wait`, `airlock restore request --wait`), wired from cli.py."""

from __future__ import annotations

import argparse
import asyncio
import random
from collections.abc import Awaitable, Callable, Sequence
from typing import Any, Protocol, TextIO

from google.protobuf.message import Message

from airlock.v1 import notification_pb2, notification_service_pb2, session_pb2
from airlock_client.client import AirlockClient
from airlock_client.errors import AirlockError, StatusCode

# Exit codes of `sessions wait`, `restore request --wait` and `sessions watch` (cli.py's epilog).
EXIT_REJECTED = 10
EXIT_EXPIRED = 11
EXIT_CANCELLED = 12
EXIT_FAILED = 13
# What a wait rides through: the server restarting or unreachable for a while.
WAIT_RETRYABLE = frozenset(
    {
        StatusCode.UNAVAILABLE,
        StatusCode.ABORTED,
        StatusCode.CANCELLED,
        StatusCode.DEADLINE_EXCEEDED,
    }
)
MAX_WAIT_BACKOFF = 5.0

_S = session_pb2.Session


class Output(Protocol):
    as_json: bool

    @property
    def out(self) -> TextIO: ...
    def message(self, message: Message) -> None: ...
    def listing(self, response: Message, items: Sequence[Message], what: str) -> None: ...
    @staticmethod
    def note(text: str) -> None: ...


class SessionNotApproved(Exception):
    """The session ended without approval; `exit_code` says how."""

    def __init__(self, session: session_pb2.Session) -> None:
        self.session = session
        self.exit_code = outcome_exit_code(session)
        state = _S.State.Name(session.state).removeprefix("STATE_")
        status = _S.StatusCode.Name(session.status_code).removeprefix("STATUS_CODE_")
        super().__init__(f"session {session.session_id} ended {state} ({status})")


def outcome_exit_code(session: session_pb2.Session) -> int:
    """0 approved; 10 rejected; 11 expired; 12 cancelled; 13 any other end."""
    if session.state == _S.STATE_APPROVED:
        return 0
    if session.status_code == _S.STATUS_CODE_REJECTED:
        return EXIT_REJECTED
    if session.status_code == _S.STATUS_CODE_EXPIRED:
        return EXIT_EXPIRED
    if session.state == _S.STATE_CANCELLED:
        return EXIT_CANCELLED
    return EXIT_FAILED


async def wait_for_end(
    client: AirlockClient,
    session_id: str,
    on_change: Callable[[session_pb2.Session], None] = lambda s: None,
    sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
) -> session_pb2.Session:
    """Follow a session until it is final, reopening the watch (with jittered exponential
    backoff) for as long as the server is restarting or unreachable."""
    failures = 0
    while True:
        try:
            async for session in client.watch_session(session_id):
                failures = 0
                on_change(session)
                if session.state != _S.STATE_PENDING:
                    return session
        except AirlockError as exc:
            if exc.code not in WAIT_RETRYABLE:
                raise
        # The stream ended before the session did (a server going away): watch again.
        failures += 1
        await sleep(min(MAX_WAIT_BACKOFF, 0.1 * 2**failures) * random.uniform(0.5, 1.0))


def _progress(out: Output) -> Callable[[session_pb2.Session], None]:
    def show(s: session_pb2.Session) -> None:
        if s.state == _S.STATE_PENDING:
            out.note(
                f"waiting: session {s.session_id}: {s.approval_count} of {s.min_approvals} "
                f"approvals, {s.rejection_count} rejections"
            )

    return show


async def finish_wait(client: AirlockClient, session_id: str, out: Output) -> None:
    """Wait for the end, print the final session, raise SessionNotApproved unless approved."""
    final = await wait_for_end(client, session_id, _progress(out))
    out.message(final)
    if final.state != _S.STATE_APPROVED:
        raise SessionNotApproved(final)


async def sessions_wait(client: AirlockClient, args: argparse.Namespace, out: Output) -> None:
    await finish_wait(client, args.session_id, out)


# --- notifications -----------------------------------------------------------------------------

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


def add_commands(
    family: Callable[[str, str], Any],
    command: Callable[..., argparse.ArgumentParser],
) -> None:
    """`airlock notifications ...`, with cli.py's `family` and `command` helpers."""
    group = family("notifications", "webhook endpoints and notification deliveries (admin)")
    p = command(group, "create", "create a webhook endpoint; its secret is shown once", _create)
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
    command(group, "list", "list webhook endpoints (never a secret)", _list)
    p = command(group, "update", "change a webhook endpoint", _update)
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
    p = command(group, "delete", "delete a webhook endpoint", _delete)
    p.add_argument("endpoint_id", metavar="ENDPOINT_ID")
    p.add_argument("--etag", default="")
    p = command(group, "test", "send a test notification to an endpoint", _test)
    p.add_argument("endpoint_id", metavar="ENDPOINT_ID")
    p = command(group, "deliveries", "notifications and their attempts, newest first", _deliveries)
    p.add_argument("--target", default="", help="an endpoint id or an email address")
    p.add_argument("--state", choices=sorted(_DELIVERY_STATES))
    p.add_argument("--limit", type=int, default=50, help="at most this many (default 50)")
