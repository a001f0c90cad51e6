"""IdentityService use cases on SQLite and PostgreSQL."""

from __future__ import annotations

import asyncio
import base64
import hashlib
from datetime import timedelta

import pytest
from integration.harness import Harness, HarnessFactory
from sqlalchemy import text

from airlock_server.app.identity import TOKEN_PREFIX
from airlock_server.bootstrap import Wiring
from airlock_server.domain.errors import (
    AlreadyExists,
    FailedPrecondition,
    InvalidArgument,
    NotFound,
    PermissionDenied,
    Unauthenticated,
)
from airlock_server.domain.principals import Principal, PrincipalKind
from airlock_server.persistence.models import Base

pytestmark = pytest.mark.asyncio

ACCOUNT = "111122223333"
ALL_TABLES = tuple(sorted(Base.metadata.tables))


async def all_counts(app: Harness) -> dict[str, int]:
    return await app.counts(*ALL_TABLES)


async def _approvers(app: Harness, admin: Principal, *ids: str) -> None:
    for approver_id in ids:
        await app.identities.create_approver(
            admin, approver_id, f"Approver {approver_id}", f"{approver_id}@example.com", ""
        )


# --- approvers ------------------------------------------------------------------------------


async def test_create_get_disable_approver(app: Harness, admin: Principal) -> None:
    created = await app.identities.create_approver(admin, "alice", "Alice", "alice@ex.com", "")
    assert (created.approver_id, created.display_name, created.email) == (
        "alice",
        "Alice",
        "alice@ex.com",
    )
    assert created.enabled
    assert created.create_time == app.clock.now

    got = await app.identities.get_approver(admin, "alice")
    assert got == created
    # An approver reads itself, not others.
    alice = Principal(PrincipalKind.APPROVER, "alice")
    assert (await app.identities.get_approver(alice, "alice")).approver_id == "alice"
    with pytest.raises(NotFound):
        await app.identities.get_approver(admin, "nobody")
    with pytest.raises(AlreadyExists):
        await app.identities.create_approver(admin, "alice", "Alice 2", "", "")

    app.clock.advance(timedelta(minutes=5))
    disabled = await app.identities.disable_approver(admin, "alice", "")
    assert not disabled.enabled
    assert disabled.disable_time == app.clock.now
    # Disabling again changes nothing and records nothing.
    events = await app.count("events")
    again = await app.identities.disable_approver(admin, "alice", "")
    assert again == disabled
    assert await app.count("events") == events
    with pytest.raises(NotFound):
        await app.identities.disable_approver(admin, "nobody", "")


async def test_create_approver_validation_names_fields(app: Harness, admin: Principal) -> None:
    before = await all_counts(app)
    with pytest.raises(InvalidArgument) as err:
        await app.identities.create_approver(admin, "bad id!", "", "not-an-email", "")
    assert {v.field for v in err.value.violations} == {"approver_id", "display_name", "email"}
    assert await all_counts(app) == before


async def test_list_approvers_pages_through_tokens(app: Harness, admin: Principal) -> None:
    ids = [f"appr-{i:02d}" for i in range(7)]
    await _approvers(app, admin, *ids)
    await app.identities.disable_approver(admin, "appr-03", "")

    seen: list[str] = []
    token = ""
    pages = 0
    while True:
        page = await app.identities.list_approvers(admin, None, 3, token)
        seen += [a.approver_id for a in page.items]
        pages += 1
        token = page.next_page_token
        if not token:
            break
    assert seen == ids
    assert pages == 3

    enabled = await app.identities.list_approvers(admin, True, 100, "")
    assert [a.approver_id for a in enabled.items] == [i for i in ids if i != "appr-03"]
    disabled = await app.identities.list_approvers(admin, False, 100, "")
    assert [a.approver_id for a in disabled.items] == ["appr-03"]

    # A token is bound to the filter that produced it.
    first = await app.identities.list_approvers(admin, True, 2, "")
    assert first.next_page_token
    with pytest.raises(InvalidArgument) as err:
        await app.identities.list_approvers(admin, None, 2, first.next_page_token)
    assert [v.field for v in err.value.violations] == ["page_token"]
    with pytest.raises(InvalidArgument):
        await app.identities.list_approvers(admin, True, 2, "garbage!")
    with pytest.raises(InvalidArgument):
        await app.identities.list_approvers(admin, True, -1, "")


# --- accounts -------------------------------------------------------------------------------


