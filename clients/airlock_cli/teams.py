"""`airlock teams ...`: approval teams, their shares, health and baselines (TeamService, admin)."""

from __future__ import annotations

import argparse

from airlock.v1 import team_pb2, team_service_pb2
from airlock_cli.base import Group, add_command, add_family
from airlock_cli.output import Output
from airlock_cli.values import duration_arg, enum_key, state_option
from airlock_client.client import AirlockClient


async def _teams_create(client: AirlockClient, args: argparse.Namespace, out: Output) -> None:
    team = await client.create_team(
        args.name,
        args.approvers,
        args.min_approvals,
        description=args.description,
        session_ttl=args.session_ttl,
        invitation_ttl=args.invitation_ttl,
    )
    out.message(team)


async def _teams_get(client: AirlockClient, args: argparse.Namespace, out: Output) -> None:
    out.message(await client.get_team(args.team_id))


async def _teams_list(client: AirlockClient, args: argparse.Namespace, out: Output) -> None:
    state = team_pb2.ApprovalTeam.State.Value(enum_key("STATE_", args.state))
    items = [t async for t in client.list_teams(state=state)]
    out.listing(team_service_pb2.ListApprovalTeamsResponse(teams=items), items, "teams")


async def _teams_share(client: AirlockClient, args: argparse.Namespace, out: Output) -> None:
    share = await client.share_team(args.team_id, account_id=args.account, service=args.service)
    out.message(share)


async def _teams_unshare(client: AirlockClient, args: argparse.Namespace, out: Output) -> None:
    share = await client.unshare_team(args.team_id, account_id=args.account, service=args.service)
    out.message(share)


async def _teams_shares(client: AirlockClient, args: argparse.Namespace, out: Output) -> None:
    items = [s async for s in client.list_team_shares(args.team_id)]
    out.listing(team_service_pb2.ListTeamSharesResponse(shares=items), items, "shares")


async def _teams_delete(client: AirlockClient, args: argparse.Namespace, out: Output) -> None:
    out.message(await client.delete_inactive_team(args.team_id))


async def _teams_health(client: AirlockClient, args: argparse.Namespace, out: Output) -> None:
    out.message(await client.get_team_health(args.team_id, activity_window=args.window))


async def _teams_baseline(client: AirlockClient, args: argparse.Namespace, out: Output) -> None:
    session = await client.start_team_baseline(
        args.team_id, approver_ids=args.approvers or (), comment=args.comment
    )
    out.message(session)


async def _teams_invite_link(client: AirlockClient, args: argparse.Namespace, out: Output) -> None:
    out.message(await client.issue_invitation_link(args.invitation_id))


def _share_target(parser: argparse.ArgumentParser) -> None:
    target = parser.add_mutually_exclusive_group(required=True)
    target.add_argument("--account", metavar="ACCOUNT_ID", help="a 12-digit account id")
    target.add_argument("--service", metavar="NAME", help="a service principal's name")


def add_commands(commands: Group) -> None:
    group = add_family(commands, "teams", "approval teams (admin)")
    p = add_command(group, "create", "create a team and invite its approvers", _teams_create)
    p.add_argument("name", metavar="NAME")
    p.add_argument(
        "--approver",
        dest="approvers",
        action="append",
        required=True,
        metavar="ID",
        help="an approver to invite (repeat for each)",
    )
    p.add_argument("--min-approvals", type=int, required=True, metavar="M", help="M of N")
    p.add_argument("--description", default="")
    p.add_argument(
        "--session-ttl",
        type=duration_arg,
        metavar="DURATION",
        help="how long a session stays open, e.g. 24h (default 24h; 15m .. 7d)",
    )
    p.add_argument(
        "--invitation-ttl",
        type=duration_arg,
        metavar="DURATION",
        help="how long invitees have to accept, e.g. 24h (default 24h)",
    )
    p = add_command(group, "get", "show a team and its approvers", _teams_get)
    p.add_argument("team_id", metavar="TEAM_ID")
    p = add_command(group, "list", "list teams", _teams_list)
    state_option(p, team_pb2.ApprovalTeam.State.DESCRIPTOR, "teams")
    p = add_command(group, "share", "share a team with an account or a service", _teams_share)
    p.add_argument("team_id", metavar="TEAM_ID")
    _share_target(p)
    p = add_command(group, "unshare", "remove a share", _teams_unshare)
    p.add_argument("team_id", metavar="TEAM_ID")
    _share_target(p)
    p = add_command(group, "shares", "list a team's shares", _teams_shares)
    p.add_argument("team_id", metavar="TEAM_ID")
    p = add_command(group, "delete", "delete a PENDING or INACTIVE team", _teams_delete)
    p.add_argument("team_id", metavar="TEAM_ID")
    p = add_command(
        group,
        "invite-link",
        "a one-time portal link of a pending invitation (shown once; answers with a passkey)",
        _teams_invite_link,
    )
    p.add_argument("invitation_id", metavar="INVITATION_ID")
    p = add_command(group, "health", "whether the team can still reach its quorum", _teams_health)
    p.add_argument("team_id", metavar="TEAM_ID")
    p.add_argument(
        "--window", type=duration_arg, metavar="DURATION", help="activity window (default 90d)"
    )
    p = add_command(
        group,
        "baseline",
        "start a baseline session: the approvers show they still respond",
        _teams_baseline,
    )
    p.add_argument("team_id", metavar="TEAM_ID")
    p.add_argument(
        "--approver",
        dest="approvers",
        action="append",
        metavar="ID",
        help="ask only this approver (repeat; default: every approver of the team)",
    )
    p.add_argument("--comment", default="", help="shown to the approvers")
