"""Every event type, driven: each case runs use cases on SQLite and on PostgreSQL and asserts the
exact events they appended, in order, with their actor and subjects (docs/event-log.md).

A case builds what it needs, calls `World.mark()`, acts, and returns the events it expects after
the mark. Together the cases append every type of EVENT_TYPES (checked below without a
database), so a type no use case reaches, or one that appends something else, fails here.
"""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from datetime import timedelta

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from integration.harness import Harness
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from airlock_server.app.notifications import Dispatcher, DispatchSettings, EndpointChange
from airlock_server.app.passkeys import InvitationLinks
from airlock_server.app.teams import TeamUpdate
from airlock_server.channels.webhook import WebhookSender
from airlock_server.domain.events import CALL_DENIED, EVENT_TYPES
from airlock_server.domain.notifications import BodyFormat, Channel, RetryPolicy
from airlock_server.domain.principals import SYSTEM, Principal, PrincipalKind
from airlock_server.domain.sessions import ExecutionStatus, VoteDecision, vote_digest
from airlock_server.domain.teams import (
    InvitationState,
    Team,
    key_proof_message,
    validate_team_spec,
)
from airlock_server.persistence.models import EventRecord

ADMIN = Principal(PrincipalKind.ADMIN, "bootstrap")
OWNER = Principal(PrincipalKind.ACCOUNT, "111111111111")
RECOVERY = Principal(PrincipalKind.ACCOUNT, "222222222222")
SERVICE = Principal(PrincipalKind.SERVICE, "deployer")
APPROVERS = ("alice", "bob", "carol", "dave", "erin")
TRIO = ("alice", "bob", "carol")
RESOURCE = "arn:aws:deploy:::app/payments"
# Every comment of these cases: no event may carry it (events name a comment by its digest).
COMMENT = "a comment body the log must never carry"


def approver(name: str) -> Principal:
    return Principal(PrincipalKind.APPROVER, name)


@dataclass(frozen=True)
class Ev:
    """An event a case expects: type, actor and subjects exactly, `details` as a subset."""

    type: str
    actor: Principal
    subjects: tuple[str, ...]
    details: Mapping[str, object] = field(default_factory=dict)


def ev(type_: str, actor: Principal, *subjects: str, **details: object) -> Ev:
    return Ev(type_, actor, subjects, details)


def votes(session_id: str, *names: str, decision: str = "APPROVE") -> list[Ev]:
    return [
        ev("vote.cast", approver(n), f"session:{session_id}", f"approver:{n}", decision=decision)
        for n in names
    ]


