"""Fixtures of the recovery-flow tests; the helpers live in recovery_world.py."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest_asyncio
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from integration.harness import FakeClock
from integration.recovery.recovery_world import (
    APPROVERS,
    OWNER,
    RECOVERY,
    STRANGER,
    World,
    replica,
)

from airlock_server.app.audit import LogKey


@pytest_asyncio.fixture
async def world(database_url: str) -> AsyncIterator[World]:
    clock = FakeClock()
    # A server with a log key, as bootstrap makes one: without it there are no approval proofs.
    log_key = LogKey(Ed25519PrivateKey.generate())
    app = replica(database_url, clock, log_key)
    issued = await app.identities.bootstrap_admin()
    admin = (await app.identities.authenticate(issued.token)).principal
    keys = {name: Ed25519PrivateKey.generate() for name in (*APPROVERS, "dave", "erin")}
    for name in keys:
        await app.identities.create_approver(admin, name, name.title(), f"{name}@example.com", "")
    for account in (OWNER, RECOVERY, STRANGER):
        await app.identities.register_account(admin, account, f"acct-{account[:3]}", "")
    w = World(database_url, clock, app, admin, "", keys, [app], log_key)
    w.team_id = await w.make_team("guardians")
    await w.share(w.team_id, w.owner)
    await w.share(w.team_id, w.recovery)
    await w.share(w.team_id, w.service)
    try:
        yield w
    finally:
        for wiring in w.wirings:
            await wiring.close()
