"""`airlock-server healthcheck`'s choices that need no server: where it dials for a listen
address, and which name it asks the certificate for (the calls themselves: tests/e2e)."""

from __future__ import annotations

import datetime as dt
import ipaddress

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from airlock_server.config import ConfigError
from airlock_server.transport.health_check import certificate_name, local_target


@pytest.mark.parametrize(
    ("listen", "target"),
    [
        ("0.0.0.0:50051", "127.0.0.1:50051"),
        ("[::]:7000", "[::1]:7000"),
        ("127.0.0.1:6000", "127.0.0.1:6000"),
        ("airlock.internal:443", "airlock.internal:443"),
        (":50051", "127.0.0.1:50051"),
    ],
)
def test_the_target_is_the_listen_port_on_this_machine(listen: str, target: str) -> None:
    assert local_target(listen) == target


@pytest.mark.parametrize("listen", ["127.0.0.1:0", "127.0.0.1", "localhost:http"])
def test_a_listen_address_without_a_fixed_port_is_refused(listen: str) -> None:
    with pytest.raises(ConfigError, match="healthcheck needs a fixed port"):
        local_target(listen)


def _certificate(names: list[x509.GeneralName]) -> bytes:
    key = ec.generate_private_key(ec.SECP256R1())
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "airlock")])
    now = dt.datetime.now(dt.UTC)
    builder = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now)
        .not_valid_after(now + dt.timedelta(days=1))
    )
    if names:
        builder = builder.add_extension(x509.SubjectAlternativeName(names), critical=False)
    return builder.sign(key, hashes.SHA256()).public_bytes(serialization.Encoding.PEM)


def test_the_name_asked_for_is_the_certificate_s_first_dns_name_else_its_address() -> None:
    ip = x509.IPAddress(ipaddress.ip_address("10.0.0.7"))
    dns = x509.DNSName("airlock.example")
    assert certificate_name(_certificate([ip, dns])) == "airlock.example"
    assert certificate_name(_certificate([ip])) == "10.0.0.7"
    assert certificate_name(_certificate([])) is None
