"""The approval portal in a real browser: Debian's Chromium driven by Playwright, its virtual
authenticator (the DevTools WebAuthn domain) as each approver's passkey device, against a real
`airlock-server serve --portal-listen` on SQLite and PostgreSQL.

The administrator's and the accounts' side (approvers, team, vault, restore request) is played
through the same use cases in this process, on the server's database and log key; everything an
approver does goes through the browser. Screenshots go to a temporary directory, or to
docs/screenshots/ when AIRLOCK_SCREENSHOTS names it (`make screenshots`).
"""

from __future__ import annotations

import asyncio
import json
import os
import socket
import subprocess
import sys
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest
import pytest_asyncio
from sqlalchemy import text

from airlock_client.proof import keyring_document
from airlock_server.bootstrap import Wiring, wire
from airlock_server.config import Settings
from airlock_server.domain.principals import Principal, PrincipalKind
from airlock_server.domain.teams import TeamSpec, TeamState
from airlock_server.domain.vaults import GrantState
from airlock_server.log_key import load_log_key

if TYPE_CHECKING:
    from e2e.conftest import ServerProcess

playwright_api = pytest.importorskip("playwright.async_api")

pytestmark = [pytest.mark.timeout(180), pytest.mark.asyncio]

CHROMIUM = "/usr/lib/chromium/chromium"
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-dev-shm-usage",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]
CLI = Path(sys.executable).parent / "airlock"
OWNER = "111111111111"
RECOVERY = "222222222222"
# Bounds on the browser's waits (a broken portal fails the test, it does not hang it).
WAIT_MS = 20_000


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass
class Portal:
    server: ServerProcess
    origin: str
    wiring: Wiring
    admin: Principal
    shots: Path


@pytest.fixture(
    params=[
        pytest.param("sqlite", id="sqlite"),
        pytest.param("postgresql", id="postgresql", marks=pytest.mark.postgres),
    ]
)
def portal_server(request: pytest.FixtureRequest, tmp_path: Path) -> Any:
    # The e2e conftest's helpers, as pytest loaded it (a conftest is not importable by name).
    path = Path(__file__).with_name("conftest.py")
    e2e_conftest = next(
        p
        for p in request.config.pluginmanager.get_plugins()
        if getattr(p, "__file__", None) == str(path)
    )

    port = _free_port()
    origin = f"http://localhost:{port}"
    env = {
        "AIRLOCK_PORTAL_LISTEN": f"127.0.0.1:{port}",
        "AIRLOCK_PORTAL_ORIGIN": origin,
        "AIRLOCK_NOTIFY_INTERVAL": "3600",
    }
    shots = Path(os.environ.get("AIRLOCK_SCREENSHOTS") or tmp_path / "screenshots")
    shots.mkdir(parents=True, exist_ok=True)
    with e2e_conftest.served_database(
        request.config, request.param, tmp_path / "server", env=env
    ) as server:
        yield server, origin, shots


@pytest_asyncio.fixture
async def portal(portal_server: Any, tmp_path: Path) -> AsyncIterator[Portal]:
    server, origin, shots = portal_server
    log_key = load_log_key(server.directory / "log-key.pem")
    wiring = wire(Settings(database_url=server.database_url, portal_origin=origin), log_key)
    admin = (await wiring.app.identities.authenticate(server.admin_token)).principal
    try:
        yield Portal(server, origin, wiring, admin, shots)
    finally:
        await wiring.close()


async def _link(p: Portal, team_id: str, approver: str) -> str:
    assert p.wiring.portal is not None
    team = await p.wiring.app.teams.get_team(p.admin, team_id)
    member = team.current.member(approver)
    assert member is not None
    token = await p.wiring.portal.issue_invitation_link(p.admin, member.invitation_id)
    return f"{p.origin}/invite/{token}"


async def _team(p: Portal, name: str, approvers: tuple[str, ...], m: int) -> str:
    team = await p.wiring.app.teams.create_team(
        p.admin,
        TeamSpec(
            name,
            "Recovery of production backups",
            approvers,
            m,
            timedelta(hours=24),
            timedelta(hours=24),
        ),
        "",
    )
    return str(team.team_id)


