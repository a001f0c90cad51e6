"""`airlock vaults ...` and `airlock restore ...`: logically air-gapped vaults and their restore
access grants (VaultService)."""

from __future__ import annotations

import argparse

from airlock.v1 import vault_pb2, vault_service_pb2
from airlock_cli.base import Group, add_command, add_family
from airlock_cli.output import Output
from airlock_cli.sessions import finish_wait
from airlock_cli.values import enum_key, state_option
from airlock_client.client import AirlockClient


async def _vaults_create(client: AirlockClient, args: argparse.Namespace, out: Output) -> None:
    vault = await client.create_vault(
        args.name,
        min_retention_days=args.min_retention_days,
        max_retention_days=args.max_retention_days,
        tags=dict(args.tag),
    )
    out.message(vault)


async def _vaults_get(client: AirlockClient, args: argparse.Namespace, out: Output) -> None:
    out.message(await client.get_vault(args.vault_arn))


async def _vaults_list(client: AirlockClient, args: argparse.Namespace, out: Output) -> None:
    items = [v async for v in client.list_vaults(account_id=args.account, team_id=args.team)]
    out.listing(vault_service_pb2.ListVaultsResponse(vaults=items), items, "vaults")


async def _vaults_associate(client: AirlockClient, args: argparse.Namespace, out: Output) -> None:
    out.message(await client.associate_team(args.vault_arn, args.team_id, comment=args.comment))


async def _vaults_disassociate(
    client: AirlockClient, args: argparse.Namespace, out: Output
) -> None:
    out.message(await client.disassociate_team(args.vault_arn, comment=args.comment))


async def _restore_request(client: AirlockClient, args: argparse.Namespace, out: Output) -> None:
    response = await client.request_restore_access(
        args.vault_arn, restore_vault_name=args.name, comment=args.comment
    )
    if not args.wait:
        out.message(response)
        return
    out.note(f"restore access requested: session {response.session.session_id}")
    await finish_wait(client, response.session.session_id, out)


async def _restore_list(client: AirlockClient, args: argparse.Namespace, out: Output) -> None:
    state = vault_pb2.RestoreAccessGrant.State.Value(enum_key("STATE_", args.state))
    items = [g async for g in client.list_restore_access(vault_arn=args.vault, state=state)]
    out.listing(vault_service_pb2.ListRestoreAccessResponse(grants=items), items, "grants")


async def _restore_revoke(client: AirlockClient, args: argparse.Namespace, out: Output) -> None:
    out.message(await client.revoke_restore_access(args.grant_id, comment=args.comment))


async def _restore_check(client: AirlockClient, args: argparse.Namespace, out: Output) -> None:
    out.message(await client.check_access(args.vault_arn, args.account_id))


def _tag_arg(text: str) -> tuple[str, str]:
    key, sep, value = text.partition("=")
    if not sep or not key:
        raise argparse.ArgumentTypeError(f"invalid tag {text!r}: use KEY=VALUE")
    return key, value


def add_commands(commands: Group) -> None:
    group = add_family(commands, "vaults", "logically air-gapped vaults (account)")
    p = add_command(group, "create", "create a vault in your account", _vaults_create)
    p.add_argument("name", metavar="NAME")
    p.add_argument("--min-retention-days", type=int, required=True, metavar="DAYS")
    p.add_argument("--max-retention-days", type=int, required=True, metavar="DAYS")
    p.add_argument("--tag", type=_tag_arg, action="append", default=[], metavar="KEY=VALUE")
    p = add_command(group, "get", "show a vault", _vaults_get)
    p.add_argument("vault_arn", metavar="VAULT_ARN")
    p = add_command(group, "list", "list vaults", _vaults_list)
    p.add_argument("--account", default="", metavar="ACCOUNT_ID")
    p.add_argument("--team", default="", metavar="TEAM_ID")
    p = add_command(group, "associate", "associate an approval team", _vaults_associate)
    p.add_argument("vault_arn", metavar="VAULT_ARN")
    p.add_argument("team_id", metavar="TEAM_ID")
    p.add_argument("--comment", default="")
    p = add_command(group, "disassociate", "remove the team (voted by it)", _vaults_disassociate)
    p.add_argument("vault_arn", metavar="VAULT_ARN")
    p.add_argument("--comment", default="")

    # restore access
    group = add_family(commands, "restore", "restore access grants")
    p = add_command(group, "request", "request restore access from a vault", _restore_request)
    p.add_argument("vault_arn", metavar="VAULT_ARN")
    p.add_argument("--name", default="", help="the restore access vault's name")
    p.add_argument("--comment", default="", help="for the approvers (at most 200 characters)")
    p.add_argument(
        "--wait",
        action="store_true",
        help="block until the session ends (exit codes as `sessions wait`)",
    )
    p = add_command(group, "list", "list restore access grants", _restore_list)
    p.add_argument("--vault", default="", metavar="VAULT_ARN")
    state_option(p, vault_pb2.RestoreAccessGrant.State.DESCRIPTOR, "grants")
    p = add_command(group, "revoke", "revoke a grant (voted by the vault's team)", _restore_revoke)
    p.add_argument("grant_id", metavar="GRANT_ID")
    p.add_argument("--comment", default="")
    p = add_command(group, "check", "may an account restore from a vault now?", _restore_check)
    p.add_argument("vault_arn", metavar="VAULT_ARN")
    p.add_argument("account_id", metavar="ACCOUNT_ID")
