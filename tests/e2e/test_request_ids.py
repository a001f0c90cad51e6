"""A request_id belongs to the caller, the method and the request (docs/faults.md): a vote
that reuses another vote's request_id is refused, never answered with the first vote's result.
Real signed votes through a real server, on SQLite and PostgreSQL."""

from __future__ import annotations

import secrets
from typing import TYPE_CHECKING

import pytest

from airlock.v1 import session_pb2
from airlock_client import AirlockClient, InvalidArgumentError, generate_private_key

if TYPE_CHECKING:
    from e2e.conftest import ServerProcess

pytestmark = pytest.mark.asyncio


def _name(prefix: str) -> str:
    return f"{prefix}-{secrets.token_hex(4)}"


async def test_a_vote_reusing_a_request_id_is_refused(server: ServerProcess) -> None:
    approvers = [_name(n) for n in ("gus", "hal", "ivy")]
    account_id = f"{secrets.randbelow(9 * 10**11) + 10**11}"
    keys = {a: generate_private_key() for a in approvers}
    async with AirlockClient.connect(server.target, server.admin_token) as admin:
        tokens = {}
        for approver_id in approvers:
            await admin.create_approver(approver_id, approver_id)
            tokens[approver_id] = (await admin.issue_credential("approver", approver_id)).token
        team = await admin.create_team(_name("reuse"), approvers, 2)
        for approver_id in approvers:
            async with AirlockClient.connect(server.target, tokens[approver_id]) as me:
                (invitation,) = [i async for i in me.list_invitations(team_id=team.team_id)]
                await me.respond_to_invitation(invitation.invitation_id, True, keys[approver_id])
        await admin.register_account(account_id, _name("acct"))
        await admin.share_team(team.team_id, account_id=account_id)
        account_token = (await admin.issue_credential("account", account_id)).token
    sessions: list[session_pb2.Session] = []
    async with AirlockClient.connect(server.target, account_token) as account:
        for _ in range(2):
            vault = await account.create_vault(
                _name("v"), min_retention_days=7, max_retention_days=35
            )
            await account.associate_team(vault.vault_arn, team.team_id)
            asked = await account.request_restore_access(vault.vault_arn, comment="reuse")
            sessions.append(asked.session)
    first, second = sessions
    voter = approvers[0]
    request_id = secrets.token_hex(16)
    async with AirlockClient.connect(server.target, tokens[voter]) as me:
        voted = await me.sign_and_vote(first, True, keys[voter], request_id=request_id)
        assert voted.approval_count == 1
        # Another session with the same id: refused, and nothing is stored on it.
        with pytest.raises(InvalidArgumentError) as refused:
            await me.sign_and_vote(second, True, keys[voter], request_id=request_id)
        assert refused.value.reason == "REQUEST_ID_REUSED"
        assert (await me.get_session(second.session_id)).approval_count == 0
        # A REJECT reusing the APPROVE's id: refused, not silently dropped.
        with pytest.raises(InvalidArgumentError) as refused:
            await me.sign_and_vote(first, False, keys[voter], request_id=request_id)
        assert refused.value.reason == "REQUEST_ID_REUSED"
        # The same vote again: the first outcome, once.
        again = await me.sign_and_vote(first, True, keys[voter], request_id=request_id)
        assert (again.approval_count, again.rejection_count) == (1, 0)
