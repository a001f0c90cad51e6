"""The whole recovery story of Airlock, run against a live server (`airlock demo`, demo.py).

It uses only the SDK, as any program would.

Given an admin credential, it plays every part in turn: the admin registers three approvers and two
accounts (the owner A and the recovery account R) and issues their credentials; creates a 2-of-3
team whose approvers each enroll a fresh Ed25519 key (held in memory only); shares the team with A
and R. A creates a logically air-gapped vault and associates the team. R asks for restore access;
the attacker, holding A's credential, tries to disassociate the team, to revoke R's access, to
cancel R's request and to vote, and is refused each time; two approvers sign and approve, the grant
becomes AVAILABLE and CheckAccess(vault, R) answers yes. Then the rest of the story: an auditor
reads the recovery from the event log (every request, vote, denial and state change), VerifyLog
finds the chain intact, a signed checkpoint of the head is fetched (skipped, with a note, when the
server has no log key); the team's health says whether enough approvers remain to reach M, and a
baseline session has every approver answer. Finally the admin revokes R's grant, the team approves,
and CheckAccess(vault, R) answers no.

Each step prints a numbered line, a one-line explanation and its key facts. Every name carries a
random suffix, so the demo can run any number of times against the same server. A step that does
not behave as the story says raises `DemoFailed` (the CLI exits non-zero with its message).
"""

from __future__ import annotations

import secrets
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import AsyncExitStack
from dataclasses import dataclass, field
from typing import Any, TextIO, TypeVar

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from airlock.v1 import audit_service_pb2, common_pb2, event_pb2, session_pb2, team_pb2, vault_pb2
from airlock_client import checkpoints, keys
from airlock_client.client import AirlockClient
from airlock_client.errors import AirlockError, StatusCode

__all__ = ["DemoFailed", "DemoSummary", "run_demo"]

_T = TypeVar("_T")

Session = session_pb2.Session
Grant = vault_pb2.RestoreAccessGrant
Team = team_pb2.ApprovalTeam
Health = team_pb2.TeamHealth

APPROVER_NAMES = ("ann", "ben", "cat")
MIN_APPROVALS = 2
# Codes that mean "refused for who you are or for the state things are in".
_REFUSALS = frozenset({StatusCode.PERMISSION_DENIED, StatusCode.FAILED_PRECONDITION})
# What the log must hold about R's request once it is granted: (event type, how many).
_RECOVERY_EVENTS = (
    ("session.created", 1),
    ("grant.requested", 1),
    ("vote.cast", MIN_APPROVALS),
    ("session.approved", 1),
    ("grant.available", 1),
)


class DemoFailed(Exception):
    """A step did not behave as the story says; the message names the step and what happened."""


@dataclass
class DemoSummary:
    """What the demo created and how it ended (the `--json` document)."""

    suffix: str
    approver_ids: list[str] = field(default_factory=list)
    owner_account: str = ""
    recovery_account: str = ""
    team_id: str = ""
    vault_arn: str = ""
    session_id: str = ""
    grant_id: str = ""
    session_state: str = ""
    grant_state: str = ""
    access_allowed: bool = False
    access_allowed_after_approval: bool = False
    refusals: list[dict[str, str]] = field(default_factory=list)
    recovery_events: list[str] = field(default_factory=list)
    log_intact: bool = False
    log_checked_events: int = 0
    checkpoint_seq: int = 0
    checkpoint_skipped: bool = False
    checkpoint_key_id: str = ""
    team_health: str = ""
    active_approvers: int = 0
    baseline_session_id: str = ""
    baseline_state: str = ""
    revocation_session_id: str = ""
    revocation_state: str = ""
    steps: int = 0
    # The approval portal: one-time invitation links of a team left for a person to answer.
    portal_links: dict[str, str] = field(default_factory=dict)

    def as_dict(self) -> dict[str, Any]:
        return {
            "ok": True,
            "suffix": self.suffix,
            "approverIds": self.approver_ids,
            "ownerAccount": self.owner_account,
            "recoveryAccount": self.recovery_account,
            "teamId": self.team_id,
            "vaultArn": self.vault_arn,
            "sessionId": self.session_id,
            "grantId": self.grant_id,
            "sessionState": self.session_state,
            "grantState": self.grant_state,
            "accessAllowed": self.access_allowed,
            "accessAllowedAfterApproval": self.access_allowed_after_approval,
            "refusals": self.refusals,
            "recoveryEvents": self.recovery_events,
            "logIntact": self.log_intact,
            "logCheckedEvents": self.log_checked_events,
            "checkpointSeq": self.checkpoint_seq,
            "checkpointSkipped": self.checkpoint_skipped,
            "checkpointKeyId": self.checkpoint_key_id,
            "teamHealth": self.team_health,
            "activeApprovers": self.active_approvers,
            "baselineSessionId": self.baseline_session_id,
            "baselineState": self.baseline_state,
            "revocationSessionId": self.revocation_session_id,
            "revocationState": self.revocation_state,
            "steps": self.steps,
            "portalLinks": self.portal_links,
        }


