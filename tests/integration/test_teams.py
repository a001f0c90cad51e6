"""TeamService and invitations on SQLite and PostgreSQL."""

from __future__ import annotations

import asyncio
from datetime import timedelta

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from integration.harness import Harness, HarnessFactory
from sqlalchemy import text

from airlock_server.app.teams import InvitationView
from airlock_server.domain.errors import (
    AlreadyExists,
    FailedPrecondition,
    InvalidArgument,
    NotFound,
    PermissionDenied,
)
from airlock_server.domain.principals import Principal, PrincipalKind
from airlock_server.domain.teams import (
    InvitationState,
    TeamSpec,
    TeamState,
    TeamStatus,
    validate_team_spec,
)
from airlock_server.persistence.models import Base

pytestmark = pytest.mark.asyncio

ACCOUNT_A = "111111111111"
ACCOUNT_B = "222222222222"
ALL_TABLES = tuple(sorted(Base.metadata.tables))


def approver(approver_id: str) -> Principal:
    return Principal(PrincipalKind.APPROVER, approver_id)


def spec(
    name: str = "vault-guardians",
    approvers: tuple[str, ...] = ("alice", "bob", "carol"),
    m: int = 2,
    invitation_ttl: timedelta | None = None,
    session_ttl: timedelta | None = None,
    description: str = "guards the prod vaults",
) -> TeamSpec:
    return validate_team_spec(
        name=name,
        description=description,
        approver_ids=list(approvers),
        min_approvals=m,
        session_ttl=session_ttl,
        invitation_ttl=invitation_ttl,
    )


async def all_counts(app: Harness) -> dict[str, int]:
    return await app.counts(*ALL_TABLES)


async def setup_people(app: Harness, admin: Principal, *extra: str) -> None:
    for a in ("alice", "bob", "carol", *extra):
        await app.identities.create_approver(admin, a, a.title(), f"{a}@example.com", "")
    for account in (ACCOUNT_A, ACCOUNT_B):
        await app.identities.register_account(admin, account, f"acct-{account[0]}", "")


async def invitation(app: Harness, approver_id: str, team_id: str) -> InvitationView:
    page = await app.teams.list_invitations(approver(approver_id), None, team_id, 50, "")
    views = [v for v in page.items if v.team.team_id == team_id]
    assert len(views) == 1, views
    return views[0]


async def answer(
    app: Harness,
    approver_id: str,
    team_id: str,
    accept: bool = True,
    key: Ed25519PrivateKey | None = None,
) -> InvitationView:
    inv = await invitation(app, approver_id, team_id)
    invitation_id = inv.member.invitation_id
    if not accept:
        return await app.teams.respond_to_invitation(
            approver(approver_id), invitation_id, False, b"", b"", ""
        )
    key = key or Ed25519PrivateKey.generate()
    return await app.teams.respond_to_invitation(
        approver(approver_id),
        invitation_id,
        True,
        key.public_key().public_bytes_raw(),
        key.sign(invitation_id.encode("utf-8")),
        "",
    )


async def team_state_in_db(app: Harness, team_id: str) -> tuple[str, str]:
    async with app.engine.connect() as conn:
        row = (
            await conn.execute(
                text("SELECT state, status FROM teams WHERE team_id = :t"), {"t": team_id}
            )
        ).one()
    return row.state, row.status


# --- creation and validation ----------------------------------------------------------------


async def test_create_team_is_pending_with_one_invitation_each(
    app: Harness, admin: Principal
) -> None:
    await setup_people(app, admin, "dave")
    team = await app.teams.create_team(admin, spec(), "")
    assert team.state is TeamState.PENDING
    assert team.status is TeamStatus.PENDING_ACTIVATION
    assert team.current.version == 1
    assert team.current.min_approvals == 2
    assert team.current.approver_ids == ("alice", "bob", "carol")
    assert team.current.session_ttl == timedelta(hours=24)
    assert team.current.invitation_expire_time == app.clock.now + timedelta(hours=24)
    assert team.arn.endswith(team.team_id)
    assert {m.invitation_state for m in team.current.members} == {InvitationState.PENDING}
    assert len({m.invitation_id for m in team.current.members}) == 3

    got = await app.teams.get_team(admin, team.team_id)
    assert got == team
    for a in ("alice", "bob", "carol"):
        inv = await invitation(app, a, team.team_id)
        assert inv.member.approver_id == a
        assert inv.member.invitation_state is InvitationState.PENDING
        assert inv.version.version == 1
    dave = await app.teams.list_invitations(approver("dave"), None, "", 50, "")
    assert dave.items == ()
    # Approvers see teams through their invitations only.
    for a in ("bob", "dave"):
        with pytest.raises(PermissionDenied):
            await app.teams.get_team(approver(a), team.team_id)

    with pytest.raises(AlreadyExists):
        await app.teams.create_team(admin, spec(), "")


