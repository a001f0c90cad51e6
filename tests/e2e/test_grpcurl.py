"""The server as an operator meets it first: the real grpcurl binary, reflection, health, auth."""

from __future__ import annotations

import json
import secrets
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # the `server` fixture's type; a conftest is not importable at run time
    from e2e.conftest import ServerProcess

AIRLOCK_SERVICES = {
    "airlock.v1.IdentityService",
    "airlock.v1.TeamService",
    "airlock.v1.ApproverService",
    "airlock.v1.VaultService",
    "airlock.v1.SessionService",
    "airlock.v1.AuditService",
    "airlock.v1.NotificationService",
}


def _unique(prefix: str) -> str:
    return f"{prefix}-{secrets.token_hex(4)}"


# grpcurl exits with 64 + the status code when the RPC fails.
GRPCURL_STATUS_EXIT = 64


def test_list_shows_every_service_with_health_and_reflection(server: ServerProcess) -> None:
    listed = server.grpcurl("list")
    assert listed.returncode == 0, listed.stderr
    services = set(listed.stdout.split())
    assert services >= AIRLOCK_SERVICES
    assert "grpc.health.v1.Health" in services
    assert any(s.startswith("grpc.reflection.") for s in services)


def test_list_methods_of_a_service(server: ServerProcess) -> None:
    listed = server.grpcurl("list", "airlock.v1.TeamService")
    assert listed.returncode == 0, listed.stderr
    assert "airlock.v1.TeamService.CreateApprovalTeam" in listed.stdout.split()


def test_health_check_is_serving_without_a_token(server: ServerProcess) -> None:
    checked = server.grpcurl("grpc.health.v1.Health/Check")
    assert checked.returncode == 0, checked.stderr
    assert json.loads(checked.stdout) == {"status": "SERVING"}
    per_service = server.grpcurl(
        "grpc.health.v1.Health/Check", data='{"service": "airlock.v1.TeamService"}'
    )
    assert per_service.returncode == 0, per_service.stderr
    assert json.loads(per_service.stdout) == {"status": "SERVING"}


def test_whoami_without_a_token_is_unauthenticated(server: ServerProcess) -> None:
    answered = server.grpcurl("airlock.v1.IdentityService/WhoAmI")
    assert answered.returncode == GRPCURL_STATUS_EXIT + 16
    assert "Code: Unauthenticated" in answered.stderr
    assert '"reason":"UNAUTHENTICATED"' in answered.stderr
    assert '"domain":"airlock"' in answered.stderr


def test_whoami_with_a_bad_token_is_unauthenticated(server: ServerProcess) -> None:
    answered = server.grpcurl("airlock.v1.IdentityService/WhoAmI", token="alk_not-a-real-token")
    assert answered.returncode == GRPCURL_STATUS_EXIT + 16
    assert "Code: Unauthenticated" in answered.stderr


def test_whoami_with_the_admin_token(server: ServerProcess) -> None:
    answered = server.grpcurl("airlock.v1.IdentityService/WhoAmI", token=server.admin_token)
    assert answered.returncode == 0, answered.stderr
    me = json.loads(answered.stdout)
    assert me["principal"]["kind"] == "PRINCIPAL_KIND_ADMIN"
    assert me["credential_id"]


def test_admin_creates_an_approver_with_json(server: ServerProcess) -> None:
    approver_id = _unique("grpcurl")
    body = json.dumps(
        {"approver_id": approver_id, "display_name": "Grace Curl", "email": "g@example.com"}
    )
    created = server.grpcurl(
        "airlock.v1.IdentityService/CreateApprover", token=server.admin_token, data=body
    )
    assert created.returncode == 0, created.stderr
    approver = json.loads(created.stdout)["approver"]
    assert approver["approver_id"] == approver_id
    assert approver["display_name"] == "Grace Curl"
    assert approver["state"] == "STATE_ENABLED"

    fetched = server.grpcurl(
        "airlock.v1.IdentityService/GetApprover",
        token=server.admin_token,
        data=json.dumps({"approver_id": approver_id}),
    )
    assert fetched.returncode == 0, fetched.stderr
    assert json.loads(fetched.stdout)["approver"]["approver_id"] == approver_id


def test_invalid_argument_names_the_field(server: ServerProcess) -> None:
    answered = server.grpcurl(
        "airlock.v1.TeamService/CreateApprovalTeam",
        token=server.admin_token,
        data=json.dumps({"name": _unique("t"), "approver_ids": ["a", "b"], "min_approvals": 1}),
    )
    assert answered.returncode == GRPCURL_STATUS_EXIT + 3
    assert "Code: InvalidArgument" in answered.stderr
    assert "google.rpc.BadRequest" in answered.stderr
    assert '"field":"min_approvals"' in answered.stderr


def test_an_rpc_answers_a_status_with_error_info_never_unknown(server: ServerProcess) -> None:
    """Implemented or not yet, a refusal carries the airlock ErrorInfo that grpcurl prints."""
    for method in (
        "airlock.v1.AuditService/GetLogCheckpoint",
        "airlock.v1.TeamService/GetTeamHealth",
    ):
        answered = server.grpcurl(method, token=server.admin_token, data="{}")
        if answered.returncode == 0:
            continue
        assert answered.returncode not in (GRPCURL_STATUS_EXIT + 2, GRPCURL_STATUS_EXIT + 13)
        assert "Code: Unknown" not in answered.stderr
        assert "Code: Internal" not in answered.stderr
        assert '"domain":"airlock"' in answered.stderr
        if "Code: Unimplemented" in answered.stderr:
            assert '"reason":"NOT_IMPLEMENTED"' in answered.stderr