def _name(enum: Any, number: int) -> str:
    """The short name of an enum value: `Session.State` 2 -> "APPROVED"."""
    return str(enum.Name(number)).removeprefix("STATE_").removeprefix("STATUS_CODE_")


def _short(enum: Any, number: int, prefix: str) -> str:
    """An enum value's name without its prefix: ("ACTIVITY_KIND_", 2) -> "VOTE"."""
    return str(enum.Name(number)).removeprefix(prefix)


def _actor(p: common_pb2.Principal) -> str:
    if p.kind == common_pb2.PRINCIPAL_KIND_UNSPECIFIED:
        return p.subject or "system"
    kind = _short(common_pb2.PrincipalKind, p.kind, "PRINCIPAL_KIND_").lower()
    return f"{kind}:{p.subject}" if p.subject else kind


def _account_id() -> str:
    """A random 12-digit account id that does not start with 0."""
    return str(secrets.randbelow(9 * 10**11) + 10**11)


class _Story:
    def __init__(
        self,
        admin: AirlockClient,
        connect: Callable[[str], AirlockClient],
        out: TextIO,
        stack: AsyncExitStack,
    ) -> None:
        self.admin = admin
        self._connect = connect
        self._out = out
        self._stack = stack
        self.step_no = 0
        self.title = ""
        self.summary = DemoSummary(suffix=secrets.token_hex(3))

    # -- narration ---------------------------------------------------------------------------

    def step(self, title: str, explanation: str) -> None:
        self.step_no += 1
        self.title = title
        self.summary.steps = self.step_no
        self._out.write(f"\n[step {self.step_no}] {title}\n    {explanation}\n")
        self._out.flush()

    def fact(self, key: str, value: object) -> None:
        self._out.write(f"    {key}: {value}\n")
        self._out.flush()

    def fail(self, what: str) -> DemoFailed:
        return DemoFailed(f"step {self.step_no} ({self.title}): {what}")

    def expect(self, condition: bool, what: str) -> None:
        if not condition:
            raise self.fail(what)

    async def call(self, what: str, call: Awaitable[_T]) -> _T:
        """A call the story needs to succeed; its failure fails the step with the reason."""
        try:
            return await call
        except AirlockError as exc:
            raise self.fail(f"{what} failed: {exc}") from exc

    async def refused(self, who: str, what: str, call: Awaitable[object]) -> AirlockError:
        """A call the story needs the server to refuse; it prints the refusal."""
        try:
            await call
        except AirlockError as exc:
            if exc.code not in _REFUSALS:
                raise self.fail(f"{what}: expected a refusal, got {exc}") from exc
            self.fact(f"{who} {what}", f"REFUSED {exc}")
            self.summary.refusals.append(
                {"attempt": what, "code": exc.code.name, "reason": exc.reason}
            )
            return exc
        raise self.fail(f"{what} was accepted; the story says it must be refused")

    async def client(self, token: str) -> AirlockClient:
        return await self._stack.enter_async_context(self._connect(token))

    async def issue(self, kind: str, subject: str) -> AirlockClient:
        issued = await self.call(
            f"IssueCredential({kind}:{subject})",
            self.admin.issue_credential(kind, subject, description=f"airlock demo {kind}"),
        )
        self.expect(bool(issued.token), f"the {kind} credential came without a token")
        return await self.client(issued.token)