@pytest.mark.parametrize(
    ("kwargs", "fields"),
    [
        ({"m": 1}, {"min_approvals"}),
        ({"m": 4}, {"min_approvals"}),
        ({"approvers": ("alice",), "m": 2}, {"approver_ids"}),
        ({"approvers": tuple(f"a{i}" for i in range(51)), "m": 2}, {"approver_ids"}),
        ({"approvers": ("alice", "alice", "bob")}, {"approver_ids"}),
        ({"approvers": ("alice", "bad id!")}, {"approver_ids[1]"}),
        ({"invitation_ttl": timedelta(minutes=14)}, {"invitation_ttl"}),
        ({"invitation_ttl": timedelta(days=7, seconds=1)}, {"invitation_ttl"}),
        ({"session_ttl": timedelta(minutes=10)}, {"session_ttl"}),
        ({"session_ttl": timedelta(days=8)}, {"session_ttl"}),
        ({"name": "bad name"}, {"name"}),
        ({"name": "x" * 65}, {"name"}),
        ({"name": ""}, {"name"}),
        ({"description": "d" * 257}, {"description"}),
        ({"name": "no way", "m": 1}, {"name", "min_approvals"}),
    ],
)
async def test_create_team_validation_names_fields(
    app: Harness, admin: Principal, kwargs: dict[str, object], fields: set[str]
) -> None:
    await setup_people(app, admin)
    before = await all_counts(app)
    with pytest.raises(InvalidArgument) as err:
        await app.teams.create_team(admin, spec(**kwargs), "")  # type: ignore[arg-type]
    assert {v.field for v in err.value.violations} == fields
    assert await all_counts(app) == before


async def test_limits_that_pass(app: Harness, admin: Principal) -> None:
    ids = tuple(f"a{i:02d}" for i in range(50))
    for a in ids:
        await app.identities.create_approver(admin, a, a, "", "")
    team = await app.teams.create_team(
        admin,
        spec(
            "x" * 64,
            ids,
            50,
            invitation_ttl=timedelta(minutes=15),
            session_ttl=timedelta(days=7),
            description="d" * 256,
        ),
        "",
    )
    assert len(team.current.members) == 50
    team = await app.teams.create_team(admin, spec("a.b_c-D9", ids[:2], 2), "")
    assert team.current.min_approvals == 2


async def test_unknown_and_disabled_approvers_are_refused(app: Harness, admin: Principal) -> None:
    await setup_people(app, admin)
    await app.identities.disable_approver(admin, "bob", "")
    before = await all_counts(app)
    with pytest.raises(InvalidArgument) as err:
        await app.teams.create_team(admin, spec(approvers=("alice", "bob", "zed")), "")
    assert {v.field for v in err.value.violations} == {"approver_ids[1]", "approver_ids[2]"}
    assert await all_counts(app) == before


async def test_create_team_request_id_and_race(harnesses: HarnessFactory) -> None:
    a, b = harnesses(), harnesses()
    admin = (
        await a.identities.authenticate((await a.identities.bootstrap_admin()).token)
    ).principal
    await setup_people(a, admin)
    first = await a.teams.create_team(admin, spec("t1"), "req-t1")
    before = await all_counts(a)
    assert (await a.teams.create_team(admin, spec("t1"), "req-t1")).team_id == first.team_id
    assert await all_counts(a) == before

    x, y = await asyncio.gather(
        a.teams.create_team(admin, spec("t2"), "req-t2"),
        b.teams.create_team(admin, spec("t2"), "req-t2"),
    )
    assert x.team_id == y.team_id
    after = await all_counts(a)
    assert after["teams"] == before["teams"] + 1
    assert after["team_members"] == before["team_members"] + 3
    # team.created + one invitation.sent per approver, once.
    assert after["events"] == before["events"] + 4


# --- invitations ----------------------------------------------------------------------------