class World:
    """The use cases on the test's database, and the steps the cases are made of."""

    def __init__(self, app: Harness) -> None:
        self.app = app
        self.keys = {name: Ed25519PrivateKey.generate() for name in APPROVERS}
        self.since = 0

    # --- the log ---------------------------------------------------------------------------

    async def mark(self) -> None:
        """What a case expects starts after this point (seq is gap-free from 1)."""
        self.since = await self.app.count("events")

    async def appended(self) -> list[EventRecord]:
        async with AsyncSession(self.app.engine) as s:
            query = select(EventRecord).where(EventRecord.seq > self.since)
            return list(await s.scalars(query.order_by(EventRecord.seq)))

    # --- identities ------------------------------------------------------------------------

    async def boot(self) -> str:
        issued = await self.app.identities.bootstrap_admin()
        assert (await self.app.identities.authenticate(issued.token)).principal == ADMIN
        return issued.credential.credential_id

    async def people(self) -> None:
        await self.boot()
        for name in APPROVERS:
            await self.app.identities.create_approver(ADMIN, name, name.title(), "", "")
        for account in (OWNER, RECOVERY):
            await self.app.identities.register_account(ADMIN, account.subject, "acct", "")

    # --- teams -----------------------------------------------------------------------------

    async def new_team(
        self, name: str, approvers: tuple[str, ...] = TRIO, invitation_ttl: timedelta | None = None
    ) -> Team:
        spec = validate_team_spec(
            name=name,
            description="",
            approver_ids=approvers,
            min_approvals=2,
            session_ttl=None,
            invitation_ttl=invitation_ttl,
        )
        return await self.app.teams.create_team(ADMIN, spec, "")

    async def answer(self, name: str, team_id: str, accept: bool = True) -> None:
        """`name` answers its open invitation to the team (its first version or a draft)."""
        team = await self.app.teams.get_team(ADMIN, team_id)
        invitation_id = next(
            m.invitation_id
            for version in (team.pending, team.current)
            if version is not None
            for m in version.members
            if m.approver_id == name and m.invitation_state is InvitationState.PENDING
        )
        key = self.keys[name]
        await self.app.teams.respond_to_invitation(
            approver(name),
            invitation_id,
            accept,
            key.public_key().public_bytes_raw() if accept else b"",
            key.sign(key_proof_message(invitation_id)) if accept else b"",
            "",
        )

    async def team(
        self, name: str, approvers: tuple[str, ...] = TRIO, shared: tuple[Principal, ...] = ()
    ) -> Team:
        """An ACTIVE 2-of-n team, shared with `shared`."""
        team = await self.new_team(name, approvers)
        for a in approvers:
            await self.answer(a, team.team_id)
        for principal in shared:
            await self.share(team.team_id, principal)
        return await self.app.teams.get_team(ADMIN, team.team_id)

    async def share(self, team_id: str, principal: Principal) -> None:
        await self.app.teams.share(ADMIN, team_id, principal.kind, principal.subject, "")

    # --- sessions --------------------------------------------------------------------------

    async def vote(self, name: str, session_id: str, approve: bool = True) -> None:
        decision = VoteDecision.APPROVE if approve else VoteDecision.REJECT
        session = (await self.app.sessions.get_session(ADMIN, session_id)).session
        signature = self.keys[name].sign(vote_digest(session, decision))
        await self.app.sessions.vote(approver(name), session_id, decision, COMMENT, signature, "")

    async def approve(self, session_id: str, by: tuple[str, ...] = ("alice", "bob")) -> None:
        for name in by:
            await self.vote(name, session_id)

    # --- vaults ----------------------------------------------------------------------------

    async def vault(self, team_id: str | None) -> str:
        vault = await self.app.vaults.create_vault(OWNER, "", "prod-lag", 7, 35, {}, "")
        if team_id is not None:
            await self.app.vaults.associate(OWNER, vault.vault_arn, team_id, COMMENT, "")
        return vault.vault_arn

    async def request_restore(self, who: Principal, vault_arn: str, name: str) -> tuple[str, str]:
        """(grant id, session id) of a new restore access request."""
        change = await self.app.vaults.request_restore_access(who, vault_arn, name, COMMENT, "")
        return change.grant.grant_id, change.session.session.session_id

    async def request_revoke(self, grant_id: str) -> str:
        # The admin: the owner cannot revoke another account's grant (a recovery in progress).
        change = await self.app.vaults.revoke_restore_access(ADMIN, grant_id, COMMENT, "")
        return change.session.session.session_id


# --- the cases ---------------------------------------------------------------------------------

Run = Callable[[World], Awaitable[list[Ev]]]


@dataclass(frozen=True)
class Case:
    name: str
    types: frozenset[str]  # what the case's events are, declared: the coverage check reads it
    run: Run


CASES: list[Case] = []


def case(*types: str) -> Callable[[Run], Run]:
    def register(run: Run) -> Run:
        CASES.append(Case(run.__name__, frozenset(types), run))
        return run

    return register


@case("server.bootstrapped")
async def bootstrap_makes_the_first_admin(w: World) -> list[Ev]:
    await w.mark()
    credential_id = await w.boot()
    return [ev("server.bootstrapped", ADMIN, f"credential:{credential_id}")]


