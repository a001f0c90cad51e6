"""The generated stubs over a real connection: every refusal of the foundation issue, the
google.rpc.Status details, a real answer from every RPC of the contract, and request_id retries.

Each refusal is checked twice: the code and ErrorInfo that come back, and that the server's state
(listed by the admin) is the same before and after.
"""

from __future__ import annotations

import asyncio
import importlib
import secrets
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from types import ModuleType
from typing import TYPE_CHECKING, Any

import grpc
import pytest
import pytest_asyncio
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat
from google.protobuf import duration_pb2, message_factory, timestamp_pb2
from google.protobuf.descriptor import ServiceDescriptor
from google.rpc import error_details_pb2, status_pb2
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_status import rpc_status

from airlock.v1 import (
    approver_service_pb2,
    approver_service_pb2_grpc,
    audit_service_pb2,
    audit_service_pb2_grpc,
    common_pb2,
    errors_pb2,
    identity_service_pb2,
    identity_service_pb2_grpc,
    session_service_pb2_grpc,
    team_pb2,
    team_service_pb2,
    team_service_pb2_grpc,
    vault_service_pb2_grpc,
)
from airlock_server.transport.server import SERVICE_NAMES as SERVER_SERVICES

if TYPE_CHECKING:  # the `server` fixture's type; a conftest is not importable at run time
    from e2e.conftest import ServerProcess

pytestmark = pytest.mark.asyncio

TIMEOUT = 30.0
Metadata = tuple[tuple[str, str], ...]
Code = grpc.StatusCode


PROTO = Path(__file__).resolve().parents[2] / "proto"


def _contract() -> list[tuple[ModuleType, ServiceDescriptor]]:
    """Every service declared in proto/, with the generated module that holds its stub."""
    found = []
    for path in sorted(PROTO.rglob("*.proto")):
        name = ".".join(path.relative_to(PROTO).with_suffix("").parts)
        module = importlib.import_module(f"{name}_pb2")
        for service in module.DESCRIPTOR.services_by_name.values():
            found.append((importlib.import_module(f"{name}_pb2_grpc"), service))
    return found


CONTRACT = _contract()
SERVICES = {service.name: service for _, service in CONTRACT}
REQUEST_CLASSES: dict[str, Any] = {
    method.input_type.full_name: message_factory.GetMessageClass(method.input_type)
    for service in SERVICES.values()
    for method in service.methods
}
# What an ErrorInfo.reason may be: a name of the contract's catalogue.
REASONS = frozenset(errors_pb2.ErrorReason.keys()) - {"ERROR_REASON_UNSPECIFIED"}


def unique(prefix: str) -> str:
    return f"{prefix}-{secrets.token_hex(4)}"


def unique_account_id() -> str:
    return f"{secrets.randbelow(10**12):012d}"


def auth(token: str | None) -> Metadata:
    return (("authorization", f"Bearer {token}"),) if token is not None else ()


# --- decoding a refusal ---------------------------------------------------------------------


@dataclass(frozen=True)
class Refusal:
    code: grpc.StatusCode
    message: str
    info: error_details_pb2.ErrorInfo
    fields: tuple[str, ...]


def decode(error: grpc.aio.AioRpcError) -> Refusal:
    """The google.rpc.Status in the trailers: exactly one ErrorInfo, maybe a BadRequest."""
    status: status_pb2.Status | None = rpc_status.from_call(error)
    assert status is not None, f"no google.rpc.Status in {error.code()}: {error.details()}"
    assert status.code == error.code().value[0]
    infos: list[error_details_pb2.ErrorInfo] = []
    fields: list[str] = []
    for detail in status.details:
        if detail.Is(error_details_pb2.ErrorInfo.DESCRIPTOR):
            info = error_details_pb2.ErrorInfo()
            detail.Unpack(info)
            infos.append(info)
        elif detail.Is(error_details_pb2.BadRequest.DESCRIPTOR):
            bad = error_details_pb2.BadRequest()
            detail.Unpack(bad)
            fields.extend(v.field for v in bad.field_violations)
    assert len(infos) == 1, status
    assert infos[0].domain == "airlock"
    assert infos[0].reason, status
    return Refusal(error.code(), status.message, infos[0], tuple(fields))


async def refused(call: Awaitable[Any]) -> Refusal:
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await call
    return decode(caught.value)


# --- the stubs and a small world of identities ----------------------------------------------


