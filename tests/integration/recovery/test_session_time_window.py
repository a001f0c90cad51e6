"""ListSessions' creation time range over gRPC, on SQLite and PostgreSQL: `create_time_start` is
inclusive, `create_time_end` exclusive, both together make a window, and they combine with the
other filters and with paging. The server runs in process on the world's clock, so every session's
creation time is known to the microsecond."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import datetime, timedelta

import pytest
import pytest_asyncio
from integration.recovery.recovery_world import OWNER, RECOVERY, World

from airlock_client import AirlockClient
from airlock_server.app.audit import AuditService
from airlock_server.domain.principals import Principal
from airlock_server.persistence.db import session_factory
from airlock_server.persistence.event_log import PollSignal
from airlock_server.persistence.events import SqlEventLogReader
from airlock_server.transport.server import UseCases, build_server

pytestmark = pytest.mark.asyncio

STEP = timedelta(seconds=10)
TICK = timedelta(microseconds=1)


@pytest_asyncio.fixture
async def admin_client(world: World) -> AsyncIterator[AirlockClient]:
    """The admin's SDK client of a gRPC server on the world's use cases (and fake clock)."""
    app = world.app
    issued = await app.identities.issue_credential(
        world.admin, world.admin.kind, world.admin.subject, "t", None, ""
    )
    audit = AuditService(app.deps, SqlEventLogReader(session_factory(app.engine)), PollSignal())
    served = build_server(
        UseCases(app.identities, app.teams, app.sessions, app.vaults, audit), "127.0.0.1:0"
    )
    await served.server.start()
    try:
        async with AirlockClient.connect(
            f"127.0.0.1:{served.port}", issued.token, timeout=30
        ) as client:
            yield client
    finally:
        await served.server.stop(None)


async def _ids(
    client: AirlockClient,
    *,
    start: datetime | None = None,
    end: datetime | None = None,
    page_size: int = 0,
    requester: str = "",
) -> list[str]:
    """Every page, newest first (the SDK follows next_page_token)."""
    return [
        s.session_id
        async for s in client.list_sessions(
            create_time_start=start,
            create_time_end=end,
            page_size=page_size,
            requester_account_id=requester,
        )
    ]


async def test_creation_time_end_bound_and_window(
    world: World, admin_client: AirlockClient
) -> None:
    arn = await world.vault()
    times: list[datetime] = []
    made: list[str] = []

    async def opened(caller: Principal) -> str:
        world.clock.advance(STEP)
        times.append(world.clock.now)
        asked = await world.app.vaults.request_restore_access(caller, arn, "", "", "")
        made.append(asked.session.session.session_id)
        return made[-1]

    first = await opened(world.recovery)
    await world.app.sessions.cancel_session(world.recovery, first, "")
    await opened(world.recovery)
    world.clock.advance(STEP)
    times.append(world.clock.now)
    generic = await world.app.sessions.start_session(
        world.service, world.team_id, "billing:Refund", "invoice/7", {}, "", ""
    )
    made.append(generic.session.session_id)
    await opened(world.owner)
    s0, s1, s2, s3 = made
    t0, t1, t2, t3 = times
    listed = {s.session_id: s async for s in admin_client.list_sessions()}
    assert set(listed) == set(made)
    for sid, t in zip(made, times, strict=True):
        assert listed[sid].create_time.ToDatetime(tzinfo=t.tzinfo) == t

    # The end bound alone: sessions created before it; a session created at it is left out.
    assert await _ids(admin_client, end=t0) == []
    assert await _ids(admin_client, end=t0 + TICK) == [s0]
    assert await _ids(admin_client, end=t2) == [s1, s0]
    assert await _ids(admin_client, end=t2 + TICK) == [s2, s1, s0]
    assert await _ids(admin_client, end=t3 + STEP) == [s3, s2, s1, s0]
    # The start bound includes a session created at it.
    assert await _ids(admin_client, start=t2) == [s3, s2]
    assert await _ids(admin_client, start=t2 + TICK) == [s3]

    # A window [start, end): start inclusive, end exclusive.
    assert await _ids(admin_client, start=t1, end=t3) == [s2, s1]
    assert await _ids(admin_client, start=t1, end=t2) == [s1]
    assert await _ids(admin_client, start=t1 + TICK, end=t2) == []
    assert await _ids(admin_client, start=t0 - STEP, end=t3 + TICK) == [s3, s2, s1, s0]
    assert await _ids(admin_client, start=t2, end=t2) == []
    # Paged, the window holds: one session a page, nothing outside it.
    assert await _ids(admin_client, start=t0, end=t3, page_size=1) == [s2, s1, s0]
    assert await _ids(admin_client, end=t3, page_size=2) == [s2, s1, s0]
    # With another filter, AND.
    assert await _ids(admin_client, start=t1, end=t3 + TICK, requester=RECOVERY) == [s1]
    assert await _ids(admin_client, end=t3 + TICK, requester=OWNER) == [s3]
    assert await _ids(admin_client, end=t3, requester=OWNER) == []
