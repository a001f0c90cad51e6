"""Who may do what, asserted: every RPC called as every principal of the authorization table
(tests/e2e/authorization_table.py) against a real server (SQLite and PostgreSQL), each answer
compared with the table.

A world is built once per backend (module-scoped): the admin; accounts owner, recovery, other;
approvers member (and a second member) of an ACTIVE 2-of-2 team, a non-member; a service the
team is shared with and one without a share; an auditor. The team is shared with owner,
recovery and the service; owner's vault is guarded by it; recovery has an open restore session
on it and an AVAILABLE grant on another vault of owner; the service has an open generic session
and an APPROVED one.

Each cell is one test item. A call that succeeds and changes something gets a throwaway object
of its own (a fresh vault, session, team, grant...), so the world stays as described for every
other cell. Every refused call is checked to have left the database as it was: a digest of
every row of every table except the event log and the idempotency keys, read straight from the
database before and after the call. The log is checked on its own (docs/event-log.md): a call
refused with PERMISSION_DENIED or FAILED_PRECONDITION appends exactly one `call.denied` naming
the method, the caller and what the request named, and nothing else; any other refusal
(UNAUTHENTICATED above all: no credential names nobody) appends nothing; a call that succeeds
appends no `call.denied`.
"""

from __future__ import annotations

import asyncio
import hashlib
import secrets
from collections.abc import AsyncGenerator, AsyncIterator, Awaitable, Callable, Iterator
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import grpc
import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from e2e.authorization_table import CREDENTIALED, KEYS, OK, ROWS, Row
from google.protobuf import field_mask_pb2
from google.protobuf.message import Message
from sqlalchemy import func, inspect, select, text
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession

from airlock.v1 import (
    approver_service_pb2,
    approver_service_pb2_grpc,
    audit_service_pb2,
    audit_service_pb2_grpc,
    common_pb2,
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
    vault_service_pb2,
    vault_service_pb2_grpc,
)
from airlock_client import AirlockClient, generate_private_key, keys
from airlock_client.errors import AirlockError, PermissionDeniedError, from_rpc_error
from airlock_server.domain.events import CALL_DENIED
from airlock_server.persistence.db import create_engine
from airlock_server.persistence.models import EventRecord

if TYPE_CHECKING:  # the `server` fixture's type; a conftest is not importable at run time
    from e2e.conftest import ServerProcess

CALL_TIMEOUT = 20.0
STREAM_WAIT = 10.0
# The event log (checked event by event instead) and replay keys: not in the digest.
UNCOMPARED = frozenset({"events", "event_subjects", "log_head", "idempotency_keys"})
# The refusals the log records (docs/event-log.md, `call.denied`).
RECORDED = frozenset({"PERMISSION_DENIED", "FAILED_PRECONDITION"})
# How `call.denied` names what a request names: its id fields, and the same names as ErrorInfo
# metadata keys (lowerCamel: team_id -> teamId).
NAMED_BY_FIELD = {
    "team_id": "team:",
    "session_id": "session:",
    "grant_id": "grant:",
    "approver_id": "approver:",
    "credential_id": "credential:",
    "invitation_id": "invitation:",
    "account_id": "account:",
    "vault_arn": "",
    "protected_resource": "",
}
NAMED_BY_METADATA = {
    name.split("_")[0] + "".join(w.title() for w in name.split("_")[1:]): prefix
    for name, prefix in NAMED_BY_FIELD.items()
}
ACTIVE = team_pb2.ApprovalTeam.STATE_ACTIVE


def unique(prefix: str) -> str:
    return f"{prefix}-{secrets.token_hex(4)}"


def unique_account_id() -> str:
    return f"{secrets.randbelow(10**12):012d}"


# --- the world ------------------------------------------------------------------------------


