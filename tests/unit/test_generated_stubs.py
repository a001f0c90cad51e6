"""The generated stubs in clients/airlock/v1 match proto/ and cover the design's whole API."""

from __future__ import annotations

import importlib
import pkgutil
import subprocess
import sys
from pathlib import Path
from types import ModuleType

import pytest
from google.protobuf import descriptor_pool
from google.protobuf.descriptor import FileDescriptor, ServiceDescriptor

import airlock.v1

REPO = Path(__file__).resolve().parents[2]
PROTO_DIR = REPO / "proto" / "airlock" / "v1"

# The contract of docs/design (API outline) plus ExportApprovalProof (issue 5).
EXPECTED_RPCS: dict[str, set[str]] = {
    "IdentityService": {
        "WhoAmI",
        "CreateApprover",
        "GetApprover",
        "ListApprovers",
        "DisableApprover",
        "RegisterAccount",
        "ListAccounts",
        "IssueCredential",
        "RevokeCredential",
        "ListCredentials",
    },
    "TeamService": {
        "CreateApprovalTeam",
        "GetApprovalTeam",
        "ListApprovalTeams",
        "UpdateApprovalTeam",
        "StartTeamDeletion",
        "DeleteInactiveTeam",
        "ShareTeam",
        "UnshareTeam",
        "ListTeamShares",
        "GetTeamHealth",
        "IssueInvitationLink",
        "StartTeamBaseline",
    },
    "ApproverService": {
        "ListInvitations",
        "RespondToInvitation",
        "ListAssignedSessions",
        "Vote",
    },
    "VaultService": {
        "CreateVault",
        "GetVault",
        "ListVaults",
        "AssociateApprovalTeam",
        "DisassociateApprovalTeam",
        "RequestRestoreAccess",
        "ListRestoreAccess",
        "RevokeRestoreAccess",
        "CheckAccess",
    },
    "SessionService": {
        "StartSession",
        "GetSession",
        "ListSessions",
        "CancelSession",
        "CompleteSession",
        "WatchSession",
        "ExportApprovalProof",
    },
    "AuditService": {"ListEvents", "WatchEvents", "VerifyLog", "GetLogCheckpoint"},
    # Issue 12: notifications.
    "NotificationService": {
        "CreateEndpoint",
        "ListEndpoints",
        "UpdateEndpoint",
        "DeleteEndpoint",
        "SendTestNotification",
        "ListDeliveries",
    },
}
SERVER_STREAMING = {("SessionService", "WatchSession"), ("AuditService", "WatchEvents")}


def _generated_modules() -> list[ModuleType]:
    names = sorted(m.name for m in pkgutil.iter_modules(airlock.v1.__path__))
    return [importlib.import_module(f"airlock.v1.{name}") for name in names]


def _service(name: str) -> ServiceDescriptor:
    return descriptor_pool.Default().FindServiceByName(f"airlock.v1.{name}")


def test_committed_stubs_match_a_fresh_generation() -> None:
    result = subprocess.run(
        [sys.executable, str(REPO / "scripts" / "gen_protos.py"), "--check"],
        capture_output=True,
        text=True,
        check=False,
        cwd=REPO,
    )
    assert result.returncode == 0, result.stdout + result.stderr


def test_every_proto_file_has_its_modules() -> None:
    modules = {m.__name__.rsplit(".", 1)[1] for m in _generated_modules()}
    for proto in sorted(PROTO_DIR.glob("*.proto")):
        assert f"{proto.stem}_pb2" in modules
        assert f"{proto.stem}_pb2_grpc" in modules


def test_every_generated_module_imports() -> None:
    files: list[FileDescriptor] = [
        m.DESCRIPTOR for m in _generated_modules() if m.__name__.endswith("_pb2")
    ]
    assert files
    assert all(f.package == "airlock.v1" for f in files)


@pytest.mark.parametrize("service_name", sorted(EXPECTED_RPCS))
def test_service_has_exactly_the_designed_rpcs(service_name: str) -> None:
    _generated_modules()
    service = _service(service_name)
    assert {m.name for m in service.methods} == EXPECTED_RPCS[service_name]
    for method in service.methods:
        assert method.input_type.name == f"{method.name}Request"
        assert method.output_type.name == f"{method.name}Response"
        streaming = (service_name, method.name) in SERVER_STREAMING
        assert method.server_streaming is streaming
        assert method.client_streaming is False


@pytest.mark.parametrize("service_name", sorted(EXPECTED_RPCS))
def test_grpc_stub_and_servicer_exist(service_name: str) -> None:
    stem = _service(service_name).file.name.rsplit("/", 1)[1].removesuffix(".proto")
    grpc_module = importlib.import_module(f"airlock.v1.{stem}_pb2_grpc")
    assert hasattr(grpc_module, f"{service_name}Stub")
    assert hasattr(grpc_module, f"{service_name}Servicer")
    assert hasattr(grpc_module, f"add_{service_name}Servicer_to_server")


def test_list_requests_follow_aip_158() -> None:
    _generated_modules()
    for service_name in EXPECTED_RPCS:
        for method in _service(service_name).methods:
            if not method.name.startswith("List"):
                continue
            request = method.input_type.fields_by_name
            response = method.output_type.fields_by_name
            assert request["page_size"].type == request["page_size"].TYPE_INT32, method.name
            assert "page_token" in request, method.name
            assert "next_page_token" in response, method.name


def test_mutations_take_a_request_id() -> None:
    _generated_modules()
    reads = ("Get", "List", "Watch", "Check", "Verify", "Export", "WhoAmI")
    for service_name in EXPECTED_RPCS:
        for method in _service(service_name).methods:
            if method.name.startswith(reads):
                continue
            assert "request_id" in method.input_type.fields_by_name, method.name
