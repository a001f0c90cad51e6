"""A read-only unit of work reads one snapshot: what it reads twice does not change under it."""

from __future__ import annotations

import pytest

from airlock_server.app.common import Deps


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