@dataclass
class World:
    target: str
    tokens: dict[str, str]  # principal key -> token (no entry for "none")
    accounts: dict[str, str]  # owner / recovery / other -> account id
    approvers: dict[str, str]  # member / second / nonmember -> approver id
    keys: dict[str, Ed25519PrivateKey]  # member / second / nonmember -> private key
    services: dict[str, str]  # service / lone_service -> service name
    team_id: str = ""
    pending_team_id: str = ""
    pending_invitation_id: str = ""
    vault_arn: str = ""
    bare_vault_arn: str = ""
    restore_session_id: str = ""
    open_session: session_pb2.Session = field(default_factory=session_pb2.Session)
    approved_session_id: str = ""
    grant_id: str = ""
    spare_approver: str = ""
    spare_credential_id: str = ""
    endpoint_id: str = ""
    clients: dict[str, AirlockClient] = field(default_factory=dict)

    def actor(self, who: str) -> str:
        """How the log names the principal behind a column's credential."""
        if who == "admin":
            return "admin:bootstrap"  # what `airlock-server bootstrap` issues
        if who == "auditor":
            return "auditor:matrix"
        for kind, names in (
            ("account", self.accounts),
            ("approver", self.approvers),
            ("service", self.services),
        ):
            if who in names:
                return f"{kind}:{names[who]}"
        raise KeyError(who)

    def client(self, who: str) -> AirlockClient:
        if who not in self.clients:
            self.clients[who] = AirlockClient.connect(
                self.target, self.tokens[who], timeout=CALL_TIMEOUT
            )
        return self.clients[who]

    @property
    def admin(self) -> AirlockClient:
        return self.client("admin")

    # --- throwaway objects ------------------------------------------------------------------

    async def accept(self, approver: str, team_id: str) -> None:
        me = self.client(approver)
        async for invitation in me.list_invitations(team_id=team_id):
            await me.respond_to_invitation(invitation.invitation_id, True, self.keys[approver])

    async def endpoint(self) -> str:
        """A webhook endpoint that hears only test notifications (the server under test does
        not dispatch: its dispatcher waits an hour, so no delivery changes a table mid-cell)."""
        async with grpc.aio.insecure_channel(self.target) as channel:
            created = await notification_service_pb2_grpc.NotificationServiceStub(
                channel
            ).CreateEndpoint(
                N.CreateEndpointRequest(
                    endpoint=notification_pb2.NotificationEndpoint(
                        url="http://127.0.0.1:9/hook",
                        event_kinds=["notification.test"],
                        enabled=True,
                    )
                ),
                metadata=(("authorization", f"Bearer {self.tokens['admin']}"),),
                timeout=CALL_TIMEOUT,
            )
        return str(created.endpoint.endpoint_id)

    async def pending_team(self) -> tuple[str, str]:
        """A PENDING 2-of-2 team of the member and the second, and the member's invitation."""
        pair = [self.approvers["member"], self.approvers["second"]]
        team = await self.admin.create_team(unique("pending"), pair, 2)
        invitations = [
            i async for i in self.client("member").list_invitations(team_id=team.team_id)
        ]
        assert len(invitations) == 1
        return team.team_id, invitations[0].invitation_id

    async def active_team(self) -> str:
        team_id, _ = await self.pending_team()
        await self.accept("member", team_id)
        await self.accept("second", team_id)
        assert (await self.admin.get_team(team_id)).state == ACTIVE
        return team_id

    async def vault(self, *, associated: bool) -> str:
        owner = self.client("owner")
        vault = await owner.create_vault(
            unique("vault"), min_retention_days=7, max_retention_days=35
        )
        if associated:
            await owner.associate_team(vault.vault_arn, self.team_id)
        return vault.vault_arn

    async def restore_session(self) -> tuple[str, str]:
        """An open restore session of recovery on a fresh vault of owner: (session, grant)."""
        vault_arn = await self.vault(associated=True)
        answer = await self.client("recovery").request_restore_access(
            vault_arn, restore_vault_name=unique("restore")
        )
        return answer.session.session_id, answer.grant.grant_id

    async def generic_session(self) -> session_pb2.Session:
        return await self.client("service").start_session(
            self.team_id, "deploy", f"arn:aws:deploy:::{unique('app')}"
        )

    async def approve(self, session_id: str) -> None:
        for approver in ("member", "second"):
            me = self.client(approver)
            session = await me.get_session(session_id)
            await me.sign_and_vote(session, True, self.keys[approver])
        assert (
            await self.admin.get_session(session_id)
        ).state == session_pb2.Session.STATE_APPROVED

    async def approved_session(self) -> str:
        session = await self.generic_session()
        await self.approve(session.session_id)
        return session.session_id

    async def available_grant(self) -> str:
        session_id, grant_id = await self.restore_session()
        await self.approve(session_id)
        return grant_id


