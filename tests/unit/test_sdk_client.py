"""AirlockClient against an in-process grpc.aio server on loopback: the real trailer path for
errors, retries with one request_id, auth metadata and deadlines, paging, invitation proofs and
streams. No Airlock server is involved."""

from __future__ import annotations

import asyncio
import datetime as dt
import subprocess
import sys
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import grpc
import pytest
import pytest_asyncio
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey
from google.protobuf import any_pb2
from google.protobuf.message import Message
from google.rpc import code_pb2, error_details_pb2, status_pb2
from grpc_status import rpc_status

import airlock_cli
import airlock_client
from airlock.v1 import (
    approver_service_pb2,
    audit_service_pb2,
    common_pb2,
    event_pb2,
    identity_pb2,
    identity_service_pb2,
    session_pb2,
    session_service_pb2,
    team_pb2,
    team_service_pb2,
)
from airlock_client import (
    AbortedError,
    AirlockClient,
    AirlockError,
    FailedPreconditionError,
    FieldViolation,
    InvalidArgumentError,
    NotFoundError,
    PermissionDeniedError,
    RetryPolicy,
    StatusCode,
    UnauthenticatedError,
    UnavailableError,
    generate_private_key,
    public_key_bytes,
)
from airlock_client.errors import error_class

FAST_RETRY = RetryPolicy(max_attempts=4, initial_backoff=0.001, max_backoff=0.005)

Context = grpc.aio.ServicerContext[Any, Any]


def _pack(message: Message) -> any_pb2.Any:
    packed = any_pb2.Any()
    packed.Pack(message)
    return packed


def rich_status(
    code: int,
    message: str,
    reason: str,
    metadata: dict[str, str] | None = None,
    violations: list[tuple[str, str]] | None = None,
) -> status_pb2.Status:
    details = [
        _pack(error_details_pb2.ErrorInfo(reason=reason, domain="airlock", metadata=metadata))
    ]
    if violations:
        details.append(
            _pack(
                error_details_pb2.BadRequest(
                    field_violations=[
                        error_details_pb2.BadRequest.FieldViolation(field=f, description=d)
                        for f, d in violations
                    ]
                )
            )
        )
    return status_pb2.Status(code=code, message=message, details=details)


async def abort(context: Context, status: status_pb2.Status) -> None:
    await context.abort_with_status(rpc_status.to_status(status))


@dataclass
class Fake:
    """Handlers by method name; every request and its metadata is recorded."""

    handlers: dict[str, Callable[[Any, Context], Awaitable[Any]]] = field(default_factory=dict)
    requests: list[tuple[str, Any, dict[str, str], float | None]] = field(default_factory=list)
    target: str = ""

    def of(self, method: str) -> list[Any]:
        return [r for m, r, _, _ in self.requests if m == method]


_METHODS: dict[str, tuple[str, type[Message], type[Message], bool]] = {
    "WhoAmI": (
        "IdentityService",
        identity_service_pb2.WhoAmIRequest,
        identity_service_pb2.WhoAmIResponse,
        False,
    ),
    "GetApprover": (
        "IdentityService",
        identity_service_pb2.GetApproverRequest,
        identity_service_pb2.GetApproverResponse,
        False,
    ),
    "CreateApprover": (
        "IdentityService",
        identity_service_pb2.CreateApproverRequest,
        identity_service_pb2.CreateApproverResponse,
        False,
    ),
    "ListApprovers": (
        "IdentityService",
        identity_service_pb2.ListApproversRequest,
        identity_service_pb2.ListApproversResponse,
        False,
    ),
    "IssueCredential": (
        "IdentityService",
        identity_service_pb2.IssueCredentialRequest,
        identity_service_pb2.IssueCredentialResponse,
        False,
    ),
    "CreateApprovalTeam": (
        "TeamService",
        team_service_pb2.CreateApprovalTeamRequest,
        team_service_pb2.CreateApprovalTeamResponse,
        False,
    ),
    "ShareTeam": (
        "TeamService",
        team_service_pb2.ShareTeamRequest,
        team_service_pb2.ShareTeamResponse,
        False,
    ),
    "UpdateApprovalTeam": (
        "TeamService",
        team_service_pb2.UpdateApprovalTeamRequest,
        team_service_pb2.UpdateApprovalTeamResponse,
        False,
    ),
    "RespondToInvitation": (
        "ApproverService",
        approver_service_pb2.RespondToInvitationRequest,
        approver_service_pb2.RespondToInvitationResponse,
        False,
    ),
    "Vote": (
        "ApproverService",
        approver_service_pb2.VoteRequest,
        approver_service_pb2.VoteResponse,
        False,
    ),
    "WatchSession": (
        "SessionService",
        session_service_pb2.WatchSessionRequest,
        session_service_pb2.WatchSessionResponse,
        True,
    ),
    "WatchEvents": (
        "AuditService",
        audit_service_pb2.WatchEventsRequest,
        audit_service_pb2.WatchEventsResponse,
        True,
    ),
}


