"""The `airlock` CLI: durations, argument parsing, output, error printing and exit codes, run
in-process against a fake grpc.aio server on loopback (no Airlock server)."""

from __future__ import annotations

import datetime as dt
import json
import stat
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import grpc
import pytest
import pytest_asyncio
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey
from google.protobuf import any_pb2, timestamp_pb2
from google.protobuf.message import Message
from google.rpc import code_pb2, error_details_pb2, status_pb2
from grpc_status import rpc_status

import airlock_cli as cli
from airlock.v1 import (
    approver_service_pb2,
    common_pb2,
    event_pb2,
    identity_pb2,
    identity_service_pb2,
    session_pb2,
    session_service_pb2,
    team_pb2,
    team_service_pb2,
)
from airlock_cli.audit import event_line
from airlock_cli.base import EXIT_LOCAL, EXIT_USAGE
from airlock_cli.sessions import EXIT_REJECTED
from airlock_cli.values import format_duration, parse_duration, parse_time
from airlock_client import DEFAULT_TIMEOUT, keys
from airlock_client.errors import StatusCode

Context = grpc.aio.ServicerContext[Any, Any]
TOKEN = "s3cret-token-value"


# -- a fake server ------------------------------------------------------------------------------


@dataclass
class Fake:
    handlers: dict[str, Callable[[Any, Context], Awaitable[Any]]] = field(default_factory=dict)
    streams: dict[str, Callable[[Any, Context], AsyncIterator[Any]]] = field(default_factory=dict)
    requests: list[tuple[str, Any, dict[str, str]]] = field(default_factory=list)
    target: str = ""

    def of(self, method: str) -> list[Any]:
        return [r for m, r, _ in self.requests if m == method]


_METHODS: dict[str, tuple[str, type[Message], type[Message]]] = {
    "WhoAmI": (
        "IdentityService",
        identity_service_pb2.WhoAmIRequest,
        identity_service_pb2.WhoAmIResponse,
    ),
    "GetApprover": (
        "IdentityService",
        identity_service_pb2.GetApproverRequest,
        identity_service_pb2.GetApproverResponse,
    ),
    "ListApprovers": (
        "IdentityService",
        identity_service_pb2.ListApproversRequest,
        identity_service_pb2.ListApproversResponse,
    ),
    "IssueCredential": (
        "IdentityService",
        identity_service_pb2.IssueCredentialRequest,
        identity_service_pb2.IssueCredentialResponse,
    ),
    "CreateApprovalTeam": (
        "TeamService",
        team_service_pb2.CreateApprovalTeamRequest,
        team_service_pb2.CreateApprovalTeamResponse,
    ),
    "GetApprovalTeam": (
        "TeamService",
        team_service_pb2.GetApprovalTeamRequest,
        team_service_pb2.GetApprovalTeamResponse,
    ),
    "ShareTeam": (
        "TeamService",
        team_service_pb2.ShareTeamRequest,
        team_service_pb2.ShareTeamResponse,
    ),
    "RespondToInvitation": (
        "ApproverService",
        approver_service_pb2.RespondToInvitationRequest,
        approver_service_pb2.RespondToInvitationResponse,
    ),
    "Vote": (
        "ApproverService",
        approver_service_pb2.VoteRequest,
        approver_service_pb2.VoteResponse,
    ),
    "GetSession": (
        "SessionService",
        session_service_pb2.GetSessionRequest,
        session_service_pb2.GetSessionResponse,
    ),
}


_STREAMS: dict[str, tuple[str, type[Message], type[Message]]] = {
    "WatchSession": (
        "SessionService",
        session_service_pb2.WatchSessionRequest,
        session_service_pb2.WatchSessionResponse,
    ),
}


