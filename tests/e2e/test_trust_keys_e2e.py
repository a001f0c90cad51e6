"""Issue 9 through a running server and the SDK, as the attackers would play it with their
tokens (both databases): the admin's takeover of an approver's key, a disabled approver's token,
and a generic session named like Airlock's own. Also shows that the SDK signs the very draft the
server shows (the draft digest survives the trip through the API)."""

from __future__ import annotations

import secrets
from typing import TYPE_CHECKING

import pytest

from airlock.v1 import session_pb2, team_pb2
from airlock_client import (
    AirlockClient,
    InvalidArgumentError,
    UnauthenticatedError,
    generate_private_key,
    keys,
    public_key_bytes,
)

if TYPE_CHECKING:  # the `server` fixture's type; a conftest is not importable at run time
    from e2e.conftest import ServerProcess

Team = team_pb2.ApprovalTeam
Draft = session_pb2.TeamDraft


def unique(prefix: str) -> str:
    return f"{prefix}-{secrets.token_hex(4)}"


@pytest.mark.asyncio
async def test_the_admins_takeover_fails_through_the_api(server: ServerProcess) -> None:
    names = [unique(n) for n in ("ada", "bo", "cy")]
    alice, bob, carol = names
    held = {n: generate_private_key() for n in names}
    tokens: dict[str, str] = {}
    service = unique("svc")
    async with AirlockClient.connect(server.target, server.admin_token) as admin:
        for n in names:
            await admin.create_approver(n, n.title())
            tokens[n] = (await admin.issue_credential("approver", n)).token
        team = await admin.create_team(unique("guards"), names, 2)
        for n in names:
            async with AirlockClient.connect(server.target, tokens[n]) as me:
                (invitation,) = [i async for i in me.list_invitations(team_id=team.team_id)]
                await me.respond_to_invitation(invitation.invitation_id, True, held[n])
        service_token = (await admin.issue_credential("service", service)).token
        await admin.share_team(team.team_id, service=service)

        # The admin issues itself a credential of alice, then re-enrolls alice with the key
        # alice handed over (vouched for by her key in force).
        stolen = (await admin.issue_credential("approver", alice, description="mine")).token
        alice_new = generate_private_key()
        vouch = held[alice].sign(
            keys.key_change_message(team.team_id, alice, public_key_bytes(alice_new))
        )
        upd = await admin.update_team(
            team.team_id,
            reenroll_approver_ids=[alice],
            new_keys={alice: (public_key_bytes(alice_new), vouch)},
        )
        sid = upd.session.session_id

        # bob and carol read the draft they vote on, and the SDK signs exactly that draft.
        for n in (bob, carol):
            async with AirlockClient.connect(server.target, tokens[n]) as me:
                seen = await me.get_session(sid)
                members = {m.approver_id: m for m in seen.team_draft.members}
                assert members[alice].key_change == Draft.KEY_CHANGE_NEW_KEY
                assert members[alice].public_key == public_key_bytes(alice_new)
                assert members[alice].signed_by_current_key
                assert members[bob].key_change == Draft.KEY_CHANGE_KEEPS_KEY
                assert seen.team_draft.draft_sha256 == keys.draft_digest(seen)
                await me.sign_and_vote(seen, True, held[n])

        # The admin answers alice's invitation first, with a key of its own: refused.
        async with AirlockClient.connect(server.target, stolen) as as_alice:
            (invitation,) = [
                i
                async for i in as_alice.list_invitations(team_id=team.team_id)
                if i.state == team_pb2.Invitation.STATE_PENDING
            ]
            with pytest.raises(InvalidArgumentError) as refused:
                await as_alice.respond_to_invitation(
                    invitation.invitation_id, True, generate_private_key()
                )
            assert refused.value.reason == "KEY_NOT_APPROVED"
        # The real alice is not locked out.
        async with AirlockClient.connect(server.target, tokens[alice]) as me:
            answered = await me.respond_to_invitation(invitation.invitation_id, True, alice_new)
            assert answered.team_state == Team.STATE_ACTIVE
        after = await admin.get_team(team.team_id)
        assert after.version == 2
        assert {a.approver_id: a.public_key for a in after.approvers}[alice] == public_key_bytes(
            alice_new
        )

        # A disabled approver's token stops working at once.
        await admin.disable_approver(carol)
        async with AirlockClient.connect(server.target, tokens[carol]) as me:
            with pytest.raises(UnauthenticatedError):
                await me.whoami()

    # A generic session named like Airlock's own, in another case: refused.
    async with AirlockClient.connect(server.target, service_token) as svc:
        with pytest.raises(InvalidArgumentError) as reserved:
            await svc.start_session(
                team.team_id,
                "backup:createrestoreaccessbackupvault",
                "arn:aws:backup:eu-west-1:111111111111:backup-vault:prod",
            )
        assert reserved.value.reason == "RESERVED_ACTION"
