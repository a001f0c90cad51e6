"""The gRPC server: services, health, reflection."""

from __future__ import annotations

from dataclasses import dataclass

import grpc
from grpc_health.v1 import health, health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection

from airlock.v1 import (
    approver_service_pb2,
    approver_service_pb2_grpc,
    audit_service_pb2,
    audit_service_pb2_grpc,
    identity_service_pb2,
    identity_service_pb2_grpc,
    notification_service_pb2,
    notification_service_pb2_grpc,
    session_service_pb2,
    session_service_pb2_grpc,
    team_service_pb2,
    team_service_pb2_grpc,
    vault_service_pb2,
    vault_service_pb2_grpc,
)
from airlock_server.app.audit import AuditService
from airlock_server.app.identity import IdentityService
from airlock_server.app.notifications import NotificationService
from airlock_server.app.passkeys import InvitationLinks
from airlock_server.app.sessions import SessionService
from airlock_server.app.teams import TeamService
from airlock_server.app.vaults import VaultService
from airlock_server.transport.interceptors import RpcInterceptor
from airlock_server.transport.limits import Limits
from airlock_server.transport.metrics import Telemetry
from airlock_server.transport.servicers.approver import ApproverServicer
from airlock_server.transport.servicers.audit import AuditServicer
from airlock_server.transport.servicers.identity import IdentityServicer
from airlock_server.transport.servicers.notifications import NotificationServicer
from airlock_server.transport.servicers.sessions import SessionServicer
from airlock_server.transport.servicers.teams import TeamServicer
from airlock_server.transport.servicers.vaults import VaultServicer

SERVICE_NAMES = tuple(
    module.DESCRIPTOR.services_by_name[name].full_name
    for module, name in (
        (identity_service_pb2, "IdentityService"),
        (team_service_pb2, "TeamService"),
        (approver_service_pb2, "ApproverService"),
        (vault_service_pb2, "VaultService"),
        (session_service_pb2, "SessionService"),
        (audit_service_pb2, "AuditService"),
        (notification_service_pb2, "NotificationService"),
    )
)


class ListenError(Exception):
    """The server cannot bind its address; the message names it."""


@dataclass(frozen=True)
class UseCases:
    identities: IdentityService
    teams: TeamService
    sessions: SessionService
    vaults: VaultService
    audit: AuditService
    # None: a server without the NotificationService (tests that wire a subset).
    notifications: NotificationService | None = None
    # None: a server that issues no invitation links (tests that wire a subset).
    links: InvitationLinks | None = None


@dataclass
class Served:
    server: grpc.aio.Server
    health: health.aio.HealthServicer
    port: int
    limits: Limits

    async def set_serving(self, serving: bool) -> None:
        status = (
            health_pb2.HealthCheckResponse.SERVING
            if serving
            else health_pb2.HealthCheckResponse.NOT_SERVING
        )
        for name in ("", *SERVICE_NAMES):
            await self.health.set(name, status)


@dataclass(frozen=True)
class TlsFiles:
    """PEM bytes of the server's TLS identity and, for mutual TLS, the CA of its clients."""

    certificate_chain: bytes
    private_key: bytes
    client_ca: bytes | None = None

    def credentials(self) -> grpc.ServerCredentials:
        return grpc.ssl_server_credentials(
            [(self.private_key, self.certificate_chain)],
            root_certificates=self.client_ca,
            require_client_auth=self.client_ca is not None,
        )


def build_server(
    app: UseCases,
    listen: str,
    tls: TlsFiles | None = None,
    limits: Limits | None = None,
    telemetry: Telemetry | None = None,
) -> Served:
    """The server with every service; plaintext, or TLS only when `tls` is given."""
    limits = limits or Limits.of()
    server = grpc.aio.server(
        interceptors=[RpcInterceptor(app.identities, app.audit, limits, telemetry)]
    )
    identity_service_pb2_grpc.add_IdentityServiceServicer_to_server(
        IdentityServicer(app.identities), server
    )
    team_service_pb2_grpc.add_TeamServiceServicer_to_server(
        TeamServicer(app.teams, app.links), server
    )
    approver_service_pb2_grpc.add_ApproverServiceServicer_to_server(
        ApproverServicer(app.teams, app.sessions), server
    )
    vault_service_pb2_grpc.add_VaultServiceServicer_to_server(VaultServicer(app.vaults), server)
    session_service_pb2_grpc.add_SessionServiceServicer_to_server(
        SessionServicer(app.sessions), server
    )
    audit_service_pb2_grpc.add_AuditServiceServicer_to_server(AuditServicer(app.audit), server)
    if app.notifications is not None:
        notification_service_pb2_grpc.add_NotificationServiceServicer_to_server(
            NotificationServicer(app.notifications), server
        )
    # The asyncio servicer: the threaded one blocks a worker thread per Watch stream, and a
    # watcher left open then keeps the process from exiting after shutdown.
    health_servicer = health.aio.HealthServicer()
    health_pb2_grpc.add_HealthServicer_to_server(health_servicer, server)
    reflection.enable_server_reflection(
        (*SERVICE_NAMES, health.SERVICE_NAME, reflection.SERVICE_NAME), server
    )
    try:
        if tls is None:
            port = server.add_insecure_port(listen)
        else:
            port = server.add_secure_port(listen, tls.credentials())
    except RuntimeError:  # grpc's "Failed to bind", which says no more than that
        port = 0
    if port == 0:
        raise ListenError(
            f"cannot listen on {listen}: the port is in use, or the host is not an address "
            "of this machine"
        )
    return Served(server, health_servicer, port, limits)
