"""AuditService on SQLite and PostgreSQL: listing, following, verifying, signed checkpoints, and
the refused calls the log records."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from datetime import timedelta

import grpc
import pytest
import pytest_asyncio
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from integration.harness import POSTGRES_ONLY, Harness, HarnessFactory
from integration.tamper import (
    change_one_byte,
    delete_event,
    drop_guards,
    rewrite_from,
    swap_events,
    truncate_after,
)

from airlock.v1 import (
    audit_service_pb2,
    audit_service_pb2_grpc,
    common_pb2,
    identity_service_pb2,
    identity_service_pb2_grpc,
)
from airlock_server.app.audit import AuditService, LogKey
from airlock_server.app.ports import EventQuery
from airlock_server.domain.errors import FailedPrecondition, InvalidArgument, PermissionDenied
from airlock_server.domain.events import Checkpoint, Event, Problem
from airlock_server.domain.principals import Principal, PrincipalKind
from airlock_server.persistence.db import session_factory
from airlock_server.persistence.event_log import PgListenSignal
from airlock_server.persistence.events import SqlEventLogReader
from airlock_server.transport.server import UseCases, build_server

pytestmark = pytest.mark.asyncio

AUDITOR = Principal(PrincipalKind.AUDITOR, "compliance")
ACCOUNT = "111122223333"
STEP = 5.0  # bound on each wait for a streamed event


@pytest_asyncio.fixture
async def keyed_app(harnesses: HarnessFactory) -> Harness:
    """The use cases of a server with a log key: it signs every append's head."""
    return harnesses(LogKey(Ed25519PrivateKey.generate()))


@pytest_asyncio.fixture
async def keyed_admin(keyed_app: Harness) -> Principal:
    issued = await keyed_app.identities.bootstrap_admin()
    return (await keyed_app.identities.authenticate(issued.token)).principal


async def approvers(app: Harness, admin: Principal, n: int, prefix: str = "ann") -> None:
    for i in range(n):
        await app.identities.create_approver(admin, f"{prefix}-{i}", f"Ann {i}", "", "")


async def all_events(audit: AuditService, query: EventQuery | None = None) -> list[Event]:
    out: list[Event] = []
    token = ""
    while True:
        page = await audit.list_events(admin_of(), query or EventQuery(), 0, 3, token)
        out.extend(page.items)
        token = page.next_page_token
        if not token:
            return out


def admin_of() -> Principal:
    return Principal(PrincipalKind.ADMIN, "")


# --- ListEvents --------------------------------------------------------------------------------


async def test_list_events_filters_and_pages(app: Harness, admin: Principal) -> None:
    await approvers(app, admin, 4)
    await app.identities.register_account(admin, ACCOUNT, "prod", "")
    await app.identities.issue_credential(admin, PrincipalKind.ACCOUNT, ACCOUNT, "", None, "")
    app.clock.advance(timedelta(hours=1))
    later = app.clock()
    await app.identities.disable_approver(admin, "ann-1", "")
    audit = app.audit

    everything = await all_events(audit)
    assert [e.seq for e in everything] == list(range(1, len(everything) + 1))
    assert len(everything) == 8  # bootstrap, 4 approvers, account, credential, disable

    created = await all_events(audit, EventQuery(type="approver.created"))
    assert [e.subjects[0] for e in created] == [f"approver:ann-{i}" for i in range(4)]
    family = await all_events(audit, EventQuery(type="approver."))
    assert [e.type for e in family] == ["approver.created"] * 4 + ["approver.disabled"]
    assert await all_events(audit, EventQuery(type="approver")) == []

    about_ann1 = await all_events(audit, EventQuery(subject="approver:ann-1"))
    assert [e.type for e in about_ann1] == ["approver.created", "approver.disabled"]

    by_admin = await all_events(audit, EventQuery(actor_kind="admin"))
    assert len(by_admin) == len(everything)
    assert await all_events(audit, EventQuery(actor="account:" + ACCOUNT)) == []

    recent = await all_events(audit, EventQuery(start_time=later))
    assert [e.type for e in recent] == ["approver.disabled"]
    older = await all_events(audit, EventQuery(end_time=later))
    assert len(older) == len(everything) - 1

    # after_seq, and a token bound to its query.
    page = await audit.list_events(AUDITOR, EventQuery(), 5, 2, "")
    assert [e.seq for e in page.items] == [6, 7]
    with pytest.raises(InvalidArgument) as bad:
        await audit.list_events(AUDITOR, EventQuery(type="approver."), 5, 2, page.next_page_token)
    assert bad.value.violations[0].field == "page_token"
    nxt = await audit.list_events(AUDITOR, EventQuery(), 5, 2, page.next_page_token)
    assert [e.seq for e in nxt.items] == [8]
    assert nxt.next_page_token == ""