class Stubs:
    def __init__(self, channel: grpc.aio.Channel) -> None:
        self.identity = identity_service_pb2_grpc.IdentityServiceStub(channel)
        self.teams = team_service_pb2_grpc.TeamServiceStub(channel)
        self.approver = approver_service_pb2_grpc.ApproverServiceStub(channel)
        self.vaults = vault_service_pb2_grpc.VaultServiceStub(channel)
        self.sessions = session_service_pb2_grpc.SessionServiceStub(channel)
        self.audit = audit_service_pb2_grpc.AuditServiceStub(channel)


@dataclass
class World:
    """Three approvers with credentials and keys, an account, a service, an auditor, and a
    PENDING 2-of-3 team of the three; every name is this test's own."""

    admin: str
    approvers: list[str]
    approver_tokens: dict[str, str]
    approver_keys: dict[str, Ed25519PrivateKey]
    account_id: str
    tokens: dict[str, str]  # by principal kind: account, approver, service, auditor
    credential_ids: dict[str, str]
    team_id: str


@pytest_asyncio.fixture
async def stubs(server: ServerProcess) -> AsyncIterator[Stubs]:
    async with server.channel() as channel:
        yield Stubs(channel)


async def issue(
    stubs: Stubs, admin: str, kind: common_pb2.PrincipalKind.ValueType, subject: str, **extra: Any
) -> identity_service_pb2.IssueCredentialResponse:
    return await stubs.identity.IssueCredential(
        identity_service_pb2.IssueCredentialRequest(
            principal=common_pb2.Principal(kind=kind, subject=subject), **extra
        ),
        metadata=auth(admin),
        timeout=TIMEOUT,
    )


async def create_team(
    stubs: Stubs, admin: str, approvers: list[str], request_id: str = ""
) -> team_pb2.ApprovalTeam:
    response = await stubs.teams.CreateApprovalTeam(
        team_service_pb2.CreateApprovalTeamRequest(
            name=unique("team"),
            approver_ids=approvers,
            min_approvals=2,
            request_id=request_id,
        ),
        metadata=auth(admin),
        timeout=TIMEOUT,
    )
    return response.team


@pytest_asyncio.fixture
async def world(server: ServerProcess, stubs: Stubs) -> World:
    admin = server.admin_token
    approvers = [unique(name) for name in ("alice", "bob", "carol")]
    tokens: dict[str, str] = {}
    approver_tokens: dict[str, str] = {}
    credential_ids: dict[str, str] = {}
    for approver_id in approvers:
        await stubs.identity.CreateApprover(
            identity_service_pb2.CreateApproverRequest(
                approver_id=approver_id, display_name=approver_id
            ),
            metadata=auth(admin),
            timeout=TIMEOUT,
        )
        issued = await issue(stubs, admin, common_pb2.PRINCIPAL_KIND_APPROVER, approver_id)
        approver_tokens[approver_id] = issued.token
    tokens["approver"] = approver_tokens[approvers[0]]
    account_id = unique_account_id()
    await stubs.identity.RegisterAccount(
        identity_service_pb2.RegisterAccountRequest(account_id=account_id, name=unique("acct")),
        metadata=auth(admin),
        timeout=TIMEOUT,
    )
    for kind_name, kind, subject in (
        ("account", common_pb2.PRINCIPAL_KIND_ACCOUNT, account_id),
        ("service", common_pb2.PRINCIPAL_KIND_SERVICE, unique("svc")),
        ("auditor", common_pb2.PRINCIPAL_KIND_AUDITOR, ""),
    ):
        issued = await issue(stubs, admin, kind, subject)
        tokens[kind_name] = issued.token
        credential_ids[kind_name] = issued.credential.credential_id
    team = await create_team(stubs, admin, approvers)
    assert team.state == team_pb2.ApprovalTeam.STATE_PENDING
    return World(
        admin,
        approvers,
        approver_tokens,
        {a: Ed25519PrivateKey.generate() for a in approvers},
        account_id,
        tokens,
        credential_ids,
        team.team_id,
    )