async def test_all_accept_makes_the_team_active(app: Harness, admin: Principal) -> None:
    await setup_people(app, admin)
    team = await app.teams.create_team(admin, spec(), "")
    keys = {a: Ed25519PrivateKey.generate() for a in ("alice", "bob", "carol")}

    view = await answer(app, "alice", team.team_id, key=keys["alice"])
    assert view.member.invitation_state is InvitationState.ACCEPTED
    assert view.member.public_key == keys["alice"].public_key().public_bytes_raw()
    assert view.team.state is TeamState.PENDING
    await answer(app, "bob", team.team_id, key=keys["bob"])
    assert (await app.teams.get_team(admin, team.team_id)).state is TeamState.PENDING
    app.clock.advance(timedelta(hours=1))
    view = await answer(app, "carol", team.team_id, key=keys["carol"])

    active = await app.teams.get_team(admin, team.team_id)
    assert (active.state, active.status) == (TeamState.ACTIVE, TeamStatus.ACTIVE)
    assert await team_state_in_db(app, team.team_id) == ("ACTIVE", "ACTIVE")
    assert active.revision > team.revision
    assert active.etag != team.etag
    for m in active.current.members:
        assert m.invitation_state is InvitationState.ACCEPTED
        assert m.public_key == keys[m.approver_id].public_key().public_bytes_raw()
    assert view.member.response_time == app.clock.now

    async with app.engine.connect() as conn:
        types = list(await conn.scalars(text("SELECT type FROM events ORDER BY seq")))
    assert types.count("invitation.accepted") == 3
    assert types.count("team.activated") == 1

    # An answer is final, and a settled team's invitations are closed.
    with pytest.raises(FailedPrecondition):
        await answer(app, "alice", team.team_id)


async def test_bad_key_proof_is_refused(app: Harness, admin: Principal) -> None:
    await setup_people(app, admin)
    team = await app.teams.create_team(admin, spec(), "")
    inv = await invitation(app, "alice", team.team_id)
    other = await invitation(app, "bob", team.team_id)
    key, wrong_key = Ed25519PrivateKey.generate(), Ed25519PrivateKey.generate()
    public = key.public_key().public_bytes_raw()
    invitation_id = inv.member.invitation_id
    before = await all_counts(app)

    bad_proofs = [
        wrong_key.sign(invitation_id.encode()),  # another key's signature
        key.sign(other.member.invitation_id.encode()),  # over another invitation
        key.sign(b"something else"),
    ]
    for proof in bad_proofs:
        with pytest.raises(InvalidArgument) as err:
            await app.teams.respond_to_invitation(
                approver("alice"), invitation_id, True, public, proof, ""
            )
        assert err.value.reason == "BAD_SIGNATURE"
        assert [v.field for v in err.value.violations] == ["key_proof"]

    with pytest.raises(InvalidArgument) as err:
        await app.teams.respond_to_invitation(
            approver("alice"), invitation_id, True, public[:31], key.sign(b"x"), ""
        )
    assert [v.field for v in err.value.violations] == ["public_key"]
    with pytest.raises(InvalidArgument) as err:
        await app.teams.respond_to_invitation(
            approver("alice"), invitation_id, True, public, b"short", ""
        )
    assert [v.field for v in err.value.violations] == ["key_proof"]

    assert await all_counts(app) == before
    assert (await invitation(app, "alice", team.team_id)).member.invitation_state is (
        InvitationState.PENDING
    )


async def test_one_decline_fails_activation(app: Harness, admin: Principal) -> None:
    await setup_people(app, admin)
    team = await app.teams.create_team(admin, spec(), "")
    await answer(app, "alice", team.team_id)
    view = await answer(app, "bob", team.team_id, accept=False)
    assert view.member.invitation_state is InvitationState.DECLINED
    assert view.member.public_key is None

    failed = await app.teams.get_team(admin, team.team_id)
    assert (failed.state, failed.status) == (TeamState.INACTIVE, TeamStatus.FAILED_ACTIVATION)
    assert await team_state_in_db(app, team.team_id) == ("INACTIVE", "FAILED_ACTIVATION")

    before = await all_counts(app)
    with pytest.raises(FailedPrecondition) as err:
        await answer(app, "carol", team.team_id)
    assert err.value.reason == "INVITATION_CLOSED"
    assert await all_counts(app) == before