@case(
    "approver.created",
    "account.registered",
    "credential.issued",
    "credential.revoked",
    "approver.disabled",
)
async def identities_and_credentials(w: World) -> list[Ev]:
    await w.boot()
    await w.mark()
    ids = w.app.identities
    await ids.create_approver(ADMIN, "alice", "Alice", "", "")
    await ids.register_account(ADMIN, OWNER.subject, "prod", "")
    issued = await ids.issue_credential(ADMIN, PrincipalKind.APPROVER, "alice", "", None, "")
    credential = f"credential:{issued.credential.credential_id}"
    for _ in range(2):  # the second revoke and disable change nothing: no event
        await ids.revoke_credential(ADMIN, issued.credential.credential_id, "")
    for _ in range(2):
        await ids.disable_approver(ADMIN, "alice", "")
    return [
        ev("approver.created", ADMIN, "approver:alice"),
        ev("account.registered", ADMIN, f"account:{OWNER.subject}"),
        ev("credential.issued", ADMIN, credential, "approver:alice"),
        ev("credential.revoked", ADMIN, credential, "approver:alice"),
        ev("approver.disabled", ADMIN, "approver:alice"),
    ]


@case("team.created", "invitation.sent", "invitation.accepted", "team.activated")
async def a_new_team_activates_when_all_accept(w: World) -> list[Ev]:
    await w.people()
    await w.mark()
    team = await w.new_team("guardians")
    for name in TRIO:
        await w.answer(name, team.team_id)
    t = f"team:{team.team_id}"
    return [
        ev("team.created", ADMIN, t, *(f"approver:{a}" for a in TRIO)),
        *(ev("invitation.sent", ADMIN, t, f"approver:{a}") for a in TRIO),
        *(ev("invitation.accepted", approver(a), t, f"approver:{a}") for a in TRIO),
        ev("team.activated", SYSTEM, t),
    ]


@case("invitation.link_issued")
async def the_admin_issues_an_invitation_link(w: World) -> list[Ev]:
    await w.people()
    team = await w.new_team("guardians", ("alice", "bob"))
    invitation = team.current.members[0].invitation_id
    await w.mark()
    issued = await InvitationLinks(w.app.deps).issue(ADMIN, invitation)
    assert issued.token
    t = f"team:{team.team_id}"
    return [ev("invitation.link_issued", ADMIN, t, "approver:alice", invitation_id=invitation)]


@case("invitation.declined", "team.activation_failed", "team.deleted")
async def a_decline_fails_a_new_team_which_is_then_deleted(w: World) -> list[Ev]:
    await w.people()
    team = await w.new_team("guardians", ("alice", "bob"))
    t = f"team:{team.team_id}"
    await w.mark()
    await w.answer("alice", team.team_id, accept=False)
    await w.app.teams.delete_inactive_team(ADMIN, team.team_id, "")
    return [
        ev("invitation.declined", approver("alice"), t, "approver:alice"),
        ev("team.activation_failed", SYSTEM, t, status="FAILED_ACTIVATION"),
        ev("team.deleted", ADMIN, t, previous_state="INACTIVE"),
    ]


@case("team.activation_failed")
async def unanswered_invitations_expire(w: World) -> list[Ev]:
    await w.people()
    team = await w.new_team("guardians", invitation_ttl=timedelta(minutes=15))
    await w.answer("alice", team.team_id)
    await w.mark()
    w.app.clock.advance(timedelta(minutes=16))
    assert await w.app.teams.sweep_expired_invitations() == 1
    return [ev("team.activation_failed", SYSTEM, f"team:{team.team_id}")]


@case("team.shared", "team.unshared")
async def shares_added_and_removed(w: World) -> list[Ev]:
    await w.people()
    team = await w.team("guardians")
    t = f"team:{team.team_id}"
    await w.mark()
    await w.share(team.team_id, OWNER)
    await w.share(team.team_id, OWNER)  # already shared: nothing changes, nothing is recorded
    await w.share(team.team_id, SERVICE)
    await w.app.teams.unshare(ADMIN, team.team_id, OWNER.kind, OWNER.subject, "")
    return [
        ev("team.shared", ADMIN, t, str(OWNER)),
        ev("team.shared", ADMIN, t, str(SERVICE)),
        ev("team.unshared", ADMIN, t, str(OWNER)),
    ]


