"""`airlock sessions ...`: approval sessions (SessionService), and waiting for a session's end
(`sessions wait`, `restore request --wait`) with the exit code of its outcome."""

from __future__ import annotations

import argparse

from google.protobuf import json_format

from airlock.v1 import session_pb2, session_service_pb2
from airlock_cli.base import CommandFailed, Group, add_command, add_family
from airlock_cli.follow import follow_session
from airlock_cli.output import Output, render_message
from airlock_cli.values import enum_choices, enum_key, state_option, time_arg
from airlock_client.client import AirlockClient

# Exit codes of `sessions wait`, `restore request --wait` and `sessions watch` (parser.py's epilog).
EXIT_REJECTED = 10
EXIT_EXPIRED = 11
EXIT_CANCELLED = 12
EXIT_FAILED = 13

_S = session_pb2.Session


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


class SessionNotApproved(CommandFailed):
    """The session ended without approval; `exit_code` says how."""

    def __init__(self, session: session_pb2.Session) -> None:
        self.session = session
        self.exit_code = outcome_exit_code(session)
        state = _S.State.Name(session.state).removeprefix("STATE_")
        status = _S.StatusCode.Name(session.status_code).removeprefix("STATUS_CODE_")
        super().__init__(f"session {session.session_id} ended {state} ({status})")


async def finish_wait(client: AirlockClient, session_id: str, out: Output) -> None:
    """Wait for the end, print the final session, raise SessionNotApproved unless approved."""

    def progress(s: session_pb2.Session) -> None:
        if s.state == _S.STATE_PENDING:
            out.note(
                f"waiting: session {s.session_id}: {s.approval_count} of {s.min_approvals} "
                f"approvals, {s.rejection_count} rejections"
            )

    final = await follow_session(client, session_id, progress)
    out.message(final)
    if final.state != _S.STATE_APPROVED:
        raise SessionNotApproved(final)


async def _get(client: AirlockClient, args: argparse.Namespace, out: Output) -> None:
    out.message(await client.get_session(args.session_id))


async def _list(client: AirlockClient, args: argparse.Namespace, out: Output) -> None:
    state = _S.State.Value(enum_key("STATE_", args.state))
    kind = _S.Kind.Value(enum_key("KIND_", args.kind))
    items = [
        s
        async for s in client.list_sessions(
            team_id=args.team,
            state=state,
            kind=kind,
            action=args.action,
            protected_resource=args.resource,
            requester_account_id=args.account,
            create_time_start=args.since,
            create_time_end=args.until,
        )
    ]
    out.listing(session_service_pb2.ListSessionsResponse(sessions=items), items, "sessions")


async def _cancel(client: AirlockClient, args: argparse.Namespace, out: Output) -> None:
    out.message(await client.cancel_session(args.session_id))


async def _watch(client: AirlockClient, args: argparse.Namespace, out: Output) -> None:
    """Prints each state of the session until it is final, none twice (a reopened watch
    starts with the state it last sent)."""
    last: session_pb2.Session | None = None

    def write(session: session_pb2.Session) -> None:
        nonlocal last
        if session != last:
            _write_session(out, session, first=last is None)
            last = session

    final = await follow_session(client, args.session_id, write)
    if final.state != _S.STATE_APPROVED:
        raise SessionNotApproved(final)


def _write_session(out: Output, session: session_pb2.Session, *, first: bool) -> None:
    if out.as_json:
        # One JSON document per line (JSON Lines): a stream has no single document.
        out.out.write(
            json_format.MessageToJson(
                session, indent=None, always_print_fields_with_no_presence=True
            )
            + "\n"
        )
    else:
        if not first:
            out.out.write("\n")
        out.lines(render_message(session))
    out.out.flush()


async def _wait(client: AirlockClient, args: argparse.Namespace, out: Output) -> None:
    await finish_wait(client, args.session_id, out)


def add_commands(commands: Group) -> None:
    group = add_family(commands, "sessions", "approval sessions")
    p = add_command(group, "get", "show a session and its votes", _get)
    p.add_argument("session_id", metavar="SESSION_ID")
    p = add_command(group, "list", "list sessions", _list)
    p.add_argument("--team", default="", metavar="TEAM_ID")
    state_option(p, _S.State.DESCRIPTOR, "sessions")
    p.add_argument("--kind", choices=sorted(enum_choices(_S.Kind.DESCRIPTOR)))
    p.add_argument("--action", default="")
    p.add_argument("--resource", default="", metavar="ARN", help="the protected resource")
    p.add_argument("--account", default="", metavar="ACCOUNT_ID", help="the requesting account")
    p.add_argument("--since", type=time_arg, metavar="RFC3339", help="created at or after")
    p.add_argument("--until", type=time_arg, metavar="RFC3339", help="created before")
    p = add_command(group, "cancel", "cancel a pending session", _cancel)
    p.add_argument("session_id", metavar="SESSION_ID")
    p = add_command(group, "watch", "follow a session until it ends (--json: JSON Lines)", _watch)
    p.add_argument("session_id", metavar="SESSION_ID")
    p = add_command(
        group,
        "wait",
        "block until a session ends, riding through server restarts; exit 0 approved, "
        "10 rejected, 11 expired, 12 cancelled",
        _wait,
    )
    p.add_argument("session_id", metavar="SESSION_ID")