async def test_invitation_ttl_expiry_at_read_time_and_by_the_sweeper(
    app: Harness, admin: Principal
) -> None:
    await setup_people(app, admin)
    ttl = timedelta(minutes=30)
    read_team = await app.teams.create_team(admin, spec("read", invitation_ttl=ttl), "")
    swept_team = await app.teams.create_team(admin, spec("swept", invitation_ttl=ttl), "")
    done_team = await app.teams.create_team(admin, spec("done", invitation_ttl=ttl), "")
    for a in ("alice", "bob", "carol"):
        await answer(app, a, done_team.team_id)
    await answer(app, "alice", swept_team.team_id)

    app.clock.advance(ttl - timedelta(seconds=1))
    assert await app.teams.sweep_expired_invitations() == 0
    assert (await app.teams.get_team(admin, read_team.team_id)).state is TeamState.PENDING

    app.clock.advance(timedelta(seconds=1))
    # Lists show what a settled team would say, before anything is written.
    listed = {t.name: t for t in (await app.teams.list_teams(admin, None, 50, "")).items}
    assert listed["read"].state is TeamState.INACTIVE
    assert listed["swept"].status is TeamStatus.FAILED_ACTIVATION
    assert listed["done"].state is TeamState.ACTIVE
    inactive = await app.teams.list_teams(admin, TeamState.INACTIVE, 50, "")
    assert {t.name for t in inactive.items} == {"read", "swept"}
    inv = await invitation(app, "bob", swept_team.team_id)
    assert inv.member.invitation_state is InvitationState.EXPIRED
    assert await team_state_in_db(app, swept_team.team_id) == ("PENDING", "PENDING_ACTIVATION")

    # A read of the team itself writes the outcome down.
    read = await app.teams.get_team(admin, read_team.team_id)
    assert (read.state, read.status) == (TeamState.INACTIVE, TeamStatus.FAILED_ACTIVATION)
    assert {m.invitation_state for m in read.current.members} == {InvitationState.EXPIRED}
    assert await team_state_in_db(app, read_team.team_id) == ("INACTIVE", "FAILED_ACTIVATION")

    # The sweeper settles the rest, once.
    assert await app.teams.sweep_expired_invitations() == 1
    assert await team_state_in_db(app, swept_team.team_id) == ("INACTIVE", "FAILED_ACTIVATION")
    swept = await app.teams.get_team(admin, swept_team.team_id)
    states = {m.approver_id: m.invitation_state for m in swept.current.members}
    assert states == {
        "alice": InvitationState.ACCEPTED,
        "bob": InvitationState.EXPIRED,
        "carol": InvitationState.EXPIRED,
    }
    assert await app.teams.sweep_expired_invitations() == 0

    before = await all_counts(app)
    with pytest.raises(FailedPrecondition):
        await answer(app, "bob", swept_team.team_id)
    assert await all_counts(app) == before


async def test_racing_sweepers_settle_each_team_once(harnesses: HarnessFactory) -> None:
    a, b = harnesses(), harnesses()
    admin = (
        await a.identities.authenticate((await a.identities.bootstrap_admin()).token)
    ).principal
    await setup_people(a, admin)
    ttl = timedelta(minutes=15)
    for i in range(6):
        await a.teams.create_team(admin, spec(f"t{i}", invitation_ttl=ttl), "")
    a.clock.advance(ttl)
    settled = await asyncio.gather(
        a.teams.sweep_expired_invitations(), b.teams.sweep_expired_invitations()
    )
    assert sum(settled) == 6
    async with a.engine.connect() as conn:
        failed = await conn.scalar(
            text("SELECT count(*) FROM events WHERE type = 'team.activation_failed'")
        )
        states = set(await conn.scalars(text("SELECT DISTINCT state FROM teams")))
    assert failed == 6
    assert states == {"INACTIVE"}


async def test_answering_someone_elses_invitation_is_refused(
    app: Harness, admin: Principal
) -> None:
    await setup_people(app, admin, "mallory")
    team = await app.teams.create_team(admin, spec(), "")
    inv = await invitation(app, "alice", team.team_id)
    invitation_id = inv.member.invitation_id
    key = Ed25519PrivateKey.generate()
    before = await all_counts(app)
    for thief in ("bob", "mallory"):
        for accept in (True, False):
            with pytest.raises(PermissionDenied):
                await app.teams.respond_to_invitation(
                    approver(thief),
                    invitation_id,
                    accept,
                    key.public_key().public_bytes_raw() if accept else b"",
                    key.sign(invitation_id.encode()) if accept else b"",
                    "",
                )
    # Only approver credentials answer invitations.
    with pytest.raises(PermissionDenied):
        await app.teams.respond_to_invitation(admin, invitation_id, False, b"", b"", "")
    with pytest.raises(PermissionDenied):
        await app.teams.list_invitations(admin, None, "", 10, "")
    # An unknown invitation id answers what another approver's invitation answers.
    with pytest.raises(PermissionDenied):
        await app.teams.respond_to_invitation(approver("alice"), "inv-nope", False, b"", b"", "")
    assert await all_counts(app) == before
    assert (await invitation(app, "alice", team.team_id)).member.invitation_state is (
        InvitationState.PENDING
    )