async def _approve(
    story: _Story,
    approvers: dict[str, AirlockClient],
    signing_keys: dict[str, Ed25519PrivateKey],
    session: Session,
    voters: list[str],
    what: str,
    comment: str = "",
    said: str = "APPROVE",
) -> Session:
    """Each of `voters` signs and approves `session` in turn; the session after the last vote.
    `said`: how each vote is told ("APPROVE", or "answered" for a baseline)."""
    decided = session
    for approver_id in voters:
        decided = await story.call(
            f"Vote({approver_id}, {what})",
            approvers[approver_id].sign_and_vote(
                session, True, signing_keys[approver_id], comment=comment
            ),
        )
        story.fact(
            approver_id,
            f"{said} -> {_name(Session.State, decided.state)} "
            f"({decided.approval_count} of {decided.min_approvals})",
        )
    return decided


async def _collect(items: AsyncIterator[_T]) -> list[_T]:
    return [item async for item in items]


async def _play(story: _Story) -> DemoSummary:
    s = story.summary
    sfx = s.suffix

    # 1. identities
    story.step(
        "the admin registers three approvers and two accounts",
        "Approvers are trusted people; A owns the vault, R is the clean recovery account.",
    )
    whoami = await story.call("WhoAmI", story.admin.whoami())
    story.expect(
        whoami.principal.kind == common_pb2.PRINCIPAL_KIND_ADMIN,
        "the given credential is not an admin credential",
    )
    s.approver_ids = [f"demo-{name}-{sfx}" for name in APPROVER_NAMES]
    for approver_id, name in zip(s.approver_ids, APPROVER_NAMES, strict=True):
        await story.call(
            f"CreateApprover({approver_id})",
            story.admin.create_approver(
                approver_id, name.capitalize(), email=f"{name}@example.com"
            ),
        )
    s.owner_account, s.recovery_account = _account_id(), _account_id()
    while s.recovery_account == s.owner_account:
        s.recovery_account = _account_id()
    await story.call(
        "RegisterAccount(A)",
        story.admin.register_account(s.owner_account, f"demo-owner-{sfx}"),
    )
    await story.call(
        "RegisterAccount(R)",
        story.admin.register_account(s.recovery_account, f"demo-recovery-{sfx}"),
    )
    story.fact("approvers", ", ".join(s.approver_ids))
    story.fact("owner account A", s.owner_account)
    story.fact("recovery account R", s.recovery_account)

    # 2. credentials
    story.step(
        "the admin issues a credential to each of them",
        "Bearer tokens, shown once; approvers authenticate on a path of their own.",
    )
    approvers = {a: await story.issue("approver", a) for a in s.approver_ids}
    owner = await story.issue("account", s.owner_account)
    recovery = await story.issue("account", s.recovery_account)
    story.fact("credentials issued", len(approvers) + 2)

    # 3. the team
    story.step(
        f"the admin creates a {MIN_APPROVALS}-of-{len(s.approver_ids)} approval team",
        "The team stays PENDING until every invitee accepts.",
    )
    team = await story.call(
        "CreateApprovalTeam",
        story.admin.create_team(f"demo-guardians-{sfx}", s.approver_ids, MIN_APPROVALS),
    )
    s.team_id = team.team_id
    story.fact("team", f"{team.team_id} ({team.name})")
    story.fact("state", _name(Team.State, team.state))
    story.expect(team.state == Team.STATE_PENDING, "a new team must be PENDING")

    # 4. invitations
    story.step(
        "each approver generates an Ed25519 key and accepts its invitation",
        "Accepting enrolls the public key, proven by a signature over the invitation id.",
    )
    signing_keys: dict[str, Ed25519PrivateKey] = {}
    team_state = ""
    for approver_id, client in approvers.items():
        invitations = await story.call(
            f"ListInvitations({approver_id})",
            _collect(client.list_invitations(team_id=s.team_id)),
        )
        pending = [i for i in invitations if i.state == team_pb2.Invitation.STATE_PENDING]
        story.expect(len(pending) == 1, f"{approver_id} sees {len(pending)} pending invitations")
        key = keys.generate_private_key()
        signing_keys[approver_id] = key
        answer = await story.call(
            f"RespondToInvitation({approver_id})",
            client.respond_to_invitation(pending[0].invitation_id, True, key),
        )
        team_state = _name(Team.State, answer.team_state)
        story.fact(
            approver_id,
            f"accepted {pending[0].invitation_id}, key {keys.public_key_base64(key)[:12]}..., "
            f"team {team_state}",
        )
    team = await story.call("GetApprovalTeam", story.admin.get_team(s.team_id))
    story.fact("team state", _name(Team.State, team.state))
    story.expect(team.state == Team.STATE_ACTIVE, "the team is not ACTIVE after every accept")

    # 5. shares
    story.step(
        "the admin shares the team with A and R",
        "Only accounts the team is shared with may use it.",
    )
    for account in (s.owner_account, s.recovery_account):
        await story.call(
            f"ShareTeam({account})", story.admin.share_team(s.team_id, account_id=account)
        )
    story.fact("shared with", f"{s.owner_account}, {s.recovery_account}")

    # 6. the vault
    story.step(
        "A creates a logically air-gapped vault and associates the team",
        "The first association needs no approval; any later change needs the team's.",
    )
    vault = await story.call(
        "CreateVault",
        owner.create_vault(f"demo-lag-{sfx}", min_retention_days=7, max_retention_days=35),
    )
    s.vault_arn = vault.vault_arn
    associated = await story.call(
        "AssociateApprovalTeam", owner.associate_team(s.vault_arn, s.team_id)
    )
    story.fact("vault", s.vault_arn)
    story.fact("guarded by", associated.vault.team_id or "-")
    story.expect(associated.vault.team_id == s.team_id, "the team was not associated at once")
    story.expect(not associated.HasField("session"), "the first association opened a session")

    # 7. the request
    story.step(
        "A is compromised: R requests restore access from a clean account",
        "This opens an approval session for the team; the grant waits in CREATING.",
    )
    asked = await story.call(
        "RequestRestoreAccess",
        recovery.request_restore_access(
            s.vault_arn, comment=f"account {s.owner_account} is compromised; restoring"
        ),
    )
    session, grant = asked.session, asked.grant
    s.session_id, s.grant_id = session.session_id, grant.grant_id
    story.fact("session", f"{session.session_id} {_name(Session.State, session.state)}")
    story.fact("grant", f"{grant.grant_id} {_name(Grant.State, grant.state)}")
    story.fact("restore vault", grant.restore_vault_arn or "-")
    story.expect(session.state == Session.STATE_PENDING, "the session is not PENDING")
    story.expect(grant.state == Grant.STATE_CREATING, "the grant is not CREATING")
    access = await story.call(
        "CheckAccess", story.admin.check_access(s.vault_arn, s.recovery_account)
    )
    story.fact("CheckAccess(vault, R)", "yes" if access.allowed else "no")
    story.expect(not access.allowed, "R has access before any approval")

    # 8. the attacker
    story.step(
        "the attacker, holding A's credential, tries to stop the recovery",
        "A owns the vault, but while R's recovery is in progress it cannot remove the team or "
        "revoke R's grant; it can never cancel R's request or vote.",
    )
    await story.refused(
        "attacker",
        "DisassociateApprovalTeam",
        owner.disassociate_team(s.vault_arn, comment="nothing to see here"),
    )
    await story.refused("attacker", "RevokeRestoreAccess", owner.revoke_restore_access(s.grant_id))
    await story.refused("attacker", "CancelSession", owner.cancel_session(s.session_id))
    forged = keys.sign_vote(keys.generate_private_key(), session, False)
    await story.refused(
        "attacker", "Vote(REJECT)", owner.vote(s.session_id, False, signature=forged)
    )
    still = await story.call("GetSession", story.admin.get_session(s.session_id))
    story.fact("R's session", _name(Session.State, still.state))
    story.expect(still.state == Session.STATE_PENDING, "R's session did not stay PENDING")
    guarded = await story.call("GetVault", owner.get_vault(s.vault_arn))
    story.fact("vault guarded by", guarded.team_id or "-")
    story.expect(guarded.team_id == s.team_id, "the vault lost its team")
    story.expect(not guarded.HasField("pending_association"), "the attacker opened a change")

    # 9. review
    story.step(
        "the approvers see the session assigned to them",
        "Who asks, for what, from where, and why: what each approver reviews before voting.",
    )
    for approver_id, client in approvers.items():
        assigned = await story.call(
            f"ListAssignedSessions({approver_id})",
            _collect(client.list_assigned_sessions(awaiting_vote=True)),
        )
        mine = [a for a in assigned if a.session_id == s.session_id]
        story.expect(len(mine) == 1, f"{approver_id} does not see R's session")
        story.fact(
            approver_id,
            f"{mine[0].action} on {mine[0].protected_resource} by "
            f'account:{mine[0].requester.subject} "{mine[0].comment}"',
        )

    # 10. votes
    voters = s.approver_ids[:MIN_APPROVALS]
    story.step(
        f"{MIN_APPROVALS} approvers sign and approve R's request",
        "Each signs the session's vote digest locally; the M-th approval decides.",
    )
    decided = await _approve(
        story, approvers, signing_keys, session, voters, "APPROVE", comment="verified by phone"
    )
    s.session_state = _name(Session.State, decided.state)
    story.expect(decided.state == Session.STATE_APPROVED, "the session is not APPROVED")

    # 11. access
    story.step(
        "the grant is AVAILABLE and R may restore",
        "Approved and granted in one transaction; the data plane asks CheckAccess.",
    )
    access = await story.call(
        "CheckAccess", story.admin.check_access(s.vault_arn, s.recovery_account)
    )
    s.access_allowed = access.allowed
    s.grant_state = _name(Grant.State, access.grant.state) if access.HasField("grant") else ""
    story.fact("CheckAccess(vault, R)", "yes" if access.allowed else "no")
    story.fact("grant", f"{access.grant.grant_id} {s.grant_state or '-'}")
    story.expect(access.allowed, "CheckAccess(vault, R) answers no")
    story.expect(access.grant.grant_id == s.grant_id, "access comes through another grant")
    story.expect(access.grant.state == Grant.STATE_AVAILABLE, "the grant is not AVAILABLE")
    s.access_allowed_after_approval = access.allowed

    await _the_log(story)
    await _the_team(story, approvers, signing_keys)
    await _the_revocation(story, approvers, signing_keys)
    return s


