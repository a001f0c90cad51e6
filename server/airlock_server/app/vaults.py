"""Vaults, their team association and restore access: the use cases.

Every change after a vault's first association is a session voted by the team that guards the
vault now; its effect (VAULT_EFFECTS, at the end of this module) runs when the session ends.
While another account's restore access is open the owner can neither change the guard nor revoke
that access (domain.vaults.require_guard_unfrozen, require_owner_may_revoke).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime

from airlock_server.app.common import Deps, Done, run_once, transact
from airlock_server.app.ports import UnitOfWork
from airlock_server.app.sessions import Effect, SessionService, SessionView
from airlock_server.domain.errors import (
    AlreadyExists,
    FailedPrecondition,
    InvalidArgument,
    NotFound,
    PermissionDenied,
    Reason,
)
from airlock_server.domain.paging import (
    Page,
    decode_cursor,
    decode_token,
    page_of,
    page_size,
    time_page,
)
from airlock_server.domain.principals import (
    ACCOUNT_ID,
    SYSTEM,
    Principal,
    PrincipalKind,
    missing_or_denied,
    require,
)
from airlock_server.domain.sessions import (
    Session,
    SessionKind,
    SessionState,
    settle_expired,
    validate_comment,
)
from airlock_server.domain.teams import Team, TeamState
from airlock_server.domain.vault_events import (
    association_change_decided,
    association_change_requested,
    grant_decided,
    grant_ended_with_team,
    grant_requested,
    grant_revoke_requested,
    team_associated,
    team_removed,
    vault_created,
)
from airlock_server.domain.vaults import (
    AssociationPath,
    GrantState,
    RestoreAccessGrant,
    Vault,
    VaultArn,
    apply_association_change,
    approve_grant,
    associate_now,
    drop_association_change,
    drop_revoke,
    end_with_team,
    fail_grant,
    is_recovery,
    new_grant,
    new_vault,
    on_team_deleted,
    parse_vault_arn,
    plan_association,
    plan_disassociation,
    request_association_change,
    request_revoke,
    require_guard_unfrozen,
    require_no_open_grant,
    require_owner_may_revoke,
    require_team_can_guard,
    revoke,
    validate_restore_request,
)


@dataclass(frozen=True)
class AssociationChange:
    """The vault after the call, and the session when the change waits for a vote."""

    vault: Vault
    session: SessionView | None


@dataclass(frozen=True)
class GrantChange:
    grant: RestoreAccessGrant
    session: SessionView


@dataclass(frozen=True)
class AccessAnswer:
    allowed: bool
    grant: RestoreAccessGrant | None


def _denied(message: str, reason: Reason, **metadata: str) -> PermissionDenied:
    return PermissionDenied(message, reason=reason, metadata=metadata)


def _not_owner(vault_arn: str, caller: Principal) -> PermissionDenied:
    return _denied(
        f"only the owner of vault {vault_arn} may do this",
        Reason.NOT_VAULT_OWNER,
        vaultArn=vault_arn,
        principal=str(caller),
    )


def _not_visible(vault_arn: str) -> PermissionDenied:
    return _denied("the caller may not see this vault", Reason.NOT_VISIBLE, vaultArn=vault_arn)


def _not_grant_owner(grant_id: str, caller: Principal) -> PermissionDenied:
    # Names the grant only: the vault of a grant the caller may not touch is not its business.
    return _denied(
        f"only the owner of the vault of grant {grant_id} may do this",
        Reason.NOT_VAULT_OWNER,
        grantId=grant_id,
        principal=str(caller),
    )


def _account_id(account_id: str, field: str = "account_id") -> str:
    if not ACCOUNT_ID.match(account_id):
        raise InvalidArgument.field(field, "an account id is exactly 12 digits")
    return account_id


class VaultService:
    def __init__(self, deps: Deps, sessions: SessionService) -> None:
        self._deps = deps
        self._sessions = sessions

    # --- helpers -------------------------------------------------------------------------

    async def _vault(
        self,
        uow: UnitOfWork,
        arn: str,
        *,
        for_update: bool = False,
        caller: Principal | None = None,
        denied: PermissionDenied | None = None,
    ) -> Vault:
        """The vault; an unknown ARN answers as _known says."""
        parsed = parse_vault_arn(arn)
        return _known(await uow.vaults.get(arn, for_update=for_update), arn, caller, denied, parsed)

    async def _owned_vault(self, uow: UnitOfWork, caller: Principal, arn: str) -> Vault:
        """The caller's own vault, locked: its owner alone changes what guards it."""
        vault = await self._vault(
            uow, arn, for_update=True, caller=caller, denied=_not_owner(arn, caller)
        )
        if not caller.is_account(vault.account_id):
            raise _not_owner(arn, caller)
        return vault

    async def _sees_vault(self, uow: UnitOfWork, caller: Principal, vault: Vault) -> bool:
        """GetVault's rule: admin, auditor, the owner, and accounts its guarding team is
        shared with."""
        if caller.kind in (PrincipalKind.ADMIN, PrincipalKind.AUDITOR):
            return True
        if caller.is_account(vault.account_id):
            return True
        return (
            caller.kind is PrincipalKind.ACCOUNT
            and vault.team_id is not None
            and await uow.shares.get(vault.team_id, caller) is not None
        )

    async def _team(self, uow: UnitOfWork, team_id: str) -> Team:
        team = await uow.teams.get(team_id)
        if team is None or team.state is TeamState.DELETED:
            raise NotFound("approval team", team_id)
        return team

    async def _require_shared(self, uow: UnitOfWork, team_id: str, account_id: str) -> None:
        principal = Principal(PrincipalKind.ACCOUNT, account_id)
        if await uow.shares.get(team_id, principal) is None:
            raise _denied(
                f"approval team {team_id} is not shared with account {account_id}",
                Reason.TEAM_NOT_SHARED,
                teamId=team_id,
                principal=str(principal),
            )

    async def _guarding_team(self, uow: UnitOfWork, vault: Vault) -> Team:
        if vault.team_id is None:
            raise FailedPrecondition(
                f"vault {vault.vault_arn} has no approval team",
                reason=Reason.NO_TEAM_ASSOCIATED,
                metadata={"vaultArn": vault.vault_arn},
            )
        return await self._team(uow, vault.team_id)

    async def _require_guard_unfrozen(self, uow: UnitOfWork, vault: Vault) -> None:
        """The owner changes the guard (or gives a team to a vault left without one) only when
        no other account's recovery is in progress. A request whose session ran out is first
        written down as failed (read-time expiry, as GetSession does): it recovers nothing and
        freezes nothing."""
        grants = await uow.grants.open_of_vault(vault.vault_arn)
        now = self._deps.clock()
        settled = False
        for grant in grants:
            if grant.state is not GrantState.CREATING or not is_recovery(vault, grant):
                continue
            session = await uow.sessions.get(grant.session_id, for_update=True)
            if session is None:
                continue
            after = settle_expired(session, now)
            if after is not session:
                await self._sessions.store_outcome(uow, session, after, SYSTEM)
                settled = True
        if settled:
            grants = await uow.grants.open_of_vault(vault.vault_arn)
        require_guard_unfrozen(vault, grants)

    async def _association(
        self, uow: UnitOfWork, vault_arn: str, session_id: str
    ) -> AssociationChange:
        """The vault after an association call, and its session if the change waits for one."""
        vault = await self._vault(uow, vault_arn)
        return AssociationChange(
            vault, await self._session_view(uow, session_id) if session_id else None
        )

    async def _session_view(self, uow: UnitOfWork, session_id: str) -> SessionView:
        session = await uow.sessions.get(session_id)
        if session is None:
            raise NotFound("session", session_id)
        return await self._sessions.view(uow, session)

    # --- vaults --------------------------------------------------------------------------

    async def create_vault(
        self,
        caller: Principal,
        account_id: str,
        name: str,
        min_retention_days: int,
        max_retention_days: int,
        tags: Mapping[str, str],
        request_id: str,
    ) -> Vault:
        require(caller, PrincipalKind.ACCOUNT)
        if account_id and account_id != caller.subject:
            raise _denied(
                "an account creates vaults in its own account only",
                Reason.NOT_OWN_ACCOUNT,
                accountId=account_id,
            )
        vault = new_vault(
            account_id=caller.subject,
            name=name,
            region=self._deps.region,
            min_retention_days=min_retention_days,
            max_retention_days=max_retention_days,
            tags=tags,
            now=self._deps.clock(),
        )

        async def act(uow: UnitOfWork) -> Done[Vault]:
            if await uow.vaults.get(vault.vault_arn) is not None:
                raise AlreadyExists("vault", vault.vault_arn)
            if await uow.accounts.get(caller.subject) is None:
                raise NotFound("account", caller.subject)
            await uow.vaults.add(vault)
            uow.record(vault_created(caller, vault))
            return Done(vault.vault_arn)

        return await run_once(self._deps, caller, "CreateVault", request_id, act, self._vault)

    async def get_vault(self, caller: Principal, vault_arn: str) -> Vault:
        async def work(uow: UnitOfWork) -> Vault:
            vault = await self._vault(uow, vault_arn, caller=caller, denied=_not_visible(vault_arn))
            if await self._sees_vault(uow, caller, vault):
                return vault
            raise _not_visible(vault_arn)

        return await transact(self._deps, work, read_only=True)

    async def list_vaults(
        self, caller: Principal, account_id: str, team_id: str, size: int, token: str
    ) -> Page[Vault]:
        require(caller, PrincipalKind.ADMIN, PrincipalKind.AUDITOR, PrincipalKind.ACCOUNT)
        if caller.kind is PrincipalKind.ACCOUNT:
            if account_id and account_id != caller.subject:
                raise _denied(
                    "an account lists its own vaults only",
                    Reason.NOT_OWN_ACCOUNT,
                    accountId=account_id,
                )
            account_id = caller.subject
        limit = page_size(size)
        query = {"m": "ListVaults", "a": account_id, "t": team_id}
        after = decode_token(token, query)

        async def work(uow: UnitOfWork) -> Page[Vault]:
            rows = await uow.vaults.list_page(account_id, team_id, after, limit + 1)
            return page_of(rows, limit, lambda v: v.vault_arn, query)

        return await transact(self._deps, work, read_only=True)

    # --- associations --------------------------------------------------------------------

    async def associate(
        self, caller: Principal, vault_arn: str, team_id: str, comment: str, request_id: str
    ) -> AssociationChange:
        require(caller, PrincipalKind.ACCOUNT)
        validate_comment(comment)
        if not team_id:
            raise InvalidArgument.field("team_id", "required")

        async def act(uow: UnitOfWork) -> Done[AssociationChange]:
            vault = await self._owned_vault(uow, caller, vault_arn)
            # Shared first: an unknown team answers what a team not shared does.
            await self._require_shared(uow, team_id, vault.account_id)
            team = await self._team(uow, team_id)
            require_team_can_guard(team)
            await self._require_guard_unfrozen(uow, vault)
            now = self._deps.clock()
            if plan_association(vault, team_id) is AssociationPath.IMMEDIATE:
                await uow.vaults.save(associate_now(vault, team_id, now))
                uow.record(team_associated(caller, vault_arn, team_id))
                return Done("")
            current = await self._guarding_team(uow, vault)
            session = await self._sessions.open_session(
                uow,
                kind=SessionKind.ASSOCIATE_TEAM,
                team=current,
                requester=caller,
                protected_resource=vault_arn,
                comment=comment,
                metadata={"team_id": team_id, "previous_team_id": current.team_id},
            )
            await uow.vaults.save(
                request_association_change(vault, team_id, session.session_id, now)
            )
            uow.record(
                association_change_requested(
                    caller, vault_arn, team_id, current.team_id, session.session_id
                )
            )
            return Done(session.session_id)

        async def read(uow: UnitOfWork, session_id: str) -> AssociationChange:
            return await self._association(uow, vault_arn, session_id)

        return await run_once(self._deps, caller, "AssociateApprovalTeam", request_id, act, read)

    async def disassociate(
        self, caller: Principal, vault_arn: str, comment: str, request_id: str
    ) -> AssociationChange:
        require(caller, PrincipalKind.ACCOUNT)
        validate_comment(comment)

        async def act(uow: UnitOfWork) -> Done[AssociationChange]:
            vault = await self._owned_vault(uow, caller, vault_arn)
            plan_disassociation(vault)
            await self._require_guard_unfrozen(uow, vault)
            current = await self._guarding_team(uow, vault)
            session = await self._sessions.open_session(
                uow,
                kind=SessionKind.DISASSOCIATE_TEAM,
                team=current,
                requester=caller,
                protected_resource=vault_arn,
                comment=comment,
                metadata={"previous_team_id": current.team_id},
            )
            now = self._deps.clock()
            await uow.vaults.save(request_association_change(vault, None, session.session_id, now))
            uow.record(
                association_change_requested(
                    caller, vault_arn, "", current.team_id, session.session_id
                )
            )
            return Done(session.session_id)

        async def read(uow: UnitOfWork, session_id: str) -> AssociationChange:
            return await self._association(uow, vault_arn, session_id)

        return await run_once(self._deps, caller, "DisassociateApprovalTeam", request_id, act, read)

    # --- restore access ------------------------------------------------------------------

    async def request_restore_access(
        self,
        caller: Principal,
        vault_arn: str,
        restore_vault_name: str,
        comment: str,
        request_id: str,
    ) -> GrantChange:
        require(caller, PrincipalKind.ACCOUNT)
        validate_restore_request(restore_vault_name, comment)

        async def act(uow: UnitOfWork) -> Done[GrantChange]:
            # The vault's row lock serializes requests of one (vault, account).
            vault = await self._vault(
                uow, vault_arn, for_update=True, caller=caller, denied=_not_visible(vault_arn)
            )
            # An account that may not see the vault learns nothing of its team (or lack
            # of one): it gets what an unknown ARN gets.
            if not await self._sees_vault(uow, caller, vault):
                raise _not_visible(vault_arn)
            team = await self._guarding_team(uow, vault)
            await self._require_shared(uow, team.team_id, caller.subject)
            require_no_open_grant(
                await uow.grants.open_for(vault_arn, caller.subject), vault_arn, caller.subject
            )
            now = self._deps.clock()
            grant_id, session_id = self._deps.new_id("rag"), self._deps.new_id("ses")
            grant = new_grant(
                grant_id=grant_id,
                vault=vault,
                account_id=caller.subject,
                restore_vault_name=restore_vault_name,
                session_id=session_id,
                comment=comment,
                now=now,
            )
            session = await self._sessions.open_session(
                uow,
                kind=SessionKind.RESTORE_ACCESS,
                team=team,
                requester=caller,
                protected_resource=vault_arn,
                comment=comment,
                metadata={
                    "grant_id": grant_id,
                    "restore_vault_name": grant.restore_vault_name,
                    "restore_vault_arn": grant.restore_vault_arn,
                },
                session_id=session_id,
            )
            await uow.grants.add(grant)
            uow.record(grant_requested(caller, grant))
            # The grant and session in hand are what was written; a replay reads them.
            return Done(grant_id, GrantChange(grant, SessionView(session, team.name)))

        async def read(uow: UnitOfWork, grant_id: str) -> GrantChange:
            grant = await uow.grants.get(grant_id)
            assert grant is not None
            return GrantChange(grant, await self._session_view(uow, grant.session_id))

        return await run_once(self._deps, caller, "RequestRestoreAccess", request_id, act, read)

    async def list_restore_access(
        self,
        caller: Principal,
        vault_arn: str,
        state: GrantState | None,
        size: int,
        token: str,
    ) -> Page[RestoreAccessGrant]:
        require(caller, PrincipalKind.ADMIN, PrincipalKind.AUDITOR, PrincipalKind.ACCOUNT)
        arn_account = parse_vault_arn(vault_arn).account_id if vault_arn else ""
        visible = caller.subject if caller.kind is PrincipalKind.ACCOUNT else ""
        # An account asks about its own vaults (the ARN names the account) or a vault it holds
        # a grant on; any other ARN, known or not, is refused like ListVaults of another account.
        foreign = bool(vault_arn) and bool(visible) and arn_account != visible
        limit = page_size(size)
        query = {
            "m": "ListRestoreAccess",
            "c": str(caller),
            "v": vault_arn,
            "s": state.value if state else "",
        }
        after = decode_cursor(decode_token(token, query))

        async def work(uow: UnitOfWork) -> Page[RestoreAccessGrant]:
            if foreign and not await uow.grants.list_page(vault_arn, None, visible, None, 1):
                raise _not_visible(vault_arn)
            rows = await uow.grants.list_page(vault_arn, state, visible, after, limit + 1)
            return time_page(rows, limit, lambda g: (g.create_time, g.grant_id), query)

        return await transact(self._deps, work, read_only=True)

    async def revoke_restore_access(
        self, caller: Principal, grant_id: str, comment: str, request_id: str
    ) -> GrantChange:
        require(caller, PrincipalKind.ACCOUNT, PrincipalKind.ADMIN)
        validate_comment(comment)

        async def act(uow: UnitOfWork) -> Done[GrantChange]:
            found = await uow.grants.get(grant_id)
            if found is None:
                raise missing_or_denied(
                    caller,
                    NotFound("restore access grant", grant_id),
                    _not_grant_owner(grant_id, caller),
                )
            # Vault first, then grant: the order every use case takes these locks in.
            vault = await self._vault(uow, found.vault_arn, for_update=True)
            if not (caller.is_admin or caller.is_account(vault.account_id)):
                raise _not_grant_owner(grant_id, caller)
            grant = await uow.grants.get(grant_id, for_update=True)
            assert grant is not None
            if not caller.is_admin:
                require_owner_may_revoke(vault, grant)
            team = await self._guarding_team(uow, vault)
            session_id = self._deps.new_id("ses")
            now = self._deps.clock()
            revoking = request_revoke(grant, session_id, now)
            await self._sessions.open_session(
                uow,
                kind=SessionKind.REVOKE_RESTORE_ACCESS,
                team=team,
                requester=caller,
                protected_resource=vault.vault_arn,
                comment=comment,
                metadata={"grant_id": grant_id, "account_id": grant.account_id},
                session_id=session_id,
            )
            await uow.grants.save(revoking)
            uow.record(grant_revoke_requested(caller, grant_id, vault.vault_arn, session_id))
            return Done(session_id)

        async def read(uow: UnitOfWork, session_id: str) -> GrantChange:
            grant = await uow.grants.get(grant_id)
            assert grant is not None
            return GrantChange(grant, await self._session_view(uow, session_id))

        return await run_once(self._deps, caller, "RevokeRestoreAccess", request_id, act, read)

    async def check_access(
        self, caller: Principal, vault_arn: str, account_id: str
    ) -> AccessAnswer:
        require(
            caller,
            PrincipalKind.SERVICE,
            PrincipalKind.AUDITOR,
            PrincipalKind.ADMIN,
            PrincipalKind.ACCOUNT,
        )
        _account_id(account_id)

        parsed = parse_vault_arn(vault_arn)

        async def work(uow: UnitOfWork) -> AccessAnswer:
            # A service asks about any vault (a known one gets an answer): NOT_FOUND for it.
            denied = _not_owner(vault_arn, caller) if caller.kind is PrincipalKind.ACCOUNT else None
            found, open_grants = await uow.vaults.with_open_grants(vault_arn, account_id)
            vault = _known(found, vault_arn, caller, denied, parsed)
            if caller.kind is PrincipalKind.ACCOUNT and not caller.is_account(vault.account_id):
                raise _not_owner(vault_arn, caller)
            grant = next((g for g in await open_grants() if g.grants_access), None)
            return AccessAnswer(grant is not None, grant)

        # PostgreSQL: the vault and the account's open grants in one statement, on the driver
        # connection (hot, issue 11). SQLite: one read each, on its one connection.
        return await transact(self._deps, work, one_statement=True, hot=True)


