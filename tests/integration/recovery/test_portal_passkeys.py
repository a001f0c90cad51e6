"""The approval portal's use cases (app/passkeys.py) on SQLite and PostgreSQL: invitation links,
accepting with a passkey, sign-in, votes signed by a passkey, and the proof verified offline.

The passkeys are real: a software authenticator (integration/passkey_device.py) makes ES256 and
EdDSA keys with `cryptography`, registers them in the CBOR and JSON a browser sends, and signs
assertions over the server's challenges.
"""

from __future__ import annotations

import json
import subprocess
import sys
from datetime import timedelta
from pathlib import Path

import pytest
from integration.passkey_device import EDDSA, ES256, UP, Authenticator
from recovery_world import World, raw_key  # type: ignore[import-not-found]
from sqlalchemy import text

from airlock_client.proof import keyring_document, verify_proof
from airlock_server.app.passkeys import InvitationLinks, PortalService
from airlock_server.domain.errors import (
    FailedPrecondition,
    InvalidArgument,
    NotFound,
    PermissionDenied,
    Reason,
)
from airlock_server.domain.principals import Principal, PrincipalKind
from airlock_server.domain.sessions import SessionState, VoteDecision
from airlock_server.domain.teams import TeamSpec, TeamState, key_proof_message
from airlock_server.domain.webauthn import RelyingParty, is_passkey_key

pytestmark = pytest.mark.asyncio

ORIGIN = "http://localhost:8080"
CLI = Path(sys.executable).parent / "airlock"


def portal(world: World) -> PortalService:
    return PortalService(
        world.app.deps, world.app.teams, world.app.sessions, RelyingParty.from_origin(ORIGIN)
    )


async def _team(world: World, approvers: tuple[str, ...] = ("alice", "bob", "carol")) -> str:
    team = await world.app.teams.create_team(
        world.admin,
        TeamSpec("portal-team", "passkeys", approvers, 2, timedelta(hours=24), timedelta(hours=24)),
        "",
    )
    return str(team.team_id)


async def _invitation(world: World, team_id: str, approver: str) -> str:
    team = await world.app.teams.get_team(world.admin, team_id)
    member = team.current.member(approver)
    assert member is not None
    return str(member.invitation_id)


async def _accept_with_passkey(
    world: World, p: PortalService, team_id: str, approver: str, device: Authenticator
) -> None:
    token = await p.issue_invitation_link(world.admin, await _invitation(world, team_id, approver))
    options = await p.begin_registration(token, None)
    await p.finish_registration(token, device.create(options), None, "")


async def _accept_with_cli_key(world: World, team_id: str, approver: str) -> None:
    key = world.keys[approver]
    invitation = await _invitation(world, team_id, approver)
    await world.app.teams.respond_to_invitation(
        world.approver(approver),
        invitation,
        True,
        raw_key(key),
        key.sign(key_proof_message(invitation)),
        "",
    )


async def _mixed_team(world: World, p: PortalService) -> tuple[str, dict[str, Authenticator]]:
    """alice: ES256 passkey, carol: EdDSA passkey, bob: the CLI's Ed25519 key; M = 2."""
    devices = {"alice": Authenticator(ORIGIN, ES256), "carol": Authenticator(ORIGIN, EDDSA)}
    team_id = await _team(world)
    for name, device in devices.items():
        await _accept_with_passkey(world, p, team_id, name, device)
    await _accept_with_cli_key(world, team_id, "bob")
    await world.share(team_id, world.owner)
    await world.share(team_id, world.recovery)
    return team_id, devices


async def _restore_request(world: World, team_id: str, vault: str = "portal-vault") -> str:
    arn = await world.vault(vault, team_id)
    asked = await world.app.vaults.request_restore_access(world.recovery, arn, "", "help", "")
    return str(asked.session.session.session_id)


async def _portal_vote(
    p: PortalService,
    device: Authenticator,
    approver: str,
    session_id: str,
    decision: VoteDecision = VoteDecision.APPROVE,
) -> None:
    caller = Principal(PrincipalKind.APPROVER, approver)
    options = await p.vote_options(caller, session_id, decision)
    await p.vote(caller, session_id, decision, "ok", device.get(options), "")