async def test_register_and_list_accounts(app: Harness, admin: Principal) -> None:
    ids = [f"{i:012d}" for i in range(1, 6)]
    for i, account_id in enumerate(ids):
        account = await app.identities.register_account(admin, account_id, f"acct-{i}", "")
        assert account.account_id == account_id
    with pytest.raises(AlreadyExists):
        await app.identities.register_account(admin, ids[0], "again", "")
    with pytest.raises(InvalidArgument) as err:
        await app.identities.register_account(admin, "12345", "bad name", "")
    assert {v.field for v in err.value.violations} == {"account_id", "name"}

    seen: list[str] = []
    token = ""
    while True:
        page = await app.identities.list_accounts(admin, 2, token)
        seen += [a.account_id for a in page.items]
        token = page.next_page_token
        if not token:
            break
    assert seen == ids
    # An accounts token is no approvers token.
    accounts_token = (await app.identities.list_accounts(admin, 2, "")).next_page_token
    with pytest.raises(InvalidArgument):
        await app.identities.list_approvers(admin, None, 2, accounts_token)


# --- credentials ----------------------------------------------------------------------------


async def test_issued_token_is_random_and_stored_only_as_a_hash(
    app: Harness, admin: Principal
) -> None:
    await _approvers(app, admin, "alice")
    issued = await app.identities.issue_credential(
        admin, PrincipalKind.APPROVER, "alice", "alice's laptop", None, ""
    )
    token = issued.token
    assert token.startswith(TOKEN_PREFIX)
    raw = base64.urlsafe_b64decode(token[len(TOKEN_PREFIX) :] + "==")
    assert len(raw) * 8 >= 256
    other = await app.identities.issue_credential(
        admin, PrincipalKind.APPROVER, "alice", "", None, ""
    )
    assert other.token != token

    async with app.engine.connect() as conn:
        row = (
            await conn.execute(
                text("SELECT * FROM credentials WHERE credential_id = :id"),
                {"id": issued.credential.credential_id},
            )
        ).one()
    assert bytes(row.token_hash) == hashlib.sha256(token.encode()).digest()
    # Nowhere in the database: not in credentials, not in the event log, not anywhere else.
    secret = token[len(TOKEN_PREFIX) :]
    async with app.engine.connect() as conn:
        for table in ALL_TABLES:
            for r in await conn.execute(text(f"SELECT * FROM {table}")):
                for value in r:
                    if isinstance(value, bytes | bytearray | memoryview):
                        assert secret.encode() not in bytes(value), table
                    else:
                        assert secret not in str(value), table


async def test_authenticate_revoke_and_expiry(app: Harness, admin: Principal) -> None:
    await app.identities.register_account(admin, ACCOUNT, "prod", "")
    issued = await app.identities.issue_credential(
        admin, PrincipalKind.ACCOUNT, ACCOUNT, "backup admin", None, ""
    )
    caller = await app.identities.authenticate(issued.token)
    assert caller.principal == Principal(PrincipalKind.ACCOUNT, ACCOUNT)
    assert caller.credential_id == issued.credential.credential_id

    for bad in ("", "alk_unknown", issued.token + "x"):
        with pytest.raises(Unauthenticated):
            await app.identities.authenticate(bad)

    revoked = await app.identities.revoke_credential(admin, issued.credential.credential_id, "")
    assert revoked.revoke_time == app.clock.now
    with pytest.raises(Unauthenticated):
        await app.identities.authenticate(issued.token)
    with pytest.raises(NotFound):
        await app.identities.revoke_credential(admin, "cred-nope", "")

    expiring = await app.identities.issue_credential(
        admin, PrincipalKind.SERVICE, "restore-svc", "", app.clock.now + timedelta(hours=1), ""
    )
    assert (await app.identities.authenticate(expiring.token)).principal.kind is (
        PrincipalKind.SERVICE
    )
    app.clock.advance(timedelta(minutes=59))
    await app.identities.authenticate(expiring.token)
    app.clock.advance(timedelta(minutes=1))
    with pytest.raises(Unauthenticated):
        await app.identities.authenticate(expiring.token)

    with pytest.raises(InvalidArgument) as err:
        await app.identities.issue_credential(
            admin, PrincipalKind.SERVICE, "x", "", app.clock.now - timedelta(seconds=1), ""
        )
    assert [v.field for v in err.value.violations] == ["expire_time"]


async def test_issue_for_every_principal_kind(app: Harness, admin: Principal) -> None:
    await _approvers(app, admin, "alice")
    await app.identities.register_account(admin, ACCOUNT, "prod", "")
    for kind, subject in [
        (PrincipalKind.ADMIN, "ops"),
        (PrincipalKind.ACCOUNT, ACCOUNT),
        (PrincipalKind.APPROVER, "alice"),
        (PrincipalKind.SERVICE, "restore-svc"),
        (PrincipalKind.AUDITOR, "compliance"),
    ]:
        issued = await app.identities.issue_credential(admin, kind, subject, "", None, "")
        assert (await app.identities.authenticate(issued.token)).principal == Principal(
            kind, subject
        )

    before = await all_counts(app)
    with pytest.raises(NotFound):
        await app.identities.issue_credential(admin, PrincipalKind.APPROVER, "nobody", "", None, "")
    with pytest.raises(NotFound):
        await app.identities.issue_credential(
            admin, PrincipalKind.ACCOUNT, "999999999999", "", None, ""
        )
    with pytest.raises(InvalidArgument):
        await app.identities.issue_credential(admin, PrincipalKind.ACCOUNT, "12", "", None, "")
    with pytest.raises(InvalidArgument):
        await app.identities.issue_credential(admin, PrincipalKind.SYSTEM, "", "", None, "")
    await app.identities.disable_approver(admin, "alice", "")
    before = await all_counts(app)
    with pytest.raises(FailedPrecondition) as err:
        await app.identities.issue_credential(admin, PrincipalKind.APPROVER, "alice", "", None, "")
    assert err.value.reason == "APPROVER_DISABLED"
    assert await all_counts(app) == before