@case(
    "session.created", "team.baseline_started", "vote.cast", "session.approved", "session.executed"
)
async def a_baseline_answered_by_everyone_asked(w: World) -> list[Ev]:
    await w.people()
    team = await w.team("guardians")
    t = f"team:{team.team_id}"
    await w.mark()
    view = await w.app.teams.start_team_baseline(ADMIN, team.team_id, ("alice", "bob"), COMMENT, "")
    s = view.session.session_id
    await w.approve(s)
    return [
        ev("session.created", ADMIN, f"session:{s}", t, team.arn, kind="BASELINE"),
        ev("team.baseline_started", ADMIN, t, f"session:{s}", approver_ids=["alice", "bob"]),
        *votes(s, "alice", "bob"),
        ev("session.approved", approver("bob"), f"session:{s}", team.arn),
        ev("session.executed", SYSTEM, f"session:{s}", team.arn),
    ]


@case(
    "session.created",
    "team.update_requested",
    "vote.cast",
    "session.approved",
    "team.update_approved",
    "invitation.sent",
    "session.executed",
    "invitation.accepted",
    "team.updated",
    "session.cancelled",
)
async def an_update_takes_force_when_its_new_approver_accepts(w: World) -> list[Ev]:
    await w.people()
    team = await w.team("guardians", shared=(SERVICE,))
    t = f"team:{team.team_id}"
    # A session of version 1, still open when version 2 takes force.
    old = await w.app.sessions.start_session(SERVICE, team.team_id, "deploy", RESOURCE, {}, "", "")
    g = f"session:{old.session.session_id}"
    await w.mark()
    _, view = await w.app.teams.update_team(
        ADMIN, team.team_id, "", TeamUpdate(approver_ids=(*TRIO, "dave")), ""
    )
    u = view.session.session_id
    await w.approve(u)
    await w.answer("dave", team.team_id)
    return [
        ev("session.created", ADMIN, f"session:{u}", t, team.arn, kind="TEAM_UPDATE"),
        ev("team.update_requested", ADMIN, t, *(f"approver:{a}" for a in (*TRIO, "dave"))),
        *votes(u, "alice", "bob"),
        ev("session.approved", approver("bob"), f"session:{u}", team.arn),
        ev("team.update_approved", SYSTEM, t),
        ev("invitation.sent", SYSTEM, t, "approver:dave", version=2),
        ev("session.executed", SYSTEM, f"session:{u}", team.arn),
        ev("invitation.accepted", approver("dave"), t, "approver:dave", version=2),
        ev("team.updated", SYSTEM, t, version=2, previous_version=1),
        ev("session.cancelled", SYSTEM, g, RESOURCE, status="CONFIGURATION_CHANGED"),
    ]


async def _approved_update_waiting_for_dave(w: World, invitation_ttl: timedelta) -> Team:
    await w.people()
    team = await w.team("guardians")
    update = TeamUpdate(approver_ids=(*TRIO, "dave"), invitation_ttl=invitation_ttl)
    _, view = await w.app.teams.update_team(ADMIN, team.team_id, "", update, "")
    await w.approve(view.session.session_id)
    return team


@case("invitation.declined", "team.update_activation_failed")
async def a_new_approver_who_declines_fails_the_update(w: World) -> list[Ev]:
    team = await _approved_update_waiting_for_dave(w, timedelta(hours=1))
    t = f"team:{team.team_id}"
    await w.mark()
    await w.answer("dave", team.team_id, accept=False)
    return [
        ev("invitation.declined", approver("dave"), t, "approver:dave", version=2),
        ev("team.update_activation_failed", SYSTEM, t, draft_version=2, version=1),
    ]


@case("team.update_activation_failed")
async def a_new_approver_who_never_answers_fails_the_update(w: World) -> list[Ev]:
    team = await _approved_update_waiting_for_dave(w, timedelta(minutes=15))
    await w.mark()
    w.app.clock.advance(timedelta(minutes=16))
    assert await w.app.teams.sweep_expired_invitations() == 1
    return [ev("team.update_activation_failed", SYSTEM, f"team:{team.team_id}", draft_version=2)]


