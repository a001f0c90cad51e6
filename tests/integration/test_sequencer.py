"""The log's sequencer (PostgreSQL, persistence/sequencer.py): use cases commit their events
unsequenced, one sequencer gives them seq and hashes. The chain stays exact and gap-free, in
commit order, whatever dies or races; SQLite appends in the use case's transaction still."""

from __future__ import annotations

import asyncio
import json
from datetime import UTC, datetime

import asyncpg
import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from integration.harness import BACKENDS, POSTGRES_ONLY, Harness, HarnessFactory
from sqlalchemy import select, text
from sqlalchemy.ext.asyncio import AsyncSession

from airlock_server.app.audit import LogKey
from airlock_server.app.ports import EventQuery
from airlock_server.domain.events import CALL_DENIED, NewEvent
from airlock_server.domain.principals import Principal, PrincipalKind
from airlock_server.persistence.db import session_factory
from airlock_server.persistence.models import UnsequencedEventRecord
from airlock_server.persistence.seal import Sealer
from airlock_server.persistence.sequencer import SEQUENCER_LOCK, enqueue, sequence_batch
from airlock_server.persistence.vouch import seal_database

pytestmark = pytest.mark.asyncio

AUDITOR = Principal(PrincipalKind.AUDITOR, "audit")


def _event(tag: str) -> NewEvent:
    return NewEvent(
        CALL_DENIED,
        Principal(PrincipalKind.SERVICE, "seq-test"),
        (f"test:{tag}",),
        {"method": "test", "code": "NONE", "reason": tag},
    )


async def _queued(app: Harness, sealer: Sealer, *tags: str) -> list[int]:
    """Events committed unsequenced, as a use case does, by a process that then died before
    any sequencer saw them."""
    async with AsyncSession(app.engine) as s:
        ids = await enqueue(
            s, [_event(t) for t in tags], datetime.now(UTC), sealer, [None] * len(tags)
        )
        await s.commit()
    return ids


async def _insert(app: Harness, row: dict[str, object]) -> None:
    """An unsequenced row written by SQL, behind the server's back."""
    async with app.engine.begin() as conn:
        await conn.execute(
            text(
                "INSERT INTO unsequenced_events (txn, position, time, type, actor, subjects, "
                "details, notice, mac) VALUES (:txn, :position, :time, :type, :actor, "
                "CAST(:subjects AS json), CAST(:details AS json), NULL, :mac)"
            ),
            {**row, "subjects": json.dumps(row["subjects"]), "details": json.dumps(row["details"])},
        )


async def _reasons(app: Harness) -> list[str]:
    async with app.engine.connect() as conn:
        rows = await conn.execute(
            text("SELECT details FROM events WHERE type = 'call.denied' ORDER BY seq")
        )
        return [str(r[0]["reason"]) for r in rows]


async def _verified(app: Harness) -> None:
    """VerifyLog from genesis: every hash recomputed, seq gap-free, head as the last event."""
    verified = await app.audit.verify_log(AUDITOR, 0, 0, None)
    assert verified.ok, verified.finding
    assert await app.count("unsequenced_events") == 0
    async with app.engine.connect() as conn:
        seqs = [r[0] for r in await conn.execute(text("SELECT seq FROM events ORDER BY seq"))]
        head = await conn.scalar(text("SELECT seq FROM log_head"))
    assert seqs == list(range(1, len(seqs) + 1))
    assert head == seqs[-1]


@pytest.mark.parametrize("backend", POSTGRES_ONLY)
async def test_events_committed_before_a_crash_are_sequenced_first(
    app: Harness, admin: Principal
) -> None:
    """A process commits its events and dies before they are sequenced: they wait in the
    table, and the next batch (any process's) puts them in the log before what came after."""
    await _queued(app, Sealer(), "orphan-1", "orphan-2")
    assert await _reasons(app) == []
    await app.identities.create_approver(admin, "after", "After", "", "")
    assert await _reasons(app) == ["orphan-1", "orphan-2"]
    async with app.engine.connect() as conn:
        types = [r[0] for r in await conn.execute(text("SELECT type FROM events ORDER BY seq"))]
    assert types.index("approver.created") > types.index("call.denied")
    await _verified(app)


@pytest.mark.parametrize("backend", POSTGRES_ONLY)
async def test_sequencers_racing_give_each_event_one_seq(app: Harness, admin: Principal) -> None:
    """Two sequencers at once (the advisory lock bypassed): a batch moves the head only from
    the head it read, so the loser writes nothing; each event is sequenced once, in order."""
    tags = [f"race-{i}" for i in range(60)]
    for i in range(0, len(tags), 3):
        await _queued(app, Sealer(), *tags[i : i + 3])

    async def drain() -> None:
        async with app.engine.connect() as conn:
            await conn.execution_options(isolation_level="AUTOCOMMIT")
            while await app.count("unsequenced_events"):
                await sequence_batch(conn, Sealer(), limit=4)

    await asyncio.gather(*(drain() for _ in range(4)))
    assert await _reasons(app) == tags
    await _verified(app)