async def build_world(target: str, admin_token: str) -> World:
    world = World(
        target=target,
        tokens={"admin": admin_token},
        accounts={k: unique_account_id() for k in ("owner", "recovery", "other")},
        approvers={k: unique(k) for k in ("member", "second", "nonmember")},
        keys={k: generate_private_key() for k in ("member", "second", "nonmember")},
        services={k: unique(k.replace("_", "-")) for k in ("service", "lone_service")},
    )
    admin = world.admin
    for key, account_id in world.accounts.items():
        await admin.register_account(account_id, unique(key))
        world.tokens[key] = (await admin.issue_credential("account", account_id)).token
    for key, approver_id in world.approvers.items():
        await admin.create_approver(approver_id, display_name=key)
        world.tokens[key] = (await admin.issue_credential("approver", approver_id)).token
    for key, name in world.services.items():
        world.tokens[key] = (await admin.issue_credential("service", name)).token
    world.tokens["auditor"] = (await admin.issue_credential("auditor", "matrix")).token

    team = await admin.create_team(
        unique("guard"), [world.approvers["member"], world.approvers["second"]], 2
    )
    world.team_id = team.team_id
    await world.accept("member", team.team_id)
    await world.accept("second", team.team_id)
    assert (await admin.get_team(team.team_id)).state == ACTIVE
    for key in ("owner", "recovery"):
        await admin.share_team(team.team_id, account_id=world.accounts[key])
    await admin.share_team(team.team_id, service=world.services["service"])

    world.vault_arn = await world.vault(associated=True)
    world.bare_vault_arn = await world.vault(associated=False)
    answer = await world.client("recovery").request_restore_access(
        world.vault_arn, restore_vault_name=unique("restore")
    )
    world.restore_session_id = answer.session.session_id
    world.open_session = await world.generic_session()
    world.approved_session_id = await world.approved_session()
    world.grant_id = await world.available_grant()
    world.pending_team_id, world.pending_invitation_id = await world.pending_team()
    world.spare_approver = unique("spare")
    await admin.create_approver(world.spare_approver, display_name="spare")
    spare = await admin.issue_credential("service", unique("spare"))
    world.spare_credential_id = spare.credential.credential_id
    world.endpoint_id = await world.endpoint()
    return world


# --- one valid request per row, aimed at the world (or at a throwaway object when it succeeds) -

Build = Callable[[World, str, bool], Awaitable[Message]]


def _principal(kind: int, subject: str) -> common_pb2.Principal:
    return common_pb2.Principal(kind=kind, subject=subject)  # type: ignore[arg-type]


def _key(w: World, who: str) -> Ed25519PrivateKey:
    """The caller's own key when it is an approver; otherwise the member's (a well-formed
    request someone else signed: it must be refused all the same)."""
    return w.keys.get(who, w.keys["member"])


async def _update_team(w: World, who: str, ok: bool) -> Message:
    return team_service_pb2.UpdateApprovalTeamRequest(
        team_id=await w.active_team() if ok else w.team_id,
        description="changed",
        update_mask=field_mask_pb2.FieldMask(paths=["description"]),
    )


async def _share(w: World, who: str, ok: bool) -> Message:
    subject = unique("shared") if ok else w.services["lone_service"]
    return team_service_pb2.ShareTeamRequest(
        team_id=w.team_id, principal=_principal(common_pb2.PRINCIPAL_KIND_SERVICE, subject)
    )