async def snapshot(stubs: Stubs, world: World) -> dict[str, Any]:
    """What the admin can list, page after page, in a form that compares."""
    md = auth(world.admin)

    async def pages(
        fetch: Callable[[str], Awaitable[Any]], items: Callable[[Any], Any]
    ) -> list[Any]:
        out: list[Any] = []
        token = ""
        while True:
            response = await fetch(token)
            out.extend(items(response))
            token = response.next_page_token
            if not token:
                return out

    approvers = await pages(
        lambda t: stubs.identity.ListApprovers(
            identity_service_pb2.ListApproversRequest(page_token=t), metadata=md, timeout=TIMEOUT
        ),
        lambda r: [a.SerializeToString(deterministic=True) for a in r.approvers],
    )
    accounts = await pages(
        lambda t: stubs.identity.ListAccounts(
            identity_service_pb2.ListAccountsRequest(page_token=t), metadata=md, timeout=TIMEOUT
        ),
        lambda r: [a.SerializeToString(deterministic=True) for a in r.accounts],
    )
    credentials = await pages(
        lambda t: stubs.identity.ListCredentials(
            identity_service_pb2.ListCredentialsRequest(page_token=t),
            metadata=md,
            timeout=TIMEOUT,
        ),
        lambda r: [(c.credential_id, c.state, c.revoke_time.seconds) for c in r.credentials],
    )
    teams = await pages(
        lambda t: stubs.teams.ListApprovalTeams(
            team_service_pb2.ListApprovalTeamsRequest(page_token=t), metadata=md, timeout=TIMEOUT
        ),
        lambda r: [
            (
                t.team_id,
                t.state,
                t.status_code,
                t.version,
                tuple((a.approver_id, a.invitation_state, a.public_key) for a in t.approvers),
            )
            for t in r.teams
        ],
    )
    shares = await pages(
        lambda t: stubs.teams.ListTeamShares(
            team_service_pb2.ListTeamSharesRequest(team_id=world.team_id, page_token=t),
            metadata=md,
            timeout=TIMEOUT,
        ),
        lambda r: [(s.principal.kind, s.principal.subject) for s in r.shares],
    )
    return {
        "approvers": approvers,
        "accounts": accounts,
        "credentials": credentials,
        "teams": teams,
        "shares": shares,
    }


async def invitations(stubs: Stubs, token: str, team_id: str) -> list[team_pb2.Invitation]:
    response = await stubs.approver.ListInvitations(
        approver_service_pb2.ListInvitationsRequest(team_id=team_id),
        metadata=auth(token),
        timeout=TIMEOUT,
    )
    return list(response.invitations)


def key_material(key: Ed25519PrivateKey, invitation_id: str) -> tuple[bytes, bytes]:
    public = key.public_key().public_bytes(Encoding.Raw, PublicFormat.Raw)
    return public, key.sign(invitation_id.encode())


# --- UNAUTHENTICATED ------------------------------------------------------------------------


async def test_no_token_and_a_bad_token_are_unauthenticated(stubs: Stubs, world: World) -> None:
    before = await snapshot(stubs, world)
    for token in (None, "", "alk_" + secrets.token_urlsafe(32), "not even a token"):
        for call in (
            stubs.identity.WhoAmI(
                identity_service_pb2.WhoAmIRequest(), metadata=auth(token), timeout=TIMEOUT
            ),
            stubs.identity.CreateApprover(
                identity_service_pb2.CreateApproverRequest(approver_id=unique("x")),
                metadata=auth(token),
                timeout=TIMEOUT,
            ),
            stubs.teams.DeleteInactiveTeam(
                team_service_pb2.DeleteInactiveTeamRequest(team_id=world.team_id),
                metadata=auth(token),
                timeout=TIMEOUT,
            ),
        ):
            refusal = await refused(call)
            assert refusal.code is Code.UNAUTHENTICATED
            assert refusal.info.reason == "UNAUTHENTICATED"
    # A token in the wrong scheme is no token at all.
    refusal = await refused(
        stubs.identity.WhoAmI(
            identity_service_pb2.WhoAmIRequest(),
            metadata=(("authorization", f"Basic {world.admin}"),),
            timeout=TIMEOUT,
        )
    )
    assert refusal.code is Code.UNAUTHENTICATED
    assert await snapshot(stubs, world) == before


async def test_a_revoked_token_is_unauthenticated(stubs: Stubs, world: World) -> None:
    second_admin = await issue(stubs, world.admin, common_pb2.PRINCIPAL_KIND_ADMIN, unique("ops"))
    me = await stubs.identity.WhoAmI(
        identity_service_pb2.WhoAmIRequest(), metadata=auth(second_admin.token), timeout=TIMEOUT
    )
    assert me.credential_id == second_admin.credential.credential_id
    await stubs.identity.RevokeCredential(
        identity_service_pb2.RevokeCredentialRequest(
            credential_id=second_admin.credential.credential_id
        ),
        metadata=auth(world.admin),
        timeout=TIMEOUT,
    )
    before = await snapshot(stubs, world)
    refusal = await refused(
        stubs.identity.CreateApprover(
            identity_service_pb2.CreateApproverRequest(approver_id=unique("x")),
            metadata=auth(second_admin.token),
            timeout=TIMEOUT,
        )
    )
    assert refusal.code is Code.UNAUTHENTICATED
    assert refusal.info.reason == "UNAUTHENTICATED"
    # The approver's credential, revoked, stops working too.
    approver = world.approvers[1]
    listed = await stubs.identity.ListCredentials(
        identity_service_pb2.ListCredentialsRequest(
            principal_kind=common_pb2.PRINCIPAL_KIND_APPROVER, principal_subject=approver
        ),
        metadata=auth(world.admin),
        timeout=TIMEOUT,
    )
    assert len(listed.credentials) == 1
    await stubs.identity.RevokeCredential(
        identity_service_pb2.RevokeCredentialRequest(
            credential_id=listed.credentials[0].credential_id
        ),
        metadata=auth(world.admin),
        timeout=TIMEOUT,
    )
    before = await snapshot(stubs, world)
    refusal = await refused(
        stubs.approver.ListInvitations(
            approver_service_pb2.ListInvitationsRequest(),
            metadata=auth(world.approver_tokens[approver]),
            timeout=TIMEOUT,
        )
    )
    assert refusal.code is Code.UNAUTHENTICATED
    assert await snapshot(stubs, world) == before