def _handlers(fake: Fake) -> list[grpc.GenericRpcHandler]:
    by_service: dict[str, dict[str, grpc.RpcMethodHandler[Any, Any]]] = {}
    for method, (service, request_type, response_type, streaming) in _METHODS.items():

        def record(request: Any, context: Context, method: str = method) -> None:
            metadata = {k: str(v) for k, v in (context.invocation_metadata() or ())}
            fake.requests.append((method, request, metadata, context.time_remaining()))

        if streaming:

            async def stream(
                request: Any, context: Context, method: str = method, record: Any = record
            ) -> AsyncIterator[Any]:
                record(request, context)
                async for item in fake.handlers[method](request, context):  # type: ignore[attr-defined]
                    yield item

            handler = grpc.unary_stream_rpc_method_handler(
                stream,
                request_deserializer=request_type.FromString,
                response_serializer=response_type.SerializeToString,
            )
        else:

            async def unary(
                request: Any, context: Context, method: str = method, record: Any = record
            ) -> Any:
                record(request, context)
                if method not in fake.handlers:
                    await context.abort(grpc.StatusCode.UNIMPLEMENTED, "not in the fake")
                return await fake.handlers[method](request, context)

            handler = grpc.unary_unary_rpc_method_handler(
                unary,
                request_deserializer=request_type.FromString,
                response_serializer=response_type.SerializeToString,
            )
        by_service.setdefault(f"airlock.v1.{service}", {})[method] = handler
    return [grpc.method_handlers_generic_handler(s, h) for s, h in by_service.items()]


@pytest_asyncio.fixture
async def fake() -> AsyncIterator[Fake]:
    state = Fake()
    server = grpc.aio.server()
    server.add_generic_rpc_handlers(_handlers(state))
    port = server.add_insecure_port("127.0.0.1:0")
    await server.start()
    state.target = f"127.0.0.1:{port}"
    try:
        yield state
    finally:
        await server.stop(None)


def connect(fake: Fake, token: str | None = "tok-123", **kwargs: Any) -> AirlockClient:
    kwargs.setdefault("retry", FAST_RETRY)
    return AirlockClient.connect(fake.target, token, **kwargs)


# -- errors --------------------------------------------------------------------------------------


@pytest.mark.asyncio
async def test_rich_status_becomes_typed_error_with_reason_metadata_and_violations(
    fake: Fake,
) -> None:
    async def create(request: Any, context: Context) -> Any:
        await abort(
            context,
            rich_status(
                code_pb2.INVALID_ARGUMENT,
                "min_approvals must be at most the number of approvers",
                "INVALID_ARGUMENT",
                {"teamName": "ops"},
                [("min_approvals", "must be <= 2"), ("approver_ids", "duplicate 'alice'")],
            ),
        )

    fake.handlers["CreateApprovalTeam"] = create
    async with connect(fake) as client:
        with pytest.raises(InvalidArgumentError) as caught:
            await client.create_team("ops", ["alice", "alice"], 3)
    error = caught.value
    assert not isinstance(error, grpc.RpcError)
    assert error.code is StatusCode.INVALID_ARGUMENT
    assert error.reason == "INVALID_ARGUMENT"
    assert error.domain == "airlock"
    assert error.message == "min_approvals must be at most the number of approvers"
    assert error.metadata == {"teamName": "ops"}
    assert error.field_violations == [
        FieldViolation("min_approvals", "must be <= 2"),
        FieldViolation("approver_ids", "duplicate 'alice'"),
    ]
    assert error.field_violations[0] == ("min_approvals", "must be <= 2")
    # The reason is the code again: said once.
    assert str(error) == "INVALID_ARGUMENT: min_approvals must be at most the number of approvers"
    assert error.__cause__ is None
    assert len(fake.of("CreateApprovalTeam")) == 1  # never retried


