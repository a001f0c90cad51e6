"""`airlock-server healthcheck`: grpc.health.v1 Check against the server serve's settings describe.

A container's HEALTHCHECK (or a Kubernetes exec probe) runs it beside the server, so it dials the
port of AIRLOCK_LISTEN on this machine and speaks TLS exactly when serve does: it trusts the given
CA (by default serve's own certificate file, which is the CA for a self-signed certificate or a
chain file that ends with its CA) and asks for the name the certificate carries, since the
certificate rarely names 127.0.0.1. Under mutual TLS it presents a client certificate (by default
serve's own certificate and key). Kubernetes' built-in gRPC probes speak plaintext only.
"""

from __future__ import annotations

import ipaddress
from pathlib import Path

import grpc
from cryptography import x509
from grpc_health.v1 import health_pb2, health_pb2_grpc

from airlock_server.config import ConfigError, Settings

# What a listen host means to a client on the same machine.
_LOCAL = {"": "127.0.0.1", "0.0.0.0": "127.0.0.1", "[::]": "[::1]", "::": "[::1]"}


def local_target(listen: str) -> str:
    """host:port that reaches a server listening on `listen` from this machine."""
    host, sep, port = listen.rpartition(":")
    if not sep or not port.isdigit() or int(port) == 0:
        raise ConfigError(
            f"AIRLOCK_LISTEN / --listen: healthcheck needs a fixed port, got {listen!r}"
        )
    return f"{_LOCAL.get(host, host)}:{port}"


def _read(path: str, what: str) -> bytes:
    try:
        return Path(path).read_bytes()
    except OSError as exc:
        raise ConfigError(f"cannot read the {what} {path}: {exc.strerror}") from exc


def certificate_name(chain_pem: bytes) -> str | None:
    """The first DNS name (else IP address) the leaf certificate is issued for."""
    leaf = x509.load_pem_x509_certificate(chain_pem)
    try:
        names = leaf.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    except x509.ExtensionNotFound:
        return None
    dns = names.get_values_for_type(x509.DNSName)
    if dns:
        return dns[0]
    ips: list[ipaddress.IPv4Address | ipaddress.IPv6Address] = [
        ip
        for ip in names.get_values_for_type(x509.IPAddress)
        if isinstance(ip, ipaddress.IPv4Address | ipaddress.IPv6Address)
    ]
    return str(ips[0]) if ips else None


def _channel(
    target: str,
    settings: Settings,
    ca: str | None,
    client_cert: str | None,
    client_key: str | None,
) -> grpc.Channel:
    if settings.tls_cert is None:
        return grpc.insecure_channel(target)
    served_chain = _read(settings.tls_cert, "TLS certificate")
    root = _read(ca, "CA") if ca else served_chain
    cert_path = client_cert or (settings.tls_cert if settings.tls_client_ca else None)
    key_path = client_key or (settings.tls_key if settings.tls_client_ca else None)
    credentials = grpc.ssl_channel_credentials(
        root_certificates=root,
        private_key=_read(key_path, "client key") if key_path else None,
        certificate_chain=_read(cert_path, "client certificate") if cert_path else None,
    )
    try:
        name = certificate_name(served_chain)
    except ValueError as exc:
        raise ConfigError(f"the TLS certificate {settings.tls_cert} is not PEM: {exc}") from exc
    options = [("grpc.ssl_target_name_override", name)] if name else []
    return grpc.secure_channel(target, credentials, options=options)


def health_check(
    listen: str,
    settings: Settings,
    *,
    ca: str | None = None,
    client_cert: str | None = None,
    client_key: str | None = None,
    timeout: float = 5.0,
) -> tuple[bool, str]:
    """(True, "SERVING") or (False, what went wrong). A setting it cannot use raises
    ConfigError."""
    target = local_target(listen)
    with _channel(target, settings, ca, client_cert, client_key) as channel:
        try:
            answer = health_pb2_grpc.HealthStub(channel).Check(
                health_pb2.HealthCheckRequest(), timeout=timeout
            )
        except grpc.RpcError as exc:
            code = exc.code() if isinstance(exc, grpc.Call) else None
            detail = exc.details() if isinstance(exc, grpc.Call) else str(exc)
            name = code.name if code is not None else "UNKNOWN"
            return False, f"{target}: {name}: {detail}"
    status = health_pb2.HealthCheckResponse.ServingStatus.Name(answer.status)
    if answer.status != health_pb2.HealthCheckResponse.SERVING:
        return False, f"{target}: {status}"
    return True, status