def _handlers(fake: Fake) -> list[grpc.GenericRpcHandler]:
    by_service: dict[str, dict[str, grpc.RpcMethodHandler[Any, Any]]] = {}
    for method, (service, request_type, response_type) in _STREAMS.items():

        async def stream(
            request: Any, context: Context, method: str = method
        ) -> AsyncIterator[Any]:
            fake.requests.append((method, request, {}))
            if method not in fake.streams:
                await context.abort(grpc.StatusCode.UNIMPLEMENTED, "not in the fake")
            async for message in fake.streams[method](request, context):
                yield message

        by_service.setdefault(f"airlock.v1.{service}", {})[method] = (
            grpc.unary_stream_rpc_method_handler(
                stream,
                request_deserializer=request_type.FromString,
                response_serializer=response_type.SerializeToString,
            )
        )
    for method, (service, request_type, response_type) in _METHODS.items():

        async def unary(request: Any, context: Context, method: str = method) -> Any:
            metadata = {k: str(v) for k, v in (context.invocation_metadata() or ())}
            fake.requests.append((method, request, metadata))
            if method not in fake.handlers:
                await context.abort(grpc.StatusCode.UNIMPLEMENTED, "not in the fake")
            return await fake.handlers[method](request, context)

        by_service.setdefault(f"airlock.v1.{service}", {})[method] = (
            grpc.unary_unary_rpc_method_handler(
                unary,
                request_deserializer=request_type.FromString,
                response_serializer=response_type.SerializeToString,
            )
        )
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


@pytest.fixture(autouse=True)
def _clean_env(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in (
        "AIRLOCK_SERVER",
        "AIRLOCK_TOKEN",
        "AIRLOCK_TOKEN_FILE",
        "AIRLOCK_TLS_CA",
        "AIRLOCK_TLS_CERT",
        "AIRLOCK_TLS_KEY",
    ):
        monkeypatch.delenv(name, raising=False)


async def run(fake: Fake, *argv: str) -> int:
    return await cli.main_async(["--server", fake.target, "--token", TOKEN, *argv])


def _abort_status(
    code: int,
    message: str,
    reason: str,
    violations: list[tuple[str, str]] = (),  # type: ignore[assignment]
) -> grpc.Status:
    details = [any_pb2.Any()]
    details[0].Pack(error_details_pb2.ErrorInfo(reason=reason, domain="airlock"))
    if violations:
        bad = any_pb2.Any()
        bad.Pack(
            error_details_pb2.BadRequest(
                field_violations=[
                    error_details_pb2.BadRequest.FieldViolation(field=f, description=d)
                    for f, d in violations
                ]
            )
        )
        details.append(bad)
    return rpc_status.to_status(status_pb2.Status(code=code, message=message, details=details))  # type: ignore[no-any-return]


def _ts(seconds: int) -> timestamp_pb2.Timestamp:
    return timestamp_pb2.Timestamp(seconds=seconds)


# -- durations ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("90m", dt.timedelta(minutes=90)),
        ("24h", dt.timedelta(hours=24)),
        ("7d", dt.timedelta(days=7)),
        ("1h30m", dt.timedelta(hours=1, minutes=30)),
        ("45s", dt.timedelta(seconds=45)),
        ("2w", dt.timedelta(weeks=2)),
        (" 24H ", dt.timedelta(hours=24)),
        ("0s", dt.timedelta(0)),
    ],
)
def test_parse_duration(text: str, expected: dt.timedelta) -> None:
    assert parse_duration(text) == expected


@pytest.mark.parametrize("text", ["", "24", "h", "1.5h", "-1h", "24hours", "1h 30m", "7d!"])
def test_parse_duration_refuses(text: str) -> None:
    with pytest.raises(ValueError, match="invalid duration"):
        parse_duration(text)


@pytest.mark.parametrize("text", ["1h30m", "1d", "7d", "2h", "45s", "1d1s"])
def test_format_duration_round_trips(text: str) -> None:
    assert format_duration(parse_duration(text)) == text


def test_parse_time_needs_an_offset() -> None:
    assert parse_time("2030-01-01T00:00:00Z") == dt.datetime(2030, 1, 1, tzinfo=dt.UTC)
    with pytest.raises(ValueError, match="offset"):
        parse_time("2030-01-01T00:00:00")
    with pytest.raises(ValueError, match="RFC 3339"):
        parse_time("tomorrow")


# -- argument parsing ---------------------------------------------------------------------------