@pytest.mark.parametrize(
    ("code", "cls"),
    [
        (code_pb2.NOT_FOUND, NotFoundError),
        (code_pb2.PERMISSION_DENIED, PermissionDeniedError),
        (code_pb2.UNAUTHENTICATED, UnauthenticatedError),
        (code_pb2.FAILED_PRECONDITION, FailedPreconditionError),
    ],
)
@pytest.mark.asyncio
async def test_each_code_raises_its_subclass(
    fake: Fake, code: int, cls: type[AirlockError]
) -> None:
    async def get(request: Any, context: Context) -> Any:
        await abort(context, rich_status(code, "no", "SOME_REASON", {"approverId": "bob"}))

    fake.handlers["GetApprover"] = get
    async with connect(fake) as client:
        with pytest.raises(cls) as caught:
            await client.get_approver("bob")
    assert caught.value.code == code
    assert caught.value.reason == "SOME_REASON"
    assert caught.value.metadata == {"approverId": "bob"}
    assert isinstance(caught.value, AirlockError)


def test_every_status_code_but_ok_has_a_subclass() -> None:
    for code in StatusCode:
        if code is StatusCode.OK:
            continue
        cls = error_class(code)
        assert cls is not AirlockError
        assert cls.code is code


@pytest.mark.parametrize(
    ("code", "reason", "message", "text"),
    [
        (
            StatusCode.FAILED_PRECONDITION,
            "TEAM_NOT_ACTIVE",
            "the team is not active",
            "FAILED_PRECONDITION TEAM_NOT_ACTIVE: the team is not active",
        ),
        (StatusCode.INVALID_ARGUMENT, "INVALID_ARGUMENT", "bad", "INVALID_ARGUMENT: bad"),
        (StatusCode.UNAVAILABLE, "", "connection refused", "UNAVAILABLE: connection refused"),
        (StatusCode.NOT_FOUND, "TEAM_NOT_FOUND", "", "NOT_FOUND TEAM_NOT_FOUND"),
    ],
)
def test_an_error_says_its_code_once_and_a_reason_only_when_it_is_one(
    code: StatusCode, reason: str, message: str, text: str
) -> None:
    assert str(error_class(code)(code, reason, message)) == text


@pytest.mark.asyncio
async def test_plain_status_without_details_has_empty_reason(fake: Fake) -> None:
    async def get(request: Any, context: Context) -> Any:
        await context.abort(grpc.StatusCode.NOT_FOUND, "plain")

    fake.handlers["GetApprover"] = get
    async with connect(fake) as client:
        with pytest.raises(NotFoundError) as caught:
            await client.get_approver("x")
    assert caught.value.reason == ""
    assert caught.value.message == "plain"
    assert caught.value.field_violations == []
    assert str(caught.value) == "NOT_FOUND: plain"


@pytest.mark.asyncio
async def test_unreachable_server_is_unavailable_error_after_retries() -> None:
    client = AirlockClient.connect("127.0.0.1:1", "t", timeout=2, retry=FAST_RETRY)
    async with client:
        with pytest.raises(UnavailableError) as caught:
            await client.whoami()
    assert caught.value.reason == ""