async def test_an_expired_token_is_unauthenticated(
    server: ServerProcess, stubs: Stubs, world: World
) -> None:
    issued = await issue(
        stubs,
        world.admin,
        common_pb2.PRINCIPAL_KIND_ADMIN,
        unique("temp"),
        ttl=duration_pb2.Duration(seconds=3600),
    )
    # An hour is long; move its end into the past in the database instead of waiting. Before
    # the token's first use: a used token's row is cached by the server, and SQLite has no
    # NOTIFY to tell it of an edit made behind its back (PostgreSQL's trigger would).
    await server.expire_credential(
        issued.credential.credential_id, datetime.now(UTC) - timedelta(minutes=1)
    )
    before = await snapshot(stubs, world)
    refusal = await refused(
        stubs.identity.CreateApprover(
            identity_service_pb2.CreateApproverRequest(approver_id=unique("x")),
            metadata=auth(issued.token),
            timeout=TIMEOUT,
        )
    )
    assert refusal.code is Code.UNAUTHENTICATED
    assert refusal.info.reason == "UNAUTHENTICATED"
    assert await snapshot(stubs, world) == before


# --- PERMISSION_DENIED ----------------------------------------------------------------------


@pytest.mark.parametrize("kind", ["account", "approver", "service", "auditor"])
async def test_only_an_admin_may_administer(stubs: Stubs, world: World, kind: str) -> None:
    token = world.tokens[kind]
    md = auth(token)
    before = await snapshot(stubs, world)
    attempts: dict[str, Awaitable[Any]] = {
        "CreateApprover": stubs.identity.CreateApprover(
            identity_service_pb2.CreateApproverRequest(
                approver_id=unique("intruder"), display_name="Intruder"
            ),
            metadata=md,
            timeout=TIMEOUT,
        ),
        "IssueCredential": stubs.identity.IssueCredential(
            identity_service_pb2.IssueCredentialRequest(
                principal=common_pb2.Principal(
                    kind=common_pb2.PRINCIPAL_KIND_ADMIN, subject=unique("root")
                )
            ),
            metadata=md,
            timeout=TIMEOUT,
        ),
        "CreateApprovalTeam": stubs.teams.CreateApprovalTeam(
            team_service_pb2.CreateApprovalTeamRequest(
                name=unique("rogue"), approver_ids=world.approvers, min_approvals=2
            ),
            metadata=md,
            timeout=TIMEOUT,
        ),
        "ShareTeam": stubs.teams.ShareTeam(
            team_service_pb2.ShareTeamRequest(
                team_id=world.team_id,
                principal=common_pb2.Principal(
                    kind=common_pb2.PRINCIPAL_KIND_ACCOUNT, subject=world.account_id
                ),
            ),
            metadata=md,
            timeout=TIMEOUT,
        ),
        "DeleteInactiveTeam": stubs.teams.DeleteInactiveTeam(
            team_service_pb2.DeleteInactiveTeamRequest(team_id=world.team_id),
            metadata=md,
            timeout=TIMEOUT,
        ),
        "RevokeCredential": stubs.identity.RevokeCredential(
            identity_service_pb2.RevokeCredentialRequest(
                credential_id=world.credential_ids["service"]
            ),
            metadata=md,
            timeout=TIMEOUT,
        ),
    }
    for method, call in attempts.items():
        refusal = await refused(call)
        assert refusal.code is Code.PERMISSION_DENIED, method
        assert refusal.info.reason == "PERMISSION_DENIED", method
    assert await snapshot(stubs, world) == before
    # Nothing was revoked: every credential still answers.
    for token in world.tokens.values():
        await stubs.identity.WhoAmI(
            identity_service_pb2.WhoAmIRequest(), metadata=auth(token), timeout=TIMEOUT
        )