@case("vote.cast", "session.rejected", "team.update_failed")
async def a_rejected_update_fails(w: World) -> list[Ev]:
    await w.people()
    team = await w.team("guardians")
    _, view = await w.app.teams.update_team(
        ADMIN, team.team_id, "", TeamUpdate(min_approvals=3), ""
    )
    u = view.session.session_id
    await w.mark()
    await w.vote("alice", u, approve=False)
    await w.vote("bob", u, approve=False)
    return [
        *votes(u, "alice", "bob", decision="REJECT"),
        ev("session.rejected", approver("bob"), f"session:{u}", team.arn),
        ev("team.update_failed", SYSTEM, f"team:{team.team_id}", session_id=u),
    ]


@case(
    "session.created",
    "team.deletion_requested",
    "session.cancelled",
    "team.deletion_failed",
    "vote.cast",
    "session.approved",
    "team.deletion_approved",
    "session.executed",
    "team.deleted",
)
async def a_cancelled_deletion_then_one_that_waits_out_its_window(w: World) -> list[Ev]:
    await w.people()
    team = await w.team("guardians")
    t = f"team:{team.team_id}"
    await w.mark()
    _, first = await w.app.teams.start_team_deletion(ADMIN, team.team_id, "", 7, "")
    d1 = first.session.session_id
    await w.app.sessions.cancel_session(ADMIN, d1, "")
    _, second = await w.app.teams.start_team_deletion(ADMIN, team.team_id, "", 7, "")
    d2 = second.session.session_id
    await w.approve(d2)
    w.app.clock.advance(timedelta(days=7))
    assert await w.app.teams.sweep_due_deletions() == 1
    return [
        ev("session.created", ADMIN, f"session:{d1}", t, team.arn, kind="TEAM_DELETION"),
        ev("team.deletion_requested", ADMIN, t, session_id=d1, pending_window_days=7),
        ev("session.cancelled", ADMIN, f"session:{d1}", team.arn, status="CANCELLED_BY_USER"),
        ev("team.deletion_failed", SYSTEM, t, session_id=d1),
        ev("session.created", ADMIN, f"session:{d2}", t, team.arn, kind="TEAM_DELETION"),
        ev("team.deletion_requested", ADMIN, t, session_id=d2),
        *votes(d2, "alice", "bob"),
        ev("session.approved", approver("bob"), f"session:{d2}", team.arn),
        ev("team.deletion_approved", SYSTEM, t, session_id=d2, state="DELETING"),
        ev("session.executed", SYSTEM, f"session:{d2}", team.arn),
        ev("team.deleted", SYSTEM, t, state="DELETED"),
    ]


@case(
    "vote.cast",
    "session.approved",
    "team.deletion_approved",
    "team.deleted",
    "session.cancelled",
    "grant.failed",
    "vault.team_removed",
    "grant.revoked",
    "session.executed",
)
async def deleting_a_team_ends_what_it_guarded(w: World) -> list[Ev]:
    await w.people()
    team = await w.team("guardians", shared=(OWNER, RECOVERY))
    t = f"team:{team.team_id}"
    vault = await w.vault(team.team_id)
    available, session = await w.request_restore(RECOVERY, vault, "restore-1")
    await w.approve(session)
    creating, open_session = await w.request_restore(OWNER, vault, "restore-2")
    _, view = await w.app.teams.start_team_deletion(ADMIN, team.team_id, "", 0, "")
    d = view.session.session_id
    await w.mark()
    await w.approve(d)
    return [
        *votes(d, "alice", "bob"),
        ev("session.approved", approver("bob"), f"session:{d}", team.arn),
        ev("team.deletion_approved", SYSTEM, t, session_id=d, pending_window_days=0),
        ev("team.deleted", SYSTEM, t),
        ev("session.cancelled", SYSTEM, f"session:{open_session}", vault, status="TEAM_DELETED"),
        ev("grant.failed", SYSTEM, f"grant:{creating}", vault, str(OWNER), state="FAILED"),
        ev("vault.team_removed", SYSTEM, vault, t, vault_team_id=""),
        ev("grant.revoked", SYSTEM, f"grant:{available}", vault, str(RECOVERY), state="REVOKED"),
        ev("session.executed", SYSTEM, f"session:{d}", team.arn),
    ]