@pytest.mark.parametrize("backend", POSTGRES_ONLY)
async def test_seq_follows_commit_order(app: Harness, admin: Principal) -> None:
    """A transaction that inserted its events first but committed last is sequenced last:
    the sequencer sees committed rows only, in its batches, one after the other."""
    early = AsyncSession(app.engine)
    try:
        await enqueue(early, [_event("inserted-first")], datetime.now(UTC), Sealer(), [None])
        await _queued(app, Sealer(), "committed-first")
        await app.identities.create_approver(admin, "between", "Between", "", "")
        await early.commit()
    finally:
        await early.close()
    await app.identities.create_approver(admin, "last", "Last", "", "")
    assert await _reasons(app) == ["committed-first", "inserted-first"]
    await _verified(app)


@pytest.mark.parametrize("backend", POSTGRES_ONLY)
async def test_a_killed_sequencer_connection_is_taken_over(
    harnesses: HarnessFactory, app: Harness, admin: Principal
) -> None:
    """The database drops the sequencer's connection (a restart, a kill): its lock goes with
    it, a sequencer (the same process's, reconnected, or another replica's) takes it, and
    commits go on being sequenced."""
    other = harnesses()
    await app.identities.create_approver(admin, "first", "First", "", "")
    await other.identities.create_approver(admin, "second", "Second", "", "")
    killer = await asyncpg.connect(app.url)
    try:
        killed = await killer.fetchval(
            "SELECT count(pg_terminate_backend(pid)) FROM pg_locks WHERE locktype = 'advisory' "
            "AND ((classid::bigint << 32) | objid::bigint) = $1 AND granted "
            "AND database = (SELECT oid FROM pg_database WHERE datname = current_database())",
            SEQUENCER_LOCK,
        )
    finally:
        await killer.close()
    assert killed == 1
    for i, h in enumerate([app, other, app, other]):
        await h.identities.create_approver(admin, f"after-kill-{i}", "A", "", "")
    await _verified(app)


@pytest.mark.parametrize("backend", POSTGRES_ONLY)
async def test_a_forged_or_replayed_row_is_never_sequenced(harnesses: HarnessFactory) -> None:
    """With a log key, unsequenced rows are MACed: one written behind the server's back is
    left out of the log (and never signed), and a copy of a row already sequenced is dropped,
    not sequenced twice; the server's own events keep flowing."""
    key = LogKey(Ed25519PrivateKey.generate())
    app = harnesses(key)
    issued = await app.identities.bootstrap_admin()
    admin = (await app.identities.authenticate(issued.token)).principal
    await _queued(app, Sealer(key), "genuine")
    async with app.engine.begin() as conn:
        genuine = dict(
            (await conn.execute(select(UnsequencedEventRecord.__table__))).mappings().one()
        )
    forged = {
        **genuine,
        "txn": bytes(16),
        "details": {**genuine["details"], "reason": "forged"},
    }
    await _insert(app, forged)
    await app.identities.create_approver(admin, "ann", "Ann", "", "")
    assert await _reasons(app) == ["genuine"]
    await _insert(app, genuine)  # the sequenced row, inserted again as it was
    await app.identities.create_approver(admin, "bob", "Bob", "", "")
    assert await _reasons(app) == ["genuine"]
    async with app.engine.connect() as conn:
        left = [
            r[0]["reason"]
            for r in await conn.execute(text("SELECT details FROM unsequenced_events"))
        ]
    assert left == ["forged"]
    verified = await app.audit.verify_log(AUDITOR, 0, 0, None)
    assert verified.ok, verified.finding


@pytest.mark.parametrize("backend", BACKENDS)
async def test_notifications_and_events_of_a_use_case_are_there_when_it_answers(
    app: Harness, admin: Principal
) -> None:
    """What a caller reads after the answer holds the use case's events (a commit waits for
    their seq on PostgreSQL; SQLite appends in the transaction and has no unsequenced rows)."""
    for i in range(5):
        await app.identities.create_approver(admin, f"n-{i}", "N", "", "")
        page = await app.audit.list_events(AUDITOR, EventQuery(type="approver.created"), 0, 100, "")
        assert [e.details.get("approver_id") for e in page.items][-1] == f"n-{i}"
    assert await app.count("unsequenced_events") == 0
    await _verified(app)


@pytest.mark.parametrize("backend", POSTGRES_ONLY)
async def test_seal_vouches_for_rows_left_unsequenced(harnesses: HarnessFactory) -> None:
    """Rows a keyless server committed and never sequenced carry no MAC: `seal` (the operator
    vouching for the database as it stands) MACs them, and the keyed server sequences them."""
    keyless = harnesses()
    issued = await keyless.identities.bootstrap_admin()
    admin = (await keyless.identities.authenticate(issued.token)).principal
    await keyless.close()  # its sequencer stops: nobody sequences what follows
    await _queued(keyless, Sealer(), "before-the-key")
    key = LogKey(Ed25519PrivateKey.generate())
    sealed = await seal_database(session_factory(keyless.engine), Sealer(key))
    assert sealed.finding is None
    keyed = harnesses(key)
    await keyed.identities.create_approver(admin, "after-seal", "A", "", "")
    assert await _reasons(keyed) == ["before-the-key"]
    verified = await keyed.audit.verify_log(AUDITOR, 0, 0, None)
    assert verified.ok, verified.finding