async def _the_log(story: _Story) -> None:
    """Story step 6: the event log holds everything, and nobody edited it unnoticed."""
    s = story.summary

    # 13. the recovery in the log
    story.step(
        "an auditor reads R's recovery from the event log",
        "Every request, vote, denial and state change is an event, appended in its transaction.",
    )
    auditor = await story.issue("auditor", f"demo-auditor-{s.suffix}")
    events: dict[int, event_pb2.Event] = {}
    for subject in (f"session:{s.session_id}", f"grant:{s.grant_id}"):
        found = await story.call(
            f"ListEvents(subject={subject})", _collect(auditor.list_events(subject=subject))
        )
        events.update((e.seq, e) for e in found)
    recovery = [events[seq] for seq in sorted(events)]
    for e in recovery:
        reason = e.details.fields["reason"].string_value if e.type == "call.denied" else ""
        story.fact(
            f"#{e.seq}", f"{e.type} by {_actor(e.actor)}" + (f" ({reason})" if reason else "")
        )
    s.recovery_events = [e.type for e in recovery]
    for type_, count in _RECOVERY_EVENTS:
        found_count = s.recovery_events.count(type_)
        story.expect(found_count == count, f"the log holds {found_count} {type_}, not {count}")
    denials = [e for e in recovery if e.type == "call.denied"]
    story.expect(len(denials) >= 2, "the attacker's refused calls on R's session are not logged")
    story.expect(
        all(_actor(e.actor) == f"account:{s.owner_account}" for e in denials),
        "a denial on R's session names someone other than the attacker",
    )

    # 14. VerifyLog
    story.step(
        "the auditor verifies the whole log",
        "VerifyLog recomputes every hash of the chain; a changed or removed event is named.",
    )
    verified = await story.call("VerifyLog", auditor.verify_log())
    problem = _short(audit_service_pb2.VerifyLogResponse.Problem, verified.problem, "PROBLEM_")
    s.log_intact, s.log_checked_events = verified.ok, verified.checked_count
    story.fact(
        "log",
        f"INTACT: {verified.checked_count} events checked, head at seq {verified.head.seq}"
        if verified.ok
        else f"NOT INTACT: {problem} at seq {verified.first_bad_seq}",
    )
    story.expect(verified.ok, f"the log did not verify: {verified.problem_description}")
    story.expect(
        verified.checked_count >= max(events), "VerifyLog checked fewer events than R's recovery"
    )

    # 15. a signed checkpoint
    story.step(
        "the auditor keeps a signed checkpoint of the log's head",
        "Kept elsewhere, it later reveals a truncated log or a chain rewritten up to it.",
    )
    try:
        checkpoint = await auditor.get_log_checkpoint()
    except AirlockError as exc:
        if (exc.code, exc.reason) != (StatusCode.FAILED_PRECONDITION, "LOG_KEY_MISSING"):
            raise story.fail(f"GetLogCheckpoint failed: {exc}") from exc
        s.checkpoint_skipped = True
        story.fact(
            "checkpoint",
            "SKIPPED: this server has no log key, so it signs no checkpoints "
            "(FAILED_PRECONDITION LOG_KEY_MISSING; `airlock-server log-key` makes one)",
        )
        return
    try:
        checkpoints.verify_signature(checkpoint, checkpoint.public_key)
    except checkpoints.CheckpointError as exc:
        raise story.fail(str(exc)) from exc
    s.checkpoint_seq, s.checkpoint_key_id = checkpoint.seq, checkpoint.key_id
    story.fact(
        "checkpoint",
        f"seq {checkpoint.seq}, hash {checkpoint.hash.hex()[:16]}..., "
        f"signed by log key {checkpoint.key_id}",
    )
    against = await story.call("VerifyLog(checkpoint)", auditor.verify_log(checkpoint=checkpoint))
    story.fact("log against the checkpoint", "INTACT" if against.ok else "NOT INTACT")
    story.expect(
        against.ok, f"the log does not match its checkpoint: {against.problem_description}"
    )