async def test_passkeys_and_a_cli_key_approve_and_the_proof_verifies_offline(
    world: World,
) -> None:
    p = portal(world)
    team_id, devices = await _mixed_team(world, p)
    team = await world.app.teams.get_team(world.admin, team_id)
    assert team.state is TeamState.ACTIVE
    keys = {m.approver_id: m.public_key for m in team.current.members}
    assert all(k is not None for k in keys.values())
    assert is_passkey_key(keys["alice"] or b"")
    assert is_passkey_key(keys["carol"] or b"")
    assert keys["bob"] == raw_key(world.keys["bob"])
    async with world.app.engine.connect() as conn:
        accepted = (
            await conn.execute(
                text(
                    "SELECT actor, details FROM events WHERE type = 'invitation.accepted' "
                    "ORDER BY seq DESC LIMIT 3"
                )
            )
        ).all()
    by_actor = {a: json.loads(d) if isinstance(d, str) else d for a, d in accepted}
    assert by_actor["approver:alice"]["channel"] == "portal"
    assert by_actor["approver:alice"]["public_key"] == (keys["alice"] or b"").hex()
    assert "channel" not in by_actor["approver:bob"]

    sid = await _restore_request(world, team_id)
    await _portal_vote(p, devices["alice"], "alice", sid)
    await _portal_vote(p, devices["carol"], "carol", sid)
    view = await world.app.sessions.get_session(world.admin, sid)
    assert view.session.state is SessionState.APPROVED
    async with world.app.engine.connect() as conn:
        channels = list(
            await conn.scalars(
                text(
                    "SELECT details FROM events WHERE type = 'vote.cast' ORDER BY seq DESC LIMIT 2"
                )
            )
        )
    assert all(
        (json.loads(d) if isinstance(d, str) else d)["channel"] == "portal" for d in channels
    )

    raw = await world.another_wiring().sessions.export_approval_proof(world.recovery, sid)
    proof = json.loads(raw)
    assert all("webauthn" in v for v in proof["votes"])
    assert json.loads(proof["votes"][0]["webauthn"]["client_data_json"])["type"] == "webauthn.get"
    pins = [k for k in keys.values() if k is not None]
    assert world.log_key is not None
    verdict = verify_proof(raw, world.log_key.public_key, approver_keys=pins)
    assert verdict.valid, verdict.problems

    # A proof whose passkey vote was moved to a REJECT, or whose assertion was altered, fails.
    forged = json.loads(raw)
    forged["votes"][0]["decision"] = "REJECT"
    assert not verify_proof(json.dumps(forged), world.log_key.public_key, approver_keys=pins).valid
    forged = json.loads(raw)
    forged["votes"][0]["webauthn"]["signature"] = (
        "00" + forged["votes"][0]["webauthn"]["signature"][2:]
    )
    problems = verify_proof(
        json.dumps(forged), world.log_key.public_key, approver_keys=pins
    ).problems
    assert any("webauthn" in p for p in problems), problems


async def test_airlock_proof_verify_checks_portal_votes_offline(
    world: World, tmp_path: Path
) -> None:
    """The CLI, offline (no server, no AIRLOCK_* variables), on a proof with portal votes."""
    p = portal(world)
    team_id, devices = await _mixed_team(world, p)
    sid = await _restore_request(world, team_id)
    await _portal_vote(p, devices["alice"], "alice", sid)
    await world.vote("bob", sid)  # the CLI's Ed25519 key: a mixed quorum of M = 2
    proof = tmp_path / "proof.json"
    proof.write_bytes(await world.another_wiring().sessions.export_approval_proof(world.admin, sid))
    team = await world.app.teams.get_team(world.admin, team_id)
    keyring = tmp_path / "keyring.json"
    keyring.write_bytes(
        keyring_document(
            team_id,
            team.current.version,
            {m.approver_id: m.public_key or b"" for m in team.current.members},
        )
    )
    assert world.log_key is not None

    def verify(path: Path) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [
                str(CLI),
                "proof",
                "verify",
                str(path),
                "--log-key",
                world.log_key.public_key.hex(),
                "--keyring",
                str(keyring),
            ],
            capture_output=True,
            text=True,
            timeout=60,
            env={"PATH": "/usr/bin:/bin"},
            check=False,
        )

    done = verify(proof)
    assert done.returncode == 0, done.stdout + done.stderr
    assert done.stdout.startswith("VALID")
    # A passkey vote moved to another session's digest: NOT VALID, exit 4.
    forged = json.loads(proof.read_text())
    vote = next(v for v in forged["votes"] if v["approver_id"] == "alice")
    vote["decision"] = "REJECT"
    bad = tmp_path / "forged.json"
    bad.write_text(json.dumps(forged))
    refused = verify(bad)
    assert refused.returncode == 4, refused.stdout + refused.stderr
    assert "passkey assertion of alice" in refused.stdout + refused.stderr


