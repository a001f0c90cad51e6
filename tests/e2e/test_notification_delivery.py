"""Notifications end to end, with real `airlock-server` processes, a real HTTP receiver and a
real SMTP server on loopback:

- kill -9 of the server while a webhook is in flight: after a restart the notification is
  delivered, under the same id (at least once, nothing lost);
- three replicas on one PostgreSQL database: every notification arrives, once per id;
- the CLI: `airlock notifications ...`, and `airlock sessions wait` riding through a kill -9
  and restart of the server, exiting with the code of the session's outcome.
"""

from __future__ import annotations

import asyncio
import json
import secrets
import signal
import subprocess
import time
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from pathlib import Path
from typing import Any

import pytest
from e2e.conftest import (
    BACKENDS,
    CLI_BIN,
    COMMAND_TIMEOUT,
    ServerProcess,
    empty_database,
    prepare_database,
    server_env,
    start_server,
)
from integration.receivers import SmtpServer, WebhookReceiver, smtp_server, webhook_receiver
from sqlalchemy import text
from standardwebhooks import Webhook

from airlock.v1 import session_pb2
from airlock_cli.sessions import EXIT_CANCELLED, EXIT_REJECTED
from airlock_client import AirlockClient, generate_private_key

pytestmark = pytest.mark.timeout(300)

WAIT = 60.0


def unique(prefix: str) -> str:
    return f"{prefix}-{secrets.token_hex(4)}"


def _until(what: str, check: object, timeout: float = WAIT) -> None:
    """Poll `check()` (bounded) until it is truthy."""
    deadline = time.monotonic() + timeout
    while not check():  # type: ignore[operator]
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.05)


@contextmanager
def database(request: pytest.FixtureRequest, backend: str, directory: Path) -> Iterator[str]:
    directory.mkdir(parents=True, exist_ok=True)
    with asyncio.Runner() as runner:
        db = empty_database(request.config, backend, directory)
        url = runner.run(db.__aenter__())
        try:
            yield url
        finally:
            runner.run(db.__aexit__(None, None, None))


def _env(smtp: SmtpServer | None = None, **extra: str) -> dict[str, str]:
    env = {
        "AIRLOCK_NOTIFY_INTERVAL": "0.1",
        "AIRLOCK_NOTIFY_RETRY_BASE": "0.5",
        **extra,
    }
    if smtp is not None:
        env |= {
            "AIRLOCK_SMTP_HOST": smtp.host,
            "AIRLOCK_SMTP_PORT": str(smtp.port),
            "AIRLOCK_SMTP_SECURITY": "none",
            "AIRLOCK_SMTP_FROM": "airlock@example.test",
            "AIRLOCK_ADMIN_EMAILS": "secops@example.test",
        }
    return env


def kill9(server: ServerProcess) -> None:
    server.process.send_signal(signal.SIGKILL)
    server.process.wait(timeout=30)


async def _rows(url: str) -> list[tuple[str, str, int]]:
    from airlock_server.persistence.db import create_engine

    engine = create_engine(url, pool_size=1)
    try:
        async with engine.connect() as conn:
            found = await conn.execute(
                text("SELECT notification_id, state, attempts FROM notifications")
            )
            return [(r[0], r[1], r[2]) for r in found]
    finally:
        await engine.dispose()


def notifications(url: str) -> list[tuple[str, str, int]]:
    return asyncio.run(_rows(url))


@pytest.mark.parametrize("backend", BACKENDS)
def test_kill_9_mid_delivery_loses_nothing_and_keeps_the_id(
    request: pytest.FixtureRequest, backend: str, tmp_path: Path
) -> None:
    with ExitStack() as stack:
        url = stack.enter_context(database(request, backend, tmp_path))
        receiver: WebhookReceiver = stack.enter_context(webhook_receiver(delay=30.0))
        smtp = stack.enter_context(smtp_server())
        token = prepare_database(url, tmp_path)
        # A lease of 4 s: the replacement claims the orphaned notification soon after.
        env = _env(smtp, AIRLOCK_NOTIFY_LEASE="4")
        first = start_server(backend, url, tmp_path, token, env=env)
        try:

            async def queue() -> tuple[str, str]:
                async with AirlockClient.connect(first.target, token) as admin:
                    created = await admin.create_endpoint(receiver.url, description="ops")
                    sent = await admin.send_test_notification(created.endpoint.endpoint_id)
                    return created.secret, sent

            secret, notification_id = asyncio.run(queue())
            _until("the receiver to get the request", lambda: receiver.received)
            kill9(first)  # the receiver is still holding the request: mid-delivery
        finally:
            if first.process.poll() is None:
                first.stop()
        receiver.delay = 0.0
        assert notifications(url) == [(notification_id, "PENDING", 0)]

        second = start_server(backend, url, tmp_path, token, env=env)
        try:
            _until("redelivery", lambda: len(receiver.received) >= 2)
            _until("DELIVERED", lambda: notifications(url)[0][1] == "DELIVERED")
        finally:
            assert second.stop() == 0
        assert set(receiver.ids()) == {notification_id}
        for received in receiver.received:
            body = Webhook(secret).verify(received.body, received.headers)
            assert body["type"] == "notification.test"
            assert body["id"] == notification_id
        assert notifications(url) == [(notification_id, "DELIVERED", 1)]


