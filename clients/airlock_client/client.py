"""`AirlockClient`: a thin, typed, async wrapper over the generated `airlock.v1` stubs.

Every call carries `authorization: Bearer <token>` and a deadline; every mutation carries a
`request_id` (a fresh UUID4 unless the caller gives one) that stays the same across retries, so a
retried mutation has at most one effect. Only UNAVAILABLE and ABORTED are retried, with jittered
exponential backoff. Lists are async iterators that follow page tokens. Failures raise
`airlock_client.errors.AirlockError` subclasses, never `grpc.RpcError`. Results are the generated
proto messages; there is no business logic here.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import random
import uuid
from collections.abc import AsyncIterator, Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from types import TracebackType
from typing import Any, Protocol, Self, TypeAlias, TypeVar

import grpc
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from google.protobuf import duration_pb2, field_mask_pb2, timestamp_pb2
from google.protobuf.message import Message

from airlock.v1 import (
    approver_service_pb2,
    approver_service_pb2_grpc,
    audit_service_pb2,
    audit_service_pb2_grpc,
    common_pb2,
    event_pb2,
    identity_pb2,
    identity_service_pb2,
    identity_service_pb2_grpc,
    notification_pb2,
    notification_service_pb2,
    notification_service_pb2_grpc,
    session_pb2,
    session_service_pb2,
    session_service_pb2_grpc,
    team_pb2,
    team_service_pb2,
    team_service_pb2_grpc,
    vault_pb2,
    vault_service_pb2,
    vault_service_pb2_grpc,
)
from airlock_client import keys
from airlock_client.errors import AirlockError, StatusCode, from_rpc_error
from airlock_client.health import DEFAULT_SINCE, HealthReport, build_health_report

__all__ = [
    "DEFAULT_TARGET",
    "DEFAULT_TIMEOUT",
    "AirlockClient",
    "RetryPolicy",
    "principal_kind",
]

DEFAULT_TARGET = "127.0.0.1:50051"
DEFAULT_TIMEOUT = 10.0
_USER_AGENT = "airlock-client/0.1.0"

_Req = TypeVar("_Req", bound=Message)
_Resp = TypeVar("_Resp", bound=Message)
_Item = TypeVar("_Item")

PrincipalKindValue: TypeAlias = common_pb2.PrincipalKind.ValueType

_KIND_NAMES: dict[str, PrincipalKindValue] = {
    "admin": common_pb2.PRINCIPAL_KIND_ADMIN,
    "account": common_pb2.PRINCIPAL_KIND_ACCOUNT,
    "approver": common_pb2.PRINCIPAL_KIND_APPROVER,
    "service": common_pb2.PRINCIPAL_KIND_SERVICE,
    "auditor": common_pb2.PRINCIPAL_KIND_AUDITOR,
}


def principal_kind(kind: PrincipalKindValue | str) -> PrincipalKindValue:
    """A PrincipalKind from its enum value or its short name ("admin", "account", ...)."""
    if isinstance(kind, str):
        name = kind.strip().lower().removeprefix("principal_kind_")
        if name not in _KIND_NAMES:
            raise ValueError(f"unknown principal kind {kind!r}; one of {', '.join(_KIND_NAMES)}")
        return _KIND_NAMES[name]
    return kind


@dataclass(frozen=True)
class RetryPolicy:
    """Retries of UNAVAILABLE and ABORTED: full-jitter exponential backoff.

    The default rides through a restart of the database or of a server of a few seconds (the
    server answers UNAVAILABLE meanwhile): ten attempts, at most about 11 s of backoff in all.
    Mutations carry a request_id, so a retry of one whose answer was lost replays it."""

    max_attempts: int = 10
    initial_backoff: float = 0.1
    max_backoff: float = 2.0
    multiplier: float = 2.0
    retryable: frozenset[StatusCode] = frozenset({StatusCode.UNAVAILABLE, StatusCode.ABORTED})

    def backoff(self, attempt: int) -> float:
        """Seconds to sleep before retry number `attempt` (1-based): uniform in [0, cap]."""
        cap = min(self.max_backoff, self.initial_backoff * self.multiplier ** (attempt - 1))
        return random.uniform(0, cap)  # jitter, not a secret


NO_RETRY = RetryPolicy(max_attempts=1)


class _PagedRequest(Protocol):
    page_token: str


class _PagedResponse(Protocol):
    next_page_token: str


def _request_id(given: str | None) -> str:
    return given if given else str(uuid.uuid4())


def _duration(value: dt.timedelta) -> duration_pb2.Duration:
    message = duration_pb2.Duration()
    message.FromTimedelta(value)
    return message


def _timestamp(value: dt.datetime) -> timestamp_pb2.Timestamp:
    if value.tzinfo is None:
        raise ValueError("timestamps must be timezone-aware (for example datetime.UTC)")
    message = timestamp_pb2.Timestamp()
    message.FromDatetime(value.astimezone(dt.UTC))
    return message


def _share_principal(account_id: str | None, service: str | None) -> common_pb2.Principal:
    if (account_id is None) == (service is None):
        raise ValueError("give exactly one of account_id and service")
    if account_id is not None:
        return common_pb2.Principal(kind=common_pb2.PRINCIPAL_KIND_ACCOUNT, subject=account_id)
    assert service is not None
    return common_pb2.Principal(kind=common_pb2.PRINCIPAL_KIND_SERVICE, subject=service)


class AirlockClient:
    """An async client of every Airlock service.

    Use `AirlockClient.connect(...)` and close it with `await client.close()` or `async with`::

        async with AirlockClient.connect("127.0.0.1:50051", token) as client:
            me = await client.whoami()
            async for team in client.list_teams():
                ...
    """

    def __init__(
        self,
        channel: grpc.aio.Channel,
        token: str | None = None,
        *,
        timeout: float = DEFAULT_TIMEOUT,
        retry: RetryPolicy | None = None,
        stream_timeout: float | None = None,
    ) -> None:
        """Wraps an existing `grpc.aio` channel (the client closes it in `close()`).

        `timeout` is the deadline of each unary call attempt, in seconds. `stream_timeout` is the
        deadline of a server stream (WatchSession, WatchEvents); None lets it run until it ends.
        """
        if timeout <= 0:
            raise ValueError("timeout must be positive")
        self._channel = channel
        self._timeout = timeout
        self._stream_timeout = stream_timeout
        self._retry = retry or RetryPolicy()
        self._metadata: tuple[tuple[str, str], ...] = (
            (("authorization", f"Bearer {token}"),) if token else ()
        )
        self._identity = identity_service_pb2_grpc.IdentityServiceStub(channel)
        self._teams = team_service_pb2_grpc.TeamServiceStub(channel)
        self._approver = approver_service_pb2_grpc.ApproverServiceStub(channel)
        self._vaults = vault_service_pb2_grpc.VaultServiceStub(channel)
        self._sessions = session_service_pb2_grpc.SessionServiceStub(channel)
        self._audit = audit_service_pb2_grpc.AuditServiceStub(channel)
        self._notifications = notification_service_pb2_grpc.NotificationServiceStub(channel)

    @classmethod
    def connect(
        cls,
        target: str = DEFAULT_TARGET,
        token: str | None = None,
        *,
        timeout: float = DEFAULT_TIMEOUT,
        retry: RetryPolicy | None = None,
        stream_timeout: float | None = None,
        # TLS (issue 5). Any of these, or tls=True, makes a TLS channel through
        # grpc.ssl_channel_credentials; none of them, a plaintext channel.
        tls: bool = False,
        root_certificates: bytes | None = None,
        certificate_chain: bytes | None = None,
        private_key: bytes | None = None,
        options: Sequence[tuple[str, Any]] = (),
    ) -> AirlockClient:
        """Opens a channel to `target` ("host:port"); connection happens on the first call.

        Call it inside the event loop that will use the client (grpc.aio binds a channel to
        the running loop). `timeout` bounds each attempt of a unary call; a retried call
        (UNAVAILABLE, ABORTED) may take up to `retry.max_attempts` attempts plus backoff.

        `token` is sent as `authorization: Bearer <token>` on every call. For mutual TLS give
        `certificate_chain` and `private_key` (PEM); `root_certificates` (PEM) replaces the
        system's CAs.
        """
        if (certificate_chain is None) != (private_key is None):
            raise ValueError("certificate_chain and private_key go together (mutual TLS)")
        channel_options = [("grpc.primary_user_agent", _USER_AGENT), *options]
        channel: grpc.aio.Channel
        if tls or root_certificates or certificate_chain or private_key:
            credentials = grpc.ssl_channel_credentials(
                root_certificates=root_certificates,
                private_key=private_key,
                certificate_chain=certificate_chain,
            )
            channel = grpc.aio.secure_channel(target, credentials, options=channel_options)
        else:
            channel = grpc.aio.insecure_channel(target, options=channel_options)
        return cls(channel, token, timeout=timeout, retry=retry, stream_timeout=stream_timeout)

    async def close(self) -> None:
        """Closes the channel; calls in flight are cancelled."""
        await self._channel.close()

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.close()

    # -- plumbing ------------------------------------------------------------------------------

    async def _call(
        self, rpc: grpc.aio.UnaryUnaryMultiCallable[_Req, _Resp], request: _Req
    ) -> _Resp:
        """One unary RPC with deadline, auth and retries; the request (and its request_id) is
        sent unchanged on every attempt."""
        attempt = 0
        while True:
            attempt += 1
            error: AirlockError
            try:
                return await rpc(request, timeout=self._timeout, metadata=self._metadata)
            except grpc.RpcError as exc:
                error = from_rpc_error(exc)
            if error.code not in self._retry.retryable or attempt >= self._retry.max_attempts:
                raise error
            await asyncio.sleep(self._retry.backoff(attempt))

    async def _paged(
        self,
        rpc: grpc.aio.UnaryUnaryMultiCallable[_Req, _Resp],
        request: _Req,
        items: Callable[[_Resp], Iterable[_Item]],
    ) -> AsyncIterator[_Item]:
        """Yields the items of every page, following next_page_token until it is empty."""
        paged_request: _PagedRequest = request  # type: ignore[assignment]
        while True:
            response = await self._call(rpc, request)
            for item in items(response):
                yield item
            page: _PagedResponse = response  # type: ignore[assignment]
            if not page.next_page_token:
                return
            paged_request.page_token = page.next_page_token

    async def _stream(
        self,
        rpc: grpc.aio.UnaryStreamMultiCallable[_Req, _Resp],
        request: Callable[[], _Req],
    ) -> AsyncIterator[_Resp]:
        """Yields the messages of a server stream; on UNAVAILABLE/ABORTED it reopens the stream
        with `request()` (which lets the caller resume), backing off between attempts."""
        failures = 0
        while True:
            call = rpc(request(), timeout=self._stream_timeout, metadata=self._metadata)
            error: AirlockError
            try:
                async for message in call:
                    failures = 0
                    yield message
                return
            except grpc.RpcError as exc:
                error = from_rpc_error(exc)
            finally:
                call.cancel()
            failures += 1
            if error.code not in self._retry.retryable or failures >= self._retry.max_attempts:
                raise error
            await asyncio.sleep(self._retry.backoff(failures))

    # -- IdentityService -----------------------------------------------------------------------

    async def whoami(self) -> identity_service_pb2.WhoAmIResponse:
        """The caller's principal and credential id."""
        return await self._call(self._identity.WhoAmI, identity_service_pb2.WhoAmIRequest())

    async def create_approver(
        self,
        approver_id: str,
        display_name: str = "",
        *,
        email: str = "",
        request_id: str | None = None,
    ) -> identity_pb2.Approver:
        """Creates an approver identity (admin)."""
        request = identity_service_pb2.CreateApproverRequest(
            approver_id=approver_id,
            display_name=display_name,
            email=email,
            request_id=_request_id(request_id),
        )
        return (await self._call(self._identity.CreateApprover, request)).approver

    async def get_approver(self, approver_id: str) -> identity_pb2.Approver:
        """One approver identity (admin, or the approver itself)."""
        request = identity_service_pb2.GetApproverRequest(approver_id=approver_id)
        return (await self._call(self._identity.GetApprover, request)).approver

    def list_approvers(
        self,
        *,
        state: identity_pb2.Approver.State.ValueType = identity_pb2.Approver.STATE_UNSPECIFIED,
        page_size: int = 0,
    ) -> AsyncIterator[identity_pb2.Approver]:
        """Every approver identity (admin), ordered by id, page after page."""
        request = identity_service_pb2.ListApproversRequest(state=state, page_size=page_size)
        return self._paged(self._identity.ListApprovers, request, lambda r: r.approvers)

    async def disable_approver(
        self, approver_id: str, *, request_id: str | None = None
    ) -> identity_pb2.Approver:
        """Disables an approver identity (admin; terminal)."""
        request = identity_service_pb2.DisableApproverRequest(
            approver_id=approver_id, request_id=_request_id(request_id)
        )
        return (await self._call(self._identity.DisableApprover, request)).approver

    async def register_account(
        self, account_id: str, name: str, *, request_id: str | None = None
    ) -> identity_pb2.Account:
        """Registers a 12-digit account (admin)."""
        request = identity_service_pb2.RegisterAccountRequest(
            account_id=account_id, name=name, request_id=_request_id(request_id)
        )
        return (await self._call(self._identity.RegisterAccount, request)).account

    def list_accounts(self, *, page_size: int = 0) -> AsyncIterator[identity_pb2.Account]:
        """Every registered account (admin), ordered by id."""
        request = identity_service_pb2.ListAccountsRequest(page_size=page_size)
        return self._paged(self._identity.ListAccounts, request, lambda r: r.accounts)

    async def issue_credential(
        self,
        kind: PrincipalKindValue | str,
        subject: str = "",
        *,
        description: str = "",
        ttl: dt.timedelta | None = None,
        expire_time: dt.datetime | None = None,
        request_id: str | None = None,
    ) -> identity_service_pb2.IssueCredentialResponse:
        """Issues a bearer credential (admin). The response's `token` is shown only this once
        (a retry with the same request_id returns the metadata with an empty token)."""
        if ttl is not None and expire_time is not None:
            raise ValueError("give ttl or expire_time, not both")
        request = identity_service_pb2.IssueCredentialRequest(
            principal=common_pb2.Principal(kind=principal_kind(kind), subject=subject),
            description=description,
            request_id=_request_id(request_id),
        )
        if ttl is not None:
            request.ttl.CopyFrom(_duration(ttl))
        if expire_time is not None:
            request.expire_time.CopyFrom(_timestamp(expire_time))
        return await self._call(self._identity.IssueCredential, request)

    async def revoke_credential(
        self, credential_id: str, *, request_id: str | None = None
    ) -> identity_pb2.Credential:
        """Revokes a credential (admin)."""
        request = identity_service_pb2.RevokeCredentialRequest(
            credential_id=credential_id, request_id=_request_id(request_id)
        )
        return (await self._call(self._identity.RevokeCredential, request)).credential

    def list_credentials(
        self,
        *,
        kind: PrincipalKindValue | str | None = None,
        subject: str = "",
        state: identity_pb2.Credential.State.ValueType = identity_pb2.Credential.STATE_UNSPECIFIED,
        page_size: int = 0,
    ) -> AsyncIterator[identity_pb2.Credential]:
        """Credential metadata (admin; never a token), newest first."""
        request = identity_service_pb2.ListCredentialsRequest(
            principal_kind=(
                principal_kind(kind) if kind is not None else common_pb2.PRINCIPAL_KIND_UNSPECIFIED
            ),
            principal_subject=subject,
            state=state,
            page_size=page_size,
        )
        return self._paged(self._identity.ListCredentials, request, lambda r: r.credentials)

    # -- TeamService ---------------------------------------------------------------------------

    async def create_team(
        self,
        name: str,
        approver_ids: Sequence[str],
        min_approvals: int,
        *,
        description: str = "",
        session_ttl: dt.timedelta | None = None,
        invitation_ttl: dt.timedelta | None = None,
        request_id: str | None = None,
    ) -> team_pb2.ApprovalTeam:
        """Creates a team (admin): PENDING, with one invitation per approver."""
        request = team_service_pb2.CreateApprovalTeamRequest(
            name=name,
            description=description,
            approver_ids=list(approver_ids),
            min_approvals=min_approvals,
            request_id=_request_id(request_id),
        )
        if session_ttl is not None:
            request.session_ttl.CopyFrom(_duration(session_ttl))
        if invitation_ttl is not None:
            request.invitation_ttl.CopyFrom(_duration(invitation_ttl))
        return (await self._call(self._teams.CreateApprovalTeam, request)).team

    async def get_team(self, team_id: str) -> team_pb2.ApprovalTeam:
        """One team, with its approvers and their invitation states."""
        request = team_service_pb2.GetApprovalTeamRequest(team_id=team_id)
        return (await self._call(self._teams.GetApprovalTeam, request)).team

    def list_teams(
        self,
        *,
        state: team_pb2.ApprovalTeam.State.ValueType = team_pb2.ApprovalTeam.STATE_UNSPECIFIED,
        page_size: int = 0,
    ) -> AsyncIterator[team_pb2.ApprovalTeam]:
        """The teams the caller may see (all but DELETED unless `state` says otherwise)."""
        request = team_service_pb2.ListApprovalTeamsRequest(state=state, page_size=page_size)
        return self._paged(self._teams.ListApprovalTeams, request, lambda r: r.teams)

    async def update_team(
        self,
        team_id: str,
        *,
        etag: str = "",
        description: str | None = None,
        approver_ids: Sequence[str] | None = None,
        min_approvals: int | None = None,
        session_ttl: dt.timedelta | None = None,
        invitation_ttl: dt.timedelta | None = None,
        reenroll_approver_ids: Sequence[str] | None = None,
        new_keys: Mapping[str, bytes | tuple[bytes, bytes]] | None = None,
        request_id: str | None = None,
    ) -> team_service_pb2.UpdateApprovalTeamResponse:
        """Proposes a new team version (admin): a draft and a session the current team votes on.
        Only the arguments given (not None) are changed; the update mask says which.
        `new_keys`: approver id -> its new raw public key, or (key, signature by its key in force
        over `keys.key_change_message`); required for every re-enrolled approver."""
        request = team_service_pb2.UpdateApprovalTeamRequest(
            team_id=team_id, etag=etag, request_id=_request_id(request_id)
        )
        paths: list[str] = []
        if description is not None:
            request.description = description
            paths.append("description")
        if approver_ids is not None:
            request.approver_ids.extend(approver_ids)
            paths.append("approver_ids")
        if min_approvals is not None:
            request.min_approvals = min_approvals
            paths.append("min_approvals")
        if session_ttl is not None:
            request.session_ttl.CopyFrom(_duration(session_ttl))
            paths.append("session_ttl")
        if invitation_ttl is not None:
            request.invitation_ttl.CopyFrom(_duration(invitation_ttl))
            paths.append("invitation_ttl")
        if reenroll_approver_ids is not None:
            request.reenroll_approver_ids.extend(reenroll_approver_ids)
            paths.append("reenroll_approver_ids")
        if new_keys is not None:
            for approver_id, given in new_keys.items():
                key, vouch = given if isinstance(given, tuple) else (given, b"")
                request.new_keys.add(
                    approver_id=approver_id, public_key=key, current_key_signature=vouch
                )
            paths.append("new_keys")
        request.update_mask.CopyFrom(field_mask_pb2.FieldMask(paths=paths))
        return await self._call(self._teams.UpdateApprovalTeam, request)

    async def start_team_deletion(
        self,
        team_id: str,
        *,
        etag: str = "",
        pending_window_days: int = 0,
        request_id: str | None = None,
    ) -> team_service_pb2.StartTeamDeletionResponse:
        """Proposes deleting an ACTIVE team (admin): a session the team votes on."""
        request = team_service_pb2.StartTeamDeletionRequest(
            team_id=team_id,
            etag=etag,
            pending_window_days=pending_window_days,
            request_id=_request_id(request_id),
        )
        return await self._call(self._teams.StartTeamDeletion, request)

    async def delete_inactive_team(
        self, team_id: str, *, request_id: str | None = None
    ) -> team_pb2.ApprovalTeam:
        """Deletes a PENDING or INACTIVE team at once (admin)."""
        request = team_service_pb2.DeleteInactiveTeamRequest(
            team_id=team_id, request_id=_request_id(request_id)
        )
        return (await self._call(self._teams.DeleteInactiveTeam, request)).team

    async def issue_invitation_link(
        self, invitation_id: str, *, request_id: str | None = None
    ) -> team_service_pb2.IssueInvitationLinkResponse:
        """A one-time portal link of a pending invitation, shown once (admin)."""
        request = team_service_pb2.IssueInvitationLinkRequest(
            invitation_id=invitation_id, request_id=_request_id(request_id)
        )
        return await self._call(self._teams.IssueInvitationLink, request)

    async def share_team(
        self,
        team_id: str,
        *,
        account_id: str | None = None,
        service: str | None = None,
        request_id: str | None = None,
    ) -> team_pb2.TeamShare:
        """Shares a team with an account or a service principal (exactly one; admin)."""
        request = team_service_pb2.ShareTeamRequest(
            team_id=team_id,
            principal=_share_principal(account_id, service),
            request_id=_request_id(request_id),
        )
        return (await self._call(self._teams.ShareTeam, request)).share

    async def unshare_team(
        self,
        team_id: str,
        *,
        account_id: str | None = None,
        service: str | None = None,
        request_id: str | None = None,
    ) -> team_pb2.TeamShare:
        """Removes a share (exactly one of account_id and service; admin)."""
        request = team_service_pb2.UnshareTeamRequest(
            team_id=team_id,
            principal=_share_principal(account_id, service),
            request_id=_request_id(request_id),
        )
        return (await self._call(self._teams.UnshareTeam, request)).share

    def list_team_shares(
        self, team_id: str, *, page_size: int = 0
    ) -> AsyncIterator[team_pb2.TeamShare]:
        """The shares of a team (admin, auditors)."""
        request = team_service_pb2.ListTeamSharesRequest(team_id=team_id, page_size=page_size)
        return self._paged(self._teams.ListTeamShares, request, lambda r: r.shares)

    async def get_team_health(
        self, team_id: str, *, activity_window: dt.timedelta | None = None
    ) -> team_pb2.TeamHealth:
        """Whether enough active approvers remain to reach M (admin, auditors)."""
        request = team_service_pb2.GetTeamHealthRequest(team_id=team_id)
        if activity_window is not None:
            request.activity_window.CopyFrom(_duration(activity_window))
        return (await self._call(self._teams.GetTeamHealth, request)).health

    async def start_team_baseline(
        self,
        team_id: str,
        *,
        approver_ids: Sequence[str] = (),
        comment: str = "",
        request_id: str | None = None,
    ) -> session_pb2.Session:
        """Starts a baseline session for all (or the chosen) approvers (admin)."""
        request = team_service_pb2.StartTeamBaselineRequest(
            team_id=team_id,
            approver_ids=list(approver_ids),
            comment=comment,
            request_id=_request_id(request_id),
        )
        return (await self._call(self._teams.StartTeamBaseline, request)).session

    async def health_report(
        self,
        *,
        since: dt.timedelta = DEFAULT_SINCE,
        activity_window: dt.timedelta | None = None,
    ) -> HealthReport:
        """The health of every team (admin, auditors): teams at risk, inactive approvers, and
        per team the sessions created in the last `since` by outcome and its latest baseline's
        unanswered approvers. Composed from ListApprovalTeams, GetTeamHealth, ListSessions."""
        return await build_health_report(self, since=since, activity_window=activity_window)

    # -- ApproverService (approver credentials) ------------------------------------------------

    def list_invitations(
        self,
        *,
        state: team_pb2.Invitation.State.ValueType = team_pb2.Invitation.STATE_UNSPECIFIED,
        team_id: str = "",
        page_size: int = 0,
    ) -> AsyncIterator[team_pb2.Invitation]:
        """The calling approver's invitations, newest first."""
        request = approver_service_pb2.ListInvitationsRequest(
            state=state, team_id=team_id, page_size=page_size
        )
        return self._paged(self._approver.ListInvitations, request, lambda r: r.invitations)

    async def respond_to_invitation(
        self,
        invitation_id: str,
        accept: bool,
        key: Ed25519PrivateKey | None = None,
        *,
        request_id: str | None = None,
    ) -> approver_service_pb2.RespondToInvitationResponse:
        """Accepts (enrolling `key`'s public key, with a signature over the invitation id as
        proof of possession) or declines an invitation. The private key is used locally only."""
        request = approver_service_pb2.RespondToInvitationRequest(
            invitation_id=invitation_id, request_id=_request_id(request_id)
        )
        if accept:
            if key is None:
                raise ValueError("accepting an invitation needs the approver's private key")
            request.decision = approver_service_pb2.INVITATION_DECISION_ACCEPT
            request.public_key = keys.public_key_bytes(key)
            request.key_proof = keys.sign_invitation(key, invitation_id)
        else:
            request.decision = approver_service_pb2.INVITATION_DECISION_DECLINE
        return await self._call(self._approver.RespondToInvitation, request)

    def list_assigned_sessions(
        self,
        *,
        state: session_pb2.Session.State.ValueType = session_pb2.Session.STATE_UNSPECIFIED,
        awaiting_vote: bool = False,
        page_size: int = 0,
    ) -> AsyncIterator[session_pb2.Session]:
        """The sessions the calling approver is a frozen approver of, newest first."""
        request = approver_service_pb2.ListAssignedSessionsRequest(
            state=state, awaiting_vote=awaiting_vote, page_size=page_size
        )
        return self._paged(self._approver.ListAssignedSessions, request, lambda r: r.sessions)

    async def vote(
        self,
        session_id: str,
        approve: bool,
        *,
        signature: bytes,
        comment: str = "",
        request_id: str | None = None,
    ) -> session_pb2.Session:
        """Casts the calling approver's vote. `signature` is the Ed25519 signature over the
        session's vote digest with this decision (`keys.sign_vote`); see also `sign_and_vote`."""
        request = approver_service_pb2.VoteRequest(
            session_id=session_id,
            decision=session_pb2.VOTE_DECISION_APPROVE
            if approve
            else session_pb2.VOTE_DECISION_REJECT,
            comment=comment,
            signature=signature,
            request_id=_request_id(request_id),
        )
        return (await self._call(self._approver.Vote, request)).session

    async def sign_and_vote(
        self,
        session: session_pb2.Session,
        approve: bool,
        key: Ed25519PrivateKey,
        *,
        comment: str = "",
        request_id: str | None = None,
    ) -> session_pb2.Session:
        """Signs the vote digest of `session` (as fetched, and as shown to the approver) with
        `key`, locally, and casts the vote (docs/signed-votes.md)."""
        return await self.vote(
            session.session_id,
            approve,
            signature=keys.sign_vote(key, session, approve),
            comment=comment,
            request_id=request_id,
        )

    # -- VaultService --------------------------------------------------------------------------

    async def create_vault(
        self,
        name: str,
        *,
        min_retention_days: int,
        max_retention_days: int,
        tags: Mapping[str, str] | None = None,
        account_id: str = "",
        request_id: str | None = None,
    ) -> vault_pb2.Vault:
        """Creates a vault in the caller's account (account principals)."""
        request = vault_service_pb2.CreateVaultRequest(
            account_id=account_id,
            name=name,
            min_retention_days=min_retention_days,
            max_retention_days=max_retention_days,
            tags=dict(tags or {}),
            request_id=_request_id(request_id),
        )
        return (await self._call(self._vaults.CreateVault, request)).vault

    async def get_vault(self, vault_arn: str) -> vault_pb2.Vault:
        """One vault."""
        request = vault_service_pb2.GetVaultRequest(vault_arn=vault_arn)
        return (await self._call(self._vaults.GetVault, request)).vault

    def list_vaults(
        self, *, account_id: str = "", team_id: str = "", page_size: int = 0
    ) -> AsyncIterator[vault_pb2.Vault]:
        """The vaults the caller may see, ordered by ARN."""
        request = vault_service_pb2.ListVaultsRequest(
            account_id=account_id, team_id=team_id, page_size=page_size
        )
        return self._paged(self._vaults.ListVaults, request, lambda r: r.vaults)

    async def associate_team(
        self,
        vault_arn: str,
        team_id: str,
        *,
        comment: str = "",
        request_id: str | None = None,
    ) -> vault_service_pb2.AssociateApprovalTeamResponse:
        """Associates a team with a vault: at once the first time, else through a session."""
        request = vault_service_pb2.AssociateApprovalTeamRequest(
            vault_arn=vault_arn,
            team_id=team_id,
            comment=comment,
            request_id=_request_id(request_id),
        )
        return await self._call(self._vaults.AssociateApprovalTeam, request)

    async def disassociate_team(
        self, vault_arn: str, *, comment: str = "", request_id: str | None = None
    ) -> vault_service_pb2.DisassociateApprovalTeamResponse:
        """Opens a session, voted by the vault's team, that removes the association."""
        request = vault_service_pb2.DisassociateApprovalTeamRequest(
            vault_arn=vault_arn, comment=comment, request_id=_request_id(request_id)
        )
        return await self._call(self._vaults.DisassociateApprovalTeam, request)

    async def request_restore_access(
        self,
        vault_arn: str,
        *,
        restore_vault_name: str = "",
        comment: str = "",
        request_id: str | None = None,
    ) -> vault_service_pb2.RequestRestoreAccessResponse:
        """Requests restore access for the caller's account: a CREATING grant and a session."""
        request = vault_service_pb2.RequestRestoreAccessRequest(
            vault_arn=vault_arn,
            restore_vault_name=restore_vault_name,
            comment=comment,
            request_id=_request_id(request_id),
        )
        return await self._call(self._vaults.RequestRestoreAccess, request)

    def list_restore_access(
        self,
        *,
        vault_arn: str = "",
        state: vault_pb2.RestoreAccessGrant.State.ValueType = (
            vault_pb2.RestoreAccessGrant.STATE_UNSPECIFIED
        ),
        page_size: int = 0,
    ) -> AsyncIterator[vault_pb2.RestoreAccessGrant]:
        """The restore access grants the caller may see, newest first."""
        request = vault_service_pb2.ListRestoreAccessRequest(
            vault_arn=vault_arn, state=state, page_size=page_size
        )
        return self._paged(self._vaults.ListRestoreAccess, request, lambda r: r.grants)

    async def revoke_restore_access(
        self, grant_id: str, *, comment: str = "", request_id: str | None = None
    ) -> vault_service_pb2.RevokeRestoreAccessResponse:
        """Opens a session, voted by the vault's team, that revokes an AVAILABLE grant."""
        request = vault_service_pb2.RevokeRestoreAccessRequest(
            grant_id=grant_id, comment=comment, request_id=_request_id(request_id)
        )
        return await self._call(self._vaults.RevokeRestoreAccess, request)

    async def check_access(
        self, vault_arn: str, account_id: str
    ) -> vault_service_pb2.CheckAccessResponse:
        """Whether `account_id` may restore from the vault now, and through which grant."""
        request = vault_service_pb2.CheckAccessRequest(vault_arn=vault_arn, account_id=account_id)
        return await self._call(self._vaults.CheckAccess, request)

    # -- SessionService ------------------------------------------------------------------------

    async def start_session(
        self,
        team_id: str,
        action: str,
        protected_resource: str,
        *,
        metadata: Mapping[str, str] | None = None,
        comment: str = "",
        request_id: str | None = None,
    ) -> session_pb2.Session:
        """Starts a generic guarded session on a team shared with the calling service."""
        request = session_service_pb2.StartSessionRequest(
            team_id=team_id,
            action=action,
            protected_resource=protected_resource,
            metadata=dict(metadata or {}),
            comment=comment,
            request_id=_request_id(request_id),
        )
        return (await self._call(self._sessions.StartSession, request)).session

    async def get_session(self, session_id: str) -> session_pb2.Session:
        """One session, with its votes."""
        request = session_service_pb2.GetSessionRequest(session_id=session_id)
        return (await self._call(self._sessions.GetSession, request)).session

    def list_sessions(
        self,
        *,
        team_id: str = "",
        state: session_pb2.Session.State.ValueType = session_pb2.Session.STATE_UNSPECIFIED,
        kind: session_pb2.Session.Kind.ValueType = session_pb2.Session.KIND_UNSPECIFIED,
        action: str = "",
        protected_resource: str = "",
        requester_account_id: str = "",
        create_time_start: dt.datetime | None = None,
        create_time_end: dt.datetime | None = None,
        page_size: int = 0,
    ) -> AsyncIterator[session_pb2.Session]:
        """The sessions visible to the caller, newest first; filters combine with AND."""
        request = session_service_pb2.ListSessionsRequest(
            team_id=team_id,
            state=state,
            kind=kind,
            action=action,
            protected_resource=protected_resource,
            requester_account_id=requester_account_id,
            page_size=page_size,
        )
        if create_time_start is not None:
            request.create_time_start.CopyFrom(_timestamp(create_time_start))
        if create_time_end is not None:
            request.create_time_end.CopyFrom(_timestamp(create_time_end))
        return self._paged(self._sessions.ListSessions, request, lambda r: r.sessions)

    async def cancel_session(
        self, session_id: str, *, request_id: str | None = None
    ) -> session_pb2.Session:
        """Cancels a pending session (its requester or the admin)."""
        request = session_service_pb2.CancelSessionRequest(
            session_id=session_id, request_id=_request_id(request_id)
        )
        return (await self._call(self._sessions.CancelSession, request)).session

    async def complete_session(
        self,
        session_id: str,
        executed: bool,
        *,
        message: str = "",
        request_id: str | None = None,
    ) -> session_pb2.Session:
        """Reports the execution result of an approved generic session (its service)."""
        request = session_service_pb2.CompleteSessionRequest(
            session_id=session_id,
            execution_status=(
                session_pb2.Session.EXECUTION_STATUS_EXECUTED
                if executed
                else session_pb2.Session.EXECUTION_STATUS_FAILED
            ),
            message=message,
            request_id=_request_id(request_id),
        )
        return (await self._call(self._sessions.CompleteSession, request)).session

    async def watch_session(self, session_id: str) -> AsyncIterator[session_pb2.Session]:
        """The session now and after every change, until it is final.

        If the stream breaks (UNAVAILABLE/ABORTED) it is reopened; the state sent again on
        reopening is skipped when it equals the last one yielded.
        """
        last: session_pb2.Session | None = None
        async for message in self._stream(
            self._sessions.WatchSession,
            lambda: session_service_pb2.WatchSessionRequest(session_id=session_id),
        ):
            if last is not None and message.session == last:
                continue
            last = message.session
            yield message.session

    async def export_approval_proof(
        self, session_id: str
    ) -> session_service_pb2.ExportApprovalProofResponse:
        """A self-contained, offline-verifiable proof of an approved session."""
        request = session_service_pb2.ExportApprovalProofRequest(session_id=session_id)
        return await self._call(self._sessions.ExportApprovalProof, request)

    # -- AuditService --------------------------------------------------------------------------

    def list_events(
        self,
        *,
        type: str = "",
        actor: common_pb2.Principal | None = None,
        subject: str = "",
        start_time: dt.datetime | None = None,
        end_time: dt.datetime | None = None,
        after_seq: int = 0,
        page_size: int = 0,
    ) -> AsyncIterator[event_pb2.Event]:
        """Events in ascending seq order, filtered (admin, auditors)."""
        request = audit_service_pb2.ListEventsRequest(
            type=type, subject=subject, after_seq=after_seq, page_size=page_size
        )
        if actor is not None:
            request.actor.CopyFrom(actor)
        if start_time is not None:
            request.start_time.CopyFrom(_timestamp(start_time))
        if end_time is not None:
            request.end_time.CopyFrom(_timestamp(end_time))
        return self._paged(self._audit.ListEvents, request, lambda r: r.events)

    async def watch_events(self, after_seq: int = 0) -> AsyncIterator[event_pb2.Event]:
        """Events after `after_seq`, then live ones, each once; a broken stream is resumed from
        the last seq received."""
        last_seq = after_seq

        def request() -> audit_service_pb2.WatchEventsRequest:
            return audit_service_pb2.WatchEventsRequest(after_seq=last_seq)

        async for message in self._stream(self._audit.WatchEvents, request):
            if message.event.seq <= last_seq:
                continue
            last_seq = message.event.seq
            yield message.event

    async def verify_log(
        self,
        *,
        from_seq: int = 0,
        to_seq: int = 0,
        checkpoint: event_pb2.LogCheckpoint | None = None,
    ) -> audit_service_pb2.VerifyLogResponse:
        """Recomputes the hash chain over a range (and checks a saved checkpoint)."""
        request = audit_service_pb2.VerifyLogRequest(from_seq=from_seq, to_seq=to_seq)
        if checkpoint is not None:
            request.checkpoint.CopyFrom(checkpoint)
        return await self._call(self._audit.VerifyLog, request)

    async def get_log_checkpoint(self) -> event_pb2.LogCheckpoint:
        """The log's head, signed by the server's log key."""
        request = audit_service_pb2.GetLogCheckpointRequest()
        return (await self._call(self._audit.GetLogCheckpoint, request)).checkpoint

    # -- NotificationService (admin) -----------------------------------------------------------

    async def create_endpoint(
        self,
        url: str,
        *,
        description: str = "",
        slack: bool = False,
        event_kinds: Sequence[str] = (),
        enabled: bool = True,
        request_id: str | None = None,
    ) -> notification_service_pb2.CreateEndpointResponse:
        """A webhook endpoint; the response's `secret` is shown this once."""
        endpoint = notification_pb2.NotificationEndpoint(
            url=url,
            description=description,
            body_format=(
                notification_pb2.NotificationEndpoint.BODY_FORMAT_SLACK
                if slack
                else notification_pb2.NotificationEndpoint.BODY_FORMAT_STANDARD
            ),
            event_kinds=list(event_kinds),
            enabled=enabled,
        )
        request = notification_service_pb2.CreateEndpointRequest(
            endpoint=endpoint, request_id=_request_id(request_id)
        )
        return await self._call(self._notifications.CreateEndpoint, request)

    def list_endpoints(
        self, *, page_size: int = 0
    ) -> AsyncIterator[notification_pb2.NotificationEndpoint]:
        request = notification_service_pb2.ListEndpointsRequest(page_size=page_size)
        return self._paged(self._notifications.ListEndpoints, request, lambda r: r.endpoints)

    async def update_endpoint(
        self,
        endpoint: notification_pb2.NotificationEndpoint,
        paths: Sequence[str],
        *,
        request_id: str | None = None,
    ) -> notification_pb2.NotificationEndpoint:
        """Changes the fields named in `paths` to their values in `endpoint` (its etag is
        checked when set)."""
        request = notification_service_pb2.UpdateEndpointRequest(
            endpoint=endpoint,
            update_mask=field_mask_pb2.FieldMask(paths=list(paths)),
            request_id=_request_id(request_id),
        )
        return (await self._call(self._notifications.UpdateEndpoint, request)).endpoint

    async def delete_endpoint(
        self, endpoint_id: str, *, etag: str = "", request_id: str | None = None
    ) -> None:
        request = notification_service_pb2.DeleteEndpointRequest(
            endpoint_id=endpoint_id, etag=etag, request_id=_request_id(request_id)
        )
        await self._call(self._notifications.DeleteEndpoint, request)

    async def send_test_notification(
        self, endpoint_id: str, *, request_id: str | None = None
    ) -> str:
        """Queues a test notification; its id (the `webhook-id` the receiver will see)."""
        request = notification_service_pb2.SendTestNotificationRequest(
            endpoint_id=endpoint_id, request_id=_request_id(request_id)
        )
        return (await self._call(self._notifications.SendTestNotification, request)).notification_id

    def list_deliveries(
        self, *, target: str = "", state: int = 0, page_size: int = 0
    ) -> AsyncIterator[notification_pb2.Delivery]:
        """Notifications with their attempts, newest first."""
        request = notification_service_pb2.ListDeliveriesRequest(
            target=target,
            state=state,  # type: ignore[arg-type]
            page_size=page_size,
        )
        return self._paged(self._notifications.ListDeliveries, request, lambda r: r.deliveries)