@case(
    "vault.created",
    "vault.team_associated",
    "session.created",
    "vault.association_change_requested",
    "vote.cast",
    "session.approved",
    "vault.association_changed",
    "session.executed",
)
async def a_vault_moves_to_another_team_with_its_teams_approval(w: World) -> list[Ev]:
    await w.people()
    first = await w.team("guardians", shared=(OWNER,))
    second = await w.team("stewards", shared=(OWNER,))
    await w.mark()
    vault = await w.vault(first.team_id)
    change = await w.app.vaults.associate(OWNER, vault, second.team_id, COMMENT, "")
    assert change.session is not None
    s = change.session.session.session_id
    await w.approve(s)
    return [
        ev("vault.created", OWNER, vault, str(OWNER)),
        ev("vault.team_associated", OWNER, vault, f"team:{first.team_id}"),
        ev("session.created", OWNER, f"session:{s}", f"team:{first.team_id}", vault),
        ev(
            "vault.association_change_requested",
            OWNER,
            vault,
            f"team:{second.team_id}",
            f"session:{s}",
        ),
        *votes(s, "alice", "bob"),
        ev("session.approved", approver("bob"), f"session:{s}", vault),
        ev(
            "vault.association_changed",
            SYSTEM,
            vault,
            f"session:{s}",
            previous_team_id=first.team_id,
            team_id=second.team_id,
        ),
        ev("session.executed", SYSTEM, f"session:{s}", vault),
    ]


@case(
    "session.created",
    "vault.association_change_requested",
    "session.cancelled",
    "vault.association_change_dropped",
)
async def a_cancelled_removal_leaves_the_vault_its_team(w: World) -> list[Ev]:
    await w.people()
    team = await w.team("guardians", shared=(OWNER,))
    vault = await w.vault(team.team_id)
    await w.mark()
    change = await w.app.vaults.disassociate(OWNER, vault, COMMENT, "")
    assert change.session is not None
    s = change.session.session.session_id
    await w.app.sessions.cancel_session(OWNER, s, "")
    return [
        ev("session.created", OWNER, f"session:{s}", f"team:{team.team_id}", vault),
        ev("vault.association_change_requested", OWNER, vault, f"session:{s}", team_id=""),
        ev("session.cancelled", OWNER, f"session:{s}", vault, status="CANCELLED_BY_USER"),
        ev("vault.association_change_dropped", SYSTEM, vault, f"session:{s}", team_id=team.team_id),
    ]


@case(
    "vote.cast", "session.approved", "vault.association_change_dropped", "session.execution_failed"
)
async def an_approved_move_to_a_team_no_longer_active_fails(w: World) -> list[Ev]:
    await w.people()
    first = await w.team("guardians", shared=(OWNER,))
    second = await w.team("stewards", ("dave", "erin"), shared=(OWNER,))
    vault = await w.vault(first.team_id)
    change = await w.app.vaults.associate(OWNER, vault, second.team_id, COMMENT, "")
    assert change.session is not None
    s = change.session.session.session_id
    # The target team is DELETING (its own vote, a 7-day window) when the move is approved.
    _, deletion = await w.app.teams.start_team_deletion(ADMIN, second.team_id, "", 7, "")
    await w.approve(deletion.session.session_id, by=("dave", "erin"))
    await w.mark()
    await w.approve(s)
    return [
        *votes(s, "alice", "bob"),
        ev("session.approved", approver("bob"), f"session:{s}", vault),
        ev(
            "vault.association_change_dropped", SYSTEM, vault, f"session:{s}", team_id=first.team_id
        ),
        ev("session.execution_failed", SYSTEM, f"session:{s}", vault),
    ]


@case("session.created", "vote.cast", "session.approved", "session.completed")
async def a_service_reports_its_approved_operation(w: World) -> list[Ev]:
    await w.people()
    team = await w.team("guardians", shared=(SERVICE,))
    await w.mark()
    view = await w.app.sessions.start_session(
        SERVICE, team.team_id, "deploy", RESOURCE, {"ticket": "CHG-1"}, COMMENT, ""
    )
    s = view.session.session_id
    await w.approve(s)
    await w.app.sessions.complete_session(SERVICE, s, ExecutionStatus.FAILED, "rolled back", "")
    return [
        ev("session.created", SERVICE, f"session:{s}", f"team:{team.team_id}", RESOURCE),
        *votes(s, "alice", "bob"),
        ev("session.approved", approver("bob"), f"session:{s}", RESOURCE),
        ev("session.completed", SERVICE, f"session:{s}", RESOURCE, execution_status="FAILED"),
    ]


