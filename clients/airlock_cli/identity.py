"""`airlock whoami`, `approvers`, `accounts`, `credentials`: identities and their credentials
(IdentityService, admin)."""

from __future__ import annotations

import argparse
import os

from airlock.v1 import identity_pb2, identity_service_pb2
from airlock_cli.base import Group, add_command, add_family
from airlock_cli.output import Output
from airlock_cli.values import duration_arg, enum_key, state_option, time_arg
from airlock_client import keys
from airlock_client.client import AirlockClient


async def _whoami(client: AirlockClient, args: argparse.Namespace, out: Output) -> None:
    out.message(await client.whoami())


async def _approvers_create(client: AirlockClient, args: argparse.Namespace, out: Output) -> None:
    out.message(await client.create_approver(args.approver_id, args.name, email=args.email))


async def _approvers_get(client: AirlockClient, args: argparse.Namespace, out: Output) -> None:
    out.message(await client.get_approver(args.approver_id))


async def _approvers_list(client: AirlockClient, args: argparse.Namespace, out: Output) -> None:
    state = identity_pb2.Approver.State.Value(enum_key("STATE_", args.state))
    items = [a async for a in client.list_approvers(state=state)]
    out.listing(identity_service_pb2.ListApproversResponse(approvers=items), items, "approvers")


async def _approvers_disable(client: AirlockClient, args: argparse.Namespace, out: Output) -> None:
    out.message(await client.disable_approver(args.approver_id))


async def _accounts_register(client: AirlockClient, args: argparse.Namespace, out: Output) -> None:
    out.message(await client.register_account(args.account_id, args.name))


async def _accounts_list(client: AirlockClient, args: argparse.Namespace, out: Output) -> None:
    items = [a async for a in client.list_accounts()]
    out.listing(identity_service_pb2.ListAccountsResponse(accounts=items), items, "accounts")


async def _credentials_issue(client: AirlockClient, args: argparse.Namespace, out: Output) -> None:
    # Create the token file before asking for the token, so that a file that cannot be written
    # never costs a token that nobody saw.
    token_file = keys.open_secret_file(args.token_out) if args.token_out else None
    try:
        response = await client.issue_credential(
            args.kind,
            args.subject,
            description=args.description,
            ttl=args.ttl,
            expire_time=args.expire_time,
        )
    except BaseException:
        if token_file is not None:
            token_file.close()
            os.unlink(args.token_out)
        raise
    token = response.token
    if token_file is not None:
        with token_file:
            token_file.write(token.encode("ascii") + b"\n")
        response.token = ""  # written to the file, not to the terminal
        out.message(response if out.as_json else response.credential)
        out.note(f"token written to {args.token_out} (mode 0600); it is shown nowhere else")
        return
    if out.as_json:
        out.message(response)
        return
    out.message(response.credential)
    if token:
        out.lines(["", f"token: {token}"])
        out.note("note: this token is shown only once and cannot be recovered; store it now")
    else:
        out.note("note: no token: this request_id was already used; the token was shown then")


async def _credentials_revoke(client: AirlockClient, args: argparse.Namespace, out: Output) -> None:
    out.message(await client.revoke_credential(args.credential_id))


async def _credentials_list(client: AirlockClient, args: argparse.Namespace, out: Output) -> None:
    state = identity_pb2.Credential.State.Value(enum_key("STATE_", args.state))
    items = [
        c async for c in client.list_credentials(kind=args.kind, subject=args.subject, state=state)
    ]
    out.listing(
        identity_service_pb2.ListCredentialsResponse(credentials=items), items, "credentials"
    )


def add_commands(commands: Group) -> None:
    add_command(commands, "whoami", "show the caller's principal and credential id", _whoami)

    # approvers
    group = add_family(commands, "approvers", "approver identities (admin)")
    p = add_command(group, "create", "create an approver identity", _approvers_create)
    p.add_argument("approver_id", metavar="ID")
    p.add_argument("--name", required=True, help="display name")
    p.add_argument("--email", default="", help="e-mail address (informational)")
    p = add_command(group, "get", "show an approver identity", _approvers_get)
    p.add_argument("approver_id", metavar="ID")
    p = add_command(group, "list", "list approver identities", _approvers_list)
    state_option(p, identity_pb2.Approver.State.DESCRIPTOR, "approvers")
    p = add_command(group, "disable", "disable an approver identity (terminal)", _approvers_disable)
    p.add_argument("approver_id", metavar="ID")

    # accounts
    group = add_family(commands, "accounts", "registered accounts (admin)")
    p = add_command(group, "register", "register an account", _accounts_register)
    p.add_argument("account_id", metavar="ID", help="the 12-digit account id")
    p.add_argument("--name", required=True, help="account name")
    add_command(group, "list", "list registered accounts", _accounts_list)

    # credentials
    group = add_family(commands, "credentials", "bearer credentials (admin)")
    p = add_command(
        group, "issue", "issue a credential; the token is shown once", _credentials_issue
    )
    p.add_argument(
        "--kind", required=True, choices=["admin", "account", "approver", "service", "auditor"]
    )
    p.add_argument(
        "--subject",
        default="",
        help="account id, approver id or service name (a free label for admin/auditor)",
    )
    p.add_argument("--description", default="", help="who holds it, what for")
    expiry = p.add_mutually_exclusive_group()
    expiry.add_argument(
        "--ttl", type=duration_arg, metavar="DURATION", help="lifetime, e.g. 24h, 90m, 7d"
    )
    expiry.add_argument(
        "--expire-time", type=time_arg, metavar="RFC3339", help="e.g. 2030-01-01T00:00:00Z"
    )
    p.add_argument(
        "--token-out",
        metavar="FILE",
        help="write the token to this new file (mode 0600) instead of printing it",
    )
    p = add_command(group, "revoke", "revoke a credential", _credentials_revoke)
    p.add_argument("credential_id", metavar="ID")
    p = add_command(group, "list", "list credential metadata (never a token)", _credentials_list)
    p.add_argument("--kind", choices=["admin", "account", "approver", "service", "auditor"])
    p.add_argument("--subject", default="")
    state_option(p, identity_pb2.Credential.State.DESCRIPTOR, "credentials")
