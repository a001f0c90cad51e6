"""Identities and credentials: approvers, accounts, bearer tokens, bootstrap."""

from __future__ import annotations

import hashlib
import secrets
from dataclasses import dataclass, replace
from datetime import datetime

from airlock_server.app.common import Deps, Done, run_once, transact
from airlock_server.app.ports import UnitOfWork
from airlock_server.app.sessions import SessionService
from airlock_server.domain.errors import (
    APPROVER_DISABLED,
    AlreadyExists,
    FailedPrecondition,
    InvalidArgument,
    NotFound,
    PermissionDenied,
    Reason,
    Unauthenticated,
)
from airlock_server.domain.identities import (
    Account,
    Approver,
    Credential,
    validate_account,
    validate_approver,
    validate_description,
)
from airlock_server.domain.identity_events import (
    account_registered,
    approver_created,
    approver_disabled,
    credential_issued,
    credential_revoked,
    server_bootstrapped,
)
from airlock_server.domain.paging import Page, decode_token, page_of, page_size
from airlock_server.domain.principals import (
    Principal,
    PrincipalKind,
    require,
    require_admin,
    validate_principal,
)

TOKEN_PREFIX = "alk_"
BOOTSTRAP_KEY = "bootstrap.admin_credential"


def hash_token(token: str) -> bytes:
    return hashlib.sha256(token.encode()).digest()


def new_token() -> str:
    """256 random bits, URL-safe."""
    return TOKEN_PREFIX + secrets.token_urlsafe(32)


@dataclass(frozen=True)
class Caller:
    principal: Principal
    credential_id: str


@dataclass(frozen=True)
class IssuedCredential:
    credential: Credential
    token: str


