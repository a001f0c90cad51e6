"""`airlock approver ...`: an approver's own commands (ApproverService): a signing key made and
kept locally, invitations, and votes signed on this machine."""

from __future__ import annotations

import argparse
import asyncio
import sys

from airlock.v1 import approver_service_pb2, session_pb2, team_pb2
from airlock_cli.base import Group, LocalError, add_command, add_family
from airlock_cli.output import Output, format_principal, format_time
from airlock_cli.values import enum_key, state_option
from airlock_client import checkpoints, keys
from airlock_client.client import AirlockClient


async def _approver_keygen(args: argparse.Namespace, out: Output) -> None:
    key = keys.generate_private_key()
    path = keys.save_private_key(key, args.out)
    out.document({"publicKey": keys.public_key_base64(key), "keyFile": str(path)})
    if not out.as_json:
        out.note(
            f"private key written to {path} (mode 0600); keep it on this machine, "
            "it never goes to the server"
        )


async def _approver_invitations(
    client: AirlockClient, args: argparse.Namespace, out: Output
) -> None:
    state = team_pb2.Invitation.State.Value(enum_key("STATE_", args.state))
    items = [i async for i in client.list_invitations(state=state, team_id=args.team)]
    out.listing(
        approver_service_pb2.ListInvitationsResponse(invitations=items), items, "invitations"
    )


async def _approver_accept(client: AirlockClient, args: argparse.Namespace, out: Output) -> None:
    key = args.loaded_key
    out.message(await client.respond_to_invitation(args.invitation_id, True, key))


async def _approver_decline(client: AirlockClient, args: argparse.Namespace, out: Output) -> None:
    out.message(await client.respond_to_invitation(args.invitation_id, False))


async def _approver_sessions(client: AirlockClient, args: argparse.Namespace, out: Output) -> None:
    state = session_pb2.Session.State.Value(enum_key("STATE_", args.state))
    items = [
        s
        async for s in client.list_assigned_sessions(state=state, awaiting_vote=args.awaiting_vote)
    ]
    out.listing(
        approver_service_pb2.ListAssignedSessionsResponse(sessions=items), items, "sessions"
    )


def _draft_lines(session: session_pb2.Session) -> list[tuple[str, str]]:
    """A team update's draft, as the vote signs it (its digest is recomputed from these)."""
    if not session.HasField("team_draft"):
        return []
    d = session.team_draft
    lines = [
        ("draft", f"version {d.version}, M = {d.min_approvals} of {len(d.members)}"),
        ("ttls", f"session {d.session_ttl.seconds}s, invitation {d.invitation_ttl.seconds}s"),
        ("description", d.description or "-"),
    ]
    for m in d.members:
        change = session_pb2.TeamDraft.KeyChange.Name(m.key_change).removeprefix("KEY_CHANGE_")
        key = checkpoints.key_id(m.public_key) if m.public_key else "chosen at acceptance"
        vouched = " (vouched for by its current key)" if m.signed_by_current_key else ""
        lines.append((f"  {m.approver_id}", f"{change} key {key}{vouched}"))
    lines.append(("draft digest", keys.draft_digest(session)))
    return lines


async def _approver_vote(client: AirlockClient, args: argparse.Namespace, out: Output) -> None:
    session = await client.get_session(args.session_id)
    approve = args.decision == "approve"
    shown = [
        ("decision", "APPROVE" if approve else "REJECT"),
        ("session", session.session_id),
        ("action", session.action),
        ("resource", session.protected_resource),
        ("requester", format_principal(session.requester)),
        ("comment", session.comment or "-"),
        ("team", f"{session.team_name or session.team_id} (version {session.team_version})"),
        ("expires", format_time(session.expire_time)),
        ("approvals", f"{session.approval_count} of {session.min_approvals} needed"),
        *_draft_lines(session),
    ]
    width = max(len(k) for k, _ in shown) + 1
    out.note("You are signing this vote:")
    out.note("\n".join(f"  {(k + ':').ljust(width)} {v}" for k, v in shown))
    if not args.yes and sys.stdin.isatty():
        answer = await asyncio.to_thread(input, "Sign and send this vote? [y/N] ")
        if answer.strip().lower() not in ("y", "yes"):
            raise LocalError("not voted")
    result = await client.sign_and_vote(session, approve, args.loaded_key, comment=args.comment)
    out.message(result)


def _load_key(args: argparse.Namespace) -> None:
    args.loaded_key = keys.load_private_key(args.key)


def _key_option(parser: argparse.ArgumentParser) -> None:
    """`--key`: the private key file, read before any call to the server (a bad file costs none)."""
    parser.add_argument(
        "--key", required=True, metavar="FILE", help="your private key file (keygen)"
    )
    parser.set_defaults(before_connecting=_load_key)


def add_commands(commands: Group) -> None:
    group = add_family(commands, "approver", "an approver's own commands (approver credential)")
    p = add_command(group, "keygen", "generate a signing key; prints its public key")
    p.add_argument("--out", required=True, metavar="FILE", help="new private key file (0600)")
    p.add_argument("--json", action="store_true", default=argparse.SUPPRESS)
    p.set_defaults(local=_approver_keygen)
    p = add_command(group, "invitations", "list your invitations", _approver_invitations)
    state_option(p, team_pb2.Invitation.State.DESCRIPTOR, "invitations")
    p.add_argument("--team", default="", metavar="TEAM_ID", help="only invitations into this team")
    p = add_command(group, "accept", "accept an invitation, enrolling your key", _approver_accept)
    p.add_argument("invitation_id", metavar="INVITATION_ID")
    _key_option(p)
    p = add_command(group, "decline", "decline an invitation", _approver_decline)
    p.add_argument("invitation_id", metavar="INVITATION_ID")
    p = add_command(group, "vote", "sign (locally) and cast your vote on a session", _approver_vote)
    p.add_argument("session_id", metavar="SESSION_ID")
    decision = p.add_mutually_exclusive_group(required=True)
    decision.add_argument("--approve", dest="decision", action="store_const", const="approve")
    decision.add_argument("--reject", dest="decision", action="store_const", const="reject")
    _key_option(p)
    p.add_argument("--comment", default="", help="for the other approvers (not signed)")
    p.add_argument("--yes", action="store_true", help="do not ask for confirmation on a terminal")
    p = add_command(group, "sessions", "list the sessions assigned to you", _approver_sessions)
    state_option(p, session_pb2.Session.State.DESCRIPTOR, "sessions")
    p.add_argument("--awaiting-vote", action="store_true", help="only those you have not voted on")