def test_parse_team_create() -> None:
    args = cli.build_parser().parse_args(
        [
            "teams",
            "create",
            "ops",
            "--approver",
            "alice",
            "--approver",
            "bob",
            "--min-approvals",
            "2",
            "--session-ttl",
            "2h",
            "--invitation-ttl",
            "7d",
        ]
    )
    assert args.name == "ops"
    assert args.approvers == ["alice", "bob"]
    assert args.min_approvals == 2
    assert args.session_ttl == dt.timedelta(hours=2)
    assert args.invitation_ttl == dt.timedelta(days=7)
    assert args.description == ""


def test_global_options_before_or_after_the_command() -> None:
    parser = cli.build_parser()
    before = parser.parse_args(["--json", "--server", "h:1", "--timeout", "3", "teams", "list"])
    after = parser.parse_args(["teams", "list", "--json", "--server", "h:1", "--timeout", "3"])
    for args in (before, after):
        assert args.json is True
        assert args.server == "h:1"
        assert args.timeout == 3.0
    plain = parser.parse_args(["teams", "list"])
    assert plain.json is False
    assert plain.server is None
    assert plain.timeout == DEFAULT_TIMEOUT


@pytest.mark.parametrize(
    ("argv", "fragment"),
    [
        (["teams", "create", "ops", "--min-approvals", "2"], "--approver"),
        (["credentials", "issue", "--kind", "admin", "--ttl", "5x"], "invalid duration"),
        (
            [
                "credentials",
                "issue",
                "--kind",
                "admin",
                "--ttl",
                "1h",
                "--expire-time",
                "2030-01-01T00:00:00Z",
            ],
            "not allowed with",
        ),
        (["credentials", "issue", "--kind", "root"], "invalid choice"),
        (["teams", "share", "t1"], "one of the arguments --account --service"),
        (["teams", "share", "t1", "--account", "1", "--service", "s"], "not allowed with"),
        (["approver", "invitations", "--state", "maybe"], "invalid choice"),
        (["--timeout", "0", "whoami"], "must be positive"),
        (["nonsense"], "invalid choice"),
        ([], "required"),
        (["whoami"], "no credential"),
        (["--token", "a", "--token-file", "b", "whoami"], "not both"),
    ],
)
def test_usage_errors_exit_1(
    argv: list[str], fragment: str, capsys: pytest.CaptureFixture[str]
) -> None:
    assert cli.main(argv) == EXIT_USAGE
    captured = capsys.readouterr()
    assert fragment in captured.err
    assert captured.out == ""


def test_help_exits_0_and_documents_exit_codes(capsys: pytest.CaptureFixture[str]) -> None:
    assert cli.main(["--help"]) == 0
    out = capsys.readouterr().out
    assert "exit codes" in out
    assert "64 + N" in out
    assert "AIRLOCK_TOKEN_FILE" in out


# -- errors -------------------------------------------------------------------------------------


@pytest.mark.asyncio
async def test_error_is_printed_with_code_reason_message_and_fields(
    fake: Fake, capsys: pytest.CaptureFixture[str]
) -> None:
    async def create(request: Any, context: Context) -> Any:
        await context.abort_with_status(
            _abort_status(
                code_pb2.INVALID_ARGUMENT,
                "the team is invalid",
                "INVALID_ARGUMENT",
                [("min_approvals", "must be at most 2"), ("name", "bad character '/'")],
            )
        )

    fake.handlers["CreateApprovalTeam"] = create
    code = await run(
        fake, "teams", "create", "a/b", "--approver", "x", "--approver", "y", "--min-approvals", "3"
    )
    assert code == 64 + 3
    captured = capsys.readouterr()
    assert captured.out == ""
    assert captured.err.splitlines() == [
        "error: INVALID_ARGUMENT: the team is invalid",  # the reason is the code: said once
        "  min_approvals: must be at most 2",
        "  name: bad character '/'",
    ]
    assert TOKEN not in captured.err


@pytest.mark.asyncio
async def test_a_message_that_only_repeats_the_fields_is_not_printed_twice(
    fake: Fake, capsys: pytest.CaptureFixture[str]
) -> None:
    async def create(request: Any, context: Context) -> Any:
        await context.abort_with_status(
            _abort_status(
                code_pb2.INVALID_ARGUMENT,
                "min_approvals: must be at most 2; name: bad character '/'",
                "INVALID_ARGUMENT",
                [("min_approvals", "must be at most 2"), ("name", "bad character '/'")],
            )
        )

    fake.handlers["CreateApprovalTeam"] = create
    code = await run(
        fake, "teams", "create", "a/b", "--approver", "x", "--approver", "y", "--min-approvals", "3"
    )
    assert code == 64 + 3
    assert capsys.readouterr().err.splitlines() == [
        "error: INVALID_ARGUMENT: invalid fields",
        "  min_approvals: must be at most 2",
        "  name: bad character '/'",
    ]