async def test_an_admin_cannot_act_as_an_approver(stubs: Stubs, world: World) -> None:
    before = await snapshot(stubs, world)
    refusal = await refused(
        stubs.approver.ListInvitations(
            approver_service_pb2.ListInvitationsRequest(),
            metadata=auth(world.admin),
            timeout=TIMEOUT,
        )
    )
    assert refusal.code is Code.PERMISSION_DENIED
    assert refusal.info.reason == "PERMISSION_DENIED"
    # Nor can an account answer an invitation.
    invitation = (
        await invitations(stubs, world.approver_tokens[world.approvers[0]], world.team_id)
    )[0]
    public, proof = key_material(world.approver_keys[world.approvers[0]], invitation.invitation_id)
    refusal = await refused(
        stubs.approver.RespondToInvitation(
            approver_service_pb2.RespondToInvitationRequest(
                invitation_id=invitation.invitation_id,
                decision=approver_service_pb2.INVITATION_DECISION_ACCEPT,
                public_key=public,
                key_proof=proof,
            ),
            metadata=auth(world.tokens["account"]),
            timeout=TIMEOUT,
        )
    )
    assert refusal.code is Code.PERMISSION_DENIED
    assert await snapshot(stubs, world) == before


async def test_an_approver_cannot_answer_another_approvers_invitation(
    stubs: Stubs, world: World
) -> None:
    alice, bob = world.approvers[0], world.approvers[1]
    bobs = await invitations(stubs, world.approver_tokens[bob], world.team_id)
    assert [i.approver_id for i in bobs] == [bob]
    before = await snapshot(stubs, world)
    public, proof = key_material(world.approver_keys[alice], bobs[0].invitation_id)
    for decision in (
        approver_service_pb2.INVITATION_DECISION_ACCEPT,
        approver_service_pb2.INVITATION_DECISION_DECLINE,
    ):
        accept = decision == approver_service_pb2.INVITATION_DECISION_ACCEPT
        refusal = await refused(
            stubs.approver.RespondToInvitation(
                approver_service_pb2.RespondToInvitationRequest(
                    invitation_id=bobs[0].invitation_id,
                    decision=decision,
                    public_key=public if accept else b"",
                    key_proof=proof if accept else b"",
                ),
                metadata=auth(world.approver_tokens[alice]),
                timeout=TIMEOUT,
            )
        )
        assert refusal.code is Code.PERMISSION_DENIED
        assert refusal.info.reason == "PERMISSION_DENIED"
    assert await snapshot(stubs, world) == before
    after = await invitations(stubs, world.approver_tokens[bob], world.team_id)
    assert [i.state for i in after] == [team_pb2.Invitation.STATE_PENDING]


# --- details of other refusals ---------------------------------------------------------------


async def test_invalid_argument_carries_bad_request_field_violations(
    stubs: Stubs, world: World
) -> None:
    before = await snapshot(stubs, world)
    refusal = await refused(
        stubs.teams.CreateApprovalTeam(
            team_service_pb2.CreateApprovalTeamRequest(
                name=unique("team"), approver_ids=world.approvers, min_approvals=1
            ),
            metadata=auth(world.admin),
            timeout=TIMEOUT,
        )
    )
    assert refusal.code is Code.INVALID_ARGUMENT
    assert refusal.info.reason == "INVALID_ARGUMENT"
    assert refusal.fields == ("min_approvals",)

    refusal = await refused(
        stubs.teams.CreateApprovalTeam(
            team_service_pb2.CreateApprovalTeamRequest(
                name="not a name!", approver_ids=world.approvers, min_approvals=4
            ),
            metadata=auth(world.admin),
            timeout=TIMEOUT,
        )
    )
    assert refusal.code is Code.INVALID_ARGUMENT
    assert set(refusal.fields) == {"name", "min_approvals"}

    refusal = await refused(
        stubs.teams.CreateApprovalTeam(
            team_service_pb2.CreateApprovalTeamRequest(
                name=unique("team"),
                approver_ids=[world.approvers[0], unique("nobody")],
                min_approvals=2,
            ),
            metadata=auth(world.admin),
            timeout=TIMEOUT,
        )
    )
    assert refusal.code is Code.INVALID_ARGUMENT
    assert refusal.fields == ("approver_ids[1]",)

    refusal = await refused(
        stubs.identity.RegisterAccount(
            identity_service_pb2.RegisterAccountRequest(account_id="12345", name="short"),
            metadata=auth(world.admin),
            timeout=TIMEOUT,
        )
    )
    assert refusal.code is Code.INVALID_ARGUMENT
    assert refusal.fields
    assert await snapshot(stubs, world) == before


