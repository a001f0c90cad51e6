"""TLS and mutual TLS: a real `airlock-server serve` with certificates this test makes itself.

A throwaway CA signs the server's certificate (SAN IP:127.0.0.1 and DNS:localhost) and a
client's; a second CA, which the server does not trust, signs an impostor's. The server is
started the way an operator does it (AIRLOCK_TLS_* in its environment), and reached with the
SDK, the CLI and grpcurl. TLS is a transport matter, so SQLite is enough.
"""

from __future__ import annotations

import datetime as dt
import ipaddress
import os
import socket
import ssl
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import httpx
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from airlock_client import AirlockClient, AirlockError, RetryPolicy, StatusCode
from airlock_server.cli import main as server_main

if TYPE_CHECKING:  # the `server` fixture's type; a conftest is not importable at run time
    from e2e.conftest import ServerProcess

BIN = Path(sys.executable).parent  # the commands installed beside this interpreter
NO_RETRY = RetryPolicy(max_attempts=1)
# grpcurl and the CLI exit with 64 + the status code when an RPC fails; 14 is UNAVAILABLE.
UNAVAILABLE_EXIT = 64 + 14


# --- certificates -------------------------------------------------------------------------


@dataclass(frozen=True)
class Pem:
    cert: Path
    key: Path


def _key_pem(key: ec.EllipticCurvePrivateKey) -> bytes:
    return key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )


def _name(common_name: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)])


def _now() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


def make_ca(directory: Path, name: str) -> tuple[Pem, x509.Certificate, ec.EllipticCurvePrivateKey]:
    key = ec.generate_private_key(ec.SECP256R1())
    cert = (
        x509.CertificateBuilder()
        .subject_name(_name(name))
        .issuer_name(_name(name))
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(_now() - dt.timedelta(minutes=5))
        .not_valid_after(_now() + dt.timedelta(days=1))
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=True,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                key_cert_sign=True,
                crl_sign=True,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .sign(key, hashes.SHA256())
    )
    pem = Pem(directory / f"{name}.crt", directory / f"{name}.key")
    pem.cert.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    pem.key.write_bytes(_key_pem(key))
    pem.key.chmod(0o600)
    return pem, cert, key