@case(
    "session.created",
    "grant.requested",
    "vote.cast",
    "session.approved",
    "grant.available",
    "session.executed",
    "grant.revoke_requested",
    "grant.revoked",
)
async def restore_access_granted_then_revoked(w: World) -> list[Ev]:
    await w.people()
    team = await w.team("guardians", shared=(OWNER, RECOVERY))
    t = f"team:{team.team_id}"
    vault = await w.vault(team.team_id)
    await w.mark()
    grant, r = await w.request_restore(RECOVERY, vault, "restore-1")
    await w.approve(r)
    k = await w.request_revoke(grant)
    await w.approve(k)
    g = f"grant:{grant}"
    return [
        ev("session.created", RECOVERY, f"session:{r}", t, vault, kind="RESTORE_ACCESS"),
        ev("grant.requested", RECOVERY, g, vault, f"session:{r}", account_id=RECOVERY.subject),
        *votes(r, "alice", "bob"),
        ev("session.approved", approver("bob"), f"session:{r}", vault),
        ev("grant.available", SYSTEM, g, vault, str(RECOVERY), state="AVAILABLE"),
        ev("session.executed", SYSTEM, f"session:{r}", vault),
        ev("session.created", ADMIN, f"session:{k}", t, vault, kind="REVOKE_RESTORE_ACCESS"),
        ev("grant.revoke_requested", ADMIN, g, vault, f"session:{k}"),
        *votes(k, "alice", "bob"),
        ev("session.approved", approver("bob"), f"session:{k}", vault),
        ev("grant.revoked", SYSTEM, g, vault, str(RECOVERY), state="REVOKED"),
        ev("session.executed", SYSTEM, f"session:{k}", vault),
    ]


@case("vote.cast", "session.rejected", "grant.failed")
async def a_rejected_restore_request_fails_its_grant(w: World) -> list[Ev]:
    await w.people()
    team = await w.team("guardians", shared=(OWNER, RECOVERY))
    vault = await w.vault(team.team_id)
    grant, r = await w.request_restore(RECOVERY, vault, "restore-1")
    await w.mark()
    await w.vote("alice", r, approve=False)
    await w.vote("bob", r, approve=False)
    return [
        *votes(r, "alice", "bob", decision="REJECT"),
        ev("session.rejected", approver("bob"), f"session:{r}", vault),
        ev("grant.failed", SYSTEM, f"grant:{grant}", vault, str(RECOVERY), state="FAILED"),
    ]


@case(
    "session.created",
    "grant.revoke_requested",
    "session.cancelled",
    "grant.revoke_dropped",
    "session.expired",
)
async def a_cancelled_or_expired_revocation_leaves_the_grant(w: World) -> list[Ev]:
    await w.people()
    team = await w.team("guardians", shared=(OWNER, RECOVERY))
    t = f"team:{team.team_id}"
    vault = await w.vault(team.team_id)
    grant, r = await w.request_restore(RECOVERY, vault, "restore-1")
    await w.approve(r)
    g = f"grant:{grant}"
    await w.mark()
    k1 = await w.request_revoke(grant)
    await w.app.sessions.cancel_session(ADMIN, k1, "")
    k2 = await w.request_revoke(grant)
    w.app.clock.advance(timedelta(hours=25))
    assert await w.app.sessions.sweep_expired_sessions() == 1
    return [
        ev("session.created", ADMIN, f"session:{k1}", t, vault),
        ev("grant.revoke_requested", ADMIN, g, vault, f"session:{k1}"),
        ev("session.cancelled", ADMIN, f"session:{k1}", vault, status="CANCELLED_BY_USER"),
        ev("grant.revoke_dropped", SYSTEM, g, vault, str(RECOVERY), state="AVAILABLE"),
        ev("session.created", ADMIN, f"session:{k2}", t, vault),
        ev("grant.revoke_requested", ADMIN, g, vault, f"session:{k2}"),
        ev("session.expired", SYSTEM, f"session:{k2}", vault, status="EXPIRED"),
        ev("grant.revoke_dropped", SYSTEM, g, vault, str(RECOVERY), state="AVAILABLE"),
    ]