async def test_only_auditors_and_admins_read_the_log(app: Harness, admin: Principal) -> None:
    for caller in (
        Principal(PrincipalKind.ACCOUNT, ACCOUNT),
        Principal(PrincipalKind.APPROVER, "ann-0"),
        Principal(PrincipalKind.SERVICE, "svc"),
    ):
        with pytest.raises(PermissionDenied):
            await app.audit.list_events(caller, EventQuery(), 0, 10, "")
        with pytest.raises(PermissionDenied):
            await app.audit.verify_log(caller, 0, 0, None)
        with pytest.raises(PermissionDenied):
            await app.audit.checkpoint(caller)
        with pytest.raises(PermissionDenied):
            await anext(aiter(app.audit.watch_events(caller, 0)))


# --- WatchEvents -------------------------------------------------------------------------------


async def next_events(stream: AsyncIterator[Event], n: int) -> list[Event]:
    return [await asyncio.wait_for(anext(stream), STEP) for _ in range(n)]


async def test_watch_replays_then_follows_every_replica_and_resumes(
    harnesses: HarnessFactory, admin: Principal
) -> None:
    first, second = harnesses(), harnesses()
    await approvers(first, admin, 3)  # seq 2..4 after bootstrap
    stream = first.audit.watch_events(AUDITOR, 0)
    replayed = await next_events(stream, 4)
    assert [e.seq for e in replayed] == [1, 2, 3, 4]

    # Live, written by another wiring (another replica's engine and pool).
    await approvers(second, admin, 2, prefix="bob")
    live = await next_events(stream, 2)
    assert [(e.seq, e.subjects[0]) for e in live] == [(5, "approver:bob-0"), (6, "approver:bob-1")]
    await stream.aclose()

    # Disconnected: events keep arriving; resuming after the last seq seen misses none and
    # repeats none.
    await approvers(second, admin, 2, prefix="cat")
    resumed = second.audit.watch_events(AUDITOR, 6)
    got = await next_events(resumed, 2)
    assert [e.seq for e in got] == [7, 8]

    # Concurrent writers on both wirings while the stream follows: each seq once, in order.
    async def write(h: Harness, prefix: str) -> None:
        await approvers(h, admin, 5, prefix=prefix)

    await asyncio.gather(write(first, "dan"), write(second, "eve"))
    more = await next_events(resumed, 10)
    assert [e.seq for e in more] == list(range(9, 19))
    await resumed.aclose()


# --- VerifyLog and checkpoints -----------------------------------------------------------------


async def test_an_untouched_log_verifies(keyed_app: Harness, keyed_admin: Principal) -> None:
    await approvers(keyed_app, keyed_admin, 5)
    audit = keyed_app.audit
    result = await audit.verify_log(AUDITOR, 0, 0, None)
    assert result.ok
    assert result.finding is None
    assert result.checked == 6
    assert result.head.seq == 6
    assert len(result.head.signature) == 64
    part = await audit.verify_log(AUDITOR, 3, 5, None)
    assert part.ok
    assert part.checked == 3
    checkpoint = await audit.checkpoint(AUDITOR)
    assert (await audit.verify_log(AUDITOR, 0, 0, checkpoint)).ok