@pytest.mark.asyncio
async def test_permission_denied_exit_code(fake: Fake, capsys: pytest.CaptureFixture[str]) -> None:
    async def get(request: Any, context: Context) -> Any:
        await context.abort_with_status(
            _abort_status(code_pb2.PERMISSION_DENIED, "admins only", "PERMISSION_DENIED")
        )

    fake.handlers["GetApprover"] = get
    assert await run(fake, "approvers", "get", "bob") == 64 + 7
    assert capsys.readouterr().err == "error: PERMISSION_DENIED: admins only\n"


@pytest.mark.asyncio
async def test_the_tls_hint_is_only_for_a_connection_closed_at_the_handshake(
    fake: Fake, capsys: pytest.CaptureFixture[str]
) -> None:
    """The server's own UNAVAILABLE (it carries a reason) is an answer, not a TLS mismatch."""

    async def get(request: Any, context: Context) -> Any:
        await context.abort_with_status(
            _abort_status(code_pb2.UNAVAILABLE, "the database is unreachable", "DATABASE_DOWN")
        )

    fake.handlers["GetApprover"] = get
    assert await run(fake, "--timeout", "5", "approvers", "get", "bob") == 64 + 14
    assert capsys.readouterr().err == (
        "error: UNAVAILABLE DATABASE_DOWN: the database is unreachable\n"
    )


# -- output -------------------------------------------------------------------------------------


def _approver(approver_id: str) -> identity_pb2.Approver:
    return identity_pb2.Approver(
        approver_id=approver_id,
        display_name=approver_id.title(),
        email=f"{approver_id}@example.com",
        state=identity_pb2.Approver.STATE_ENABLED,
        create_time=_ts(1_900_000_000),
    )


@pytest.mark.asyncio
async def test_get_prints_aligned_fields_or_json(
    fake: Fake, capsys: pytest.CaptureFixture[str]
) -> None:
    async def get(request: Any, context: Context) -> Any:
        return identity_service_pb2.GetApproverResponse(approver=_approver(request.approver_id))

    fake.handlers["GetApprover"] = get
    assert await run(fake, "approvers", "get", "alice") == 0
    assert capsys.readouterr().out.splitlines() == [
        "approver_id:  alice",
        "display_name: Alice",
        "email:        alice@example.com",
        "state:        ENABLED",
        "create_time:  2030-03-17T17:46:40Z",
    ]
    assert await run(fake, "approvers", "get", "alice", "--json") == 0
    document = json.loads(capsys.readouterr().out)
    assert document["approverId"] == "alice"
    assert document["state"] == "STATE_ENABLED"
    assert fake.requests[0][2]["authorization"] == f"Bearer {TOKEN}"


@pytest.mark.asyncio
async def test_list_prints_a_table_or_one_json_document_of_all_pages(
    fake: Fake, capsys: pytest.CaptureFixture[str]
) -> None:
    async def list_approvers(request: Any, context: Context) -> Any:
        if not request.page_token:
            return identity_service_pb2.ListApproversResponse(
                approvers=[_approver("alice")], next_page_token="p2"
            )
        return identity_service_pb2.ListApproversResponse(approvers=[_approver("bob")])

    fake.handlers["ListApprovers"] = list_approvers
    assert await run(fake, "approvers", "list") == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].split() == ["APPROVER_ID", "DISPLAY_NAME", "EMAIL", "STATE"]
    assert lines[1].split() == ["alice", "Alice", "alice@example.com", "ENABLED"]
    assert lines[2].split() == ["bob", "Bob", "bob@example.com", "ENABLED"]
    assert await run(fake, "--json", "approvers", "list", "--state", "enabled") == 0
    document = json.loads(capsys.readouterr().out)
    assert [a["approverId"] for a in document["approvers"]] == ["alice", "bob"]
    assert document["nextPageToken"] == ""
    assert fake.of("ListApprovers")[-1].state == identity_pb2.Approver.STATE_ENABLED