@pytest.mark.asyncio
async def test_deadline_exceeded(fake: Fake) -> None:
    async def slow(request: Any, context: Context) -> Any:

        await asyncio.sleep(5)
        return identity_service_pb2.WhoAmIResponse()

    fake.handlers["WhoAmI"] = slow
    async with connect(fake, timeout=0.2) as client:
        with pytest.raises(AirlockError) as caught:
            await client.whoami()
    assert caught.value.code is StatusCode.DEADLINE_EXCEEDED


# -- retries, request ids, metadata --------------------------------------------------------------


@pytest.mark.parametrize("code", [code_pb2.UNAVAILABLE, code_pb2.ABORTED])
@pytest.mark.asyncio
async def test_retries_unavailable_and_aborted_with_the_same_request_id(
    fake: Fake, code: int
) -> None:
    async def create(request: Any, context: Context) -> Any:
        if len(fake.of("CreateApprover")) < 3:
            await abort(context, rich_status(code, "try again", "CONCURRENT_CHANGE"))
        return identity_service_pb2.CreateApproverResponse(
            approver=identity_pb2.Approver(approver_id=request.approver_id)
        )

    fake.handlers["CreateApprover"] = create
    async with connect(fake) as client:
        approver = await client.create_approver("alice", "Alice")
    assert approver.approver_id == "alice"
    ids = {r.request_id for r in fake.of("CreateApprover")}
    assert len(fake.of("CreateApprover")) == 3
    assert len(ids) == 1
    uuid.UUID(ids.pop(), version=4)


@pytest.mark.asyncio
async def test_gives_up_after_max_attempts(fake: Fake) -> None:
    async def create(request: Any, context: Context) -> Any:
        await abort(context, rich_status(code_pb2.ABORTED, "busy", "CONCURRENT_CHANGE"))

    fake.handlers["CreateApprover"] = create
    async with connect(fake, retry=RetryPolicy(max_attempts=2, initial_backoff=0.001)) as client:
        with pytest.raises(AbortedError) as caught:
            await client.create_approver("alice", "Alice")
    assert caught.value.reason == "CONCURRENT_CHANGE"
    assert len(fake.of("CreateApprover")) == 2


@pytest.mark.asyncio
async def test_auth_header_deadline_and_caller_request_id(fake: Fake) -> None:
    async def create(request: Any, context: Context) -> Any:
        return identity_service_pb2.CreateApproverResponse(approver=identity_pb2.Approver())

    async def whoami(request: Any, context: Context) -> Any:
        return identity_service_pb2.WhoAmIResponse(
            principal=common_pb2.Principal(kind=common_pb2.PRINCIPAL_KIND_ADMIN),
            credential_id="cred-1",
        )

    fake.handlers["CreateApprover"] = create
    fake.handlers["WhoAmI"] = whoami
    async with connect(fake, token="s3cret", timeout=7) as client:
        me = await client.whoami()
        await client.create_approver("a", "A", request_id="my-id")
        await client.create_approver("b", "B")
        await client.create_approver("c", "C")
    assert me.credential_id == "cred-1"
    for _, _, metadata, remaining in fake.requests:
        assert metadata["authorization"] == "Bearer s3cret"
        assert remaining is not None
        assert 0 < remaining <= 7.5  # clock granularity
    ids = [r.request_id for r in fake.of("CreateApprover")]
    assert ids[0] == "my-id"
    assert ids[1] != ids[2]


@pytest.mark.asyncio
async def test_no_token_sends_no_authorization(fake: Fake) -> None:
    async def whoami(request: Any, context: Context) -> Any:
        return identity_service_pb2.WhoAmIResponse()

    fake.handlers["WhoAmI"] = whoami
    async with connect(fake, token=None) as client:
        await client.whoami()
    assert "authorization" not in fake.requests[0][2]


# -- request building ----------------------------------------------------------------------------