async def test_assertions_replayed_or_over_another_session_are_refused(world: World) -> None:
    p = portal(world)
    team_id, devices = await _mixed_team(world, p)
    first = await _restore_request(world, team_id, "vault-one")
    second = await _restore_request(world, team_id, "vault-two")
    alice = Principal(PrincipalKind.APPROVER, "alice")
    over_first = devices["alice"].get(await p.vote_options(alice, first, VoteDecision.APPROVE))
    before = await world.app.snapshot()

    # The assertion over the first session's digest does not vote on the second.
    with pytest.raises(InvalidArgument) as err:
        await p.vote(alice, second, VoteDecision.APPROVE, "", over_first, "")
    assert err.value.reason is Reason.BAD_SIGNATURE
    # Nor for the other decision on the same session.
    with pytest.raises(InvalidArgument) as err:
        await p.vote(alice, first, VoteDecision.REJECT, "", over_first, "")
    assert err.value.reason is Reason.BAD_SIGNATURE
    # Nor by another approver.
    with pytest.raises((InvalidArgument, PermissionDenied)):
        await p.vote(
            Principal(PrincipalKind.APPROVER, "carol"),
            first,
            VoteDecision.APPROVE,
            "",
            over_first,
            "",
        )
    assert await world.app.snapshot() == before

    await p.vote(alice, first, VoteDecision.APPROVE, "", over_first, "")
    # Replayed: the vote is final.
    with pytest.raises(FailedPrecondition) as failed:
        await p.vote(alice, first, VoteDecision.APPROVE, "", over_first, "")
    assert failed.value.reason is Reason.ALREADY_VOTED

    # An older assertion (a lower counter) over the second session: a replay or a clone.
    options = await p.vote_options(alice, second, VoteDecision.APPROVE)
    stale = devices["alice"].get(options)
    devices["alice"].get(await p.begin_sign_in())  # the device moves on...
    await p.finish_sign_in(
        devices["alice"].get(await p.begin_sign_in())
    )  # ...and the server sees it
    with pytest.raises(PermissionDenied) as denied:
        await p.vote(alice, second, VoteDecision.APPROVE, "", stale, "")
    assert denied.value.reason is Reason.PASSKEY_COUNTER_NOT_INCREASED

    # Without user verification: refused.
    unverified = devices["alice"].get(options, flags=UP)
    with pytest.raises(InvalidArgument) as err:
        await p.vote(alice, second, VoteDecision.APPROVE, "", unverified, "")
    assert err.value.reason is Reason.BAD_SIGNATURE
    # From another origin, or for another RP id: refused.
    for forged in (
        devices["alice"].get(options, origin="http://evil.localhost:8080"),
        devices["alice"].get(options, rp_id="evil.example"),
    ):
        with pytest.raises(InvalidArgument):
            await p.vote(alice, second, VoteDecision.APPROVE, "", forged, "")


async def test_sign_in(world: World) -> None:
    p = portal(world)
    _, devices = await _mixed_team(world, p)
    device = devices["alice"]
    options = await p.begin_sign_in()
    answer = device.get(options)
    assert await p.finish_sign_in(answer) == Principal(PrincipalKind.APPROVER, "alice")
    # Single use: the same answer again is refused, so is an answer over a made-up challenge.
    with pytest.raises(FailedPrecondition) as failed:
        await p.finish_sign_in(answer)
    assert failed.value.reason is Reason.PASSKEY_CHALLENGE_INVALID
    made_up = json.dumps({**json.loads(options), "challenge": "AAAAAAAAAAAAAAAAAAAAAA"})
    with pytest.raises(FailedPrecondition):
        await p.finish_sign_in(device.get(made_up))
    # Expired: five minutes.
    late = device.get(await p.begin_sign_in())
    world.clock.advance(timedelta(minutes=6))
    with pytest.raises(FailedPrecondition):
        await p.finish_sign_in(late)
    # An unknown passkey.
    stranger = Authenticator(ORIGIN)
    stranger.create(
        json.dumps(
            {
                "rp": {"id": "localhost"},
                "user": {"id": "AA"},
                "challenge": "AA",
                "pubKeyCredParams": [{"alg": ES256}],
            }
        )
    )
    with pytest.raises(PermissionDenied) as denied:
        await p.finish_sign_in(stranger.get(await p.begin_sign_in()))
    assert denied.value.reason is Reason.PASSKEY_NOT_ENROLLED
    # A disabled approver.
    await world.app.identities.disable_approver(world.admin, "alice", "")
    with pytest.raises(FailedPrecondition) as failed:
        await p.finish_sign_in(device.get(await p.begin_sign_in()))
    assert failed.value.reason is Reason.APPROVER_DISABLED
    with pytest.raises(FailedPrecondition):
        await p.check_signed_in(Principal(PrincipalKind.APPROVER, "alice"))
    await p.check_signed_in(Principal(PrincipalKind.APPROVER, "carol"))