async def _the_team(
    story: _Story, approvers: dict[str, AirlockClient], signing_keys: dict[str, Ed25519PrivateKey]
) -> None:
    """Story step 7: team health, and a baseline that proves every approver still answers."""
    s = story.summary

    # 16. health
    story.step(
        "the admin checks the team's health",
        "Whether enough active approvers remain to reach M, with a margin (slack).",
    )
    health = await story.call("GetTeamHealth", story.admin.get_team_health(s.team_id))
    s.team_health = _short(Health.Status, health.status, "STATUS_")
    s.active_approvers = health.active_approvers
    story.fact(
        "health",
        f"{s.team_health}: {health.active_approvers} of {health.number_of_approvers} approvers "
        f"active, M = {health.min_approvals}, slack {health.slack}, quorum "
        + ("reachable" if health.quorum_reachable else "UNREACHABLE"),
    )
    for a in health.approvers:
        last = _short(team_pb2.ActivityKind, a.last_activity_kind, "ACTIVITY_KIND_")
        story.fact(a.approver_id, f"{'active' if a.active else 'INACTIVE'}, last activity {last}")
    story.expect(health.quorum_reachable, "the team can no longer reach M")
    story.expect(health.status == Health.STATUS_HEALTHY, f"the team is {s.team_health}")

    # 17. baseline
    story.step(
        "the admin starts a baseline: every approver must answer",
        "Not an approval: it proves the approvers still respond (each signs an APPROVE).",
    )
    baseline = await story.call(
        "StartTeamBaseline",
        story.admin.start_team_baseline(s.team_id, comment="quarterly check"),
    )
    s.baseline_session_id = baseline.session_id
    story.fact(
        "baseline",
        f"{baseline.session_id} {_name(Session.State, baseline.state)}, "
        f"{baseline.min_approvals} answers needed",
    )
    story.expect(baseline.kind == Session.KIND_BASELINE, "the session is not a baseline")
    answered = await _approve(
        story, approvers, signing_keys, baseline, list(approvers), "baseline", said="answered"
    )
    s.baseline_state = _name(Session.State, answered.state)
    story.expect(answered.state == Session.STATE_APPROVED, "the baseline is not APPROVED")