@pytest.mark.asyncio
async def test_create_team_durations_and_share_principal(fake: Fake) -> None:
    async def create(request: Any, context: Context) -> Any:
        return team_service_pb2.CreateApprovalTeamResponse(team=team_pb2.ApprovalTeam(name="ops"))

    async def share(request: Any, context: Context) -> Any:
        return team_service_pb2.ShareTeamResponse(
            share=team_pb2.TeamShare(team_id=request.team_id, principal=request.principal)
        )

    fake.handlers["CreateApprovalTeam"] = create
    fake.handlers["ShareTeam"] = share
    async with connect(fake) as client:
        await client.create_team(
            "ops",
            ["alice", "bob", "carol"],
            2,
            description="d",
            session_ttl=dt.timedelta(hours=2),
            invitation_ttl=dt.timedelta(minutes=90),
        )
        await client.create_team("ops2", ["a", "b"], 2)
        share_account = await client.share_team("t1", account_id="123456789012")
        share_service = await client.share_team("t1", service="backup-svc")
        with pytest.raises(ValueError, match="exactly one"):
            await client.share_team("t1")
    first, second = fake.of("CreateApprovalTeam")
    assert list(first.approver_ids) == ["alice", "bob", "carol"]
    assert first.min_approvals == 2
    assert first.session_ttl.ToTimedelta() == dt.timedelta(hours=2)
    assert first.invitation_ttl.ToTimedelta() == dt.timedelta(minutes=90)
    assert not second.HasField("session_ttl")
    assert not second.HasField("invitation_ttl")
    assert share_account.principal.kind == common_pb2.PRINCIPAL_KIND_ACCOUNT
    assert share_account.principal.subject == "123456789012"
    assert share_service.principal.kind == common_pb2.PRINCIPAL_KIND_SERVICE


@pytest.mark.asyncio
async def test_issue_credential_kinds_and_expiry(fake: Fake) -> None:
    async def issue(request: Any, context: Context) -> Any:
        return identity_service_pb2.IssueCredentialResponse(
            credential=identity_pb2.Credential(credential_id="c1", principal=request.principal),
            token="the-token",
        )

    fake.handlers["IssueCredential"] = issue
    when = dt.datetime(2030, 1, 1, tzinfo=dt.UTC)
    async with connect(fake) as client:
        response = await client.issue_credential("approver", "alice", ttl=dt.timedelta(hours=24))
        await client.issue_credential(common_pb2.PRINCIPAL_KIND_ADMIN, expire_time=when)
        with pytest.raises(ValueError, match="unknown principal kind"):
            await client.issue_credential("root")
        with pytest.raises(ValueError, match="not both"):
            await client.issue_credential("admin", ttl=dt.timedelta(1), expire_time=when)
        with pytest.raises(ValueError, match="timezone"):
            await client.issue_credential("admin", expire_time=dt.datetime(2030, 1, 1))
    assert response.token == "the-token"
    first, second = fake.of("IssueCredential")
    assert first.principal.kind == common_pb2.PRINCIPAL_KIND_APPROVER
    assert first.ttl.ToTimedelta() == dt.timedelta(hours=24)
    assert first.WhichOneof("expiration") == "ttl"
    assert second.WhichOneof("expiration") == "expire_time"
    assert second.expire_time.ToDatetime(tzinfo=dt.UTC) == when


@pytest.mark.asyncio
async def test_update_team_mask_names_only_given_fields(fake: Fake) -> None:
    async def update(request: Any, context: Context) -> Any:
        return team_service_pb2.UpdateApprovalTeamResponse()

    fake.handlers["UpdateApprovalTeam"] = update
    async with connect(fake) as client:
        await client.update_team("t1", etag="e1", min_approvals=3, approver_ids=["a", "b", "c"])
    (request,) = fake.of("UpdateApprovalTeam")
    assert sorted(request.update_mask.paths) == ["approver_ids", "min_approvals"]
    assert request.etag == "e1"


# -- paging --------------------------------------------------------------------------------------