async def _unshare(w: World, who: str, ok: bool) -> Message:
    subject = w.services["service"]
    if ok:
        subject = unique("unshared")
        await w.admin.share_team(w.team_id, service=subject)
    return team_service_pb2.UnshareTeamRequest(
        team_id=w.team_id, principal=_principal(common_pb2.PRINCIPAL_KIND_SERVICE, subject)
    )


async def _respond(w: World, who: str, ok: bool) -> Message:
    invitation_id = (await w.pending_team())[1] if ok else w.pending_invitation_id
    key = _key(w, who)
    return approver_service_pb2.RespondToInvitationRequest(
        invitation_id=invitation_id,
        decision=approver_service_pb2.INVITATION_DECISION_ACCEPT,
        public_key=keys.public_key_bytes(key),
        key_proof=keys.sign_invitation(key, invitation_id),
    )


async def _vote(w: World, who: str, ok: bool) -> Message:
    session = await w.generic_session() if ok else w.open_session
    return approver_service_pb2.VoteRequest(
        session_id=session.session_id,
        decision=session_pb2.VOTE_DECISION_APPROVE,
        signature=keys.sign_vote(_key(w, who), session, True),
    )


async def _cancel_restore(w: World, who: str, ok: bool) -> Message:
    session_id = (await w.restore_session())[0] if ok else w.restore_session_id
    return session_service_pb2.CancelSessionRequest(session_id=session_id)


async def _cancel_generic(w: World, who: str, ok: bool) -> Message:
    session_id = (await w.generic_session()).session_id if ok else w.open_session.session_id
    return session_service_pb2.CancelSessionRequest(session_id=session_id)


async def _complete(w: World, who: str, ok: bool) -> Message:
    return session_service_pb2.CompleteSessionRequest(
        session_id=await w.approved_session() if ok else w.approved_session_id,
        execution_status=session_pb2.Session.EXECUTION_STATUS_EXECUTED,
        message="done",
    )


async def _restore(w: World, who: str, ok: bool) -> Message:
    return vault_service_pb2.RequestRestoreAccessRequest(
        vault_arn=await w.vault(associated=True) if ok else w.vault_arn,
        restore_vault_name=unique("restore"),
    )


async def _revoke(w: World, who: str, ok: bool) -> Message:
    return vault_service_pb2.RevokeRestoreAccessRequest(
        grant_id=await w.available_grant() if ok else w.grant_id, comment="revoke"
    )


async def _disable(w: World, who: str, ok: bool) -> Message:
    approver_id = w.spare_approver
    if ok:
        approver_id = unique("disable")
        await w.admin.create_approver(approver_id, display_name="disable")
    return identity_service_pb2.DisableApproverRequest(approver_id=approver_id)


async def _revoke_credential(w: World, who: str, ok: bool) -> Message:
    credential_id = w.spare_credential_id
    if ok:
        credential_id = (
            await w.admin.issue_credential("service", unique("revoke"))
        ).credential.credential_id
    return identity_service_pb2.RevokeCredentialRequest(credential_id=credential_id)


def _plain(make: Callable[[World, str], Message]) -> Build:
    async def build(w: World, who: str, ok: bool) -> Message:
        return make(w, who)

    return build


def _fresh(make: Callable[[World, bool], Awaitable[Message]]) -> Build:
    async def build(w: World, who: str, ok: bool) -> Message:
        return await make(w, ok)

    return build


async def _start_deletion(w: World, ok: bool) -> Message:
    return team_service_pb2.StartTeamDeletionRequest(
        team_id=await w.active_team() if ok else w.team_id
    )


async def _delete_inactive(w: World, ok: bool) -> Message:
    return team_service_pb2.DeleteInactiveTeamRequest(
        team_id=(await w.pending_team())[0] if ok else w.pending_team_id
    )


async def _invitation_link(w: World, ok: bool) -> Message:
    return team_service_pb2.IssueInvitationLinkRequest(
        invitation_id=(await w.pending_team())[1] if ok else w.pending_invitation_id
    )


async def _associate(w: World, ok: bool) -> Message:
    return vault_service_pb2.AssociateApprovalTeamRequest(
        vault_arn=await w.vault(associated=False) if ok else w.bare_vault_arn, team_id=w.team_id
    )


