"""A read-only unit of work reads one snapshot: what it reads twice does not change under it."""

from __future__ import annotations

import pytest
from integration.harness import Harness

from airlock_server.app.common import Deps
from airlock_server.app.identity import hash_token


@pytest.mark.asyncio
async def test_a_read_only_unit_of_work_sees_one_snapshot(deps: Deps, backend: str) -> None:
    if backend == "sqlite":
        pytest.skip("SQLite has one connection per process: no commit can come in between")
    async with deps.uow(read_only=True) as reader:
        assert await reader.settings.get("snapshot.probe") is None
        async with deps.uow() as writer:
            assert await writer.settings.put_new("snapshot.probe", "written")
            await writer.commit()
        # Committed meanwhile, but not in this unit of work's snapshot.
        assert await reader.settings.get("snapshot.probe") is None
    async with deps.uow(read_only=True) as later:
        assert await later.settings.get("snapshot.probe") == "written"


@pytest.mark.asyncio
async def test_a_hot_read_unit_sees_one_snapshot(app: Harness) -> None:
    """PostgreSQL's hot reads (persistence/hot_reads.py): several statements in one, when
    asked for a snapshot, run in a REPEATABLE READ transaction on the lent connection."""
    reads = app.deps.reads
    if reads is None:
        pytest.skip("SQLite serves its reads through the ordinary unit of work")
    async with reads(read_only=True) as reader:
        # The snapshot is taken by the transaction's first statement.
        assert await reader.credentials.find_by_token_hash(hash_token("none")) is None
        issued = await app.identities.bootstrap_admin()  # committed meanwhile
        digest = hash_token(issued.token)
        assert await reader.credentials.find_by_token_hash(digest) is None
    async with reads(one_statement=True) as later:
        assert await later.credentials.find_by_token_hash(digest) is not None