class IdentityService:
    def __init__(self, deps: Deps, sessions: SessionService | None = None) -> None:
        self._deps = deps
        self._sessions = sessions or SessionService(deps)

    # --- authentication -------------------------------------------------------------------

    async def authenticate(self, token: str) -> Caller:
        if not token:
            raise Unauthenticated("send `authorization: Bearer <token>`")
        digest = hash_token(token)
        cache = self._deps.credentials
        if cache is not None:
            cached = cache.get(digest)
            if cached is not None and cached.usable_at(self._deps.clock()):
                return Caller(cached.principal, cached.credential_id)
            generation = cache.generation

        async def work(uow: UnitOfWork) -> Credential:
            cred = await uow.credentials.find_by_token_hash(digest)
            if cred is None or not cred.usable_at(self._deps.clock()):
                raise Unauthenticated("the token is unknown, revoked or expired")
            return cred

        # One SELECT (its row's MAC checked), no transaction around it; then from the cache
        # until the credential changes.
        cred = await transact(self._deps, work, one_statement=True)
        if cache is not None:
            cache.put(digest, cred, generation)
        return Caller(cred.principal, cred.credential_id)

    # --- approvers --------------------------------------------------------------------------

    async def create_approver(
        self, caller: Principal, approver_id: str, display_name: str, email: str, request_id: str
    ) -> Approver:
        require_admin(caller)
        validate_approver(approver_id, display_name, email)

        async def act(uow: UnitOfWork) -> Done[Approver]:
            if await uow.approvers.get(approver_id) is not None:
                raise AlreadyExists("approver", approver_id)
            approver = Approver(approver_id, display_name, email, True, self._deps.clock())
            await uow.approvers.add(approver)
            uow.record(approver_created(caller, approver_id))
            return Done(approver_id)

        async def read(uow: UnitOfWork, approver_id: str) -> Approver:
            approver = await uow.approvers.get(approver_id)
            assert approver is not None
            return approver

        return await run_once(self._deps, caller, "CreateApprover", request_id, act, read)

    async def _revoke_all(
        self, uow: UnitOfWork, caller: Principal, principal: Principal, now: datetime
    ) -> list[str]:
        """Revoke every usable credential of `principal`, each with its event."""
        revoked: list[str] = []
        after: str | None = None
        while True:
            page = await uow.credentials.list_page(principal, None, "active", now, after, 100)
            for cred in page:
                await uow.credentials.save(replace(cred, revoke_time=now))
                uow.record(credential_revoked(caller, cred.credential_id, principal))
                revoked.append(cred.credential_id)
            if len(page) < 100:
                return revoked
            after = page[-1].credential_id

    async def get_approver(self, caller: Principal, approver_id: str) -> Approver:
        if caller.kind is PrincipalKind.APPROVER:
            if caller.subject != approver_id:
                raise PermissionDenied("an approver may read only its own identity")
        else:
            require(caller, PrincipalKind.ADMIN, PrincipalKind.AUDITOR)

        async def work(uow: UnitOfWork) -> Approver:
            approver = await uow.approvers.get(approver_id)
            if approver is None:
                raise NotFound("approver", approver_id)
            return approver

        return await transact(self._deps, work, read_only=True)

    async def list_approvers(
        self, caller: Principal, enabled: bool | None, size: int, token: str
    ) -> Page[Approver]:
        require(caller, PrincipalKind.ADMIN, PrincipalKind.AUDITOR)
        limit = page_size(size)
        query = {"m": "ListApprovers", "e": str(enabled)}
        after = decode_token(token, query)

        async def work(uow: UnitOfWork) -> Page[Approver]:
            rows = await uow.approvers.list_page(enabled, after, limit + 1)
            return page_of(rows, limit, lambda a: a.approver_id, query)

        return await transact(self._deps, work, read_only=True)

    async def disable_approver(
        self, caller: Principal, approver_id: str, request_id: str
    ) -> Approver:
        require_admin(caller)

        async def act(uow: UnitOfWork) -> Done[Approver]:
            approver = await uow.approvers.get(approver_id)
            if approver is None:
                raise NotFound("approver", approver_id)
            if approver.enabled:
                now = self._deps.clock()
                await uow.approvers.save(replace(approver, enabled=False, disable_time=now))
                # At once: its credentials stop working and its votes stop counting.
                revoked = await self._revoke_all(
                    uow, caller, Principal(PrincipalKind.APPROVER, approver_id), now
                )
                sessions = await self._sessions.exclude_approver(uow, approver_id, caller)
                uow.record(approver_disabled(caller, approver_id, revoked, sessions))
            return Done(approver_id)

        async def read(uow: UnitOfWork, approver_id: str) -> Approver:
            approver = await uow.approvers.get(approver_id)
            assert approver is not None
            return approver

        try:
            return await run_once(self._deps, caller, "DisableApprover", request_id, act, read)
        finally:
            # Before the answer (even a failed one: the commit may have happened), this
            # process stops accepting the approver's tokens; other replicas on the NOTIFY.
            if self._deps.credentials is not None:
                self._deps.credentials.drop_principal(
                    Principal(PrincipalKind.APPROVER, approver_id)
                )

    # --- accounts ---------------------------------------------------------------------------

    async def register_account(
        self, caller: Principal, account_id: str, name: str, request_id: str
    ) -> Account:
        require_admin(caller)
        validate_account(account_id, name)

        async def act(uow: UnitOfWork) -> Done[Account]:
            if await uow.accounts.get(account_id) is not None:
                raise AlreadyExists("account", account_id)
            await uow.accounts.add(Account(account_id, name, self._deps.clock()))
            uow.record(account_registered(caller, account_id, name))
            return Done(account_id)

        async def read(uow: UnitOfWork, account_id: str) -> Account:
            account = await uow.accounts.get(account_id)
            assert account is not None
            return account

        return await run_once(self._deps, caller, "RegisterAccount", request_id, act, read)

    async def list_accounts(self, caller: Principal, size: int, token: str) -> Page[Account]:
        require(caller, PrincipalKind.ADMIN, PrincipalKind.AUDITOR)
        limit = page_size(size)
        query = {"m": "ListAccounts"}
        after = decode_token(token, query)

        async def work(uow: UnitOfWork) -> Page[Account]:
            rows = await uow.accounts.list_page(after, limit + 1)
            return page_of(rows, limit, lambda a: a.account_id, query)

        return await transact(self._deps, work, read_only=True)

    # --- credentials ------------------------------------------------------------------------

    async def issue_credential(
        self,
        caller: Principal,
        kind: PrincipalKind,
        subject: str,
        description: str,
        expire_time: datetime | None,
        request_id: str,
    ) -> IssuedCredential:
        require_admin(caller)
        principal = validate_principal(kind, subject)
        validate_description(description)
        now = self._deps.clock()
        if expire_time is not None and expire_time <= now:
            raise InvalidArgument.field("expire_time", "must be in the future")

        async def act(uow: UnitOfWork) -> Done[IssuedCredential]:
            await self._check_subject_exists(uow, principal)
            issued = _new_credential(self._deps, principal, description, expire_time)
            cred = issued.credential
            await uow.credentials.add(cred, hash_token(issued.token))
            uow.record(credential_issued(caller, cred.credential_id, principal))
            return Done(cred.credential_id, issued)

        async def read(uow: UnitOfWork, credential_id: str) -> IssuedCredential:
            # A retry gets the first call's credential, but never its token again:
            # tokens exist only as hashes.
            first = await uow.credentials.get(credential_id)
            assert first is not None
            return IssuedCredential(first, "")

        return await run_once(self._deps, caller, "IssueCredential", request_id, act, read)

    @staticmethod
    async def _check_subject_exists(uow: UnitOfWork, principal: Principal) -> None:
        if principal.kind is PrincipalKind.APPROVER:
            approver = await uow.approvers.get(principal.subject)
            if approver is None:
                raise NotFound("approver", principal.subject)
            if not approver.enabled:
                raise FailedPrecondition(
                    f"approver {principal.subject!r} is disabled",
                    reason=APPROVER_DISABLED,
                    metadata={"approverId": principal.subject},
                )
        elif (
            principal.kind is PrincipalKind.ACCOUNT
            and await uow.accounts.get(principal.subject) is None
        ):
            raise NotFound("account", principal.subject)

    async def revoke_credential(
        self, caller: Principal, credential_id: str, request_id: str
    ) -> Credential:
        require_admin(caller)

        async def act(uow: UnitOfWork) -> Done[Credential]:
            cred = await uow.credentials.get(credential_id)
            if cred is None:
                raise NotFound("credential", credential_id)
            if cred.revoke_time is None:
                await uow.credentials.save(replace(cred, revoke_time=self._deps.clock()))
                uow.record(credential_revoked(caller, credential_id, cred.principal))
            return Done(credential_id)

        async def read(uow: UnitOfWork, credential_id: str) -> Credential:
            cred = await uow.credentials.get(credential_id)
            assert cred is not None
            return cred

        try:
            return await run_once(self._deps, caller, "RevokeCredential", request_id, act, read)
        finally:
            # Before the answer, as in disable_approver.
            if self._deps.credentials is not None:
                self._deps.credentials.drop([credential_id])

    async def list_credentials(
        self,
        caller: Principal,
        principal: Principal | None,
        kind: PrincipalKind | None,
        state: str | None,
        size: int,
        token: str,
    ) -> Page[Credential]:
        """`state` is one of active, expired, revoked, or None for all."""
        require(caller, PrincipalKind.ADMIN, PrincipalKind.AUDITOR)
        limit = page_size(size)
        query = {
            "m": "ListCredentials",
            "p": str(principal) if principal else "",
            "k": kind.value if kind else "",
            "s": state or "",
        }
        after = decode_token(token, query)

        async def work(uow: UnitOfWork) -> Page[Credential]:
            rows = await uow.credentials.list_page(
                principal,
                kind.value if kind else None,
                state,
                self._deps.clock(),
                after,
                limit + 1,
            )
            return page_of(rows, limit, lambda c: c.credential_id, query)

        return await transact(self._deps, work, read_only=True)

    # --- bootstrap --------------------------------------------------------------------------

    async def bootstrap_admin(self, label: str = "bootstrap") -> IssuedCredential:
        """The first admin credential of a fresh database; refused the second time."""
        principal = Principal(PrincipalKind.ADMIN, label)

        async def work(uow: UnitOfWork) -> IssuedCredential:
            issued = _new_credential(self._deps, principal, "first admin, from bootstrap", None)
            if not await uow.settings.put_new(BOOTSTRAP_KEY, issued.credential.credential_id):
                raise FailedPrecondition(
                    "this database was bootstrapped already; issue more credentials with an "
                    "admin credential",
                    reason=Reason.ALREADY_BOOTSTRAPPED,
                )
            await uow.credentials.add(issued.credential, hash_token(issued.token))
            uow.record(server_bootstrapped(principal, issued.credential.credential_id))
            await uow.commit()
            return issued

        return await transact(self._deps, work)


def _new_credential(
    deps: Deps, principal: Principal, description: str, expire_time: datetime | None
) -> IssuedCredential:
    cred = Credential(
        credential_id=deps.new_id("cred"),
        principal=principal,
        description=description,
        create_time=deps.clock(),
        expire_time=expire_time,
    )
    return IssuedCredential(cred, new_token())