async def test_an_unknown_id_answers_like_a_hidden_one(stubs: Stubs, world: World) -> None:
    """Over the wire: the team is not shared with the account or the service, and an unknown
    team id gets the very same refusal (docs/authorization.md); the admin gets NOT_FOUND."""
    unknown = "team-0000000000000000"

    async def get(token: str, team_id: str) -> Refusal:
        return await refused(
            stubs.teams.GetApprovalTeam(
                team_service_pb2.GetApprovalTeamRequest(team_id=team_id),
                metadata=auth(token),
                timeout=TIMEOUT,
            )
        )

    for kind in ("account", "approver", "service"):
        hidden = await get(world.tokens[kind], world.team_id)
        missing = await get(world.tokens[kind], unknown)
        assert hidden.code is missing.code is Code.PERMISSION_DENIED, kind
        assert hidden.info.reason == missing.info.reason, kind
        assert hidden.message.replace(world.team_id, unknown) == missing.message, kind
        assert set(hidden.info.metadata) == set(missing.info.metadata), kind
    for token in (world.admin, world.tokens["auditor"]):
        assert (await get(token, unknown)).info.reason == "APPROVAL_TEAM_NOT_FOUND"


async def test_not_found_and_already_exists_have_their_reasons(stubs: Stubs, world: World) -> None:
    refusal = await refused(
        stubs.teams.GetApprovalTeam(
            team_service_pb2.GetApprovalTeamRequest(team_id="team-0000000000000000"),
            metadata=auth(world.admin),
            timeout=TIMEOUT,
        )
    )
    assert refusal.code is Code.NOT_FOUND
    assert refusal.info.reason.endswith("NOT_FOUND")
    refusal = await refused(
        stubs.identity.CreateApprover(
            identity_service_pb2.CreateApproverRequest(
                approver_id=world.approvers[0], display_name="Again"
            ),
            metadata=auth(world.admin),
            timeout=TIMEOUT,
        )
    )
    assert refusal.code is Code.ALREADY_EXISTS
    assert refusal.info.reason.endswith("ALREADY_EXISTS")


async def test_every_rpc_of_the_contract_answers_with_a_status_never_unknown(
    server: ServerProcess, world: World
) -> None:
    """Each RPC of every service in proto/, called through its generated stub by the admin with
    an empty request, gets a real answer: a response, or a google.rpc.Status with an airlock
    ErrorInfo whose reason is in the ErrorReason catalogue; never UNIMPLEMENTED, UNKNOWN or
    INTERNAL."""
    assert set(SERVER_SERVICES) <= {service.full_name for service in SERVICES.values()}
    md = auth(world.admin)
    answered: list[str] = []
    async with server.channel() as channel:
        for stubs_module, service in CONTRACT:
            stub = getattr(stubs_module, f"{service.name}Stub")(channel)
            for method in service.methods:
                name = f"{service.name}/{method.name}"
                request = REQUEST_CLASSES[method.input_type.full_name]()
                call = getattr(stub, method.name)(request, metadata=md, timeout=TIMEOUT)
                try:
                    if method.server_streaming:
                        await call.read()  # the first message or the error, then hang up
                        call.cancel()
                    else:
                        await call
                except grpc.aio.AioRpcError as error:
                    refusal = decode(error)  # an ErrorInfo of domain airlock, or this fails
                    assert refusal.code not in (Code.UNKNOWN, Code.INTERNAL, Code.UNIMPLEMENTED), (
                        name,
                        refusal,
                    )
                    assert refusal.info.reason in REASONS, (name, refusal.info.reason)
                answered.append(name)
    assert len(answered) == sum(len(s.methods) for _, s in CONTRACT)


# --- request_id -----------------------------------------------------------------------------


async def count_approvers(stubs: Stubs, world: World) -> int:
    return len((await snapshot(stubs, world))["approvers"])


async def count_teams(stubs: Stubs, world: World) -> int:
    return len((await snapshot(stubs, world))["teams"])


async def test_a_retried_create_approver_creates_nothing_more(stubs: Stubs, world: World) -> None:
    request = identity_service_pb2.CreateApproverRequest(
        approver_id=unique("retry"), display_name="Retry", request_id=secrets.token_hex(8)
    )
    before = await count_approvers(stubs, world)
    first = await stubs.identity.CreateApprover(
        request, metadata=auth(world.admin), timeout=TIMEOUT
    )
    second = await stubs.identity.CreateApprover(
        request, metadata=auth(world.admin), timeout=TIMEOUT
    )
    assert second.approver == first.approver
    assert await count_approvers(stubs, world) == before + 1