def _known(
    vault: Vault | None,
    arn: str,
    caller: Principal | None,
    denied: PermissionDenied | None,
    parsed: VaultArn,
) -> Vault:
    """The vault read. An unknown ARN answers `denied` to a caller who could not see the vault
    were it there (missing_or_denied); NOT_FOUND to admin, auditor, and to an account for an
    ARN in its own account (the ARN names the account: nothing to probe there)."""
    if vault is None:
        missing = NotFound("vault", arn)
        if caller is None or denied is None:
            raise missing
        own = caller.is_account(parsed.account_id)
        raise missing_or_denied(caller, missing, denied, own=own)
    return vault


# --- the effects of the vault's sessions, run by SessionService when one ends ----------------


async def _restore_access_effect(sessions: SessionService, uow: UnitOfWork, s: Session) -> Session:
    """The request decided: the grant is AVAILABLE, or FAILED with the session's outcome."""
    now = sessions.now()
    approved = s.state is SessionState.APPROVED
    grant = await uow.grants.by_session(s.session_id, for_update=True)
    if grant is None or grant.session_id != s.session_id:
        return s
    if approved:
        grant = approve_grant(grant, now)
        kind = "grant.available"
    else:
        outcome = f"the session {s.session_id} ended {s.state.value} ({s.status.value})"
        grant = fail_grant(grant, outcome, now)
        kind = "grant.failed"
    await uow.grants.save(grant)
    uow.record(grant_decided(kind, grant, s.session_id))
    if approved:
        return await sessions.executed(
            uow, s, True, f"restore access grant {grant.grant_id} is AVAILABLE"
        )
    return s