async def test_list_credentials_by_state(app: Harness, admin: Principal) -> None:
    await app.identities.register_account(admin, ACCOUNT, "prod", "")
    active = await app.identities.issue_credential(
        admin, PrincipalKind.ACCOUNT, ACCOUNT, "", None, ""
    )
    expiring = await app.identities.issue_credential(
        admin, PrincipalKind.ACCOUNT, ACCOUNT, "", app.clock.now + timedelta(minutes=1), ""
    )
    revoked = await app.identities.issue_credential(
        admin, PrincipalKind.SERVICE, "svc", "", None, ""
    )
    await app.identities.revoke_credential(admin, revoked.credential.credential_id, "")
    app.clock.advance(timedelta(minutes=2))

    async def ids(
        state: str | None,
        principal: Principal | None = None,
        kind: PrincipalKind | None = None,
    ) -> set[str]:
        page = await app.identities.list_credentials(admin, principal, kind, state, 100, "")
        return {c.credential_id for c in page.items}

    bootstrap_ids = await ids(None, kind=PrincipalKind.ADMIN)
    assert len(bootstrap_ids) == 1
    assert await ids("active") == {active.credential.credential_id, *bootstrap_ids}
    assert await ids("expired") == {expiring.credential.credential_id}
    assert await ids("revoked") == {revoked.credential.credential_id}
    assert await ids(None, Principal(PrincipalKind.ACCOUNT, ACCOUNT)) == {
        active.credential.credential_id,
        expiring.credential.credential_id,
    }
    assert await ids(None, kind=PrincipalKind.SERVICE) == {revoked.credential.credential_id}

    # Paging, with the token bound to the filter.
    everything: list[str] = []
    token = ""
    while True:
        page = await app.identities.list_credentials(admin, None, None, None, 1, token)
        everything += [c.credential_id for c in page.items]
        token = page.next_page_token
        if not token:
            break
    assert len(everything) == 4
    assert len(set(everything)) == 4
    first = await app.identities.list_credentials(admin, None, None, "active", 1, "")
    with pytest.raises(InvalidArgument):
        await app.identities.list_credentials(
            admin, None, None, "revoked", 1, first.next_page_token
        )


# --- bootstrap ------------------------------------------------------------------------------


async def test_bootstrap_only_once(app: Harness, admin: Principal) -> None:
    before = await all_counts(app)
    with pytest.raises(FailedPrecondition) as err:
        await app.identities.bootstrap_admin()
    assert err.value.reason == "ALREADY_BOOTSTRAPPED"
    assert await all_counts(app) == before
    assert admin.kind is PrincipalKind.ADMIN


async def test_racing_bootstraps_make_one_admin(harnesses: HarnessFactory) -> None:
    a, b = harnesses(), harnesses()
    results = await asyncio.gather(
        a.identities.bootstrap_admin(), b.identities.bootstrap_admin(), return_exceptions=True
    )
    issued = [r for r in results if not isinstance(r, BaseException)]
    refused = [r for r in results if isinstance(r, FailedPrecondition)]
    assert len(issued) == 1, results
    assert len(refused) == 1, results
    assert await a.count("credentials") == 1


# --- request_id -----------------------------------------------------------------------------