async def _disassociate(w: World, ok: bool) -> Message:
    return vault_service_pb2.DisassociateApprovalTeamRequest(
        vault_arn=await w.vault(associated=True) if ok else w.vault_arn
    )


async def _delete_endpoint(w: World, ok: bool) -> Message:
    return notification_service_pb2.DeleteEndpointRequest(
        endpoint_id=await w.endpoint() if ok else w.endpoint_id
    )


I = identity_service_pb2  # noqa: E741
T = team_service_pb2
S = session_service_pb2
V = vault_service_pb2
A = approver_service_pb2
L = audit_service_pb2
N = notification_service_pb2
RESTORE = "GetSession[the-restore-session]"

BUILDERS: dict[str, Build] = {
    "WhoAmI": _plain(lambda w, who: I.WhoAmIRequest()),
    "CreateApprover[a-new-approver-id]": _plain(
        lambda w, who: I.CreateApproverRequest(approver_id=unique("new"), display_name="new")
    ),
    "GetApprover[the-member-approver]": _plain(
        lambda w, who: I.GetApproverRequest(approver_id=w.approvers["member"])
    ),
    "ListApprovers": _plain(lambda w, who: I.ListApproversRequest()),
    "DisableApprover[a-spare-approver]": _disable,
    "RegisterAccount[a-new-account-id]": _plain(
        lambda w, who: I.RegisterAccountRequest(account_id=unique_account_id(), name="new")
    ),
    "ListAccounts": _plain(lambda w, who: I.ListAccountsRequest()),
    "IssueCredential[a-new-service-credential]": _plain(
        lambda w, who: I.IssueCredentialRequest(
            principal=_principal(common_pb2.PRINCIPAL_KIND_SERVICE, unique("issued"))
        )
    ),
    "RevokeCredential[a-spare-credential]": _revoke_credential,
    "ListCredentials": _plain(lambda w, who: I.ListCredentialsRequest()),
    "CreateApprovalTeam[a-new-team-of-the-member]": _plain(
        lambda w, who: T.CreateApprovalTeamRequest(
            name=unique("new"),
            approver_ids=[w.approvers["member"], w.approvers["second"]],
            min_approvals=2,
        )
    ),
    "GetApprovalTeam[the-shared-team]": _plain(
        lambda w, who: T.GetApprovalTeamRequest(team_id=w.team_id)
    ),
    "ListApprovalTeams": _plain(lambda w, who: T.ListApprovalTeamsRequest()),
    "UpdateApprovalTeam[an-ACTIVE-team]": _update_team,
    "StartTeamDeletion[an-ACTIVE-team]": _fresh(_start_deletion),
    "DeleteInactiveTeam[a-PENDING-team]": _fresh(_delete_inactive),
    "ShareTeam[the-shared-team,-with-a-service]": _share,
    "UnshareTeam[the-shared-team,-from-a-service]": _unshare,
    "ListTeamShares[the-shared-team]": _plain(
        lambda w, who: T.ListTeamSharesRequest(team_id=w.team_id)
    ),
    "GetTeamHealth[the-shared-team]": _plain(
        lambda w, who: T.GetTeamHealthRequest(team_id=w.team_id)
    ),
    "IssueInvitationLink[the-members-invitation-to-a-PENDING-team]": _fresh(_invitation_link),
    "StartTeamBaseline[the-shared-team]": _plain(
        lambda w, who: T.StartTeamBaselineRequest(team_id=w.team_id, comment="baseline")
    ),
    "StartSession[the-shared-team]": _plain(
        lambda w, who: S.StartSessionRequest(
            team_id=w.team_id, action="deploy", protected_resource=f"arn:x:::{unique('app')}"
        )
    ),
    RESTORE: _plain(lambda w, who: S.GetSessionRequest(session_id=w.restore_session_id)),
    "GetSession[the-services-session]": _plain(
        lambda w, who: S.GetSessionRequest(session_id=w.open_session.session_id)
    ),
    "ListSessions": _plain(lambda w, who: S.ListSessionsRequest()),
    "CancelSession[a-restore-session]": _cancel_restore,
    "CancelSession[a-services-session]": _cancel_generic,
    "CompleteSession[an-APPROVED-services-session]": _complete,
    "WatchSession[the-restore-session]": _plain(
        lambda w, who: S.WatchSessionRequest(session_id=w.restore_session_id)
    ),
    "WatchSession[the-services-session]": _plain(
        lambda w, who: S.WatchSessionRequest(session_id=w.open_session.session_id)
    ),
    "ExportApprovalProof[an-APPROVED-services-session]": _plain(
        lambda w, who: S.ExportApprovalProofRequest(session_id=w.approved_session_id)
    ),
    "CreateVault[a-new-vault-in-owners-account]": _plain(
        lambda w, who: V.CreateVaultRequest(
            account_id=w.accounts["owner"],
            name=unique("vault"),
            min_retention_days=7,
            max_retention_days=35,
        )
    ),
    "GetVault[owners-vault]": _plain(lambda w, who: V.GetVaultRequest(vault_arn=w.vault_arn)),
    "ListVaults[owners-account]": _plain(
        lambda w, who: V.ListVaultsRequest(account_id=w.accounts["owner"])
    ),
    "AssociateApprovalTeam[a-vault-of-owner-without-a-team,-the-shared-team]": _fresh(_associate),
    "DisassociateApprovalTeam[a-vault-of-owner-guarded-by-the-shared-team]": _fresh(_disassociate),
    "RequestRestoreAccess[a-vault-of-owner-guarded-by-the-shared-team]": _restore,
    "ListRestoreAccess[owners-vault]": _plain(
        lambda w, who: V.ListRestoreAccessRequest(vault_arn=w.vault_arn)
    ),
    "RevokeRestoreAccess[an-AVAILABLE-grant-of-recovery-on-a-vault-of-owner]": _revoke,
    "CheckAccess[owners-vault,-for-recovery]": _plain(
        lambda w, who: V.CheckAccessRequest(
            vault_arn=w.vault_arn, account_id=w.accounts["recovery"]
        )
    ),
    "ListInvitations": _plain(lambda w, who: A.ListInvitationsRequest()),
    "RespondToInvitation[the-members-invitation-to-a-PENDING-team]": _respond,
    "ListAssignedSessions": _plain(lambda w, who: A.ListAssignedSessionsRequest()),
    "Vote[a-services-open-session,-APPROVE,-signed]": _vote,
    "ListEvents": _plain(lambda w, who: L.ListEventsRequest()),
    "WatchEvents": _plain(lambda w, who: L.WatchEventsRequest()),
    "VerifyLog": _plain(lambda w, who: L.VerifyLogRequest()),
    "GetLogCheckpoint": _plain(lambda w, who: L.GetLogCheckpointRequest()),
    "CreateEndpoint[a-new-webhook-endpoint]": _plain(
        lambda w, who: N.CreateEndpointRequest(
            endpoint=notification_pb2.NotificationEndpoint(
                url=f"https://hooks.example/{unique('new')}", event_kinds=["notification.test"]
            )
        )
    ),
    "ListEndpoints": _plain(lambda w, who: N.ListEndpointsRequest()),
    "UpdateEndpoint[the-webhook-endpoint]": _plain(
        lambda w, who: N.UpdateEndpointRequest(
            endpoint=notification_pb2.NotificationEndpoint(
                endpoint_id=w.endpoint_id, description=unique("described")
            ),
            update_mask=field_mask_pb2.FieldMask(paths=["description"]),
        )
    ),
    "DeleteEndpoint[a-spare-webhook-endpoint]": _fresh(_delete_endpoint),
    "SendTestNotification[the-webhook-endpoint]": _plain(
        lambda w, who: N.SendTestNotificationRequest(endpoint_id=w.endpoint_id)
    ),
    "ListDeliveries": _plain(lambda w, who: N.ListDeliveriesRequest()),
}