def make_leaf(
    directory: Path,
    name: str,
    ca_cert: x509.Certificate,
    ca_key: ec.EllipticCurvePrivateKey,
    *,
    server: bool,
) -> Pem:
    key = ec.generate_private_key(ec.SECP256R1())
    builder = (
        x509.CertificateBuilder()
        .subject_name(_name(name))
        .issuer_name(ca_cert.subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(_now() - dt.timedelta(minutes=5))
        .not_valid_after(_now() + dt.timedelta(days=1))
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(
            x509.ExtendedKeyUsage(
                [ExtendedKeyUsageOID.SERVER_AUTH if server else ExtendedKeyUsageOID.CLIENT_AUTH]
            ),
            critical=False,
        )
    )
    if server:
        builder = builder.add_extension(
            x509.SubjectAlternativeName(
                [x509.IPAddress(ipaddress.ip_address("127.0.0.1")), x509.DNSName("localhost")]
            ),
            critical=False,
        )
    cert = builder.sign(ca_key, hashes.SHA256())
    pem = Pem(directory / f"{name}.crt", directory / f"{name}.key")
    pem.cert.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    pem.key.write_bytes(_key_pem(key))
    pem.key.chmod(0o600)
    return pem


@dataclass(frozen=True)
class Pki:
    ca: Pem
    server: Pem
    client: Pem
    impostor: Pem  # a client certificate from a CA the server does not trust


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> Pki:
    directory = tmp_path_factory.mktemp("pki")
    ca, ca_cert, ca_key = make_ca(directory, "airlock-test-ca")
    _, other_cert, other_key = make_ca(directory, "other-ca")
    return Pki(
        ca=ca,
        server=make_leaf(directory, "server", ca_cert, ca_key, server=True),
        client=make_leaf(directory, "client", ca_cert, ca_key, server=False),
        impostor=make_leaf(directory, "impostor", other_cert, other_key, server=False),
    )


# --- servers ----------------------------------------------------------------------------------


def _served(
    request: pytest.FixtureRequest, directory: Path, env: dict[str, str]
) -> Iterator[ServerProcess]:
    # The e2e conftest's helpers, reached through the `server`-fixture module as pytest loaded it.
    conftest = request.getfixturevalue("_e2e_helpers")
    with conftest.served_database(request.config, "sqlite", directory, env=env) as running:
        yield running


@pytest.fixture(scope="module")
def _e2e_helpers(request: pytest.FixtureRequest) -> object:
    path = Path(__file__).with_name("conftest.py")
    for plugin in request.config.pluginmanager.get_plugins():
        if getattr(plugin, "__file__", None) == str(path):
            return plugin
    raise AssertionError("tests/e2e/conftest.py was not loaded")


@pytest.fixture(scope="module")
def tls_server(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory, pki: Pki
) -> Iterator[ServerProcess]:
    """TLS with a server certificate only."""
    env = {"AIRLOCK_TLS_CERT": str(pki.server.cert), "AIRLOCK_TLS_KEY": str(pki.server.key)}
    yield from _served(request, tmp_path_factory.mktemp("tls"), env)


@pytest.fixture(scope="module")
def mtls_server(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory, pki: Pki
) -> Iterator[ServerProcess]:
    """Mutual TLS: client certificates from the test CA required."""
    env = {
        "AIRLOCK_TLS_CERT": str(pki.server.cert),
        "AIRLOCK_TLS_KEY": str(pki.server.key),
        "AIRLOCK_TLS_CLIENT_CA": str(pki.ca.cert),
    }
    yield from _served(request, tmp_path_factory.mktemp("mtls"), env)


# --- helpers ----------------------------------------------------------------------------------


def _read(path: Path | None) -> bytes | None:
    return path.read_bytes() if path else None


async def _whoami(
    server: ServerProcess,
    *,
    target: str | None = None,
    ca: Path | None = None,
    client: Pem | None = None,
) -> str:
    async with AirlockClient.connect(
        target or server.target,
        server.admin_token,
        retry=NO_RETRY,
        timeout=15,
        root_certificates=_read(ca),
        certificate_chain=_read(client.cert if client else None),
        private_key=_read(client.key if client else None),
    ) as sdk:
        me = await sdk.whoami()
    return str(me.principal.kind)


def _cli(server: ServerProcess, *tls_args: str) -> subprocess.CompletedProcess[str]:
    token = server.write_token("admin", server.admin_token)
    return server.cli(token, *tls_args, "--json", "--timeout", "15", "whoami")


def _grpcurl(server: ServerProcess, *tls_args: str) -> subprocess.CompletedProcess[str]:
    # ServerProcess.grpcurl is plaintext; TLS needs its own argv.
    argv = [
        str(BIN / "grpcurl"),
        "-max-time",
        "30",
        *tls_args,
        "-H",
        f"authorization: Bearer {server.admin_token}",
        server.target,
        "airlock.v1.IdentityService/WhoAmI",
    ]
    return subprocess.run(argv, capture_output=True, text=True, timeout=60, check=False)


# --- TLS --------------------------------------------------------------------------------------


@pytest.mark.asyncio
async def test_plaintext_is_refused_by_a_tls_server(tls_server: ServerProcess) -> None:
    with pytest.raises(AirlockError) as refused:
        await _whoami(tls_server)
    assert refused.value.code == StatusCode.UNAVAILABLE
    done = _cli(tls_server)
    assert done.returncode == UNAVAILABLE_EXIT, done.stderr
    done = _grpcurl(tls_server, "-plaintext")
    assert done.returncode != 0
    assert "WhoAmI" not in done.stdout


@pytest.mark.asyncio
async def test_tls_is_accepted_with_the_ca(tls_server: ServerProcess, pki: Pki) -> None:
    assert await _whoami(tls_server, ca=pki.ca.cert) != ""
    # The certificate names localhost too.
    assert await _whoami(tls_server, target=f"localhost:{tls_server.port}", ca=pki.ca.cert)


@pytest.mark.asyncio
async def test_tls_with_a_ca_that_did_not_sign_the_server_is_refused(
    tls_server: ServerProcess, pki: Pki, tmp_path: Path
) -> None:
    other_ca, _, _ = make_ca(tmp_path, "stranger-ca")
    with pytest.raises(AirlockError) as refused:
        await _whoami(tls_server, ca=other_ca.cert)
    assert refused.value.code == StatusCode.UNAVAILABLE


def test_the_cli_speaks_tls(tls_server: ServerProcess, pki: Pki) -> None:
    done = _cli(tls_server, "--tls-ca", str(pki.ca.cert))
    assert done.returncode == 0, done.stderr
    assert '"kind": "PRINCIPAL_KIND_ADMIN"' in done.stdout


def test_the_cli_takes_the_ca_from_the_environment(tls_server: ServerProcess, pki: Pki) -> None:
    token = tls_server.write_token("admin", tls_server.admin_token)
    from_env = subprocess.run(
        [
            str(BIN / "airlock"),
            "--server",
            tls_server.target,
            "--token-file",
            str(token),
            "--json",
            "whoami",
        ],
        capture_output=True,
        text=True,
        timeout=60,
        env={"AIRLOCK_TLS_CA": str(pki.ca.cert), "PATH": "/usr/bin:/bin"},
        check=False,
    )
    assert from_env.returncode == 0, from_env.stderr


def test_grpcurl_speaks_tls_with_the_ca(tls_server: ServerProcess, pki: Pki) -> None:
    done = _grpcurl(tls_server, "-cacert", str(pki.ca.cert))
    assert done.returncode == 0, done.stderr
    assert "PRINCIPAL_KIND_ADMIN" in done.stdout


def _started(server: ServerProcess) -> dict[str, object]:
    for record in server.log_records():
        if record.get("event") == "server.started":
            return record
    raise AssertionError("no server.started line")


def test_the_server_log_says_tls_is_on(
    tls_server: ServerProcess, mtls_server: ServerProcess
) -> None:
    assert _started(tls_server)["tls"] == "server"
    assert _started(mtls_server)["tls"] == "mutual"


# --- mutual TLS -------------------------------------------------------------------------------


@pytest.mark.asyncio
async def test_mtls_refuses_a_client_without_a_certificate(
    mtls_server: ServerProcess, pki: Pki
) -> None:
    with pytest.raises(AirlockError) as refused:
        await _whoami(mtls_server, ca=pki.ca.cert)
    assert refused.value.code == StatusCode.UNAVAILABLE
    done = _cli(mtls_server, "--tls-ca", str(pki.ca.cert))
    assert done.returncode == UNAVAILABLE_EXIT, done.stderr
    done = _grpcurl(mtls_server, "-cacert", str(pki.ca.cert))
    assert done.returncode != 0
    with pytest.raises(AirlockError) as refused:
        await _whoami(mtls_server)  # and plaintext, of course
    assert refused.value.code == StatusCode.UNAVAILABLE


@pytest.mark.asyncio
async def test_mtls_refuses_a_certificate_from_another_ca(
    mtls_server: ServerProcess, pki: Pki
) -> None:
    with pytest.raises(AirlockError) as refused:
        await _whoami(mtls_server, ca=pki.ca.cert, client=pki.impostor)
    assert refused.value.code == StatusCode.UNAVAILABLE


@pytest.mark.asyncio
async def test_mtls_accepts_a_certificate_from_the_ca(mtls_server: ServerProcess, pki: Pki) -> None:
    assert await _whoami(mtls_server, ca=pki.ca.cert, client=pki.client)
    done = _cli(
        mtls_server,
        "--tls-ca",
        str(pki.ca.cert),
        "--tls-cert",
        str(pki.client.cert),
        "--tls-key",
        str(pki.client.key),
    )
    assert done.returncode == 0, done.stderr
    done = _grpcurl(
        mtls_server,
        "-cacert",
        str(pki.ca.cert),
        "-cert",
        str(pki.client.cert),
        "-key",
        str(pki.client.key),
    )
    assert done.returncode == 0, done.stderr
    assert "PRINCIPAL_KIND_ADMIN" in done.stdout


@pytest.mark.asyncio
async def test_the_credential_is_still_required_over_mtls(
    mtls_server: ServerProcess, pki: Pki
) -> None:
    """A client certificate opens the connection; it is not a credential."""
    async with AirlockClient.connect(
        mtls_server.target,
        None,
        retry=NO_RETRY,
        root_certificates=_read(pki.ca.cert),
        certificate_chain=_read(pki.client.cert),
        private_key=_read(pki.client.key),
    ) as sdk:
        with pytest.raises(AirlockError) as refused:
            await sdk.whoami()
    assert refused.value.code == StatusCode.UNAUTHENTICATED


# --- bad settings -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    "argv",
    [
        ["--tls-cert", "server.crt"],
        ["--tls-key", "server.key"],
        ["--tls-client-ca", "ca.crt"],
        ["--tls-cert", "missing.crt", "--tls-key", "missing.key"],
    ],
)
def test_serve_refuses_incomplete_or_unreadable_tls_settings(
    argv: list[str],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    monkeypatch.chdir(tmp_path)
    for name in ("AIRLOCK_TLS_CERT", "AIRLOCK_TLS_KEY", "AIRLOCK_TLS_CLIENT_CA"):
        monkeypatch.delenv(name, raising=False)
    url = f"sqlite:///{tmp_path}/never.db"
    code = server_main(["--database-url", url, "--log-format", "json", "serve", *argv])
    assert code == 2  # as every setting the server cannot start with
    assert capsys.readouterr().err.startswith("error: ")
    assert not (tmp_path / "never.db").exists()


# --- the container's health check -------------------------------------------------------------


def _healthcheck(
    server: ServerProcess, env: dict[str, str], *args: str
) -> subprocess.CompletedProcess[str]:
    """`airlock-server healthcheck` with serve's settings in its environment, as a container's
    HEALTHCHECK runs it (the port of AIRLOCK_LISTEN, the TLS files of AIRLOCK_TLS_*)."""
    clean = {k: v for k, v in os.environ.items() if not k.startswith("AIRLOCK_")}
    return subprocess.run(
        [str(BIN / "airlock-server"), "healthcheck", *args],
        capture_output=True,
        text=True,
        timeout=60,
        env={**clean, "AIRLOCK_LISTEN": f"0.0.0.0:{server.port}", **env},
        check=False,
    )


def test_the_health_check_speaks_tls_when_serve_does(tls_server: ServerProcess, pki: Pki) -> None:
    served = {"AIRLOCK_TLS_CERT": str(pki.server.cert), "AIRLOCK_TLS_KEY": str(pki.server.key)}
    done = _healthcheck(tls_server, served, "--ca", str(pki.ca.cert))
    assert (done.returncode, done.stdout, done.stderr) == (0, "SERVING\n", "")
    done = _healthcheck(tls_server, served)
    assert (done.returncode, done.stdout, done.stderr) == (0, "SERVING\n", "")
    # Plaintext (serve's TLS settings not given) cannot pass against a TLS server.
    done = _healthcheck(tls_server, {})
    assert done.returncode == 1
    assert done.stderr.startswith(f"error: 127.0.0.1:{tls_server.port}: UNAVAILABLE")
    # Nor a CA that did not sign the server's certificate.
    done = _healthcheck(tls_server, served, "--ca", str(pki.impostor.cert))
    assert done.returncode == 1, done.stdout


def test_the_health_check_presents_a_client_certificate_under_mutual_tls(
    mtls_server: ServerProcess, pki: Pki
) -> None:
    served = {
        "AIRLOCK_TLS_CERT": str(pki.server.cert),
        "AIRLOCK_TLS_KEY": str(pki.server.key),
        "AIRLOCK_TLS_CLIENT_CA": str(pki.ca.cert),
    }
    client = ("--client-cert", str(pki.client.cert), "--client-key", str(pki.client.key))
    done = _healthcheck(mtls_server, served, "--ca", str(pki.ca.cert), *client)
    assert (done.returncode, done.stdout) == (0, "SERVING\n"), done.stderr
    impostor = ("--client-cert", str(pki.impostor.cert), "--client-key", str(pki.impostor.key))
    done = _healthcheck(mtls_server, served, "--ca", str(pki.ca.cert), *impostor)
    assert done.returncode == 1


# --- a plaintext CLI against a TLS server ------------------------------------------------------


def test_a_plaintext_cli_is_told_to_try_tls(tls_server: ServerProcess) -> None:
    done = _cli(tls_server)
    assert done.returncode == UNAVAILABLE_EXIT
    assert "is the server using TLS? try --tls-ca" in done.stderr, done.stderr
    assert len(done.stderr.splitlines()) == 2, done.stderr  # the error, then the hint


def test_refused_handshakes_leave_the_log_json(tls_server: ServerProcess) -> None:
    """Every line of the server's stderr parses as JSON, also after refused handshakes (gRPC's
    own lines, which are not JSON, stay off unless the operator sets GRPC_VERBOSITY)."""
    assert _cli(tls_server).returncode == UNAVAILABLE_EXIT
    assert _grpcurl(tls_server, "-plaintext").returncode != 0
    records = tls_server.log_records()  # fails on a line that is not JSON
    assert any(r.get("event") == "server.started" for r in records)


# --- the approval portal under the same TLS settings -------------------------------------------


@pytest.fixture(scope="module")
def portal_tls_server(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory, pki: Pki
) -> Iterator[tuple[ServerProcess, int]]:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = int(s.getsockname()[1])
    env = {
        "AIRLOCK_TLS_CERT": str(pki.server.cert),
        "AIRLOCK_TLS_KEY": str(pki.server.key),
        "AIRLOCK_PORTAL_LISTEN": f"127.0.0.1:{port}",
    }
    for running in _served(request, tmp_path_factory.mktemp("portal-tls"), env):
        yield running, port


def test_the_portal_is_served_with_tls_and_a_secure_cookie(
    portal_tls_server: tuple[ServerProcess, int], pki: Pki
) -> None:
    _, port = portal_tls_server
    with httpx.Client(
        verify=ssl.create_default_context(cafile=str(pki.ca.cert)), timeout=10
    ) as client:
        page = client.get(f"https://localhost:{port}/sign-in")
    assert page.status_code == 200
    cookie = page.headers["set-cookie"].lower()
    for attribute in ("secure", "httponly", "samesite=strict", "path=/"):
        assert attribute in cookie, cookie
    assert "script-src 'self'" in page.headers["content-security-policy"]
    # Plain HTTP on the portal's port gets no page.
    with httpx.Client(timeout=10) as plain, pytest.raises(httpx.HTTPError):
        plain.get(f"http://localhost:{port}/sign-in")