async def test_a_passkey_no_longer_enrolled_signs_nothing_in(world: World) -> None:
    """A passkey signs in while it is the key of its approver in a team that stands; once the
    team is deleted, the enrollment is gone and so is the sign-in."""
    p = portal(world)
    team_id = await _team(world, ("alice", "bob"))
    device = Authenticator(ORIGIN)
    await _accept_with_passkey(world, p, team_id, "alice", device)
    alice = Principal(PrincipalKind.APPROVER, "alice")
    assert await p.finish_sign_in(device.get(await p.begin_sign_in())) == alice
    await world.app.teams.delete_inactive_team(world.admin, team_id, "")
    with pytest.raises(PermissionDenied) as denied:
        await p.finish_sign_in(device.get(await p.begin_sign_in()))
    assert denied.value.reason is Reason.PASSKEY_NOT_ENROLLED


async def test_invitation_links(world: World) -> None:
    p = portal(world)
    team_id = await _team(world)
    alice_invitation = await _invitation(world, team_id, "alice")
    token = await p.issue_invitation_link(world.admin, alice_invitation)
    # Only its hash is stored.
    async with world.app.engine.connect() as conn:
        stored = list(await conn.scalars(text("SELECT token_sha256 FROM invitation_links")))
    assert token not in stored

    details = await p.invitation_by_link(token, None)
    assert (details.approver_id, details.team_id, details.min_approvals) == ("alice", team_id, 2)
    assert details.approver_ids == ("alice", "bob", "carol")
    assert details.description == "passkeys"

    with pytest.raises(NotFound):
        await p.invitation_by_link("not-a-token", None)
    # Signed in as another approver: refused, and nothing is registered.
    bob = Principal(PrincipalKind.APPROVER, "bob")
    with pytest.raises(PermissionDenied):
        await p.invitation_by_link(token, bob)
    device = Authenticator(ORIGIN)
    options = await p.begin_registration(token, None)
    with pytest.raises(PermissionDenied):
        await p.finish_registration(token, device.create(options), bob, "")
    assert await world.app.count("passkeys") == 0
    # Only the last link of an invitation works.
    newer = await p.issue_invitation_link(world.admin, alice_invitation)
    with pytest.raises(NotFound):
        await p.invitation_by_link(token, None)
    # A registration over a challenge of another invitation is refused.
    bob_token = await p.issue_invitation_link(world.admin, await _invitation(world, team_id, "bob"))
    bob_options = await p.begin_registration(bob_token, None)
    with pytest.raises(FailedPrecondition) as failed:
        await p.finish_registration(newer, device.create(bob_options), None, "")
    assert failed.value.reason is Reason.PASSKEY_CHALLENGE_INVALID

    # Accepted: the link is spent.
    await p.finish_registration(
        newer, device.create(await p.begin_registration(newer, None)), None, ""
    )
    with pytest.raises(NotFound):
        await p.invitation_by_link(newer, None)
    # Declined through the portal, with the approver as the actor.
    view = await p.decline(bob_token, None, "")
    assert view.member.approver_id == "bob"
    async with world.app.engine.connect() as conn:
        actor = await conn.scalar(
            text("SELECT actor FROM events WHERE type = 'invitation.declined'")
        )
    assert actor == "approver:bob"
    # An expired invitation's link is closed.
    other = await world.app.teams.create_team(
        world.admin,
        TeamSpec("later", "", ("carol",), 1, timedelta(hours=1), timedelta(hours=1)),
        "",
    )
    late = await p.issue_invitation_link(world.admin, other.current.members[0].invitation_id)
    world.clock.advance(timedelta(hours=2))
    with pytest.raises(FailedPrecondition) as failed:
        await p.invitation_by_link(late, None)
    assert failed.value.reason is Reason.INVITATION_CLOSED
    # Only the admin issues links, for invitations still to answer.
    with pytest.raises(PermissionDenied):
        await p.issue_invitation_link(bob, alice_invitation)
    with pytest.raises(FailedPrecondition) as failed:
        await p.issue_invitation_link(world.admin, alice_invitation)
    assert failed.value.reason is Reason.INVITATION_ALREADY_ANSWERED
    with pytest.raises(NotFound):
        await p.issue_invitation_link(world.admin, "inv-unknown")


async def test_a_link_is_shown_once_even_to_a_retry(world: World) -> None:
    links = InvitationLinks(world.app.deps, ORIGIN)
    team_id = await _team(world)
    invitation = await _invitation(world, team_id, "carol")
    first = await links.issue(world.admin, invitation, "retry-1")
    assert first.url == f"{ORIGIN}/invite/{first.token}"
    again = await links.issue(world.admin, invitation, "retry-1")
    assert (again.token, again.url, again.expire_time) == ("", "", first.expire_time)
    details = await portal(world).invitation_by_link(first.token, None)
    assert details.approver_id == "carol"
    async with world.app.engine.connect() as conn:
        issued = await conn.scalar(
            text("SELECT count(*) FROM events WHERE type = 'invitation.link_issued'")
        )
    assert issued == 1