async def _revoke_effect(sessions: SessionService, uow: UnitOfWork, s: Session) -> Session:
    """The revocation decided: the grant is REVOKED, or keeps its access."""
    now = sessions.now()
    approved = s.state is SessionState.APPROVED
    grant = await uow.grants.by_session(s.session_id, for_update=True)
    if grant is None or grant.revoke_session_id != s.session_id:
        if approved:
            return await sessions.executed(uow, s, False, "the grant has no such revocation")
        return s
    grant = revoke(grant, s.session_id, now) if approved else drop_revoke(grant, s.session_id, now)
    await uow.grants.save(grant)
    kind = "grant.revoked" if approved else "grant.revoke_dropped"
    uow.record(grant_decided(kind, grant, s.session_id))
    if approved:
        return await sessions.executed(
            uow, s, True, f"restore access grant {grant.grant_id} is REVOKED"
        )
    return s


async def _association_effect(sessions: SessionService, uow: UnitOfWork, s: Session) -> Session:
    """The change of the vault's team decided: applied if its target may still guard the
    vault, dropped otherwise."""
    now = sessions.now()
    approved = s.state is SessionState.APPROVED
    vault = await uow.vaults.get(s.protected_resource, for_update=True)
    pending = vault.pending_association if vault else None
    if vault is None or pending is None or pending.session_id != s.session_id:
        if approved:
            return await sessions.executed(uow, s, False, "the vault has no such change")
        return s
    # What associate checked may have changed while the session was pending: the
    # target must still be ACTIVE and shared with the vault's account.
    refusal = ""
    if approved and pending.team_id is not None:
        target = await uow.teams.get(pending.team_id)
        owner = Principal(PrincipalKind.ACCOUNT, vault.account_id)
        if target is None or target.state is not TeamState.ACTIVE:
            refusal = f"team {pending.team_id} is no longer ACTIVE"
        elif await uow.shares.get(pending.team_id, owner) is None:
            refusal = f"team {pending.team_id} is no longer shared with account {vault.account_id}"
    target_ok = not refusal
    if approved and target_ok:
        changed = apply_association_change(vault, s.session_id, now)
    else:
        changed = drop_association_change(vault, s.session_id, now)
    await uow.vaults.save(changed)
    uow.record(association_change_decided(vault, changed, s.session_id, approved and target_ok))
    if approved:
        message = (
            f"the vault's team is now {changed.team_id or 'none'}"
            if target_ok
            else f"{refusal}; the vault kept its team"
        )
        return await sessions.executed(uow, s, target_ok, message)
    return s


