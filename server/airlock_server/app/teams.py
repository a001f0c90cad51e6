"""Approval teams, their shares and invitations: the use cases."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta

from airlock_server.app import signing
from airlock_server.app.common import Deps, Done, run_once, transact
from airlock_server.app.ports import TeamRead, UnitOfWork
from airlock_server.app.sessions import Effect, SessionService, SessionView
from airlock_server.app.vaults import end_team_guard
from airlock_server.domain.errors import (
    APPROVER_DISABLED,
    AlreadyExists,
    EtagMismatch,
    FailedPrecondition,
    FieldViolation,
    InvalidArgument,
    NotFound,
    PermissionDenied,
    Reason,
)
from airlock_server.domain.health import (
    Activity,
    ActivityKind,
    TeamHealth,
    activity_window,
    baseline_approvers,
    team_health,
)
from airlock_server.domain.paging import Page, decode_token, page_of, page_size
from airlock_server.domain.principals import (
    SYSTEM,
    Principal,
    PrincipalKind,
    missing_or_denied,
    require,
    require_admin,
    validate_principal,
)
from airlock_server.domain.sessions import (
    Session,
    SessionKind,
    SessionState,
    SessionStatus,
)
from airlock_server.domain.team_changes import (
    NewKey,
    TeamDeletion,
    apply_approved_update,
    approve_deletion,
    deletion_due,
    fail_deletion,
    fail_update,
    finish_deletion,
    invitable_version,
    key_change_message,
    same_draft,
    settle_update_activation,
    start_deletion,
    start_update,
    team_draft,
)
from airlock_server.domain.team_events import (
    activation_decided,
    baseline_started,
    deletion_approved,
    deletion_failed,
    deletion_requested,
    inactive_team_deleted,
    invitation_answered,
    invitation_sent,
    team_created,
    team_deleted,
    team_shared,
    team_unshared,
    team_updated,
    update_activation_failed,
    update_approved,
    update_failed,
    update_requested,
)
from airlock_server.domain.teams import (
    InvitationState,
    Team,
    TeamMember,
    TeamShare,
    TeamSpec,
    TeamState,
    TeamStatus,
    TeamVersion,
    key_proof_message,
    respond,
    settle_new_team,
    transition,
)
from airlock_server.domain.webauthn import PasskeyCredential

SWEEP_BATCH = 100


@dataclass(frozen=True)
class TeamView:
    """A team with what its API shape shows beside it."""

    team: Team
    deletion: TeamDeletion | None = None
    activity: Mapping[str, Activity] = field(default_factory=dict)
    # Set on a read that found the team due to settle: the caller settles it under a lock.
    unsettled: bool = False


@dataclass(frozen=True)
class InvitationView:
    """One invitation as its approver sees it."""

    team: Team
    version: TeamVersion
    member: TeamMember


@dataclass(frozen=True)
class TeamUpdate:
    """What UpdateApprovalTeam changes; None keeps the current value."""

    description: str | None = None
    approver_ids: tuple[str, ...] | None = None
    min_approvals: int | None = None
    session_ttl: timedelta | None = None
    invitation_ttl: timedelta | None = None
    reenroll_approver_ids: tuple[str, ...] = ()
    # The keys the draft binds its invitations to (each re-enrolled approver's, required).
    new_keys: tuple[NewKey, ...] = ()

    @property
    def empty(self) -> bool:
        return (
            self.description is None
            and self.approver_ids is None
            and self.min_approvals is None
            and self.session_ttl is None
            and self.invitation_ttl is None
            and not self.reenroll_approver_ids
            and not self.new_keys
        )


def settle_team(team: Team, now: datetime) -> Team:
    """What a read sees: a new team's or an approved draft's activation, decided."""
    return settle_update_activation(settle_new_team(team, now), now)


class TeamService:
    def __init__(self, deps: Deps, sessions: SessionService | None = None) -> None:
        self._deps = deps
        self._sessions = sessions or SessionService(deps)

    # --- reading -------------------------------------------------------------------------

    async def _load(self, uow: UnitOfWork, team_id: str, *, for_update: bool = False) -> Team:
        team = await uow.teams.get(team_id, for_update=for_update)
        if team is None or team.state is TeamState.DELETED:
            raise NotFound("approval team", team_id)
        return team

    async def _settle(self, uow: UnitOfWork, team: Team) -> Team:
        """Decide a PENDING team whose answers or TTL are in (ACTIVE or INACTIVE), or an
        approved draft's activation (in force, or UPDATE_FAILED_ACTIVATION)."""
        if team.state is not TeamState.PENDING:
            return await self._settle_update(uow, team)
        settled = settle_new_team(team, self._deps.clock())
        if settled is team:
            return team
        await uow.teams.save(settled)
        uow.record(activation_decided(team, settled, settled.state is TeamState.ACTIVE))
        return settled

    async def _settle_update(self, uow: UnitOfWork, team: Team) -> Team:
        settled = settle_update_activation(team, self._deps.clock())
        if settled is team:
            return team
        await uow.teams.save(settled)
        if settled.current.version != team.current.version:
            await supersede(self._sessions, uow, team, settled)
        else:
            draft_version = team.pending.version if team.pending else 0
            uow.record(update_activation_failed(settled, draft_version))
        return settled

    @staticmethod
    def _visible(caller: Principal, team_id: str, found: TeamRead) -> Team:
        """A team GetApprovalTeam shows the caller. An unknown id answers what a team not
        shared with the caller answers (missing_or_denied): ids cannot be probed."""
        shared = found.share is not None
        team = found.team
        if team is None or team.state is TeamState.DELETED:
            raise missing_or_denied(
                caller, NotFound("approval team", team_id), _not_shared(team_id, caller), own=shared
            )
        # Approvers see their teams through their invitations and sessions, nothing else.
        if caller.kind in (PrincipalKind.ADMIN, PrincipalKind.AUDITOR) or shared:
            return team
        raise _not_shared(team_id, caller)

    async def get_team(self, caller: Principal, team_id: str) -> Team:
        return (await self._get_team(caller, team_id, full=False)).team

    async def get_team_view(self, caller: Principal, team_id: str) -> TeamView:
        """The team with its latest deletion request and its approvers' last activity (the
        API's deletion and activity fields), in one read."""
        return await self._get_team(caller, team_id, full=True)

    async def _get_team(self, caller: Principal, team_id: str, *, full: bool) -> TeamView:
        async def extras(uow: UnitOfWork, team: Team) -> TeamView:
            if not full:
                return TeamView(team)
            deletion = (await uow.deletions.latest_of([team_id])).get(team_id)
            activity = (await uow.activity.of_teams([team_id])).get(team_id, {})
            return TeamView(team, deletion, activity)

        # Only accounts and services see a team through a share.
        sharer = caller if caller.kind in (PrincipalKind.ACCOUNT, PrincipalKind.SERVICE) else None

        async def read(uow: UnitOfWork) -> TeamView:
            found = await uow.teams.view(team_id, sharer)
            team = self._visible(caller, team_id, found)
            if settle_team(team, self._deps.clock()) is not team:
                return TeamView(team, unsettled=True)
            if not full:
                return TeamView(team)
            deletion, activity = await found.extras()
            return TeamView(team, deletion, activity)

        # PostgreSQL: one statement (share, team, deletion, activity) on the driver connection
        # (hot, issue 11). SQLite: the reads of each, on its one connection, which no other
        # transaction of the process can write through meanwhile.
        view = await transact(self._deps, read, one_statement=True, hot=True)
        if not view.unsettled:
            return view

        async def work(uow: UnitOfWork) -> TeamView:
            # Read-time expiry writes the decision down, under the team's row lock.
            settled = await self._settle(uow, await self._load(uow, team_id, for_update=True))
            settled_view = await extras(uow, settled)
            await uow.commit()
            return settled_view

        return await transact(self._deps, work)

    async def list_teams(
        self, caller: Principal, state: TeamState | None, size: int, token: str
    ) -> Page[Team]:
        require(
            caller,
            PrincipalKind.ADMIN,
            PrincipalKind.AUDITOR,
            PrincipalKind.ACCOUNT,
            PrincipalKind.SERVICE,
        )
        limit = page_size(size)
        query = {"m": "ListApprovalTeams", "s": state.value if state else "", "c": str(caller)}
        after = decode_token(token, query)
        now = self._deps.clock()

        async def work(uow: UnitOfWork) -> Page[Team]:
            shared_only = caller.kind in (PrincipalKind.ACCOUNT, PrincipalKind.SERVICE)
            rows = await uow.teams.list_page(caller if shared_only else None, after, limit + 1)
            page = page_of(rows, limit, lambda t: t.team_id, query)
            # What a read sees is what a settled team would say; the sweeper writes it down.
            items = tuple(settle_team(t, now) for t in page.items)
            if state is not None:
                items = tuple(t for t in items if t.state is state)
            return Page(items, page.next_page_token)

        return await transact(self._deps, work, read_only=True)

    # --- creating and deleting -----------------------------------------------------------

    async def create_team(self, caller: Principal, spec: TeamSpec, request_id: str) -> Team:
        require_admin(caller)

        async def act(uow: UnitOfWork) -> Done[Team]:
            if await uow.teams.get_by_name(spec.name) is not None:
                raise AlreadyExists("approval team", spec.name)
            approvers = await uow.approvers.get_many(spec.approver_ids)
            violations = [
                FieldViolation(f"approver_ids[{i}]", f"approver {a!r} does not exist")
                for i, a in enumerate(spec.approver_ids)
                if a not in approvers
            ] + [
                FieldViolation(f"approver_ids[{i}]", f"approver {a!r} is disabled")
                for i, a in enumerate(spec.approver_ids)
                if a in approvers and not approvers[a].enabled
            ]
            if violations:
                raise InvalidArgument(violations)
            now = self._deps.clock()
            team_id = self._deps.new_id("team")
            version = TeamVersion(
                version=1,
                description=spec.description,
                min_approvals=spec.min_approvals,
                session_ttl=spec.session_ttl,
                invitation_ttl=spec.invitation_ttl,
                members=tuple(
                    TeamMember(a, self._deps.new_id("inv"), InvitationState.PENDING)
                    for a in spec.approver_ids
                ),
                create_time=now,
                invitation_expire_time=now + spec.invitation_ttl,
            )
            team = Team(
                team_id=team_id,
                arn=f"arn:aws:mpa:{self._deps.region}::approval-team/{team_id}",
                name=spec.name,
                state=TeamState.PENDING,
                status=TeamStatus.PENDING_ACTIVATION,
                status_message="waiting for every approver to accept the invitation",
                current=version,
                revision=1,
                create_time=now,
                update_time=now,
            )
            await uow.teams.add(team)
            uow.record(team_created(caller, team))
            for m in version.members:
                uow.record(invitation_sent(caller, team_id, m, 1))
            # The team in hand is what was written; a replay reads the first call's team.
            return Done(team_id, team)

        async def read(uow: UnitOfWork, team_id: str) -> Team:
            return await self._load(uow, team_id)

        return await run_once(self._deps, caller, "CreateApprovalTeam", request_id, act, read)

    async def delete_inactive_team(self, caller: Principal, team_id: str, request_id: str) -> Team:
        require_admin(caller)

        async def act(uow: UnitOfWork) -> Done[Team]:
            team = await self._settle(uow, await self._load(uow, team_id, for_update=True))
            if team.state not in (TeamState.PENDING, TeamState.INACTIVE):
                raise FailedPrecondition(
                    f"the team is {team.state.value}; only a PENDING or INACTIVE team is "
                    "deleted without approval (use StartTeamDeletion)",
                    reason=Reason.TEAM_NOT_INACTIVE,
                    metadata={"teamId": team_id, "state": team.state.value},
                )
            now = self._deps.clock()
            deleted = replace(
                team,
                state=transition(team.state, TeamState.DELETED),
                status=TeamStatus.DELETED,
                status_message="deleted while inactive",
                revision=team.revision + 1,
                update_time=now,
            )
            await uow.teams.save(deleted)
            uow.record(inactive_team_deleted(caller, team_id, team.state.value))
            return Done(team_id)

        async def read(uow: UnitOfWork, team_id: str) -> Team:
            team = await uow.teams.get(team_id)
            assert team is not None
            return team

        return await run_once(self._deps, caller, "DeleteInactiveTeam", request_id, act, read)

    # --- a team that guards itself: updates and deletion -------------------------------

    async def _check_approvers(self, uow: UnitOfWork, approver_ids: tuple[str, ...]) -> None:
        approvers = await uow.approvers.get_many(approver_ids)
        violations = [
            FieldViolation(f"approver_ids[{i}]", f"approver {a!r} does not exist")
            for i, a in enumerate(approver_ids)
            if a not in approvers
        ] + [
            FieldViolation(f"approver_ids[{i}]", f"approver {a!r} is disabled")
            for i, a in enumerate(approver_ids)
            if a in approvers and not approvers[a].enabled
        ]
        if violations:
            raise InvalidArgument(violations)

    @staticmethod
    def _check_etag(team: Team, etag: str) -> None:
        if etag and etag != team.etag:
            raise EtagMismatch(etag, team.etag)

    async def update_team(
        self, caller: Principal, team_id: str, etag: str, update: TeamUpdate, request_id: str
    ) -> tuple[Team, SessionView]:
        """UpdateApprovalTeam: a draft version and a TEAM_UPDATE session the current team
        votes on (UPDATE_PENDING_APPROVAL)."""
        require_admin(caller)
        if update.empty:
            raise InvalidArgument.field("update_mask", "names nothing to change")
        for i, k in enumerate(update.new_keys):
            signing.check_public_key(k.public_key, f"new_keys[{i}].public_key")

        async def act(uow: UnitOfWork) -> Done[tuple[Team, SessionView]]:
            team = await self._settle(uow, await self._load(uow, team_id, for_update=True))
            self._check_etag(team, etag)
            current = team.current
            approver_ids = (
                update.approver_ids if update.approver_ids is not None else current.approver_ids
            )
            session_id = self._deps.new_id("ses")
            changed = start_update(
                team,
                description=(
                    update.description if update.description is not None else current.description
                ),
                approver_ids=approver_ids,
                min_approvals=(
                    update.min_approvals
                    if update.min_approvals is not None
                    else current.min_approvals
                ),
                session_ttl=update.session_ttl or current.session_ttl,
                invitation_ttl=update.invitation_ttl or current.invitation_ttl,
                session_id=session_id,
                now=self._deps.clock(),
                new_invitation_id=lambda: self._deps.new_id("inv"),
                reenroll_approver_ids=update.reenroll_approver_ids,
                new_keys=update.new_keys,
            )
            await self._check_approvers(uow, tuple(approver_ids))
            _check_vouchers(team, update.new_keys)
            draft = changed.pending
            assert draft is not None
            shown = team_draft(team, draft, update.new_keys)
            await self._sessions.open_session(
                uow,
                kind=SessionKind.TEAM_UPDATE,
                team=team,
                requester=caller,
                protected_resource=team.arn,
                metadata={"draft_version": str(draft.version)},
                session_id=session_id,
                draft=shown,
            )
            await uow.teams.save(changed)
            uow.record(
                update_requested(
                    caller, team, draft, shown, session_id, update.reenroll_approver_ids
                )
            )
            return Done(session_id)

        async def read(uow: UnitOfWork, session_id: str) -> tuple[Team, SessionView]:
            return await self._team_and_session(uow, team_id, session_id)

        return await run_once(self._deps, caller, "UpdateApprovalTeam", request_id, act, read)

    async def _team_and_session(
        self, uow: UnitOfWork, team_id: str, session_id: str
    ) -> tuple[Team, SessionView]:
        team = await uow.teams.get(team_id)
        session = await uow.sessions.get(session_id)
        if team is None or session is None:
            raise NotFound("session", session_id)
        return team, await self._sessions.view(uow, session)

    async def start_team_deletion(
        self,
        caller: Principal,
        team_id: str,
        etag: str,
        pending_window_days: int,
        request_id: str,
    ) -> tuple[Team, SessionView]:
        """StartTeamDeletion: a TEAM_DELETION session the team votes on
        (DELETE_PENDING_APPROVAL)."""
        require_admin(caller)

        async def act(uow: UnitOfWork) -> Done[tuple[Team, SessionView]]:
            team = await self._settle(uow, await self._load(uow, team_id, for_update=True))
            self._check_etag(team, etag)
            session_id = self._deps.new_id("ses")
            changed, deletion = start_deletion(
                team,
                pending_window_days=pending_window_days,
                session_id=session_id,
                now=self._deps.clock(),
            )
            await self._sessions.open_session(
                uow,
                kind=SessionKind.TEAM_DELETION,
                team=team,
                requester=caller,
                protected_resource=team.arn,
                metadata={"pending_window_days": str(pending_window_days)},
                session_id=session_id,
            )
            await uow.teams.save(changed)
            await uow.deletions.add(deletion)
            uow.record(deletion_requested(caller, team_id, session_id, pending_window_days))
            return Done(session_id)

        async def read(uow: UnitOfWork, session_id: str) -> tuple[Team, SessionView]:
            return await self._team_and_session(uow, team_id, session_id)

        return await run_once(self._deps, caller, "StartTeamDeletion", request_id, act, read)

    async def deletions_of(self, team_ids: list[str]) -> dict[str, TeamDeletion]:
        """Each team's latest deletion request (for the API's deletion fields)."""

        async def work(uow: UnitOfWork) -> dict[str, TeamDeletion]:
            return await uow.deletions.latest_of(team_ids)

        return await transact(self._deps, work, read_only=True)

    async def sweep_due_deletions(self) -> int:
        """Delete the DELETING teams whose window ended. Safe on any number of replicas."""

        async def work(uow: UnitOfWork) -> int:
            now = self._deps.clock()
            deleted = 0
            for session_id in await uow.deletions.due(now, SWEEP_BATCH):
                deletion = await uow.deletions.get(session_id)
                if deletion is None:
                    continue
                team = await uow.teams.get(deletion.team_id, for_update=True)
                if team is None or team.state is not TeamState.DELETING:
                    await uow.deletions.save(deletion, done=True)
                    continue
                if not deletion_due(team, deletion, now):
                    continue
                gone = finish_deletion(team, deletion, now)
                await uow.teams.save(gone)
                await uow.deletions.save(deletion, done=True)
                await end_team(self._sessions, uow, gone)
                deleted += 1
            await uow.commit()
            return deleted

        return await transact(self._deps, work)

    # --- health and baselines ------------------------------------------------------------

    async def activity_of(self, team_ids: list[str]) -> dict[str, dict[str, Activity]]:
        """Per team, each approver's last activity (for the API's approver fields)."""

        async def work(uow: UnitOfWork) -> dict[str, dict[str, Activity]]:
            return await uow.activity.of_teams(team_ids)

        return await transact(self._deps, work)

    async def get_team_health(
        self, caller: Principal, team_id: str, window: timedelta | None
    ) -> TeamHealth:
        """GetTeamHealth: the version in force, its approvers' identities, keys and last
        activity, judged against the activity window (admin, auditors)."""
        require(caller, PrincipalKind.ADMIN, PrincipalKind.AUDITOR)
        window = activity_window(window)

        async def work(uow: UnitOfWork) -> TeamHealth:
            now = self._deps.clock()
            team = settle_team(await self._load(uow, team_id), now)
            approvers = await uow.approvers.get_many(team.current.approver_ids)
            enabled = {a.approver_id: a.enabled for a in approvers.values()}
            activity = (await uow.activity.of_teams([team_id]))[team_id]
            return team_health(team, enabled, activity, window, now)

        return await transact(self._deps, work)

    async def team_slack(self) -> dict[str, int]:
        """Active approvers minus M of each team not deleted (a PENDING one too: below 0 it
        cannot activate), by team id, judged as GetTeamHealth does with the default activity
        window; for the operator's metrics, not an RPC."""
        window = activity_window(None)

        async def work(uow: UnitOfWork) -> dict[str, int]:
            now = self._deps.clock()
            slack: dict[str, int] = {}
            after: str | None = None
            while True:
                teams = await uow.teams.list_page(None, after, 100)
                settled = [settle_team(t, now) for t in teams]
                activity = await uow.activity.of_teams([t.team_id for t in settled])
                for team in settled:
                    if team.state is TeamState.DELETED:
                        continue
                    approvers = await uow.approvers.get_many(team.current.approver_ids)
                    enabled = {a.approver_id: a.enabled for a in approvers.values()}
                    health = team_health(team, enabled, activity.get(team.team_id, {}), window, now)
                    slack[team.team_id] = health.slack
                if len(teams) < 100:
                    return slack
                after = teams[-1].team_id

        return await transact(self._deps, work, read_only=True)

    async def start_team_baseline(
        self,
        caller: Principal,
        team_id: str,
        approver_ids: tuple[str, ...],
        comment: str,
        request_id: str,
    ) -> SessionView:
        """StartTeamBaseline: a BASELINE session that each chosen approver answers (M = the
        number asked). It has no effect; it completes when all answered or expires."""
        require_admin(caller)

        async def act(uow: UnitOfWork) -> Done[SessionView]:
            team = await self._settle(uow, await self._load(uow, team_id, for_update=True))
            if team.state is not TeamState.ACTIVE:
                raise FailedPrecondition(
                    f"approval team {team_id} is {team.state.value}; only an ACTIVE team "
                    "runs a baseline",
                    reason=Reason.TEAM_NOT_ACTIVE,
                    metadata={"teamId": team_id, "state": team.state.value},
                )
            asked = baseline_approvers(team.current, approver_ids)
            session = await self._sessions.open_session(
                uow,
                kind=SessionKind.BASELINE,
                team=team,
                requester=caller,
                protected_resource=team.arn,
                comment=comment,
                approver_ids=asked,
                min_approvals=len(asked),
            )
            uow.record(baseline_started(caller, team, session.session_id, asked))
            return Done(session.session_id)

        async def read(uow: UnitOfWork, session_id: str) -> SessionView:
            session = await uow.sessions.get(session_id)
            if session is None:
                raise NotFound("session", session_id)
            return await self._sessions.view(uow, session)

        return await run_once(self._deps, caller, "StartTeamBaseline", request_id, act, read)

    # --- shares --------------------------------------------------------------------------

    @staticmethod
    def _share_principal(kind: PrincipalKind, subject: str) -> Principal:
        if kind not in (PrincipalKind.ACCOUNT, PrincipalKind.SERVICE):
            raise InvalidArgument.field(
                "principal.kind", "a team is shared with accounts and service principals only"
            )
        return validate_principal(kind, subject)

    async def share(
        self, caller: Principal, team_id: str, kind: PrincipalKind, subject: str, request_id: str
    ) -> TeamShare:
        require_admin(caller)
        principal = self._share_principal(kind, subject)

        async def act(uow: UnitOfWork) -> Done[TeamShare]:
            team = await self._load(uow, team_id, for_update=True)
            if team.state is TeamState.DELETING:
                raise FailedPrecondition(
                    "the team is DELETING and takes no new shares",
                    reason=Reason.TEAM_DELETING,
                    metadata={"teamId": team_id, "state": team.state.value},
                )
            if kind is PrincipalKind.ACCOUNT and await uow.accounts.get(subject) is None:
                raise NotFound("account", subject)
            share = TeamShare(team_id, kind.value, subject, self._deps.clock())
            if await uow.shares.add(share):
                uow.record(team_shared(caller, team_id, principal))
            return Done(team_id)

        async def read(uow: UnitOfWork, team_id: str) -> TeamShare:
            found = await uow.shares.get(team_id, principal)
            assert found is not None
            return found

        return await run_once(self._deps, caller, "ShareTeam", request_id, act, read)

    async def unshare(
        self, caller: Principal, team_id: str, kind: PrincipalKind, subject: str, request_id: str
    ) -> TeamShare:
        require_admin(caller)
        principal = self._share_principal(kind, subject)

        async def act(uow: UnitOfWork) -> Done[TeamShare]:
            await self._load(uow, team_id, for_update=True)
            if not await uow.shares.remove(team_id, principal):
                raise NotFound("team share", f"{team_id}/{principal}")
            uow.record(team_unshared(caller, team_id, principal))
            return Done(team_id)

        async def read(uow: UnitOfWork, team_id: str) -> TeamShare:
            return TeamShare(team_id, kind.value, subject, self._deps.clock())

        return await run_once(self._deps, caller, "UnshareTeam", request_id, act, read)

    async def list_shares(
        self, caller: Principal, team_id: str, size: int, token: str
    ) -> Page[TeamShare]:
        require(caller, PrincipalKind.ADMIN, PrincipalKind.AUDITOR)
        limit = page_size(size)
        query = {"m": "ListTeamShares", "t": team_id}
        after = decode_token(token, query)

        async def work(uow: UnitOfWork) -> Page[TeamShare]:
            await self._load(uow, team_id)
            rows = await uow.shares.list_page(team_id, after, limit + 1)
            return page_of(rows, limit, lambda s: f"{s.principal_kind}:{s.subject}", query)

        return await transact(self._deps, work, read_only=True)

    # --- invitations ---------------------------------------------------------------------

    async def list_invitations(
        self,
        caller: Principal,
        state: InvitationState | None,
        team_id: str,
        size: int,
        token: str,
    ) -> Page[InvitationView]:
        require(caller, PrincipalKind.APPROVER)
        limit = page_size(size)
        query = {"m": "ListInvitations", "s": state.value if state else "", "t": team_id}
        after = decode_token(token, query)
        now = self._deps.clock()

        async def work(uow: UnitOfWork) -> Page[InvitationView]:
            teams = await uow.teams.list_for_approver(
                caller.subject, team_id or None, after, limit + 1
            )
            page = page_of(teams, limit, lambda t: t.team_id, query)
            views: list[InvitationView] = []
            for team in page.items:
                shown = settle_team(team, now)
                # A draft's invitations exist only once the team approved the update.
                drafts = (
                    (shown.pending,)
                    if shown.status
                    in (TeamStatus.UPDATE_PENDING_ACTIVATION, TeamStatus.UPDATE_FAILED_ACTIVATION)
                    else ()
                )
                for version in (shown.current, *drafts):
                    member = version.member(caller.subject) if version else None
                    if version is None or member is None:
                        continue
                    if state is None or member.invitation_state is state:
                        views.append(InvitationView(shown, version, member))
            return Page(tuple(views), page.next_page_token)

        return await transact(self._deps, work, read_only=True)

    async def respond_to_invitation(
        self,
        caller: Principal,
        invitation_id: str,
        accept: bool,
        public_key: bytes,
        key_proof: bytes,
        request_id: str,
        *,
        channel: str = "",
        passkey: PasskeyCredential | None = None,
    ) -> InvitationView:
        """`passkey`: accepted through the portal with a passkey whose registration the portal
        verified (its key is `public_key`; the registration is its key proof), stored with the
        answer. `channel`: where the answer came from when not the API, for the event."""
        require(caller, PrincipalKind.APPROVER)
        if accept and passkey is None:
            signing.check_public_key(public_key)
            signing.verify(public_key, key_proof, key_proof_message(invitation_id), "key_proof")
        if passkey is not None and (passkey.public_key != public_key or not accept):
            raise ValueError("a passkey is the key of an acceptance")

        async def act(uow: UnitOfWork) -> Done[InvitationView]:
            team = await uow.teams.find_by_invitation(invitation_id, for_update=True)
            if team is None:
                # An invitation id does not name its approver: an unknown one answers
                # what another approver's invitation answers.
                raise missing_or_denied(
                    caller, NotFound("invitation", invitation_id), _not_addressee(invitation_id)
                )
            version = _version_of(team, invitation_id)
            member = next(m for m in version.members if m.invitation_id == invitation_id)
            if member.approver_id != caller.subject:
                raise _not_addressee(invitation_id)
            identity = await uow.approvers.get(caller.subject)
            if identity is None or not identity.enabled:
                raise FailedPrecondition(
                    f"approver {caller.subject!r} is disabled and answers no invitation",
                    reason=APPROVER_DISABLED,
                    metadata={"approverId": caller.subject},
                )
            team = await self._settle(uow, team)
            open_version = invitable_version(team)
            if open_version is None or open_version.version != version.version:
                raise FailedPrecondition(
                    f"the team is {team.state.value} ({team.status.value}); this "
                    "invitation is closed",
                    reason=Reason.INVITATION_CLOSED,
                    metadata={"teamId": team.team_id, "state": team.state.value},
                )
            now = self._deps.clock()
            # A draft's re-enrolled approver replaces the key it holds in the version in
            # force (None for a new approver, and for a team's first version).
            in_force = team.current.member(caller.subject) if team.pending else None
            answered = respond(
                open_version,
                invitation_id,
                accept,
                public_key or None,
                now,
                replaced_key=in_force.public_key if in_force else None,
            )
            if team.state is TeamState.PENDING:
                team = replace(team, current=answered)
            else:
                team = replace(team, pending=answered)
            team = replace(team, revision=team.revision + 1, update_time=now)
            await uow.teams.save(team)
            # Whatever answered it, the invitation's one-time link is spent.
            await uow.passkeys.spend_links(invitation_id, now)
            if passkey is not None:
                await uow.passkeys.add(passkey)
            await uow.activity.record(
                team.team_id,
                caller.subject,
                Activity(ActivityKind.RESPONDED_TO_INVITATION, now),
            )
            uow.record(
                invitation_answered(
                    caller,
                    team.team_id,
                    invitation_id,
                    answered.version,
                    public_key if accept else None,
                    in_force.public_key if in_force is not None else None,
                    channel,
                )
            )
            # The team in hand is what was written; a replay reads it.
            written = await self._settle(uow, team)
            return Done(invitation_id, _invitation_view(written, invitation_id))

        async def read(uow: UnitOfWork, invitation_id: str) -> InvitationView:
            team = await uow.teams.find_by_invitation(invitation_id)
            assert team is not None
            return _invitation_view(team, invitation_id)

        return await run_once(self._deps, caller, "RespondToInvitation", request_id, act, read)

    # --- background ----------------------------------------------------------------------

    async def sweep_expired_invitations(self) -> int:
        """Settle teams whose invitation TTL passed. Safe on any number of replicas."""

        async def work(uow: UnitOfWork) -> int:
            ids = await uow.teams.pending_past_expiry(self._deps.clock(), SWEEP_BATCH)
            settled = 0
            for team_id in ids:
                team = await uow.teams.get(team_id)
                if team is not None and (await self._settle(uow, team)) is not team:
                    settled += 1
            await uow.commit()
            return settled

        return await transact(self._deps, work)


