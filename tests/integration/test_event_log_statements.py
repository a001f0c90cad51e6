"""The log's appends are fixed statements: a batch of any size runs the same statement text
(compiled once by SQLAlchemy, prepared once per connection by asyncpg; a VALUES list of n rows
was a new statement for each n), and the chain it writes stays exact."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from typing import Any

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from integration.harness import BACKENDS, POSTGRES_ONLY, Harness, HarnessFactory
from sqlalchemy import event, select
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession

from airlock_server.app.audit import LogKey
from airlock_server.domain.events import CALL_DENIED, NewEvent
from airlock_server.domain.principals import Principal, PrincipalKind
from airlock_server.persistence.event_log import append_events
from airlock_server.persistence.models import EventRecord
from airlock_server.persistence.seal import Sealer
from airlock_server.persistence.sequencer import enqueue

pytestmark = pytest.mark.asyncio

AUDITOR = Principal(PrincipalKind.AUDITOR, "audit")
SIZES = (1, 2, 5)


def _events(size: int) -> list[NewEvent]:
    return [
        NewEvent(
            CALL_DENIED,
            Principal(PrincipalKind.SERVICE, "statements-test"),
            (f"test:{size}", f"test:{size}-{i}", f"test:{size}"),  # a repeated subject
            {"method": "test", "code": "NONE", "reason": f"{size}-{i}"},
        )
        for i in range(size)
    ]


@contextmanager
def _statements(engine: AsyncEngine) -> Iterator[list[str]]:
    """The SQL texts sent to the database meanwhile."""
    sent: list[str] = []

    def record(_conn: Any, _cursor: Any, statement: str, *_args: Any) -> None:
        sent.append(statement)

    event.listen(engine.sync_engine, "before_cursor_execute", record)
    try:
        yield sent
    finally:
        event.remove(engine.sync_engine, "before_cursor_execute", record)


async def _keyed(harnesses: HarnessFactory) -> tuple[Harness, Principal, Sealer]:
    key = LogKey(Ed25519PrivateKey.generate())
    app = harnesses(key)
    issued = await app.identities.bootstrap_admin()
    admin = (await app.identities.authenticate(issued.token)).principal
    return app, admin, Sealer(key)


async def _reasons(app: Harness) -> list[str]:
    async with app.engine.connect() as conn:
        details = await conn.scalars(
            select(EventRecord.details)
            .where(EventRecord.type == CALL_DENIED)
            .order_by(EventRecord.seq)
        )
        return [d["reason"] for d in details]


def _expected() -> list[str]:
    return [f"{size}-{i}" for size in SIZES for i in range(size)]


@pytest.mark.parametrize("backend", POSTGRES_ONLY)
async def test_a_use_case_enqueues_any_number_of_events_with_one_statement(
    harnesses: HarnessFactory,
) -> None:
    app, admin, sealer = await _keyed(harnesses)
    with _statements(app.engine) as sent:
        for size in SIZES:
            async with AsyncSession(app.engine) as s:
                await enqueue(s, _events(size), datetime.now(UTC), sealer, [None] * size)
                await s.commit()
    inserts = {s for s in sent if "INSERT INTO unsequenced_events" in s}
    assert len(inserts) == 1, inserts
    # A use case's commit waits for its events, sequenced after the ones queued before it:
    # every MAC checked (a row that fails it is never sequenced), in order, the chain exact.
    await app.identities.create_approver(admin, "ann", "Ann", "", "")
    assert await app.count("unsequenced_events") == 0
    assert await _reasons(app) == _expected()
    verified = await app.audit.verify_log(AUDITOR, 0, 0, None)
    assert verified.ok, verified.finding


@pytest.mark.parametrize("backend", BACKENDS)
async def test_an_append_of_any_number_of_events_is_one_statement(
    harnesses: HarnessFactory,
) -> None:
    """The in-transaction append (SQLite's; on PostgreSQL the sequencer's path is the
    product's): one executemany of a fixed INSERT, whatever the number of events."""
    app, _, sealer = await _keyed(harnesses)
    with _statements(app.engine) as sent:
        for size in SIZES:
            async with AsyncSession(app.engine) as s, s.begin():
                await append_events(s, _events(size), datetime.now(UTC), sealer)
    inserts = {s for s in sent if "INSERT INTO events" in s}
    assert len(inserts) == 1, inserts
    assert len({s for s in sent if "INSERT INTO event_subjects" in s}) <= 1
    assert await _reasons(app) == _expected()
    verified = await app.audit.verify_log(AUDITOR, 0, 0, None)
    assert verified.ok, verified.finding