async def test_racing_create_approvers_with_one_request_id_create_one(
    stubs: Stubs, world: World
) -> None:
    request = identity_service_pb2.CreateApproverRequest(
        approver_id=unique("race"), display_name="Race", request_id=secrets.token_hex(8)
    )
    before = await count_approvers(stubs, world)
    answers = await asyncio.gather(
        *(
            stubs.identity.CreateApprover(request, metadata=auth(world.admin), timeout=TIMEOUT)
            for _ in range(4)
        )
    )
    assert all(a.approver == answers[0].approver for a in answers)
    assert await count_approvers(stubs, world) == before + 1


async def test_a_retried_create_team_creates_nothing_more(stubs: Stubs, world: World) -> None:
    request = team_service_pb2.CreateApprovalTeamRequest(
        name=unique("retry-team"),
        approver_ids=world.approvers,
        min_approvals=2,
        request_id=secrets.token_hex(8),
    )
    before = await count_teams(stubs, world)
    first = await stubs.teams.CreateApprovalTeam(
        request, metadata=auth(world.admin), timeout=TIMEOUT
    )
    second = await stubs.teams.CreateApprovalTeam(
        request, metadata=auth(world.admin), timeout=TIMEOUT
    )
    assert second.team.team_id == first.team.team_id
    assert [a.invitation_id for a in second.team.approvers] == [
        a.invitation_id for a in first.team.approvers
    ]
    assert await count_teams(stubs, world) == before + 1
    # Each approver has exactly one invitation to it.
    for approver in world.approvers:
        found = await invitations(stubs, world.approver_tokens[approver], first.team.team_id)
        assert len(found) == 1


async def test_racing_create_teams_with_one_request_id_create_one(
    stubs: Stubs, world: World
) -> None:
    request = team_service_pb2.CreateApprovalTeamRequest(
        name=unique("race-team"),
        approver_ids=world.approvers,
        min_approvals=2,
        request_id=secrets.token_hex(8),
    )
    before = await count_teams(stubs, world)
    answers = await asyncio.gather(
        *(
            stubs.teams.CreateApprovalTeam(request, metadata=auth(world.admin), timeout=TIMEOUT)
            for _ in range(4)
        )
    )
    assert len({a.team.team_id for a in answers}) == 1
    assert await count_teams(stubs, world) == before + 1


async def test_a_request_id_reused_for_another_request_is_refused(
    stubs: Stubs, world: World
) -> None:
    """Bound to the caller, the method and the request: the same request replays, another
    one is INVALID_ARGUMENT REQUEST_ID_REUSED and does nothing."""
    request_id = secrets.token_hex(8)
    first = identity_service_pb2.CreateApproverRequest(
        approver_id=unique("x1"), display_name="X1", request_id=request_id
    )
    other = identity_service_pb2.CreateApproverRequest(
        approver_id=unique("x2"), display_name="X2", request_id=request_id
    )
    created = await stubs.identity.CreateApprover(
        first, metadata=auth(world.admin), timeout=TIMEOUT
    )
    refusal = await refused(
        stubs.identity.CreateApprover(other, metadata=auth(world.admin), timeout=TIMEOUT)
    )
    assert (refusal.code, refusal.info.reason) == (
        grpc.StatusCode.INVALID_ARGUMENT,
        "REQUEST_ID_REUSED",
    )
    assert refusal.fields == ("request_id",)
    missing = await refused(
        stubs.identity.GetApprover(
            identity_service_pb2.GetApproverRequest(approver_id=other.approver_id),
            metadata=auth(world.admin),
            timeout=TIMEOUT,
        )
    )
    assert missing.code == grpc.StatusCode.NOT_FOUND
    replayed = await stubs.identity.CreateApprover(
        first, metadata=auth(world.admin), timeout=TIMEOUT
    )
    assert replayed.approver == created.approver

    # Once an assert in the use case (INTERNAL): disabling another approver with the same id.
    disable_id = secrets.token_hex(8)
    await stubs.identity.DisableApprover(
        identity_service_pb2.DisableApproverRequest(
            approver_id=first.approver_id, request_id=disable_id
        ),
        metadata=auth(world.admin),
        timeout=TIMEOUT,
    )
    refusal = await refused(
        stubs.identity.DisableApprover(
            identity_service_pb2.DisableApproverRequest(
                approver_id=world.approvers[2], request_id=disable_id
            ),
            metadata=auth(world.admin),
            timeout=TIMEOUT,
        )
    )
    assert refusal.info.reason == "REQUEST_ID_REUSED"