@pytest.mark.postgres
def test_three_replicas_deliver_every_notification_once_per_id(
    request: pytest.FixtureRequest, tmp_path: Path
) -> None:
    with ExitStack() as stack:
        url = stack.enter_context(database(request, "postgresql", tmp_path))
        receiver: WebhookReceiver = stack.enter_context(webhook_receiver())
        token = prepare_database(url, tmp_path)
        replicas = [start_server("postgresql", url, tmp_path, token, env=_env()) for _ in range(3)]
        try:

            async def queue() -> set[str]:
                clients = [AirlockClient.connect(r.target, token) for r in replicas]
                try:
                    created = await clients[0].create_endpoint(receiver.url)
                    endpoint_id = created.endpoint.endpoint_id
                    sent = await asyncio.gather(
                        *(clients[i % 3].send_test_notification(endpoint_id) for i in range(24))
                    )
                    # Events' notifications too, written by every replica.
                    await asyncio.gather(
                        *(clients[i % 3].create_approver(unique("a"), "A") for i in range(3))
                    )
                    return set(sent)
                finally:
                    for c in clients:
                        await c.close()

            expected = asyncio.run(queue())
            assert len(expected) == 24
            _until(
                "every notification delivered",
                lambda: {s for _, s, _a in notifications(url)} == {"DELIVERED"},
            )
        finally:
            codes = [r.stop() for r in replicas]
        assert codes == [0, 0, 0]
        ids = receiver.ids()
        assert set(ids) == {n for n, _, _a in notifications(url)}
        assert expected <= set(ids)
        assert len(ids) == len(set(ids)), "a notification reached the receiver twice"


# --- the CLI -------------------------------------------------------------------------------------


def _cli(target: str, token_file: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(CLI_BIN), "--server", target, "--token-file", str(token_file), *args],
        capture_output=True,
        text=True,
        timeout=COMMAND_TIMEOUT,
        env=server_env(),
        check=False,
    )


@pytest.mark.parametrize("backend", BACKENDS)
def test_the_cli_manages_endpoints_and_waits_for_sessions_through_a_restart(
    request: pytest.FixtureRequest, backend: str, tmp_path: Path
) -> None:
    with ExitStack() as stack:
        url = stack.enter_context(database(request, backend, tmp_path))
        receiver: WebhookReceiver = stack.enter_context(webhook_receiver())
        token = prepare_database(url, tmp_path)
        token_file = tmp_path / "admin.token"
        server = start_server(backend, url, tmp_path, token, env=_env())
        servers = [server]
        try:
            created = json.loads(
                _cli(
                    server.target,
                    token_file,
                    "--json",
                    "notifications",
                    "create",
                    receiver.url,
                    "--kind",
                    "session.opened",
                    "--kind",
                    "session.rejected",
                ).stdout
            )
            secret = created["secret"]
            endpoint_id = created["endpoint"]["endpointId"]
            assert secret.startswith("whsec_")
            listed = _cli(server.target, token_file, "--json", "notifications", "list")
            assert listed.returncode == 0
            assert secret not in listed.stdout
            assert endpoint_id in listed.stdout

            world = asyncio.run(_world(server.target, token))
            # `sessions wait` blocks; the server is killed and restarted on the same port.
            waiting = subprocess.Popen(
                [
                    str(CLI_BIN),
                    "--server",
                    server.target,
                    "--token-file",
                    str(token_file),
                    "sessions",
                    "wait",
                    world.session_id,
                ],
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                text=True,
                env=server_env(),
            )
            try:
                time.sleep(1.0)
                kill9(server)
                server = _restart_on(server, backend, url, tmp_path, token)
                servers.append(server)
                asyncio.run(world.reject(server.target))
                _out, err = waiting.communicate(timeout=WAIT)
            finally:
                if waiting.poll() is None:
                    waiting.kill()
                    waiting.wait(10)
            assert waiting.returncode == EXIT_REJECTED, err
            assert "REJECTED" in err
            watched = _cli(server.target, token_file, "sessions", "watch", world.session_id)
            assert watched.returncode == EXIT_REJECTED, watched.stderr

            _until("the webhooks", lambda: len(receiver.received) >= 2)
            kinds = [Webhook(secret).verify(r.body, r.headers)["type"] for r in receiver.received]
            assert sorted(kinds) == ["session.opened", "session.rejected"]

            def deliveries() -> list[dict[str, Any]]:
                listed = _cli(
                    server.target,
                    token_file,
                    "--json",
                    "notifications",
                    "deliveries",
                    "--target",
                    endpoint_id,
                )
                found: list[dict[str, Any]] = json.loads(listed.stdout)["deliveries"]
                return found

            # The receiver has each POST a moment before the server records its answer.
            _until(
                "the deliveries recorded",
                lambda: {d["state"] for d in deliveries()} == {"STATE_DELIVERED"},
            )
            delivered = deliveries()
            assert sorted(d["notificationId"] for d in delivered) == sorted(receiver.ids())

            # Cancelled: exit 12, through `restore request --wait` on a new vault.
            second = asyncio.run(_world(server.target, token, requested=False))
            rec_file = server.write_token("recovery", second.recovery_token)
            waiting = subprocess.Popen(
                [
                    str(CLI_BIN),
                    "--server",
                    server.target,
                    "--token-file",
                    str(rec_file),
                    "restore",
                    "request",
                    second.vault_arn,
                    "--wait",
                ],
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                text=True,
                env=server_env(),
            )
            try:
                asyncio.run(second.cancel_when_open(server.target, token))
                _out, err = waiting.communicate(timeout=WAIT)
            finally:
                if waiting.poll() is None:
                    waiting.kill()
                    waiting.wait(10)
            assert waiting.returncode == EXIT_CANCELLED, err
            assert "CANCELLED" in err
        finally:
            for s in servers:
                if s.process.poll() is None:
                    s.stop()