@pytest.mark.asyncio
async def test_empty_list(fake: Fake, capsys: pytest.CaptureFixture[str]) -> None:
    async def list_approvers(request: Any, context: Context) -> Any:
        return identity_service_pb2.ListApproversResponse()

    fake.handlers["ListApprovers"] = list_approvers
    assert await run(fake, "approvers", "list") == 0
    assert capsys.readouterr().out == "no approvers\n"


@pytest.mark.asyncio
async def test_team_create_and_get_render_approvers(
    fake: Fake, capsys: pytest.CaptureFixture[str]
) -> None:
    team = team_pb2.ApprovalTeam(
        team_id="team-1",
        name="ops",
        state=team_pb2.ApprovalTeam.STATE_PENDING,
        status_code=team_pb2.ApprovalTeam.STATUS_CODE_PENDING_ACTIVATION,
        min_approvals=2,
        number_of_approvers=2,
        approvers=[
            team_pb2.TeamApprover(
                approver_id="alice",
                invitation_state=team_pb2.Invitation.STATE_ACCEPTED,
                invitation_id="inv-1",
            ),
            team_pb2.TeamApprover(
                approver_id="bob",
                invitation_state=team_pb2.Invitation.STATE_PENDING,
                invitation_id="inv-2",
            ),
        ],
    )
    team.session_ttl.FromTimedelta(dt.timedelta(hours=2))

    async def create(request: Any, context: Context) -> Any:
        return team_service_pb2.CreateApprovalTeamResponse(team=team)

    async def get(request: Any, context: Context) -> Any:
        return team_service_pb2.GetApprovalTeamResponse(team=team)

    fake.handlers["CreateApprovalTeam"] = create
    fake.handlers["GetApprovalTeam"] = get
    argv = ["teams", "create", "ops", "--approver", "alice", "--approver", "bob"]
    assert await run(fake, *argv, "--min-approvals", "2", "--session-ttl", "2h") == 0
    (request,) = fake.of("CreateApprovalTeam")
    assert list(request.approver_ids) == ["alice", "bob"]
    assert request.session_ttl.ToTimedelta() == dt.timedelta(hours=2)
    assert not request.HasField("invitation_ttl")
    assert request.request_id
    capsys.readouterr()
    assert await run(fake, "teams", "get", "team-1") == 0
    out = capsys.readouterr().out
    fields = dict(line.split(":", 1) for line in out.splitlines() if not line.startswith(" "))
    assert {k: v.strip() for k, v in fields.items()} == {
        "team_id": "team-1",
        "name": "ops",
        "state": "PENDING",
        "status_code": "PENDING_ACTIVATION",
        "min_approvals": "2",
        "number_of_approvers": "2",
        "session_ttl": "2h",
        "approvers": "",
    }
    rows = [line.split() for line in out.splitlines() if line.startswith("  ")]
    assert rows[0][:2] == ["APPROVER_ID", "INVITATION_STATE"]
    assert rows[1][:2] == ["alice", "ACCEPTED"]
    assert rows[2][:2] == ["bob", "PENDING"]


@pytest.mark.asyncio
async def test_share_with_account(fake: Fake, capsys: pytest.CaptureFixture[str]) -> None:
    async def share(request: Any, context: Context) -> Any:
        return team_service_pb2.ShareTeamResponse(
            share=team_pb2.TeamShare(team_id=request.team_id, principal=request.principal)
        )

    fake.handlers["ShareTeam"] = share
    assert await run(fake, "teams", "share", "t1", "--account", "123456789012") == 0
    assert "principal: account:123456789012" in capsys.readouterr().out


# -- credentials and tokens ---------------------------------------------------------------------


def _issue_handler() -> Callable[[Any, Context], Awaitable[Any]]:
    async def issue(request: Any, context: Context) -> Any:
        return identity_service_pb2.IssueCredentialResponse(
            credential=identity_pb2.Credential(
                credential_id="cred-9",
                principal=request.principal,
                state=identity_pb2.Credential.STATE_ACTIVE,
            ),
            token="NEW-TOKEN-abc",
        )

    return issue