async def _the_revocation(
    story: _Story, approvers: dict[str, AirlockClient], signing_keys: dict[str, Ed25519PrivateKey]
) -> None:
    """The recovery is over: access ends the way it began, through the team."""
    s = story.summary

    # 18. revoke
    story.step(
        "the admin revokes R's grant; the team approves",
        "A revocation is a session too: access ends only when M approvers agree.",
    )
    revoking = await story.call(
        "RevokeRestoreAccess",
        story.admin.revoke_restore_access(s.grant_id, comment="restore finished"),
    )
    session = revoking.session
    s.revocation_session_id = session.session_id
    story.fact(
        "revocation",
        f"{session.session_id} {_name(Session.State, session.state)}; grant still "
        f"{_name(Grant.State, revoking.grant.state)} until approved",
    )
    story.expect(
        session.kind == Session.KIND_REVOKE_RESTORE_ACCESS, "the session is not a revocation"
    )
    decided = await _approve(
        story,
        approvers,
        signing_keys,
        session,
        s.approver_ids[-MIN_APPROVALS:],
        "APPROVE revocation",
    )
    s.revocation_state = _name(Session.State, decided.state)
    story.expect(decided.state == Session.STATE_APPROVED, "the revocation is not APPROVED")

    # 19. no more access
    story.step(
        "the grant is REVOKED and R may no longer restore",
        "CheckAccess answers no; the grant stays listed, with its history in the log.",
    )
    grants = await story.call(
        "ListRestoreAccess", _collect(story.admin.list_restore_access(vault_arn=s.vault_arn))
    )
    mine = [g for g in grants if g.grant_id == s.grant_id]
    story.expect(len(mine) == 1, "R's grant is not listed")
    s.grant_state = _name(Grant.State, mine[0].state)
    access = await story.call(
        "CheckAccess", story.admin.check_access(s.vault_arn, s.recovery_account)
    )
    s.access_allowed = access.allowed
    story.fact("grant", f"{s.grant_id} {s.grant_state}")
    story.fact("CheckAccess(vault, R)", "yes" if access.allowed else "no")
    story.expect(mine[0].state == Grant.STATE_REVOKED, "the grant is not REVOKED")
    story.expect(not access.allowed, "R still has access after the revocation")