@pytest.mark.asyncio
async def test_list_approvers_follows_page_tokens(fake: Fake) -> None:
    names = [f"approver-{i}" for i in range(7)]

    async def list_approvers(request: Any, context: Context) -> Any:
        start = int(request.page_token or 0)
        end = start + request.page_size
        return identity_service_pb2.ListApproversResponse(
            approvers=[identity_pb2.Approver(approver_id=n) for n in names[start:end]],
            next_page_token=str(end) if end < len(names) else "",
        )

    fake.handlers["ListApprovers"] = list_approvers
    async with connect(fake) as client:
        seen = [
            a.approver_id
            async for a in client.list_approvers(
                state=identity_pb2.Approver.STATE_ENABLED, page_size=3
            )
        ]
    assert seen == names
    requests = fake.of("ListApprovers")
    assert [r.page_token for r in requests] == ["", "3", "6"]
    assert all(r.state == identity_pb2.Approver.STATE_ENABLED for r in requests)
    assert all(r.page_size == 3 for r in requests)


@pytest.mark.asyncio
async def test_empty_list_makes_one_call(fake: Fake) -> None:
    async def list_approvers(request: Any, context: Context) -> Any:
        return identity_service_pb2.ListApproversResponse()

    fake.handlers["ListApprovers"] = list_approvers
    async with connect(fake) as client:
        assert [a async for a in client.list_approvers()] == []
    assert len(fake.of("ListApprovers")) == 1


@pytest.mark.asyncio
async def test_paging_error_mid_way_is_an_airlock_error(fake: Fake) -> None:
    async def list_approvers(request: Any, context: Context) -> Any:
        if request.page_token:
            await abort(
                context, rich_status(code_pb2.INVALID_ARGUMENT, "bad token", "INVALID_PAGE_TOKEN")
            )
        return identity_service_pb2.ListApproversResponse(
            approvers=[identity_pb2.Approver(approver_id="a")], next_page_token="next"
        )

    fake.handlers["ListApprovers"] = list_approvers
    seen: list[str] = []

    async def drain(client: AirlockClient) -> None:
        async for approver in client.list_approvers():
            seen.append(approver.approver_id)

    async with connect(fake) as client:
        with pytest.raises(InvalidArgumentError) as caught:
            await drain(client)
    assert seen == ["a"]
    assert caught.value.reason == "INVALID_PAGE_TOKEN"


# -- invitations and votes -----------------------------------------------------------------------


@pytest.mark.asyncio
async def test_accept_sends_raw_public_key_and_proof_over_invitation_id(fake: Fake) -> None:
    async def respond(request: Any, context: Context) -> Any:
        return approver_service_pb2.RespondToInvitationResponse(
            invitation=team_pb2.Invitation(invitation_id=request.invitation_id),
            team_state=team_pb2.ApprovalTeam.STATE_ACTIVE,
        )

    fake.handlers["RespondToInvitation"] = respond
    key = generate_private_key()
    async with connect(fake) as client:
        response = await client.respond_to_invitation("inv-7", True, key)
        await client.respond_to_invitation("inv-8", False)
        with pytest.raises(ValueError, match="private key"):
            await client.respond_to_invitation("inv-9", True)
    assert response.team_state == team_pb2.ApprovalTeam.STATE_ACTIVE
    accept, decline = fake.of("RespondToInvitation")
    assert accept.decision == approver_service_pb2.INVITATION_DECISION_ACCEPT
    assert accept.public_key == public_key_bytes(key)
    assert len(accept.public_key) == 32
    assert len(accept.key_proof) == 64
    Ed25519PublicKey.from_public_bytes(accept.public_key).verify(accept.key_proof, b"inv-7")
    assert accept.request_id
    assert decline.decision == approver_service_pb2.INVITATION_DECISION_DECLINE
    assert decline.public_key == b""
    assert decline.key_proof == b""


@pytest.mark.asyncio
async def test_vote_sends_decision_and_signature(fake: Fake) -> None:
    async def vote(request: Any, context: Context) -> Any:
        return approver_service_pb2.VoteResponse(
            session=session_pb2.Session(session_id=request.session_id)
        )

    fake.handlers["Vote"] = vote
    async with connect(fake) as client:
        session = await client.vote("s1", True, signature=b"x" * 64, comment="ok")
        await client.vote("s1", False, signature=b"y" * 64)
    assert session.session_id == "s1"
    approve, reject = fake.of("Vote")
    assert approve.decision == session_pb2.VOTE_DECISION_APPROVE
    assert approve.signature == b"x" * 64
    assert approve.comment == "ok"
    assert reject.decision == session_pb2.VOTE_DECISION_REJECT