STUBS: dict[str, Callable[[grpc.aio.Channel], Any]] = {
    "IdentityService": identity_service_pb2_grpc.IdentityServiceStub,
    "TeamService": team_service_pb2_grpc.TeamServiceStub,
    "SessionService": session_service_pb2_grpc.SessionServiceStub,
    "VaultService": vault_service_pb2_grpc.VaultServiceStub,
    "ApproverService": approver_service_pb2_grpc.ApproverServiceStub,
    "AuditService": audit_service_pb2_grpc.AuditServiceStub,
    "NotificationService": notification_service_pb2_grpc.NotificationServiceStub,
}


# --- the database, straight --------------------------------------------------------------------


async def digest(engine: AsyncEngine) -> dict[str, str]:
    """Per compared table: its row count and a hash of all its rows (order-independent)."""
    async with engine.connect() as conn:
        names = await conn.run_sync(lambda sync: inspect(sync).get_table_names())
        out: dict[str, str] = {}
        for name in sorted(set(names) - UNCOMPARED):
            rows = (await conn.execute(text(f'SELECT * FROM "{name}"'))).all()
            blob = "\n".join(sorted(repr(tuple(r)) for r in rows)).encode()
            out[name] = f"{len(rows)}:{hashlib.sha256(blob).hexdigest()}"
    return out