def _invitation_view(team: Team, invitation_id: str) -> InvitationView:
    version = _version_of(team, invitation_id)
    member = next(m for m in version.members if m.invitation_id == invitation_id)
    return InvitationView(team, version, member)


def _check_vouchers(team: Team, new_keys: tuple[NewKey, ...]) -> None:
    """A new key vouched for by the approver's key in force must carry a signature that
    verifies with that key (else BAD_SIGNATURE on it)."""
    for i, k in enumerate(new_keys):
        old = team.current.member(k.approver_id)
        if k.current_key_signature and old is not None and old.public_key is not None:
            signing.verify(
                old.public_key,
                k.current_key_signature,
                key_change_message(team.team_id, k.approver_id, k.public_key),
                f"new_keys[{i}].current_key_signature",
            )


def _not_shared(team_id: str, caller: Principal) -> PermissionDenied:
    return PermissionDenied(
        "this team is not shared with the caller",
        metadata={"teamId": team_id, "principal": str(caller)},
    )


def _not_addressee(invitation_id: str) -> PermissionDenied:
    return PermissionDenied(
        "this invitation is addressed to another approver",
        metadata={"invitationId": invitation_id},
    )


def _version_of(team: Team, invitation_id: str) -> TeamVersion:
    for version in (team.current, team.pending):
        if version and any(m.invitation_id == invitation_id for m in version.members):
            return version
    raise NotFound("invitation", invitation_id)