@case(
    "notification.endpoint_created",
    "notification.endpoint_updated",
    "notification.endpoint_deleted",
    "notification.dead",
)
async def webhook_endpoints_and_a_dead_notification(w: World) -> list[Ev]:
    await w.people()
    await w.mark()
    # Port 9 (discard) on loopback: nothing listens, every attempt is refused.
    endpoint, _ = await w.app.notifications.create_endpoint(
        ADMIN, "http://127.0.0.1:9/hook", "", BodyFormat.STANDARD, (), True, ""
    )
    e = f"endpoint:{endpoint.endpoint_id}"
    await w.app.notifications.update_endpoint(
        ADMIN, endpoint.endpoint_id, EndpointChange(kinds=("notification.test",)), ""
    )
    notification_id = await w.app.notifications.send_test(ADMIN, endpoint.endpoint_id, "")
    retry = RetryPolicy(max_age=timedelta(seconds=1))
    dispatcher = Dispatcher(
        w.app.deps, {Channel.WEBHOOK: WebhookSender(timeout=5)}, DispatchSettings(retry=retry)
    )
    assert await dispatcher.run_once() == 1
    await w.app.notifications.delete_endpoint(ADMIN, endpoint.endpoint_id, "")
    return [
        ev("notification.endpoint_created", ADMIN, e, host="127.0.0.1", kinds=[]),
        ev("notification.endpoint_updated", ADMIN, e, kinds=["notification.test"]),
        ev(
            "notification.dead",
            SYSTEM,
            f"notification:{notification_id}",
            notification_id=notification_id,
            endpoint_id=endpoint.endpoint_id,
            attempts=1,
        ),
        ev("notification.endpoint_deleted", ADMIN, e),
    ]


@case(CALL_DENIED)
async def a_refused_call_is_recorded_once_with_its_subjects(w: World) -> list[Ev]:
    await w.people()
    await w.mark()
    # What the transport's interceptor passes: the request's subjects, duplicates and blanks
    # included (tests/e2e/test_authorization_matrix.py drives it over the wire).
    method = "/airlock.v1.SessionService/WatchSession"
    await w.app.audit.record_denial(
        approver("erin"),
        method,
        "PERMISSION_DENIED",
        "PERMISSION_DENIED",
        ["session:ses-1", "", "session:ses-1", "team:team-1"],
    )
    return [
        ev(
            CALL_DENIED,
            approver("erin"),
            "session:ses-1",
            "team:team-1",
            method=method,
            code="PERMISSION_DENIED",
            reason="PERMISSION_DENIED",
        )
    ]


# --- running them ------------------------------------------------------------------------------


def test_the_cases_append_every_event_type() -> None:
    covered = frozenset().union(*(c.types for c in CASES))
    assert sorted(set(EVENT_TYPES) - covered) == [], "event types no case appends"
    assert sorted(covered - set(EVENT_TYPES)) == [], "cases expect types EVENT_TYPES lacks"
    assert len({c.name for c in CASES}) == len(CASES)


@pytest.mark.asyncio
@pytest.mark.parametrize("case", CASES, ids=[c.name for c in CASES])
async def test_each_use_case_appends_exactly_its_events(app: Harness, case: Case) -> None:
    w = World(app)
    expected = await case.run(w)
    got = await w.appended()

    assert [(e.type, e.actor, tuple(e.subjects)) for e in got] == [
        (x.type, str(x.actor), x.subjects) for x in expected
    ]
    for e, x in zip(got, expected, strict=True):
        assert {k: e.details.get(k) for k in x.details} == dict(x.details), (e.seq, e.type)
        assert COMMENT not in json.dumps(e.details), f"seq {e.seq} carries a comment body"
    assert {x.type for x in expected} == case.types, "the case's declared types are off"