def _restart_on(
    old: ServerProcess, backend: str, url: str, directory: Path, token: str
) -> ServerProcess:
    """A new server on the old one's port (the waiting CLI keeps its target)."""
    return start_server(backend, url, directory, token, env=_env(), listen=old.target)


class _World:
    def __init__(self) -> None:
        self.session_id = ""
        self.vault_arn = ""
        self.recovery_token = ""
        self.keys = {"a": generate_private_key(), "b": generate_private_key()}
        self.tokens: dict[str, str] = {}

    async def reject(self, target: str) -> None:
        """Both approvers of the 2-of-2 team reject: approval impossible at the first."""
        async with AirlockClient.connect(target, self.tokens["a"]) as me:
            session = await me.get_session(self.session_id)
            await me.sign_and_vote(session, False, self.keys["a"])

    async def cancel_when_open(self, target: str, admin_token: str) -> None:
        async with AirlockClient.connect(target, admin_token) as admin:
            for _ in range(600):
                found = [
                    s
                    async for s in admin.list_sessions(state=session_pb2.Session.STATE_PENDING)
                    if s.protected_resource == self.vault_arn
                ]
                if found:
                    await admin.cancel_session(found[0].session_id)
                    return
                await asyncio.sleep(0.05)
        raise AssertionError("the restore request never opened a session")


async def _world(target: str, admin_token: str, *, requested: bool = True) -> _World:
    """A 2-of-2 team, shared with an owner and a recovery account, guarding a vault; with
    `requested`, a restore session of the recovery account on it."""
    w = _World()
    owner_id, recovery_id = (f"{secrets.randbelow(10**12):012d}" for _ in range(2))
    async with AirlockClient.connect(target, admin_token) as admin:
        names = {k: unique(k) for k in w.keys}
        for k, name in names.items():
            await admin.create_approver(name, k, email=f"{name}@example.test")
            w.tokens[k] = (await admin.issue_credential("approver", name)).token
        for account in (owner_id, recovery_id):
            await admin.register_account(account, unique("acct"))
        owner_token = (await admin.issue_credential("account", owner_id)).token
        w.recovery_token = (await admin.issue_credential("account", recovery_id)).token
        team = await admin.create_team(unique("guards"), list(names.values()), 2)
        for k in w.keys:
            async with AirlockClient.connect(target, w.tokens[k]) as me:
                async for invitation in me.list_invitations(team_id=team.team_id):
                    await me.respond_to_invitation(invitation.invitation_id, True, w.keys[k])
        for account in (owner_id, recovery_id):
            await admin.share_team(team.team_id, account_id=account)
    async with AirlockClient.connect(target, owner_token) as owner:
        vault = await owner.create_vault(unique("v"), min_retention_days=7, max_retention_days=35)
        await owner.associate_team(vault.vault_arn, team.team_id)
        w.vault_arn = vault.vault_arn
    if requested:
        async with AirlockClient.connect(target, w.recovery_token) as recovery:
            answer = await recovery.request_restore_access(vault.vault_arn)
            w.session_id = answer.session.session_id
    return w