async def log_head(engine: AsyncEngine) -> int:
    async with AsyncSession(engine) as s:
        return int(await s.scalar(select(func.coalesce(func.max(EventRecord.seq), 0))) or 0)


async def events_after(engine: AsyncEngine, seq: int) -> list[EventRecord]:
    async with AsyncSession(engine) as s:
        query = select(EventRecord).where(EventRecord.seq > seq).order_by(EventRecord.seq)
        return list(await s.scalars(query))


def named_subjects(request: Message, metadata: dict[str, str]) -> set[str]:
    """What a refused request named, spelled as `call.denied` subjects."""
    named = set()
    for name, prefix in NAMED_BY_FIELD.items():
        value = getattr(request, name, None)
        if isinstance(value, str) and value:
            named.add(prefix + value)
    for key, prefix in NAMED_BY_METADATA.items():
        if metadata.get(key):
            named.add(prefix + metadata[key])
    return named


# --- running it --------------------------------------------------------------------------------


@dataclass
class Matrix:
    runner: asyncio.Runner
    world: World
    channel: grpc.aio.Channel
    engine: AsyncEngine

    async def call(self, row: Row, who: str, request: Message) -> tuple[str, AirlockError | None]:
        method = getattr(STUBS[row.service](self.channel), row.rpc)
        token = self.world.tokens.get(who)
        metadata = (("authorization", f"Bearer {token}"),) if token else ()
        try:
            if row.stream:
                stream = method(request, metadata=metadata, timeout=CALL_TIMEOUT)
                try:
                    first = await asyncio.wait_for(stream.read(), STREAM_WAIT)
                finally:
                    stream.cancel()
                assert first is not grpc.aio.EOF, f"{row.rpc} ended without a message"
            else:
                await method(request, metadata=metadata, timeout=CALL_TIMEOUT)
        except grpc.aio.AioRpcError as exc:
            return str(exc.code().name), from_rpc_error(exc)
        return OK, None

    async def cell(self, row: Row, who: str) -> None:
        expected = row.answers[who]
        request = await BUILDERS[row.id](self.world, who, expected == OK)
        compare = expected != OK or row.mutates
        before = await digest(self.engine) if compare else {}
        head = await log_head(self.engine)
        answer, error = await self.call(row, who, request)
        assert answer == expected, f"{row.rpc} ({row.target}) as {who}"
        self.check_log(row, who, request, error, await events_after(self.engine, head))
        if compare:
            after = await digest(self.engine)
            changed = sorted(t for t in before if before[t] != after.get(t))
            if expected == OK:
                # The digest sees what a call changes (else the refusals prove nothing).
                assert changed, f"{row.rpc} as {who} succeeded and changed nothing"
            else:
                assert before == after, f"refused {row.rpc} as {who} changed tables {changed}"

    def check_log(
        self,
        row: Row,
        who: str,
        request: Message,
        error: AirlockError | None,
        appended: list[EventRecord],
    ) -> None:
        expected = row.answers[who]
        denials = [e for e in appended if e.type == CALL_DENIED]
        if expected == OK:
            assert denials == [], f"{row.rpc} as {who} succeeded and recorded a denial"
            return
        assert error is not None
        if expected not in RECORDED or who not in CREDENTIALED:
            assert appended == [], f"{row.rpc} as {who}: {expected} must append nothing"
            return
        what = f"refused {row.rpc} as {who}"
        # The refused change rolled back: its denial is all the call appended, once.
        assert [e.type for e in appended] == [CALL_DENIED], what
        (denial,) = appended
        assert denial.actor == self.world.actor(who), what
        assert denial.details == {
            "method": f"/airlock.v1.{row.service}/{row.rpc}",
            "code": expected,
            "reason": error.reason,
        }, what
        assert len(set(denial.subjects)) == len(denial.subjects), what
        assert set(denial.subjects) == named_subjects(request, error.metadata), what

    async def refused_stream(self, who: str, rpc: str) -> None:
        """A refused server stream, through the SDK: the refusal arrives with the first read,
        and an auditor reading the log finds its one `call.denied`."""
        w = self.world
        head = await log_head(self.engine)
        me = w.client(who)
        stream: AsyncIterator[Message] = (
            me.watch_session(w.restore_session_id)
            if rpc == "WatchSession"
            else me.watch_events(after_seq=head)
        )
        try:
            with pytest.raises(PermissionDeniedError) as refused:
                await asyncio.wait_for(anext(stream), STREAM_WAIT)
        finally:
            if isinstance(stream, AsyncGenerator):
                await stream.aclose()
        appended = [e async for e in w.client("auditor").list_events(after_seq=head)]
        assert [e.type for e in appended] == [CALL_DENIED]
        (denial,) = appended
        kind, _, subject = w.actor(who).partition(":")
        assert (denial.actor.kind, denial.actor.subject) == (
            common_pb2.PrincipalKind.Value(f"PRINCIPAL_KIND_{kind.upper()}"),
            subject,
        )
        service = "SessionService" if rpc == "WatchSession" else "AuditService"
        assert dict(denial.details) == {
            "method": f"/airlock.v1.{service}/{rpc}",
            "code": "PERMISSION_DENIED",
            "reason": refused.value.reason,
        }
        named = [f"session:{w.restore_session_id}"] if rpc == "WatchSession" else []
        assert list(denial.subjects) == named