# -- streams -------------------------------------------------------------------------------------


@pytest.mark.asyncio
async def test_watch_session_reconnects_and_skips_the_repeated_state(fake: Fake) -> None:
    pending = session_pb2.Session(session_id="s1", state=session_pb2.Session.STATE_PENDING)
    approved = session_pb2.Session(session_id="s1", state=session_pb2.Session.STATE_APPROVED)

    async def watch(request: Any, context: Context) -> AsyncIterator[Any]:
        if len(fake.of("WatchSession")) == 1:
            yield session_service_pb2.WatchSessionResponse(session=pending)
            await abort(context, rich_status(code_pb2.UNAVAILABLE, "replica gone", "UNAVAILABLE"))
        yield session_service_pb2.WatchSessionResponse(session=pending)
        yield session_service_pb2.WatchSessionResponse(session=approved)

    fake.handlers["WatchSession"] = watch  # type: ignore[assignment]
    async with connect(fake) as client:
        states = [s.state async for s in client.watch_session("s1")]
    assert states == [session_pb2.Session.STATE_PENDING, session_pb2.Session.STATE_APPROVED]
    assert len(fake.of("WatchSession")) == 2
    # no unary deadline on a stream
    assert all(remaining is None for m, _, _, remaining in fake.requests if m == "WatchSession")


@pytest.mark.asyncio
async def test_watch_events_resumes_after_the_last_seq(fake: Fake) -> None:
    async def watch(request: Any, context: Context) -> AsyncIterator[Any]:
        first = len(fake.of("WatchEvents")) == 1
        for seq in range(request.after_seq + 1, request.after_seq + 3):
            yield audit_service_pb2.WatchEventsResponse(event=event_pb2.Event(seq=seq))
        if first:
            await abort(context, rich_status(code_pb2.UNAVAILABLE, "bye", "UNAVAILABLE"))

    fake.handlers["WatchEvents"] = watch  # type: ignore[assignment]
    async with connect(fake) as client:
        seqs = [e.seq async for e in client.watch_events(after_seq=10)]
    assert seqs == [11, 12, 13, 14]
    assert [r.after_seq for r in fake.of("WatchEvents")] == [10, 12]


@pytest.mark.asyncio
async def test_stream_error_is_not_retried_when_not_retryable(fake: Fake) -> None:
    async def watch(request: Any, context: Context) -> AsyncIterator[Any]:
        await abort(context, rich_status(code_pb2.NOT_FOUND, "no session", "SESSION_NOT_FOUND"))
        yield session_service_pb2.WatchSessionResponse()

    fake.handlers["WatchSession"] = watch  # type: ignore[assignment]
    async with connect(fake) as client:
        with pytest.raises(NotFoundError) as caught:
            async for _ in client.watch_session("nope"):
                pass
    assert caught.value.reason == "SESSION_NOT_FOUND"
    assert len(fake.of("WatchSession")) == 1


def test_connect_validates_tls_pairs() -> None:
    with pytest.raises(ValueError, match="go together"):
        AirlockClient.connect("127.0.0.1:1", certificate_chain=b"x")


def test_sdk_never_imports_the_server() -> None:
    code = (
        "import sys, airlock_client, airlock_cli; "
        "bad = sorted(m for m in sys.modules if m.split('.')[0] == 'airlock_server'); "
        "assert not bad, bad"
    )
    subprocess.run([sys.executable, "-c", code], check=True)
    for package in (Path(airlock_client.__file__).parent, Path(airlock_cli.__file__).parent):
        for path in package.glob("*.py"):
            assert "airlock_server" not in path.read_text(encoding="utf-8"), path