async def test_a_checkpoint_needs_the_log_key(app: Harness, admin: Principal) -> None:
    with pytest.raises(FailedPrecondition) as missing:
        await app.audit.checkpoint(AUDITOR)
    assert missing.value.reason == "LOG_KEY_MISSING"


async def test_a_forged_checkpoint_signature_is_refused(
    keyed_app: Harness, keyed_admin: Principal
) -> None:
    audit = keyed_app.audit
    good = await audit.checkpoint(AUDITOR)
    forged = Checkpoint(good.seq, good.hash, good.time + timedelta(seconds=1), good.signature,
                        good.public_key, good.key_id)  # fmt: skip
    with pytest.raises(InvalidArgument) as bad:
        await audit.verify_log(AUDITOR, 0, 0, forged)
    assert bad.value.reason == "BAD_SIGNATURE"


@pytest.mark.parametrize(
    ("attack", "bad_seq", "problem", "needs_checkpoint"),
    [
        ("change_one_byte", 4, Problem.HASH_MISMATCH, False),
        ("delete", 4, Problem.SEQ_GAP, False),
        ("swap", 3, Problem.HASH_MISMATCH, False),
        ("truncate", 7, Problem.TRUNCATED, False),
        ("truncate_and_move_head", 7, Problem.TRUNCATED, True),
        # Rehashed from seq 5 on: the heads the log key signed no longer match (a keyless
        # server would need the checkpoint: CHECKPOINT_MISMATCH at 10).
        ("rewrite_chain", 5, Problem.UNSIGNED, False),
    ],
)
async def test_tampering_is_found_and_named(
    keyed_app: Harness,
    keyed_admin: Principal,
    attack: str,
    bad_seq: int,
    problem: Problem,
    needs_checkpoint: bool,
) -> None:
    app = keyed_app
    await approvers(app, keyed_admin, 9)  # seq 1..10
    audit = app.audit
    checkpoint = await audit.checkpoint(AUDITOR)
    assert checkpoint.seq == 10

    await drop_guards(app.engine)
    if attack == "change_one_byte":
        await change_one_byte(app.engine, 4)
    elif attack == "delete":
        await delete_event(app.engine, 4)
    elif attack == "swap":
        await swap_events(app.engine, 3, 6)
    elif attack == "truncate":
        await truncate_after(app.engine, 6, move_head=False)
    elif attack == "truncate_and_move_head":
        await truncate_after(app.engine, 6, move_head=True)
    else:
        await rewrite_from(app.engine, 5)

    plain = await audit.verify_log(AUDITOR, 0, 0, None)
    with_checkpoint = await audit.verify_log(AUDITOR, 0, 0, checkpoint)
    assert not with_checkpoint.ok
    assert with_checkpoint.finding is not None
    assert (with_checkpoint.finding.seq, with_checkpoint.finding.problem) == (bad_seq, problem)
    assert str(bad_seq) in with_checkpoint.finding.description
    if needs_checkpoint:
        assert plain.ok  # only the checkpoint kept elsewhere reveals it
    else:
        assert plain.finding is not None
        assert (plain.finding.seq, plain.finding.problem) == (bad_seq, problem)


# --- refused calls are facts of the log ----------------------------------------------------------