async def test_respond_request_id_retry(app: Harness, admin: Principal) -> None:
    await setup_people(app, admin)
    team = await app.teams.create_team(admin, spec(), "")
    inv = await invitation(app, "alice", team.team_id)
    first = await app.teams.respond_to_invitation(
        approver("alice"), inv.member.invitation_id, False, b"", b"", "r-1"
    )
    before = await all_counts(app)
    again = await app.teams.respond_to_invitation(
        approver("alice"), inv.member.invitation_id, False, b"", b"", "r-1"
    )
    assert again.member == first.member
    assert await all_counts(app) == before


# --- shares and visibility ------------------------------------------------------------------


async def test_share_unshare_and_list_shares(app: Harness, admin: Principal) -> None:
    await setup_people(app, admin)
    team = await app.teams.create_team(admin, spec(), "")
    share = await app.teams.share(admin, team.team_id, PrincipalKind.ACCOUNT, ACCOUNT_A, "")
    assert (share.principal_kind, share.subject) == ("account", ACCOUNT_A)
    await app.teams.share(admin, team.team_id, PrincipalKind.ACCOUNT, ACCOUNT_B, "")
    await app.teams.share(admin, team.team_id, PrincipalKind.SERVICE, "restore-svc", "")

    before = await all_counts(app)
    await app.teams.share(admin, team.team_id, PrincipalKind.ACCOUNT, ACCOUNT_A, "")
    assert await all_counts(app) == before  # sharing twice is no new fact

    for kind, subject, field in [
        (PrincipalKind.APPROVER, "alice", "principal.kind"),
        (PrincipalKind.ADMIN, "", "principal.kind"),
        (PrincipalKind.ACCOUNT, "123", "principal.subject"),
    ]:
        with pytest.raises(InvalidArgument) as err:
            await app.teams.share(admin, team.team_id, kind, subject, "")
        assert [v.field for v in err.value.violations] == [field]
    with pytest.raises(NotFound):
        await app.teams.share(admin, team.team_id, PrincipalKind.ACCOUNT, "999999999999", "")
    with pytest.raises(NotFound):
        await app.teams.share(admin, "team-nope", PrincipalKind.ACCOUNT, ACCOUNT_A, "")
    assert await all_counts(app) == before

    seen: list[tuple[str, str]] = []
    token = ""
    while True:
        page = await app.teams.list_shares(admin, team.team_id, 2, token)
        seen += [(s.principal_kind, s.subject) for s in page.items]
        token = page.next_page_token
        if not token:
            break
    assert seen == [("account", ACCOUNT_A), ("account", ACCOUNT_B), ("service", "restore-svc")]

    await app.teams.unshare(admin, team.team_id, PrincipalKind.ACCOUNT, ACCOUNT_B, "")
    page = await app.teams.list_shares(admin, team.team_id, 50, "")
    assert [s.subject for s in page.items] == [ACCOUNT_A, "restore-svc"]
    with pytest.raises(NotFound):
        await app.teams.unshare(admin, team.team_id, PrincipalKind.ACCOUNT, ACCOUNT_B, "")

    account_a = Principal(PrincipalKind.ACCOUNT, ACCOUNT_A)
    before = await all_counts(app)
    for call in (
        app.teams.share(account_a, team.team_id, PrincipalKind.ACCOUNT, ACCOUNT_B, ""),
        app.teams.unshare(account_a, team.team_id, PrincipalKind.ACCOUNT, ACCOUNT_A, ""),
        app.teams.list_shares(account_a, team.team_id, 10, ""),
    ):
        with pytest.raises(PermissionDenied):
            await call
    assert await all_counts(app) == before