VAULT_EFFECTS: Mapping[SessionKind, Effect] = {
    SessionKind.RESTORE_ACCESS: _restore_access_effect,
    SessionKind.REVOKE_RESTORE_ACCESS: _revoke_effect,
    SessionKind.ASSOCIATE_TEAM: _association_effect,
    SessionKind.DISASSOCIATE_TEAM: _association_effect,
}


async def end_team_guard(uow: UnitOfWork, team_id: str, now: datetime) -> None:
    """The team is DELETED: its vault associations end, and the open grants of the vaults it
    guarded end with it (AVAILABLE ones REVOKED)."""
    for vault_arn in await uow.vaults.of_team(team_id):
        vault = await uow.vaults.get(vault_arn, for_update=True)
        if vault is None:
            continue
        guarded = vault.team_id == team_id
        changed = on_team_deleted(vault, team_id, now)
        if changed is not vault:
            await uow.vaults.save(changed)
            uow.record(team_removed(changed, team_id))
        if not guarded:
            continue
        for grant_id in await uow.grants.open_of_vaults([vault_arn]):
            grant = await uow.grants.get(grant_id, for_update=True)
            if grant is None:
                continue
            ended = end_with_team(grant, now)
            if ended is grant:
                continue
            await uow.grants.save(ended)
            uow.record(grant_ended_with_team(ended, team_id))