async def test_refused_calls_append_a_denial_and_change_nothing(
    app: Harness, admin: Principal
) -> None:
    await approvers(app, admin, 1)
    await app.identities.register_account(admin, ACCOUNT, "prod", "")
    account_token = (
        await app.identities.issue_credential(admin, PrincipalKind.ACCOUNT, ACCOUNT, "", None, "")
    ).token
    auditor_token = (
        await app.identities.issue_credential(admin, PrincipalKind.AUDITOR, "c", "", None, "")
    ).token
    served = build_server(
        UseCases(app.identities, app.teams, app.sessions, app.vaults, app.audit), "127.0.0.1:0"
    )
    await served.server.start()
    try:
        async with grpc.aio.insecure_channel(f"127.0.0.1:{served.port}") as channel:
            identity = identity_service_pb2_grpc.IdentityServiceStub(channel)
            audit = audit_service_pb2_grpc.AuditServiceStub(channel)
            as_account = (("authorization", f"Bearer {account_token}"),)
            as_auditor = (("authorization", f"Bearer {auditor_token}"),)
            before = await app.counts("approvers", "events")

            with pytest.raises(grpc.aio.AioRpcError) as refused:
                await identity.DisableApprover(
                    identity_service_pb2.DisableApproverRequest(approver_id="ann-0"),
                    metadata=as_account,
                )
            assert refused.value.code() == grpc.StatusCode.PERMISSION_DENIED
            with pytest.raises(grpc.aio.AioRpcError) as no_key:
                await audit.GetLogCheckpoint(
                    audit_service_pb2.GetLogCheckpointRequest(), metadata=as_auditor
                )
            assert no_key.value.code() == grpc.StatusCode.FAILED_PRECONDITION
            # Unauthenticated calls are not facts about anyone: nothing is written.
            with pytest.raises(grpc.aio.AioRpcError):
                await identity.WhoAmI(
                    identity_service_pb2.WhoAmIRequest(),
                    metadata=(("authorization", "Bearer nope"),),
                )

            assert (await app.identities.get_approver(admin, "ann-0")).enabled
            after = await app.counts("approvers", "events")
            assert after["approvers"] == before["approvers"]
            assert after["events"] == before["events"] + 2

            listed = await audit.ListEvents(
                audit_service_pb2.ListEventsRequest(
                    type="call.denied",
                    actor=common_pb2.Principal(kind=common_pb2.PRINCIPAL_KIND_ACCOUNT),
                ),
                metadata=as_auditor,
            )
            (denied,) = listed.events
            assert denied.actor.subject == ACCOUNT
            assert list(denied.subjects) == ["approver:ann-0"]
            assert dict(denied.details) == {
                "method": "/airlock.v1.IdentityService/DisableApprover",
                "code": "PERMISSION_DENIED",
                "reason": "PERMISSION_DENIED",
            }
            by_subject = await audit.ListEvents(
                audit_service_pb2.ListEventsRequest(subject="approver:ann-0"),
                metadata=as_auditor,
            )
            assert [e.type for e in by_subject.events] == ["approver.created", "call.denied"]
            verified = await audit.VerifyLog(
                audit_service_pb2.VerifyLogRequest(), metadata=as_auditor
            )
            assert verified.ok
    finally:
        await served.server.stop(None)


@pytest.mark.parametrize("backend", POSTGRES_ONLY)
async def test_followers_wake_on_notify_not_on_the_safety_poll(
    harnesses: HarnessFactory, admin: Principal
) -> None:
    """With a safety poll of an hour, a follower still sees another replica's event: the
    LISTEN connection wakes it."""
    first, second = harnesses(), harnesses()
    audit = AuditService(
        first.deps, SqlEventLogReader(session_factory(first.engine)), first.signal,
        watch_poll=3600.0,
    )  # fmt: skip
    stream = audit.watch_events(AUDITOR, 0)
    assert [e.seq for e in await next_events(stream, 1)] == [1]
    waiting = asyncio.ensure_future(anext(stream))
    await asyncio.sleep(0)  # the follower is now waiting on the signal
    await approvers(second, admin, 1, prefix="late")
    event = await asyncio.wait_for(waiting, 30)
    assert (event.seq, event.type) == (2, "approver.created")
    assert isinstance(first.signal, PgListenSignal)
    assert first.signal.listening
    await stream.aclose()