@pytest.mark.asyncio
async def test_issue_prints_the_new_token_once(
    fake: Fake, capsys: pytest.CaptureFixture[str]
) -> None:
    fake.handlers["IssueCredential"] = _issue_handler()
    argv = ["credentials", "issue", "--kind", "approver", "--subject", "alice", "--ttl", "24h"]
    assert await run(fake, *argv) == 0
    captured = capsys.readouterr()
    assert captured.out.count("NEW-TOKEN-abc") == 1
    assert "token:" in captured.out
    assert "shown only once" in captured.err
    assert TOKEN not in captured.out + captured.err
    (request,) = fake.of("IssueCredential")
    assert request.principal.kind == common_pb2.PRINCIPAL_KIND_APPROVER
    assert request.principal.subject == "alice"
    assert request.ttl.ToTimedelta() == dt.timedelta(hours=24)


@pytest.mark.asyncio
async def test_issue_with_token_out_writes_a_0600_file_and_prints_no_token(
    fake: Fake, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    fake.handlers["IssueCredential"] = _issue_handler()
    out_file = tmp_path / "alice.token"
    argv = ["credentials", "issue", "--kind", "admin", "--token-out", str(out_file), "--json"]
    assert await run(fake, *argv) == 0
    captured = capsys.readouterr()
    assert "NEW-TOKEN-abc" not in captured.out + captured.err
    assert json.loads(captured.out)["credential"]["credentialId"] == "cred-9"
    assert out_file.read_text() == "NEW-TOKEN-abc\n"
    assert stat.S_IMODE(out_file.stat().st_mode) == 0o600


@pytest.mark.asyncio
async def test_issue_refuses_an_existing_token_out_before_calling_the_server(
    fake: Fake, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    fake.handlers["IssueCredential"] = _issue_handler()
    out_file = tmp_path / "exists"
    out_file.write_text("old")
    argv = ["credentials", "issue", "--kind", "admin", "--token-out", str(out_file)]
    assert await run(fake, *argv) == EXIT_LOCAL
    assert "already exists" in capsys.readouterr().err
    assert fake.of("IssueCredential") == []
    assert out_file.read_text() == "old"


@pytest.mark.asyncio
async def test_failed_issue_removes_the_empty_token_file(
    fake: Fake, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    async def issue(request: Any, context: Context) -> Any:
        await context.abort_with_status(
            _abort_status(code_pb2.NOT_FOUND, "no such approver", "APPROVER_NOT_FOUND")
        )

    fake.handlers["IssueCredential"] = issue
    out_file = tmp_path / "t"
    argv = ["credentials", "issue", "--kind", "approver", "--subject", "x"]
    assert await run(fake, *argv, "--token-out", str(out_file)) == 64 + 5
    assert not out_file.exists()
    assert "APPROVER_NOT_FOUND" in capsys.readouterr().err


@pytest.mark.asyncio
async def test_token_from_file_and_environment(
    fake: Fake, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    async def whoami(request: Any, context: Context) -> Any:
        return identity_service_pb2.WhoAmIResponse(credential_id="c")

    fake.handlers["WhoAmI"] = whoami
    token_file = tmp_path / "admin.token"
    token_file.write_text("# airlock admin token\n\nfile-token\n")
    base = ["--server", fake.target]
    assert await cli.main_async([*base, "--token-file", str(token_file), "whoami"]) == 0
    monkeypatch.setenv("AIRLOCK_TOKEN", "env-token")
    assert await cli.main_async([*base, "whoami"]) == 0
    assert await cli.main_async([*base, "whoami", "--token-file", str(token_file)]) == 0
    monkeypatch.delenv("AIRLOCK_TOKEN")
    monkeypatch.setenv("AIRLOCK_TOKEN_FILE", str(token_file))
    monkeypatch.setenv("AIRLOCK_SERVER", fake.target)
    assert await cli.main_async(["whoami"]) == 0
    sent = [metadata["authorization"] for _, _, metadata in fake.requests]
    assert sent == [
        "Bearer file-token",
        "Bearer env-token",
        "Bearer file-token",
        "Bearer file-token",
    ]


@pytest.mark.asyncio
async def test_unreadable_token_file_is_a_local_error(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    assert await cli.main_async(["--token-file", str(tmp_path / "none"), "whoami"]) == 2
    assert "cannot read token file" in capsys.readouterr().err


# -- approver commands --------------------------------------------------------------------------


def test_keygen_writes_a_private_key_and_prints_the_public_key(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "alice.pem"
    assert cli.main(["approver", "keygen", "--out", str(path)]) == 0
    captured = capsys.readouterr()
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    key = keys.load_private_key(path)
    assert f"publicKey: {keys.public_key_base64(key)}" in captured.out
    assert "never goes to the server" in captured.err
    assert cli.main(["approver", "keygen", "--out", str(path), "--json"]) == EXIT_LOCAL
    assert "already exists" in capsys.readouterr().err
    other = tmp_path / "bob.pem"
    assert cli.main(["approver", "keygen", "--out", str(other), "--json"]) == 0
    document = json.loads(capsys.readouterr().out)
    assert document["publicKey"] == keys.public_key_base64(keys.load_private_key(other))


@pytest.mark.asyncio
async def test_accept_enrolls_the_key_file_and_decline_sends_none(
    fake: Fake, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    async def respond(request: Any, context: Context) -> Any:
        return approver_service_pb2.RespondToInvitationResponse(
            invitation=team_pb2.Invitation(
                invitation_id=request.invitation_id, state=team_pb2.Invitation.STATE_ACCEPTED
            ),
            team_state=team_pb2.ApprovalTeam.STATE_ACTIVE,
        )

    fake.handlers["RespondToInvitation"] = respond
    key = keys.generate_private_key()
    key_file = keys.save_private_key(key, tmp_path / "k.pem")
    assert await run(fake, "approver", "accept", "inv-1", "--key", str(key_file)) == 0
    out = capsys.readouterr().out
    assert "team_state: ACTIVE" in out
    assert await run(fake, "approver", "decline", "inv-2") == 0
    accept, decline = fake.of("RespondToInvitation")
    Ed25519PublicKey.from_public_bytes(accept.public_key).verify(accept.key_proof, b"inv-1")
    assert accept.public_key == keys.public_key_bytes(key)
    assert decline.decision == approver_service_pb2.INVITATION_DECISION_DECLINE
    assert decline.public_key == b""


@pytest.mark.asyncio
async def test_accept_with_a_readable_key_file_fails_locally(
    fake: Fake, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    key_file = keys.save_private_key(keys.generate_private_key(), tmp_path / "k.pem")
    key_file.chmod(0o644)
    assert await run(fake, "approver", "accept", "inv-1", "--key", str(key_file)) == 2
    assert "too open" in capsys.readouterr().err
    assert fake.requests == []


@pytest.mark.asyncio
async def test_vote_shows_what_is_signed_and_signs_the_session_digest_locally(
    fake: Fake, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    session = session_pb2.Session(
        session_id="ses-1",
        team_id="team-1",
        team_name="ops",
        team_version=2,
        action="backup:CreateRestoreAccessBackupVault",
        protected_resource="arn:aws:backup:us-east-1:111111111111:backup-vault:v",
        requester=common_pb2.Principal(
            kind=common_pb2.PRINCIPAL_KIND_ACCOUNT, subject="222222222222"
        ),
        comment="account A is compromised",
        min_approvals=2,
        state=session_pb2.Session.STATE_PENDING,
        expire_time=_ts(1_900_000_000),
    )

    async def get(request: Any, context: Context) -> Any:
        return session_service_pb2.GetSessionResponse(session=session)

    async def vote(request: Any, context: Context) -> Any:
        return approver_service_pb2.VoteResponse(session=session)

    fake.handlers["GetSession"] = get
    fake.handlers["Vote"] = vote
    key = keys.generate_private_key()
    key_file = keys.save_private_key(key, tmp_path / "k.pem")
    argv = ["approver", "vote", "ses-1", "--reject", "--key", str(key_file)]
    assert await run(fake, *argv, "--comment", "call me first") == 0
    err = capsys.readouterr().err
    assert "You are signing this vote" in err
    for shown in (
        "REJECT",
        "arn:aws:backup:us-east-1:111111111111:backup-vault:v",
        "account:222222222222",
        "account A is compromised",
        "2030-03-17T17:46:40Z",
    ):
        assert shown in err
    (request,) = fake.of("Vote")
    assert request.decision == session_pb2.VOTE_DECISION_REJECT
    assert request.comment == "call me first"
    key.public_key().verify(request.signature, keys.vote_digest(session, False))
    assert await run(fake, "approver", "vote", "ses-1", "--key", str(key_file)) == EXIT_USAGE


def test_an_event_line_shows_whole_numbers_as_integers() -> None:
    """Details travel as a Struct, where every number is a double: 2 must not print as 2.0."""
    e = event_pb2.Event(seq=7, type="session.approved")
    e.time.FromDatetime(dt.datetime(2026, 12, 7, tzinfo=dt.UTC))
    e.details.update({"approvals": 2, "ratio": 0.5, "nested": {"n": [1, 2.5]}})
    line = event_line(e)
    assert line.endswith('{"approvals":2,"nested":{"n":[1,2.5]},"ratio":0.5}')


# -- following a session through lost streams ---------------------------------------------------

_S = session_pb2.Session


def _ses_1(state: session_pb2.Session.State.ValueType, **fields: Any) -> session_pb2.Session:
    return _S(session_id="ses-1", state=state, min_approvals=2, **fields)


_PENDING = _ses_1(_S.STATE_PENDING)


def _watches(fake: Fake, *streams: list[session_pb2.Session | grpc.StatusCode]) -> None:
    """WatchSession answers the n-th call with the n-th script: sessions to send, then a status
    to end with (none: the stream ends early, as when a server goes away)."""
    scripts = iter(streams)

    async def watch(request: Any, context: Context) -> AsyncIterator[Any]:
        for step in next(scripts):
            if isinstance(step, grpc.StatusCode):
                await context.abort(step, "going away")
            yield session_service_pb2.WatchSessionResponse(session=step)

    fake.streams["WatchSession"] = watch


@pytest.mark.asyncio
async def test_sessions_watch_reopens_a_lost_or_ended_stream_and_shows_no_state_twice(
    fake: Fake, capsys: pytest.CaptureFixture[str]
) -> None:
    approved = _ses_1(_S.STATE_APPROVED, approval_count=2)
    # CANCELLED: a server shutting down cancels its streams (the SDK itself does not retry it).
    _watches(fake, [_PENDING, grpc.StatusCode.CANCELLED], [_PENDING], [_PENDING, approved])
    assert await run(fake, "--json", "sessions", "watch", "ses-1") == 0
    captured = capsys.readouterr()
    states = [json.loads(line)["state"] for line in captured.out.splitlines()]
    assert states == ["STATE_PENDING", "STATE_APPROVED"]
    assert captured.err == "connection lost (CANCELLED); reopening the watch\n"
    assert len(fake.of("WatchSession")) == 3


@pytest.mark.asyncio
async def test_sessions_wait_rides_through_and_exits_with_the_outcome(
    fake: Fake, capsys: pytest.CaptureFixture[str]
) -> None:
    rejected = _ses_1(_S.STATE_FAILED, status_code=_S.STATUS_CODE_REJECTED, rejection_count=2)
    _watches(fake, [_PENDING, grpc.StatusCode.DEADLINE_EXCEEDED], [rejected])
    assert await run(fake, "sessions", "wait", "ses-1") == EXIT_REJECTED
    err = capsys.readouterr().err.splitlines()
    assert err == [
        "waiting: session ses-1: 0 of 2 approvals, 0 rejections",
        "connection lost (DEADLINE_EXCEEDED); reopening the watch",
        "session ses-1 ended FAILED (REJECTED)",
    ]


@pytest.mark.asyncio
async def test_a_watch_refused_is_not_retried(
    fake: Fake, capsys: pytest.CaptureFixture[str]
) -> None:
    _watches(fake, [grpc.StatusCode.PERMISSION_DENIED])
    assert await run(fake, "sessions", "watch", "ses-1") == 64 + StatusCode.PERMISSION_DENIED
    assert capsys.readouterr().err == "error: PERMISSION_DENIED: going away\n"
    assert len(fake.of("WatchSession")) == 1