async def test_request_id_retries_return_the_first_result(app: Harness, admin: Principal) -> None:
    first = await app.identities.create_approver(admin, "alice", "Alice", "", "req-1")
    before = await all_counts(app)
    # A retry with the same id returns the first result, even with other arguments.
    again = await app.identities.create_approver(admin, "alice", "Alice", "", "req-1")
    assert again == first
    assert await all_counts(app) == before

    acct = await app.identities.register_account(admin, ACCOUNT, "prod", "req-2")
    before = await all_counts(app)
    assert await app.identities.register_account(admin, ACCOUNT, "prod", "req-2") == acct
    assert await all_counts(app) == before

    issued = await app.identities.issue_credential(
        admin, PrincipalKind.ACCOUNT, ACCOUNT, "", None, "req-3"
    )
    before = await all_counts(app)
    retried = await app.identities.issue_credential(
        admin, PrincipalKind.ACCOUNT, ACCOUNT, "", None, "req-3"
    )
    assert retried.credential == issued.credential
    assert retried.token == ""  # the token is shown once and exists only as a hash
    assert await all_counts(app) == before

    revoked = await app.identities.revoke_credential(
        admin, issued.credential.credential_id, "req-4"
    )
    before = await all_counts(app)
    assert (
        await app.identities.revoke_credential(admin, issued.credential.credential_id, "req-4")
        == revoked
    )
    assert await all_counts(app) == before

    with pytest.raises(InvalidArgument) as err:
        await app.identities.create_approver(admin, "bob", "Bob", "", "x" * 37)
    assert [v.field for v in err.value.violations] == ["request_id"]


async def test_racing_retries_create_once(harnesses: HarnessFactory) -> None:
    """Two calls with one request_id, each on its own engine: one effect, one result."""
    a, b = harnesses(), harnesses()
    admin = (
        await a.identities.authenticate((await a.identities.bootstrap_admin()).token)
    ).principal
    await a.identities.register_account(admin, ACCOUNT, "prod", "")
    before = await all_counts(a)

    for round_ in range(3):
        rid = f"race-approver-{round_}"
        x, y = await asyncio.gather(
            a.identities.create_approver(admin, f"racer-{round_}", "Racer", "", rid),
            b.identities.create_approver(admin, f"racer-{round_}", "Racer", "", rid),
        )
        assert x == y

        rid = f"race-cred-{round_}"
        c1, c2 = await asyncio.gather(
            a.identities.issue_credential(admin, PrincipalKind.ACCOUNT, ACCOUNT, "", None, rid),
            b.identities.issue_credential(admin, PrincipalKind.ACCOUNT, ACCOUNT, "", None, rid),
        )
        assert c1.credential == c2.credential
        assert sorted([bool(c1.token), bool(c2.token)]) == [False, True]

    after = await all_counts(a)
    assert after["approvers"] == before["approvers"] + 3
    assert after["credentials"] == before["credentials"] + 3
    assert after["idempotency_keys"] == before["idempotency_keys"] + 6
    assert after["events"] == before["events"] + 6


# --- refusals -------------------------------------------------------------------------------


async def test_non_admins_are_refused_and_nothing_changes(app: Harness, admin: Principal) -> None:
    await _approvers(app, admin, "alice")
    await app.identities.register_account(admin, ACCOUNT, "prod", "")
    cred = await app.identities.issue_credential(
        admin, PrincipalKind.ACCOUNT, ACCOUNT, "", None, ""
    )
    callers = [
        Principal(PrincipalKind.ACCOUNT, ACCOUNT),
        Principal(PrincipalKind.APPROVER, "alice"),
        Principal(PrincipalKind.SERVICE, "svc"),
        Principal(PrincipalKind.AUDITOR, "audit"),
    ]
    before = await all_counts(app)
    ids = app.identities
    cred_id = cred.credential.credential_id
    for caller in callers:
        calls = [
            ids.create_approver(caller, "mallory", "Mallory", "", ""),
            ids.disable_approver(caller, "alice", ""),
            ids.register_account(caller, "999988887777", "evil", ""),
            ids.issue_credential(caller, PrincipalKind.ADMIN, "evil", "", None, ""),
            ids.revoke_credential(caller, cred_id, ""),
        ]
        if caller.kind is not PrincipalKind.AUDITOR:
            calls += [
                ids.list_approvers(caller, None, 10, ""),
                ids.list_accounts(caller, 10, ""),
                ids.list_credentials(caller, None, None, None, 10, ""),
            ]
        for call in calls:
            with pytest.raises(PermissionDenied):
                await call
    with pytest.raises(PermissionDenied):
        await ids.get_approver(Principal(PrincipalKind.APPROVER, "bob"), "alice")
    with pytest.raises(PermissionDenied):
        await ids.get_approver(Principal(PrincipalKind.ACCOUNT, ACCOUNT), "alice")
    assert await all_counts(app) == before
    assert (await ids.get_approver(admin, "alice")).enabled
    await ids.authenticate(cred.token)

    # The auditor reads.
    auditor = Principal(PrincipalKind.AUDITOR, "audit")
    assert len((await ids.list_approvers(auditor, None, 10, "")).items) == 1
    assert len((await ids.list_credentials(auditor, None, None, None, 10, "")).items) == 2


async def test_the_servers_own_wiring_works_on_the_database(wiring: Wiring) -> None:
    issued = await wiring.app.identities.bootstrap_admin()
    caller = await wiring.app.identities.authenticate(issued.token)
    assert caller.principal.kind is PrincipalKind.ADMIN
    assert wiring.deps.region == "us-east-1"