async def test_an_account_sees_only_teams_shared_with_it(app: Harness, admin: Principal) -> None:
    await setup_people(app, admin)
    shared = await app.teams.create_team(admin, spec("shared"), "")
    private = await app.teams.create_team(admin, spec("private"), "")
    await app.teams.share(admin, shared.team_id, PrincipalKind.ACCOUNT, ACCOUNT_A, "")
    await app.teams.share(admin, private.team_id, PrincipalKind.SERVICE, "svc", "")
    account_a = Principal(PrincipalKind.ACCOUNT, ACCOUNT_A)
    account_b = Principal(PrincipalKind.ACCOUNT, ACCOUNT_B)
    service = Principal(PrincipalKind.SERVICE, "svc")

    async def names(caller: Principal) -> set[str]:
        return {t.name for t in (await app.teams.list_teams(caller, None, 50, "")).items}

    assert await names(admin) == {"shared", "private"}
    assert await names(account_a) == {"shared"}
    assert await names(account_b) == set()
    assert await names(service) == {"private"}
    with pytest.raises(PermissionDenied):
        await names(approver("alice"))
    assert (await app.teams.get_team(account_a, shared.team_id)).name == "shared"
    for caller, team in [(account_a, private), (account_b, shared), (service, shared)]:
        with pytest.raises(PermissionDenied):
            await app.teams.get_team(caller, team.team_id)

    await app.teams.unshare(admin, shared.team_id, PrincipalKind.ACCOUNT, ACCOUNT_A, "")
    assert await names(account_a) == set()
    with pytest.raises(PermissionDenied):
        await app.teams.get_team(account_a, shared.team_id)


async def test_list_teams_pages(app: Harness, admin: Principal) -> None:
    await setup_people(app, admin)
    for i in range(5):
        await app.teams.create_team(admin, spec(f"team-{i}"), "")
    seen: list[str] = []
    token = ""
    while True:
        page = await app.teams.list_teams(admin, None, 2, token)
        seen += [t.name for t in page.items]
        token = page.next_page_token
        if not token:
            break
    assert sorted(seen) == [f"team-{i}" for i in range(5)]
    assert len(seen) == 5
    first = await app.teams.list_teams(admin, None, 2, "")
    with pytest.raises(InvalidArgument):
        await app.teams.list_teams(admin, TeamState.ACTIVE, 2, first.next_page_token)


# --- deletion -------------------------------------------------------------------------------


async def test_delete_inactive_team_only_when_pending_or_inactive(
    app: Harness, admin: Principal
) -> None:
    await setup_people(app, admin)
    pending = await app.teams.create_team(admin, spec("pending"), "")
    inactive = await app.teams.create_team(admin, spec("inactive"), "")
    active = await app.teams.create_team(admin, spec("active"), "")
    await answer(app, "alice", inactive.team_id, accept=False)
    for a in ("alice", "bob", "carol"):
        await answer(app, a, active.team_id)

    before = await all_counts(app)
    with pytest.raises(PermissionDenied):
        await app.teams.delete_inactive_team(
            Principal(PrincipalKind.ACCOUNT, ACCOUNT_A), pending.team_id, ""
        )
    with pytest.raises(FailedPrecondition) as err:
        await app.teams.delete_inactive_team(admin, active.team_id, "")
    assert err.value.reason == "TEAM_NOT_INACTIVE"
    assert await all_counts(app) == before
    assert (await app.teams.get_team(admin, active.team_id)).state is TeamState.ACTIVE

    for team in (pending, inactive):
        deleted = await app.teams.delete_inactive_team(admin, team.team_id, "")
        assert deleted.state is TeamState.DELETED
        with pytest.raises(NotFound):
            await app.teams.get_team(admin, team.team_id)
        with pytest.raises(NotFound):
            await app.teams.delete_inactive_team(admin, team.team_id, "")
    names = {t.name for t in (await app.teams.list_teams(admin, None, 50, "")).items}
    assert names == {"active"}


async def test_non_admin_cannot_create_teams(app: Harness, admin: Principal) -> None:
    await setup_people(app, admin)
    before = await all_counts(app)
    for caller in (
        Principal(PrincipalKind.ACCOUNT, ACCOUNT_A),
        approver("alice"),
        Principal(PrincipalKind.SERVICE, "svc"),
        Principal(PrincipalKind.AUDITOR, "audit"),
    ):
        with pytest.raises(PermissionDenied):
            await app.teams.create_team(caller, spec(), "")
    assert await all_counts(app) == before