@pytest.fixture(scope="module")
def matrix(server: ServerProcess) -> Iterator[Matrix]:
    with asyncio.Runner() as runner:
        world = runner.run(build_world(server.target, server.admin_token))
        channel = grpc.aio.insecure_channel(server.target)
        engine = create_engine(server.database_url, pool_size=1)
        try:
            yield Matrix(runner, world, channel, engine)
        finally:
            runner.run(engine.dispose())
            runner.run(channel.close())
            for client in world.clients.values():
                runner.run(client.close())


def _cells() -> Iterator[Any]:
    for row in ROWS:
        for who in KEYS:
            yield pytest.param(row, who, id=f"{row.id}-{who}")


def test_the_builders_match_the_table() -> None:
    assert sorted(BUILDERS) == sorted(r.id for r in ROWS)


@pytest.mark.parametrize(("row", "who"), list(_cells()))
def test_authorization(matrix: Matrix, row: Row, who: str) -> None:
    matrix.runner.run(matrix.cell(row, who))


@pytest.mark.parametrize(
    ("who", "rpc"),
    [("nonmember", "WatchSession"), ("member", "WatchEvents")],
    ids=["WatchSession-as-a-non-member", "WatchEvents-as-an-approver"],
)
def test_a_refused_stream_is_recorded_once(matrix: Matrix, who: str, rpc: str) -> None:
    matrix.runner.run(matrix.refused_stream(who, rpc))
