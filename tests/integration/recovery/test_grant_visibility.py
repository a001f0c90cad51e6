"""ListRestoreAccess on SQLite and PostgreSQL: the owner of a vault sees every grant on it; a
recovery account sees its own grants (and those on vaults it owns), never another recovery
account's grant on the same vault, on any page, with any filter."""

from __future__ import annotations

from datetime import timedelta

import pytest
from integration.recovery.recovery_world import OWNER, RECOVERY, World

from airlock_server.domain.errors import InvalidArgument
from airlock_server.domain.principals import Principal, PrincipalKind
from airlock_server.domain.vaults import GrantState, RestoreAccessGrant

pytestmark = pytest.mark.asyncio

SECOND = "444444444444"


async def _walk(
    world: World, caller: Principal, arn: str = "", state: GrantState | None = None, size: int = 0
) -> list[RestoreAccessGrant]:
    """Every page of ListRestoreAccess, in order."""
    out: list[RestoreAccessGrant] = []
    token = ""
    while True:
        page = await world.app.vaults.list_restore_access(caller, arn, state, size, token)
        assert size == 0 or len(page.items) <= size
        out += page.items
        if not page.next_page_token:
            return out
        token = page.next_page_token


def _ids(grants: list[RestoreAccessGrant]) -> list[str]:
    return [g.grant_id for g in grants]


async def test_each_recovery_account_sees_its_own_grants_the_owner_sees_all(
    world: World,
) -> None:
    second = Principal(PrincipalKind.ACCOUNT, SECOND)
    await world.app.identities.register_account(world.admin, SECOND, "acct-444", "")
    await world.share(world.team_id, second)
    arn = await world.vault()
    # A vault of the second recovery account, on which the first one holds a grant too.
    theirs = await world.app.vaults.create_vault(second, "", "second-lag", 7, 35, {}, "")
    await world.app.vaults.associate(second, theirs.vault_arn, world.team_id, "", "")

    made: dict[str, list[str]] = {}  # who -> grant ids, in the order made

    async def request(caller: Principal, vault_arn: str = arn) -> tuple[str, str]:
        world.clock.advance(timedelta(seconds=1))
        asked = await world.app.vaults.request_restore_access(caller, vault_arn, "", "", "")
        made.setdefault(caller.subject, []).append(asked.grant.grant_id)
        return asked.grant.grant_id, asked.session.session.session_id

    # Each recovery account: a request it cancelled (FAILED), then another one.
    _, cancelled = await request(world.recovery)
    await world.app.sessions.cancel_session(world.recovery, cancelled, "")
    _, cancelled = await request(second)
    await world.app.sessions.cancel_session(second, cancelled, "")
    available, approved = await request(world.recovery)
    await world.vote("alice", approved)
    await world.vote("bob", approved)
    pending, _ = await request(second)
    own, _ = await request(world.owner)
    elsewhere, _ = await request(world.recovery, theirs.vault_arn)
    # Two at the same instant: paging breaks the tie by grant id.
    world.clock.advance(timedelta(seconds=-1))
    same_time, _ = await request(world.owner, theirs.vault_arn)

    everything = await _walk(world, world.admin)
    assert len(everything) == 7
    newest_first = sorted(everything, key=lambda g: (g.create_time, g.grant_id), reverse=True)
    assert _ids(everything) == _ids(newest_first)
    on_arn = [g for g in everything if g.vault_arn == arn]
    assert len(on_arn) == 5

    # Each recovery account, on the shared vault: its own two grants only, whatever the paging.
    for caller in (world.recovery, second):
        mine = [g for g in on_arn if g.account_id == caller.subject]
        assert len(mine) == 2
        for size in (0, 1, 2):
            listed = await _walk(world, caller, arn, size=size)
            assert _ids(listed) == _ids(mine), (caller, size)
    assert {g.state for g in await _walk(world, world.recovery, arn)} == {
        GrantState.FAILED,
        GrantState.AVAILABLE,
    }
    assert {g.state for g in await _walk(world, second, arn)} == {
        GrantState.FAILED,
        GrantState.CREATING,
    }
    # With a state filter, still only its own.
    failed = await _walk(world, second, arn, GrantState.FAILED, size=1)
    assert [(g.account_id, g.state) for g in failed] == [(SECOND, GrantState.FAILED)]
    assert _ids(await _walk(world, second, arn, GrantState.AVAILABLE)) == []
    assert _ids(await _walk(world, world.recovery, arn, GrantState.AVAILABLE)) == [available]
    assert _ids(await _walk(world, world.recovery, arn, GrantState.CREATING)) == []

    # Without a vault filter: its own grants everywhere plus every grant on the vaults it owns.
    assert _ids(await _walk(world, world.recovery, size=1)) == _ids(
        [g for g in everything if g.account_id == RECOVERY]
    )
    second_sees = await _walk(world, second, size=2)
    assert _ids(second_sees) == _ids(
        [g for g in everything if g.account_id == SECOND or g.vault_arn == theirs.vault_arn]
    )
    assert set(_ids(second_sees)) == {*made[SECOND], elsewhere, same_time}
    assert available not in _ids(second_sees)
    assert pending not in _ids(await _walk(world, world.recovery))

    # The owner: every grant on its vault, from all three accounts, on every page.
    for size in (0, 1, 2, 3):
        assert _ids(await _walk(world, world.owner, arn, size=size)) == _ids(on_arn), size
    owner_all = await _walk(world, world.owner, size=2)
    assert {g.account_id for g in owner_all} == {OWNER, RECOVERY, SECOND}
    # ...and its own grant on the other vault, but not the first account's grant there.
    assert set(_ids(owner_all)) == {g.grant_id for g in on_arn} | {same_time}
    assert elsewhere not in _ids(owner_all)
    assert _ids(await _walk(world, world.owner, arn, GrantState.CREATING)) == [own, pending]

    # A page token is bound to its caller: another account cannot continue it.
    first = await world.app.vaults.list_restore_access(world.recovery, arn, None, 1, "")
    assert first.next_page_token
    with pytest.raises(InvalidArgument):
        await world.app.vaults.list_restore_access(second, arn, None, 1, first.next_page_token)