async def _restore(p: Portal, team_id: str, vault_name: str) -> tuple[str, str]:
    owner = Principal(PrincipalKind.ACCOUNT, OWNER)
    recovery = Principal(PrincipalKind.ACCOUNT, RECOVERY)
    vault = await p.wiring.app.vaults.create_vault(owner, "", vault_name, 7, 35, {}, "")
    await p.wiring.app.vaults.associate(owner, vault.vault_arn, team_id, "", "")
    asked = await p.wiring.app.vaults.request_restore_access(
        recovery, vault.vault_arn, "", "ransomware drill: restore to the clean room", ""
    )
    return str(asked.session.session.session_id), vault.vault_arn


async def _device(context: Any, page: Any) -> None:
    """This page's passkey device: Chromium's virtual platform authenticator."""
    cdp = await context.new_cdp_session(page)
    await cdp.send("WebAuthn.enable")
    await cdp.send(
        "WebAuthn.addVirtualAuthenticator",
        {
            "options": {
                "protocol": "ctap2",
                "transport": "internal",
                "hasResidentKey": True,
                "hasUserVerification": True,
                "isUserVerified": True,
                "automaticPresenceSimulation": True,
            }
        },
    )


async def _denials(p: Portal) -> list[dict[str, Any]]:
    async with p.wiring.engine.connect() as conn:
        rows = (
            await conn.execute(
                text("SELECT actor, details FROM events WHERE type = 'call.denied' ORDER BY seq")
            )
        ).all()
    return [{"actor": a, **(json.loads(d) if isinstance(d, str) else dict(d))} for a, d in rows]


async def _event_count(p: Portal) -> int:
    async with p.wiring.engine.connect() as conn:
        return int(
            (
                await conn.execute(text("SELECT count(*) FROM events WHERE type <> 'call.denied'"))
            ).scalar_one()
        )


async def _axe(page: Any) -> None:
    from axe_playwright_python.async_playwright import Axe

    results = await Axe().run(page)
    bad = [v for v in results.response["violations"] if v.get("impact") in ("serious", "critical")]
    assert not bad, json.dumps(bad, indent=1)[:4000]


async def _accept(p: Portal, page: Any, link: str, shot: str = "") -> None:
    await page.goto(link)
    await page.get_by_role("button", name="Accept and create a passkey").wait_for()
    if shot:
        await _axe(page)
        await page.screenshot(path=str(p.shots / shot), full_page=True)
    await page.get_by_role("button", name="Accept and create a passkey").click()
    await page.wait_for_url(f"{p.origin}/sign-in?enrolled=1", timeout=WAIT_MS)


async def _sign_in(p: Portal, page: Any) -> None:
    await page.goto(f"{p.origin}/sign-in")
    await page.get_by_role("button", name="Sign in with a passkey").click()
    await page.wait_for_url(f"{p.origin}/requests", timeout=WAIT_MS)


async def _approve(page: Any, session_id: str, comment: str) -> dict[str, Any]:
    """Approve in the page; returns the vote's JSON body as the browser sent it."""
    card = page.locator(f'article[data-session="{session_id}"]')
    await card.wait_for(timeout=WAIT_MS)
    await card.get_by_label("Comment (optional)").fill(comment)
    async with page.expect_request(
        lambda r: r.url.endswith(f"/{session_id}/vote"), timeout=WAIT_MS
    ) as sent:
        await card.get_by_role("button", name="Approve").click()
    status = page.get_by_role("status")
    await status.filter(has_text="ecorded").wait_for(timeout=WAIT_MS)
    assert "was recorded" in (await status.text_content() or ""), await status.text_content()
    body: dict[str, Any] = json.loads((await sent.value).post_data or "{}")
    return body