async def _portal_links(story: _Story, out: TextIO) -> None:
    """After the story: a team of two new approvers whose invitations a person answers in the
    approval portal, with a passkey; their one-time links are printed (and only here)."""
    s = story.summary
    names = [f"portal-{name}-{s.suffix}" for name in ("pat", "quinn")]
    for approver_id in names:
        await story.call(
            f"CreateApprover({approver_id})",
            story.admin.create_approver(approver_id, approver_id, email=""),
        )
    team = await story.call(
        "CreateApprovalTeam",
        story.admin.create_team(f"portal-guardians-{s.suffix}", names, 2),
    )
    for member in team.approvers:
        issued = await story.call(
            "IssueInvitationLink", story.admin.issue_invitation_link(member.invitation_id)
        )
        if not issued.url:
            out.write("\nThe server serves no approval portal (serve --portal-listen).\n")
            return
        s.portal_links[member.approver_id] = issued.url
    base = next(iter(s.portal_links.values())).split("/invite/")[0]
    out.write(
        f"\nIn the approval portal, team portal-guardians-{s.suffix} waits for its approvers "
        "(one-time links: open each in its own browser profile, accept with a passkey):\n"
    )
    for approver_id, url in s.portal_links.items():
        out.write(f"    {approver_id}: {url}\n")
    out.write(f"    then sign in at {base}/sign-in\n")
    out.flush()


async def run_demo(
    admin: AirlockClient, connect: Callable[[str], AirlockClient], out: TextIO
) -> DemoSummary:
    """Plays the story with `admin` (an admin credential's client); `connect(token)` opens a
    client for another principal on the same server. Narrates on `out`; raises DemoFailed."""
    async with AsyncExitStack() as stack:
        story = _Story(admin, connect, out, stack)
        summary = await _play(story)
        await _portal_links(story, out)
    out.write(
        f"\nThe story holds: {summary.steps} steps, session {summary.session_id} "
        f"{summary.session_state}, grant {summary.grant_id} AVAILABLE then "
        f"{summary.grant_state}, log intact ({summary.log_checked_events} events).\n"
    )
    out.flush()
    return summary