# --- the effects of a team's own sessions, run by SessionService when one ends --------------


async def _team_update_effect(sessions: SessionService, uow: UnitOfWork, s: Session) -> Session:
    """The team's update decided: its draft applied (or failed), its old sessions ended."""
    now = sessions.now()
    approved = s.state is SessionState.APPROVED
    team = await uow.teams.get(s.team_id, for_update=True)
    if (
        team is None
        or team.update_session_id != s.session_id
        or team.status is not TeamStatus.UPDATE_PENDING_APPROVAL
    ):
        if approved:
            return await sessions.executed(uow, s, False, "the team has no such pending update")
        return s
    if not approved:
        failed = fail_update(team, s.status, now)
        await uow.teams.save(failed)
        uow.record(update_failed(failed, s.session_id))
        return s
    if s.draft is None or not same_draft(s.draft, team):
        # The team approved what its approvers were shown, and only that.
        failed = fail_update(team, s.status, now)
        await uow.teams.save(failed)
        uow.record(update_failed(failed, s.session_id))
        return await sessions.executed(
            uow, s, False, "the team's draft is not the one its approvers voted on"
        )
    changed = apply_approved_update(team, now)
    await uow.teams.save(changed)
    uow.record(update_approved(changed, s.session_id))
    if changed.pending is not None:
        for m in changed.pending.members:
            if m.invitation_state is InvitationState.PENDING:
                uow.record(invitation_sent(SYSTEM, team.team_id, m, changed.pending.version))
    if changed.current.version != team.current.version:
        await supersede(sessions, uow, team, changed, exclude=s.session_id)
        message = f"version {changed.current.version} is in force"
    else:
        message = f"version {changed.current.version + 1} waits for its new approvers"
    return await sessions.executed(uow, s, True, message)