async def test_an_undecodable_body_is_invalid_argument_and_logged(
    server: ServerProcess, world: World
) -> None:
    method = "/airlock.v1.IdentityService/CreateApprover"
    async with server.channel() as channel:
        call = channel.unary_unary(
            method, request_serializer=lambda b: b, response_deserializer=lambda b: b
        )
        for token in (world.admin, world.tokens["auditor"]):
            refusal = await refused(
                call(b"\xff\xff\xff\xff", metadata=auth(token), timeout=TIMEOUT)
            )
            assert (refusal.code, refusal.info.reason) == (
                grpc.StatusCode.INVALID_ARGUMENT,
                "UNDECODABLE_REQUEST",
            )
            assert "DecodeError" not in refusal.message
        # Deny by default: who is not authenticated learns nothing about its body.
        refusal = await refused(call(b"\xff\xff\xff\xff", timeout=TIMEOUT))
        assert refusal.code == grpc.StatusCode.UNAUTHENTICATED
        # Health answers anyone, and garbage with INVALID_ARGUMENT too; its real requests work.
        check: grpc.aio.UnaryUnaryMultiCallable[bytes, bytes] = channel.unary_unary(
            "/grpc.health.v1.Health/Check"
        )
        refusal = await refused(check(b"\xff\xff\xff\xff", timeout=TIMEOUT))
        assert refusal.code == grpc.StatusCode.INVALID_ARGUMENT
        garbage_watch: grpc.aio.UnaryStreamMultiCallable[bytes, bytes] = channel.unary_stream(
            "/grpc.health.v1.Health/Watch"
        )
        refusal = await refused(garbage_watch(b"\xff\xff\xff\xff", timeout=TIMEOUT).read())
        assert refusal.code == grpc.StatusCode.INVALID_ARGUMENT
        health = health_pb2_grpc.HealthStub(channel)
        checked = await health.Check(health_pb2.HealthCheckRequest(), timeout=TIMEOUT)
        assert checked.status == health_pb2.HealthCheckResponse.SERVING
        watch = health.Watch(health_pb2.HealthCheckRequest(), timeout=TIMEOUT)
        assert (await watch.read()).status == health_pb2.HealthCheckResponse.SERVING
        watch.cancel()
    records = server.log_records()
    completed = [
        r
        for r in records
        if r.get("event") == "rpc.completed"
        and r.get("method") == method
        and r.get("reason") == "UNDECODABLE_REQUEST"
    ]
    assert len(completed) >= 2
    assert all(r["code"] == "INVALID_ARGUMENT" for r in completed)
    assert "Exception deserializing" not in server.log_text()
    assert "DecodeError" not in server.log_text()


@pytest.mark.parametrize(
    ("call", "field"),
    [
        (
            lambda s, t: s.audit.ListEvents(
                audit_service_pb2.ListEventsRequest(after_seq=2**63 - 1), metadata=auth(t)
            ),
            "after_seq",
        ),
        (
            lambda s, t: s.audit.ListEvents(
                audit_service_pb2.ListEventsRequest(
                    start_time=timestamp_pb2.Timestamp(seconds=253_402_300_800)
                ),
                metadata=auth(t),
            ),
            "start_time",
        ),
        (
            lambda s, t: s.audit.ListEvents(
                audit_service_pb2.ListEventsRequest(
                    end_time=timestamp_pb2.Timestamp(seconds=1, nanos=-1)
                ),
                metadata=auth(t),
            ),
            "end_time.nanos",
        ),
        (
            lambda s, t: s.identity.CreateApprover(
                identity_service_pb2.CreateApproverRequest(
                    approver_id=unique("nul"), display_name="a\x00b"
                ),
                metadata=auth(t),
            ),
            "display_name",
        ),
        (
            lambda s, t: s.teams.CreateApprovalTeam(
                team_service_pb2.CreateApprovalTeamRequest(
                    name=unique("ttl"),
                    approver_ids=["a", "b"],
                    min_approvals=1,
                    session_ttl=duration_pb2.Duration(seconds=315_576_000_000),
                ),
                metadata=auth(t),
            ),
            "session_ttl",
        ),
    ],
    ids=["after_seq", "timestamp", "nanos", "nul", "duration"],
)
async def test_a_field_out_of_range_is_invalid_argument_naming_it(
    stubs: Stubs, world: World, call: Callable[[Stubs, str], Awaitable[Any]], field: str
) -> None:
    token = world.admin if field in ("display_name", "session_ttl") else world.tokens["auditor"]
    refusal = await refused(call(stubs, token))
    assert refusal.code == grpc.StatusCode.INVALID_ARGUMENT
    assert field in refusal.fields
