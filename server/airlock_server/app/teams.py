"""Approval teams, their shares and invitations: the use cases."""

from __future__ import annotations

from dataclasses import dataclass, replace

from airlock_server.app import signing
from airlock_server.app.common import Deps, once, transact
from airlock_server.app.ports import UnitOfWork
from airlock_server.domain.errors import (
    AlreadyExists,
    FailedPrecondition,
    FieldViolation,
    InvalidArgument,
    NotFound,
    PermissionDenied,
)
from airlock_server.domain.events import NewEvent
from airlock_server.domain.paging import Page, decode_token, page_of, page_size
from airlock_server.domain.principals import (
    SYSTEM,
    Principal,
    PrincipalKind,
    require,
    require_admin,
    validate_principal,
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

SWEEP_BATCH = 100


@dataclass(frozen=True)
class InvitationView:
    """One invitation as its approver sees it."""

    team: Team
    version: TeamVersion
    member: TeamMember


def team_subject(team_id: str) -> str:
    return f"team:{team_id}"


class TeamService:
    def __init__(self, deps: Deps) -> None:
        self._deps = deps

    # --- reading -------------------------------------------------------------------------

    async def _load(self, uow: UnitOfWork, team_id: str, *, for_update: bool = False) -> Team:
        team = await uow.teams.get(team_id, for_update=for_update)
        if team is None or team.state is TeamState.DELETED:
            raise NotFound("approval team", team_id)
        return team

    async def _settle(self, uow: UnitOfWork, team: Team) -> Team:
        """Decide a PENDING team whose answers or TTL are in: ACTIVE or INACTIVE."""
        settled = settle_new_team(team, self._deps.clock())
        if settled is team:
            return team
        await uow.teams.save(settled)
        kind = "team.activated" if settled.state is TeamState.ACTIVE else "team.activation_failed"
        uow.record(
            NewEvent(
                kind,
                SYSTEM,
                (team_subject(team.team_id),),
                {
                    "team_id": team.team_id,
                    "version": settled.current.version,
                    "status": settled.status.value,
                },
            )
        )
        return settled

    async def _check_visible(self, uow: UnitOfWork, caller: Principal, team: Team) -> None:
        if caller.kind in (PrincipalKind.ADMIN, PrincipalKind.AUDITOR):
            return
        # Approvers see their teams through their invitations and sessions, nothing else.
        if caller.kind in (PrincipalKind.ACCOUNT, PrincipalKind.SERVICE) and await uow.shares.get(
            team.team_id, caller
        ):
            return
        raise PermissionDenied(
            "this team is not shared with the caller",
            metadata={"teamId": team.team_id, "principal": str(caller)},
        )

    async def get_team(self, caller: Principal, team_id: str) -> Team:
        async def work(uow: UnitOfWork) -> Team:
            team = await self._load(uow, team_id)
            await self._check_visible(uow, caller, team)
            if settle_new_team(team, self._deps.clock()) is team:
                return team
            # Read-time expiry writes the decision down, under the team's row lock.
            settled = await self._settle(uow, await self._load(uow, team_id, for_update=True))
            await uow.commit()
            return settled

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
            items = tuple(settle_new_team(t, now) for t in page.items)
            if state is not None:
                items = tuple(t for t in items if t.state is state)
            return Page(items, page.next_page_token)

        return await transact(self._deps, work)

    # --- creating and deleting -----------------------------------------------------------

    async def create_team(self, caller: Principal, spec: TeamSpec, request_id: str) -> Team:
        require_admin(caller)

        async def work(uow: UnitOfWork) -> Team:
            async def create() -> str:
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
                uow.record(
                    NewEvent(
                        "team.created",
                        caller,
                        (team_subject(team_id), *(f"approver:{a}" for a in spec.approver_ids)),
                        {
                            "team_id": team_id,
                            "name": spec.name,
                            "version": 1,
                            "min_approvals": spec.min_approvals,
                            "approver_ids": list(spec.approver_ids),
                        },
                    )
                )
                for m in version.members:
                    uow.record(
                        NewEvent(
                            "invitation.sent",
                            caller,
                            (team_subject(team_id), f"approver:{m.approver_id}"),
                            {
                                "invitation_id": m.invitation_id,
                                "approver_id": m.approver_id,
                                "version": 1,
                            },
                        )
                    )
                return team_id

            team_id, _ = await once(
                uow, self._deps, caller, "CreateApprovalTeam", request_id, create
            )
            team = await self._load(uow, team_id)
            await uow.commit()
            return team

        return await transact(self._deps, work)

    async def delete_inactive_team(self, caller: Principal, team_id: str, request_id: str) -> Team:
        require_admin(caller)

        async def work(uow: UnitOfWork) -> Team:
            async def delete() -> str:
                team = await self._settle(uow, await self._load(uow, team_id, for_update=True))
                if team.state not in (TeamState.PENDING, TeamState.INACTIVE):
                    raise FailedPrecondition(
                        f"the team is {team.state.value}; only a PENDING or INACTIVE team is "
                        "deleted without approval (use StartTeamDeletion)",
                        reason="TEAM_NOT_INACTIVE",
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
                uow.record(
                    NewEvent(
                        "team.deleted",
                        caller,
                        (team_subject(team_id),),
                        {"team_id": team_id, "previous_state": team.state.value},
                    )
                )
                return team_id

            await once(uow, self._deps, caller, "DeleteInactiveTeam", request_id, delete)
            team = await uow.teams.get(team_id)
            await uow.commit()
            assert team is not None
            return team

        return await transact(self._deps, work)

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

        async def work(uow: UnitOfWork) -> TeamShare:
            async def add() -> str:
                team = await self._load(uow, team_id, for_update=True)
                if team.state is TeamState.DELETING:
                    raise FailedPrecondition(
                        "the team is DELETING and takes no new shares",
                        reason="TEAM_DELETING",
                        metadata={"teamId": team_id, "state": team.state.value},
                    )
                if kind is PrincipalKind.ACCOUNT and await uow.accounts.get(subject) is None:
                    raise NotFound("account", subject)
                share = TeamShare(team_id, kind.value, subject, self._deps.clock())
                if await uow.shares.add(share):
                    uow.record(
                        NewEvent(
                            "team.shared",
                            caller,
                            (team_subject(team_id), str(principal)),
                            {"team_id": team_id, "principal": str(principal)},
                        )
                    )
                return team_id

            await once(uow, self._deps, caller, "ShareTeam", request_id, add)
            found = await uow.shares.get(team_id, principal)
            await uow.commit()
            assert found is not None
            return found

        return await transact(self._deps, work)

    async def unshare(
        self, caller: Principal, team_id: str, kind: PrincipalKind, subject: str, request_id: str
    ) -> TeamShare:
        require_admin(caller)
        principal = self._share_principal(kind, subject)

        async def work(uow: UnitOfWork) -> TeamShare:
            async def remove() -> str:
                await self._load(uow, team_id, for_update=True)
                if not await uow.shares.remove(team_id, principal):
                    raise NotFound("team share", f"{team_id}/{principal}")
                uow.record(
                    NewEvent(
                        "team.unshared",
                        caller,
                        (team_subject(team_id), str(principal)),
                        {"team_id": team_id, "principal": str(principal)},
                    )
                )
                return team_id

            await once(uow, self._deps, caller, "UnshareTeam", request_id, remove)
            await uow.commit()
            return TeamShare(team_id, kind.value, subject, self._deps.clock())

        return await transact(self._deps, work)

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

        return await transact(self._deps, work)

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
                shown = settle_new_team(team, now)
                for version in (shown.current, shown.pending):
                    member = version.member(caller.subject) if version else None
                    if version is None or member is None:
                        continue
                    if state is None or member.invitation_state is state:
                        views.append(InvitationView(shown, version, member))
            return Page(tuple(views), page.next_page_token)

        return await transact(self._deps, work)

    async def respond_to_invitation(
        self,
        caller: Principal,
        invitation_id: str,
        accept: bool,
        public_key: bytes,
        key_proof: bytes,
        request_id: str,
    ) -> InvitationView:
        require(caller, PrincipalKind.APPROVER)
        if accept:
            signing.check_public_key(public_key)
            signing.verify(public_key, key_proof, key_proof_message(invitation_id), "key_proof")

        async def work(uow: UnitOfWork) -> InvitationView:
            async def answer() -> str:
                team = await uow.teams.find_by_invitation(invitation_id, for_update=True)
                if team is None:
                    raise NotFound("invitation", invitation_id)
                version = _version_of(team, invitation_id)
                member = next(m for m in version.members if m.invitation_id == invitation_id)
                if member.approver_id != caller.subject:
                    raise PermissionDenied(
                        "this invitation is addressed to another approver",
                        metadata={"invitationId": invitation_id},
                    )
                team = await self._settle(uow, team)
                if team.state is not TeamState.PENDING:
                    raise FailedPrecondition(
                        f"the team is {team.state.value} ({team.status.value}); its invitations "
                        "are closed",
                        reason="INVITATION_CLOSED",
                        metadata={"teamId": team.team_id, "state": team.state.value},
                    )
                now = self._deps.clock()
                answered = respond(team.current, invitation_id, accept, public_key or None, now)
                team = replace(team, current=answered, revision=team.revision + 1, update_time=now)
                await uow.teams.save(team)
                uow.record(
                    NewEvent(
                        "invitation.accepted" if accept else "invitation.declined",
                        caller,
                        (team_subject(team.team_id), f"approver:{caller.subject}"),
                        {
                            "invitation_id": invitation_id,
                            "version": answered.version,
                            **({"public_key": public_key.hex()} if accept else {}),
                        },
                    )
                )
                await self._settle(uow, team)
                return invitation_id

            await once(uow, self._deps, caller, "RespondToInvitation", request_id, answer)
            team = await uow.teams.find_by_invitation(invitation_id)
            assert team is not None
            version = _version_of(team, invitation_id)
            member = next(m for m in version.members if m.invitation_id == invitation_id)
            await uow.commit()
            return InvitationView(team, version, member)

        return await transact(self._deps, work)

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


def _version_of(team: Team, invitation_id: str) -> TeamVersion:
    for version in (team.current, team.pending):
        if version and any(m.invitation_id == invitation_id for m in version.members):
            return version
    raise NotFound("invitation", invitation_id)