async def supersede(
    sessions: SessionService, uow: UnitOfWork, before: Team, after: Team, *, exclude: str = ""
) -> None:
    """A new version took force: record it and end the old version's pending sessions
    CANCELLED / CONFIGURATION_CHANGED, with their undo effects, in the same transaction."""
    uow.record(team_updated(after, before.current.version))
    await sessions.end_pending_of_team(
        uow,
        after.team_id,
        SessionStatus.CONFIGURATION_CHANGED,
        below_version=after.current.version,
        exclude=exclude,
    )


async def _team_deletion_effect(sessions: SessionService, uow: UnitOfWork, s: Session) -> Session:
    """The team's deletion decided: DELETING (or DELETED at once), or back to what it was."""
    now = sessions.now()
    approved = s.state is SessionState.APPROVED
    deletion = await uow.deletions.get(s.session_id, for_update=True)
    team = await uow.teams.get(s.team_id, for_update=True)
    if deletion is None or team is None or team.status is not TeamStatus.DELETE_PENDING_APPROVAL:
        if approved:
            return await sessions.executed(uow, s, False, "the team has no such deletion")
        return s
    if not approved:
        failed = fail_deletion(team, s.status, now)
        await uow.teams.save(failed)
        uow.record(deletion_failed(failed, s.session_id))
        return s
    changed, deletion = approve_deletion(team, deletion, now)
    done = changed.state is TeamState.DELETED
    await uow.teams.save(changed)
    await uow.deletions.save(deletion, done=done)
    complete_time = deletion.complete_time or now
    uow.record(
        deletion_approved(changed, s.session_id, deletion.pending_window_days, complete_time)
    )
    if done:
        await end_team(sessions, uow, changed, exclude=s.session_id)
        return await sessions.executed(uow, s, True, "the team is DELETED")
    return await sessions.executed(
        uow, s, True, f"the team is DELETING for {deletion.pending_window_days} days"
    )


async def end_team(
    sessions: SessionService, uow: UnitOfWork, team: Team, *, exclude: str = ""
) -> None:
    """The team is DELETED: its pending sessions end CANCELLED / TEAM_DELETED, its vault
    associations end and the AVAILABLE grants of the vaults it guarded are REVOKED."""
    now = sessions.now()
    team_id = team.team_id
    uow.record(team_deleted(team))
    await sessions.end_pending_of_team(uow, team_id, SessionStatus.TEAM_DELETED, exclude=exclude)
    await end_team_guard(uow, team_id, now)


async def _baseline_effect(sessions: SessionService, uow: UnitOfWork, s: Session) -> Session:
    """A baseline changes nothing: approved, it has been answered."""
    if s.state is SessionState.APPROVED:
        return await sessions.executed(uow, s, True, "baseline answered")
    return s


TEAM_EFFECTS: Mapping[SessionKind, Effect] = {
    SessionKind.TEAM_UPDATE: _team_update_effect,
    SessionKind.TEAM_DELETION: _team_deletion_effect,
    SessionKind.BASELINE: _baseline_effect,
}
