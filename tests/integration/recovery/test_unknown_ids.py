"""Ids cannot be probed (AIP-211, AIP-193), on SQLite and PostgreSQL.

A caller who could not see an object gets the same PERMISSION_DENIED (code, reason, message
and metadata shape) for an id that names nothing as for an existing object it may not see.
Admin and auditor, who see everything, get NOT_FOUND; so does an account for a vault ARN in its
own account (the ARN names the account). The rule: `missing_or_denied` in domain/principals.py;
docs/authorization.md states it.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from datetime import timedelta

import pytest
from integration.recovery.recovery_world import OWNER, STRANGER, World

from airlock_server.domain.errors import DomainError, NotFound, PermissionDenied
from airlock_server.domain.principals import Principal, PrincipalKind
from airlock_server.domain.sessions import ExecutionStatus, VoteDecision
from airlock_server.domain.teams import TeamSpec

pytestmark = pytest.mark.asyncio

LONE = Principal(PrincipalKind.SERVICE, "lonely")  # no share of any team
OUTSIDER = Principal(PrincipalKind.APPROVER, "dave")  # an approver of no team concerned
STRANGER_P = Principal(PrincipalKind.ACCOUNT, STRANGER)  # no share, no vault
CALLERS = (STRANGER_P, OUTSIDER, LONE)

Call = Callable[[Principal, str], Awaitable[object]]


async def _error(call: Call, caller: Principal, key: str) -> DomainError:
    with pytest.raises(DomainError) as err:
        await call(caller, key)
    return err.value


def _shape(error: DomainError, key: str) -> tuple[object, ...]:
    """What a caller sees of an error, with the id it named taken out."""
    meta = {k: v.replace(key, "<id>") for k, v in error.metadata.items()}
    return type(error), error.reason, error.message.replace(key, "<id>"), meta


async def assert_unprobeable(
    call: Call, known: str, unknown: str, callers: tuple[Principal, ...] = CALLERS
) -> None:
    for caller in callers:
        seen = await _error(call, caller, known)
        missing = await _error(call, caller, unknown)
        assert isinstance(seen, PermissionDenied), (caller, seen)
        assert _shape(missing, unknown) == _shape(seen, known), caller


async def assert_not_found(
    call: Call, unknown: str, callers: tuple[Principal, ...], reason: str
) -> None:
    for caller in callers:
        error = await _error(call, caller, unknown)
        assert isinstance(error, NotFound), (caller, error)
        assert error.reason == reason


def _unknown_arn(arn: str, account: str = OWNER) -> str:
    head, _, _ = arn.rpartition(":")
    parts = head.split(":")
    parts[4] = account
    return ":".join(parts) + ":no-such-vault"


async def _restore_session(world: World) -> tuple[str, str, str]:
    arn = await world.vault()
    asked = await world.app.vaults.request_restore_access(world.recovery, arn, "", "", "")
    return arn, asked.session.session.session_id, asked.grant.grant_id


async def test_teams(world: World) -> None:
    private = await world.make_team("private", ("dave", "erin"))
    teams = world.app.teams

    async def get(caller: Principal, key: str) -> object:
        return await teams.get_team(caller, key)

    await assert_unprobeable(get, private, "team-nope")
    await assert_not_found(
        get, "team-nope", (world.admin, world.auditor), "APPROVAL_TEAM_NOT_FOUND"
    )

    async def start(caller: Principal, key: str) -> object:
        return await world.app.sessions.start_session(caller, key, "deploy", "svc/x", {}, "", "")

    await assert_unprobeable(start, world.team_id, "team-nope", (LONE,))

    bare = await world.app.vaults.create_vault(world.owner, "", "bare", 7, 8, {}, "")

    async def associate(caller: Principal, key: str) -> object:
        return await world.app.vaults.associate(caller, bare.vault_arn, key, "", "")

    await assert_unprobeable(associate, private, "team-nope", (world.owner,))


async def test_invitations(world: World) -> None:
    team = await world.app.teams.create_team(
        world.admin,
        TeamSpec("fresh", "", ("alice", "bob"), 1, timedelta(hours=24), timedelta(hours=24)),
        "",
    )
    invitation_id = team.current.members[0].invitation_id

    async def respond(caller: Principal, key: str) -> object:
        return await world.app.teams.respond_to_invitation(caller, key, False, b"", b"", "")

    # An invitation id does not name its approver: even the approver's own unknown id is denied.
    await assert_unprobeable(
        respond,
        invitation_id,
        "inv-nope",
        (OUTSIDER, world.approver("bob"), world.approver("carol")),
    )


async def test_sessions(world: World) -> None:
    _, sid, _ = await _restore_session(world)
    sessions = world.app.sessions

    async def get(caller: Principal, key: str) -> object:
        return await sessions.get_session(caller, key)

    async def watch(caller: Principal, key: str) -> object:
        stream = sessions.watch(caller, key)
        try:
            return await anext(stream)
        finally:
            await stream.aclose()

    async def proof(caller: Principal, key: str) -> object:
        return await sessions.export_approval_proof(caller, key)

    async def cancel(caller: Principal, key: str) -> object:
        return await sessions.cancel_session(caller, key, "")

    for call in (get, watch, proof, cancel):
        await assert_unprobeable(call, sid, "ses-nope", (*CALLERS, world.service))
        await assert_not_found(call, "ses-nope", (world.admin, world.auditor), "SESSION_NOT_FOUND")

    async def vote(caller: Principal, key: str) -> object:
        return await sessions.vote(caller, key, VoteDecision.REJECT, "", b"sig", "")

    await assert_unprobeable(vote, sid, "ses-nope", (OUTSIDER, world.approver("erin")))

    generic = await sessions.start_session(
        world.service, world.team_id, "deploy", "svc", {}, "", ""
    )

    async def complete(caller: Principal, key: str) -> object:
        return await sessions.complete_session(caller, key, ExecutionStatus.EXECUTED, "", "")

    await assert_unprobeable(complete, generic.session.session_id, "ses-nope", (LONE,))


async def test_vaults(world: World) -> None:
    arn, _, grant_id = await _restore_session(world)
    unknown = _unknown_arn(arn)
    vaults = world.app.vaults

    async def get(caller: Principal, key: str) -> object:
        return await vaults.get_vault(caller, key)

    async def request(caller: Principal, key: str) -> object:
        return await vaults.request_restore_access(caller, key, "", "", "")

    async def associate(caller: Principal, key: str) -> object:
        return await vaults.associate(caller, key, world.team_id, "", "")

    async def disassociate(caller: Principal, key: str) -> object:
        return await vaults.disassociate(caller, key, "", "")

    async def check(caller: Principal, key: str) -> object:
        return await vaults.check_access(caller, key, STRANGER)

    async def listed(caller: Principal, key: str) -> object:
        return await vaults.list_restore_access(caller, key, None, 0, "")

    for call in (get, request, associate, disassociate, listed):
        await assert_unprobeable(call, arn, unknown)
    await assert_unprobeable(check, arn, unknown, (STRANGER_P, OUTSIDER))
    for call in (get, check):
        await assert_not_found(call, unknown, (world.admin, world.auditor), "VAULT_NOT_FOUND")
    # The ARN names the account: the owner's own namespace answers NOT_FOUND.
    for call in (get, request, associate, disassociate, check):
        await assert_not_found(call, unknown, (world.owner,), "VAULT_NOT_FOUND")
    # A service asks CheckAccess about any vault; a known one gets an answer.
    await assert_not_found(check, unknown, (world.service,), "VAULT_NOT_FOUND")
    assert not (await vaults.check_access(LONE, arn, STRANGER)).allowed

    async def revoke(caller: Principal, key: str) -> object:
        return await vaults.revoke_restore_access(caller, key, "", "")

    # The grant's holder may not revoke it either; its vault is not named in the answer.
    await assert_unprobeable(revoke, grant_id, "rag-nope", (STRANGER_P, world.recovery))
    await assert_not_found(revoke, "rag-nope", (world.admin,), "RESTORE_ACCESS_GRANT_NOT_FOUND")


async def test_list_restore_access(world: World) -> None:
    arn, _, grant_id = await _restore_session(world)
    vaults = world.app.vaults
    # The owner and the grant's holder list the vault's grants; a stranger is refused.
    for caller in (world.owner, world.recovery, world.admin, world.auditor):
        page = await vaults.list_restore_access(caller, arn, None, 0, "")
        assert [g.grant_id for g in page.items] == [grant_id]
    with pytest.raises(PermissionDenied) as denied:
        await vaults.list_restore_access(world.stranger, arn, None, 0, "")
    assert denied.value.reason == "NOT_VISIBLE"
    # An account's own namespace, and readers, simply find nothing.
    own_unknown = _unknown_arn(arn, STRANGER)
    assert (await vaults.list_restore_access(world.stranger, own_unknown, None, 0, "")).items == ()
    assert (
        await vaults.list_restore_access(world.admin, _unknown_arn(arn), None, 0, "")
    ).items == ()
    # Without a vault, an account lists what it may see.
    assert (await vaults.list_restore_access(world.stranger, "", None, 0, "")).items == ()