async def test_approvers_answer_and_vote_in_the_browser(portal: Portal, tmp_path: Path) -> None:
    p = portal
    app = p.wiring.app
    for name in ("alice", "bob", "carol", "dave"):
        await app.identities.create_approver(p.admin, name, name.title(), f"{name}@example.com", "")
    for account in (OWNER, RECOVERY):
        await app.identities.register_account(p.admin, account, f"acct-{account[:3]}", "")
    team_id = await _team(p, "backup-guardians", ("alice", "bob"), 2)
    for account in (OWNER, RECOVERY):
        await app.teams.share(p.admin, team_id, PrincipalKind.ACCOUNT, account, "")
    links = {a: await _link(p, team_id, a) for a in ("alice", "bob")}

    pw = await playwright_api.async_playwright().start()
    browser = await pw.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
    try:
        alice_ctx = await browser.new_context()
        bob_ctx = await browser.new_context(viewport={"width": 390, "height": 844})  # a phone
        alice = await alice_ctx.new_page()
        bob = await bob_ctx.new_page()
        await _device(alice_ctx, alice)
        await _device(bob_ctx, bob)

        # Invitations accepted with passkeys: the team becomes ACTIVE.
        await _accept(p, alice, links["alice"], shot="invitation.png")
        await _accept(p, bob, links["bob"])
        team = await app.teams.get_team(p.admin, team_id)
        assert team.state is TeamState.ACTIVE

        # Sign-in, then a restore request arrives while the page is open: shown without reload.
        await alice.goto(f"{p.origin}/sign-in")
        await _axe(alice)
        await alice.screenshot(path=str(p.shots / "sign-in.png"), full_page=True)
        await _sign_in(p, alice)
        await _sign_in(p, bob)
        await alice.get_by_text("No request is waiting for your vote.").wait_for()
        session_id, vault_arn = await _restore(p, team_id, "prod-db")
        card = alice.locator(f'article[data-session="{session_id}"]')
        await card.wait_for(timeout=WAIT_MS)
        # Everything needed to decide: the vault and its owner, the requester, the comment, M.
        shown = await card.inner_text()
        for fact in (vault_arn, OWNER, f"account:{RECOVERY}", "clean room", "of 2 needed"):
            assert fact in shown, (fact, shown)
        await _axe(alice)
        await alice.screenshot(path=str(p.shots / "requests.png"), full_page=True)
        first = await _approve(alice, session_id, "checked with the on-call lead")
        await bob.goto(f"{p.origin}/requests")
        await _approve(bob, session_id, "")

        # Two passkey votes: the session approved, the grant AVAILABLE.
        view = await app.sessions.get_session(p.admin, session_id)
        assert view.session.state.value == "APPROVED"
        grants = await app.vaults.list_restore_access(p.admin, vault_arn, None, 10, "")
        assert [g.state for g in grants.items] == [GrantState.AVAILABLE]

        await alice.goto(f"{p.origin}/history")
        await _axe(alice)
        await alice.screenshot(path=str(p.shots / "history.png"), full_page=True)
        await alice.goto(f"{p.origin}/teams")
        await _axe(alice)
        await alice.screenshot(path=str(p.shots / "teams.png"), full_page=True)

        # The proof, verified offline by the CLI, carries both portal votes.
        proof = tmp_path / "proof.json"
        proof.write_bytes(await app.sessions.export_approval_proof(p.admin, session_id))
        keyring = tmp_path / "keyring.json"
        team = await app.teams.get_team(p.admin, team_id)
        keyring.write_bytes(
            keyring_document(
                team_id,
                team.current.version,
                {m.approver_id: m.public_key or b"" for m in team.current.members},
            )
        )
        log_key = load_log_key(p.server.directory / "log-key.pem")
        assert log_key is not None
        verified = await asyncio.to_thread(
            subprocess.run,
            [
                str(CLI),
                "proof",
                "verify",
                str(proof),
                "--log-key",
                log_key.public_key.hex(),
                "--keyring",
                str(keyring),
            ],
            capture_output=True,
            text=True,
            timeout=60,
            env={"PATH": "/usr/bin:/bin"},
            check=False,
        )
        assert verified.returncode == 0, verified.stdout + verified.stderr
        assert verified.stdout.startswith("VALID")
        assert all(v.get("webauthn") for v in json.loads(proof.read_text())["votes"])

        # --- refusals: each refused, nothing changed, a call.denied in the log ---------------
        other_id, _ = await _restore(p, team_id, "prod-files")
        await alice.goto(f"{p.origin}/requests")
        await alice.locator(f'article[data-session="{other_id}"]').wait_for(timeout=WAIT_MS)
        csrf = await alice.locator('meta[name="csrf-token"]').get_attribute("content")
        before = await _event_count(p)
        denied = len(await _denials(p))

        # A forged post without the CSRF token (the cookie alone is not enough).
        forged = await alice_ctx.request.post(
            f"{p.origin}/requests/{other_id}/vote",
            data=json.dumps({"decision": "APPROVE", "credential": first["credential"]}),
            headers={"Content-Type": "application/json"},
        )
        assert forged.status == 403
        # The assertion alice's passkey made for the first session, replayed on it. The very
        # same request (its request id) is answered as before, idempotently, and adds nothing;
        # under a new request id it is a second vote, refused.
        again = await alice_ctx.request.post(
            f"{p.origin}/requests/{session_id}/vote",
            data=json.dumps(first),
            headers={"Content-Type": "application/json", "X-CSRF-Token": csrf or ""},
        )
        assert again.status == 200, await again.text()
        replayed = await alice_ctx.request.post(
            f"{p.origin}/requests/{session_id}/vote",
            data=json.dumps({**first, "request_id": "replayed"}),
            headers={"Content-Type": "application/json", "X-CSRF-Token": csrf or ""},
        )
        assert replayed.status in (403, 409), await replayed.text()
        # The same assertion presented for another session: its digest is not the challenge.
        moved = await alice_ctx.request.post(
            f"{p.origin}/requests/{other_id}/vote",
            data=json.dumps({**first, "request_id": "moved"}),
            headers={"Content-Type": "application/json", "X-CSRF-Token": csrf or ""},
        )
        assert moved.status == 400, await moved.text()
        # Alice's cookie on an invitation addressed to carol.
        other_team = await _team(p, "other-guardians", ("carol", "dave"), 2)
        carol_link = await _link(p, other_team, "carol")
        after_team = await _event_count(p)
        wrong = await alice.goto(carol_link)
        assert wrong is not None
        assert wrong.status == 403
        assert await alice.get_by_role("button", name="Accept and create a passkey").count() == 0
        # Bob, disabled, cannot sign in with his passkey.
        await app.identities.disable_approver(p.admin, "bob", "")
        after_disable = await _event_count(p)
        await bob_ctx.clear_cookies()
        await bob.goto(f"{p.origin}/sign-in")
        await bob.get_by_role("button", name="Sign in with a passkey").click()
        await bob.get_by_role("status").filter(has_text="Sign-in failed").wait_for(timeout=WAIT_MS)
        assert bob.url == f"{p.origin}/sign-in"

        # Nothing changed but what the test itself did (a team, a disabled approver).
        assert after_team > before
        assert await _event_count(p) == after_disable
        other = await app.sessions.get_session(p.admin, other_id)
        assert other.session.votes == ()
        refusals = (await _denials(p))[denied:]
        seen = {(r["actor"], r["method"], r["reason"]) for r in refusals}
        assert ("approver:alice", "portal:VoteOnSession", "PERMISSION_DENIED") in seen, seen
        assert any(
            r["method"] == "portal:VoteOnSession"
            and r["reason"] in ("ALREADY_VOTED", "PASSKEY_COUNTER_NOT_INCREASED")
            for r in refusals
        ), seen
        assert ("approver:alice", "portal:VoteOnSession", "BAD_SIGNATURE") in seen, seen
        assert ("approver:alice", "portal:GetInvitation", "PERMISSION_DENIED") in seen, seen
        assert ("approver:bob", "portal:SignIn", "APPROVER_DISABLED") in seen, seen
    finally:
        await browser.close()
        await pw.stop()
    if os.environ.get("AIRLOCK_SCREENSHOTS"):
        assert sorted(x.name for x in p.shots.glob("*.png")) == sorted(
            ["history.png", "invitation.png", "requests.png", "sign-in.png", "teams.png"]
        )
