"""`airlock-server serve | migrate | bootstrap | log-key`."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import signal
import sys
from dataclasses import replace
from pathlib import Path

import structlog
from sqlalchemy.engine import make_url

from airlock_server.bootstrap import wire
from airlock_server.config import LOG_LEVELS, ConfigError, Settings
from airlock_server.domain.errors import DomainError
from airlock_server.log_key import LogKeyError, create_log_key, load_log_key
from airlock_server.logs import configure_logging
from airlock_server.persistence.db import create_engine, is_sqlite, session_factory
from airlock_server.persistence.migrate import upgrade
from airlock_server.persistence.seal import Sealer
from airlock_server.persistence.vouch import seal_database
from airlock_server.transport.server import TlsFiles, build_server

log = structlog.get_logger("airlock.server")


def _parser() -> argparse.ArgumentParser:
    env = Settings.from_env()
    parser = argparse.ArgumentParser(
        prog="airlock-server", description="Airlock multi-party approval server"
    )
    parser.add_argument(
        "--database-url",
        default=env.database_url,
        help="sqlite:///path or postgresql://user@host/db (env AIRLOCK_DATABASE_URL; "
        f"default {env.database_url})",
    )
    parser.add_argument(
        "--log-format",
        choices=["auto", "json", "console"],
        default=env.log_format,
        help="env AIRLOCK_LOG_FORMAT; auto is console on a terminal, JSON otherwise",
    )
    parser.add_argument(
        "--log-level",
        type=str.lower,
        choices=LOG_LEVELS,
        default=env.log_level,
        help="env AIRLOCK_LOG_LEVEL",
    )
    parser.add_argument(
        "--log-key-file",
        type=Path,
        default=Path(env.log_key_file),
        help="the event log's Ed25519 signing key (PEM, mode 0600), made by bootstrap or log-key "
        f"(env AIRLOCK_LOG_KEY_FILE; default {env.log_key_file})",
    )
    sub = parser.add_subparsers(dest="command", required=True)

    serve = sub.add_parser("serve", help="serve gRPC until SIGTERM or SIGINT")
    serve.add_argument("--listen", default=env.listen, help="host:port (env AIRLOCK_LISTEN)")
    serve.add_argument("--region", default=env.region, help="env AIRLOCK_REGION")
    serve.add_argument(
        "--ready-file", type=Path, help="write the bound port here once serving (for scripts)"
    )
    serve.add_argument(
        "--tls-cert",
        metavar="PEM",
        default=env.tls_cert,
        help="serve TLS only, with this certificate chain (env AIRLOCK_TLS_CERT)",
    )
    serve.add_argument(
        "--tls-key",
        metavar="PEM",
        default=env.tls_key,
        help="the private key of --tls-cert (env AIRLOCK_TLS_KEY)",
    )
    serve.add_argument(
        "--tls-client-ca",
        metavar="PEM",
        default=env.tls_client_ca,
        help="require client certificates signed by this CA: mutual TLS "
        "(env AIRLOCK_TLS_CLIENT_CA)",
    )

    sub.add_parser("migrate", help="upgrade the database schema to the newest revision")

    boot = sub.add_parser("bootstrap", help="create the first admin credential, once")
    boot.add_argument(
        "--admin-token-file",
        type=Path,
        default=Path(os.environ.get("AIRLOCK_ADMIN_TOKEN_FILE", "var/admin.token")),
        help="where to write the token (mode 0600; env AIRLOCK_ADMIN_TOKEN_FILE)",
    )

    sub.add_parser(
        "seal",
        help="vouch for the database as it stands: check the event log's chain, then MAC every "
        "authenticated row and sign the log's head with the log key (after an upgrade past "
        "migration 0008, or a new log key); only for a database you trust",
    )

    keygen = sub.add_parser(
        "log-key",
        help="create the event log's signing key file (mode 0600; refused if it exists), "
        "for an install bootstrapped without one",
    )
    keygen.add_argument(
        "--log-key-file",
        type=Path,
        default=argparse.SUPPRESS,
        help="as the option before the command (env AIRLOCK_LOG_KEY_FILE)",
    )
    return parser


def _ensure_sqlite_dir(url: str) -> None:
    if is_sqlite(url):
        database = make_url(url).database
        if database and database != ":memory:":
            Path(database).parent.mkdir(parents=True, exist_ok=True)


def _read_pem(path: str, what: str) -> bytes:
    try:
        return Path(path).read_bytes()
    except OSError as exc:
        raise ConfigError(f"cannot read the {what} {path}: {exc.strerror}") from exc


def tls_files(settings: Settings) -> TlsFiles | None:
    """The TLS files the settings name, read; None for plaintext."""
    if settings.tls_cert is None and settings.tls_key is None:
        if settings.tls_client_ca is not None:
            raise ConfigError("--tls-client-ca needs --tls-cert and --tls-key")
        return None
    if settings.tls_cert is None or settings.tls_key is None:
        raise ConfigError("--tls-cert and --tls-key go together")
    return TlsFiles(
        certificate_chain=_read_pem(settings.tls_cert, "TLS certificate"),
        private_key=_read_pem(settings.tls_key, "TLS key"),
        client_ca=(
            _read_pem(settings.tls_client_ca, "TLS client CA")
            if settings.tls_client_ca is not None
            else None
        ),
    )


async def _serve(settings: Settings, ready_file: Path | None, tls: TlsFiles | None) -> None:
    key_file = Path(settings.log_key_file)
    log_key = load_log_key(key_file)
    if log_key is None:
        log.warning(
            "server.no_log_key",
            log_key_file=str(key_file),
            effect="GetLogCheckpoint and ExportApprovalProof answer FAILED_PRECONDITION "
            "LOG_KEY_MISSING; run `airlock-server log-key` to create the key",
        )
    wiring = wire(settings, log_key)
    served = build_server(wiring.app, settings.listen, tls)
    await served.server.start()
    await served.set_serving(True)
    host = settings.listen.rsplit(":", 1)[0]
    log.info(
        "server.started",
        listen=f"{host}:{served.port}",
        region=settings.region,
        tls="mutual" if tls and tls.client_ca else "server" if tls else "off",
        log_public_key=log_key.public_key.hex() if log_key else "",
        log_key_id=log_key.key_id if log_key else "",
    )
    if ready_file is not None:
        # Written in the loop: a few bytes once. asyncio.to_thread here started the default
        # executor's worker thread, which then idled for the server's life and showed in
        # py-spy profiles as a busy thread (≈ 15 % of samples, 0 % of CPU).
        ready_file.write_text(f"{served.port}\n")  # noqa: ASYNC240

    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)

    async def sweep() -> None:
        while True:
            try:
                settled = await wiring.app.teams.sweep_expired_invitations()
                if settled:
                    log.info("sweeper.settled_teams", count=settled)
            except Exception:
                log.exception("sweeper.failed")
            try:
                deleted = await wiring.app.teams.sweep_due_deletions()
                if deleted:
                    log.info("sweeper.deleted_teams", count=deleted)
            except Exception:
                log.exception("sweeper.failed")
            try:
                expired = await wiring.app.sessions.sweep_expired_sessions()
                if expired:
                    log.info("sweeper.expired_sessions", count=expired)
            except Exception:
                log.exception("sweeper.failed")
            await asyncio.sleep(settings.sweep_interval)

    sweeper = asyncio.create_task(sweep())
    await stop.wait()
    log.info("server.stopping", grace_seconds=settings.shutdown_grace)
    await served.set_serving(False)
    await served.server.stop(settings.shutdown_grace)
    sweeper.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await sweeper
    await wiring.close()
    log.info("server.stopped")


def _make_log_key(settings: Settings) -> None:
    key_file = Path(settings.log_key_file)
    created = create_log_key(key_file)
    if created is None:
        print(f"log key {key_file} exists; kept as is")
    else:
        print(
            f"log key {key_file} created (key id {created.key_id}, "
            f"public key {created.public_key.hex()})"
        )


def _new_log_key(settings: Settings) -> int:
    """`log-key`: a key file for an install that has none; never replaces one."""
    key_file = Path(settings.log_key_file)
    try:
        created = create_log_key(key_file)
    except OSError as exc:
        print(f"error: cannot create the log key {key_file}: {exc.strerror}", file=sys.stderr)
        return 1
    if created is None:
        print(
            f"error: log key {key_file} exists; refusing to overwrite it (checkpoints "
            "signed with it would no longer verify against the new public key)",
            file=sys.stderr,
        )
        return 1
    print(
        f"log key {key_file} created (key id {created.key_id}, "
        f"public key {created.public_key.hex()}); the server signs with it from its next start"
    )
    return 0


async def _bootstrap(settings: Settings, token_file: Path) -> int:
    _make_log_key(settings)
    # The first event and the admin credential are signed and MACed with the key serve uses.
    log_key = load_log_key(Path(settings.log_key_file))
    token_file.parent.mkdir(parents=True, exist_ok=True)
    try:
        fd = os.open(token_file, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        print(f"error: {token_file} exists; refusing to overwrite it", file=sys.stderr)
        return 1
    wiring = wire(settings, log_key)
    try:
        issued = await wiring.app.identities.bootstrap_admin()
    except DomainError as err:
        os.close(fd)
        os.unlink(token_file)
        print(f"error: {err.reason}: {err.message}", file=sys.stderr)
        return 1
    finally:
        await wiring.close()
    with os.fdopen(fd, "w") as out:
        out.write(issued.token + "\n")
    print(f"admin credential {issued.credential.credential_id} written to {token_file}")
    return 0


async def _seal(settings: Settings) -> int:
    """`seal`: the operator vouches for the database (persistence/vouch.py)."""
    key_file = Path(settings.log_key_file)
    log_key = load_log_key(key_file)
    if log_key is None:
        print(f"error: no log key at {key_file}; nothing to seal with", file=sys.stderr)
        return 1
    engine = create_engine(settings.database_url, pool_size=1)
    try:
        sealed = await seal_database(session_factory(engine), Sealer(log_key))
    finally:
        await engine.dispose()
    if sealed.finding is not None:
        print(
            f"error: the event log is broken at seq {sealed.finding.seq} "
            f"({sealed.finding.problem.value}): {sealed.finding.description}; nothing sealed",
            file=sys.stderr,
        )
        return 1
    rows = ", ".join(f"{n} {t}" for t, n in sealed.rows.items())
    print(
        f"sealed with log key {log_key.key_id}: {sealed.events} events checked, head seq "
        f"{sealed.head_seq} signed; rows MACed: {rows}"
    )
    return 0


def main(argv: list[str] | None = None) -> int:
    try:
        parser = _parser()
    except ConfigError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    args = parser.parse_args(argv)
    settings = replace(
        Settings.from_env(),
        database_url=args.database_url,
        log_format=args.log_format,
        log_level=args.log_level,
        log_key_file=str(args.log_key_file),
    )
    configure_logging(settings.log_format, settings.log_level)
    if args.command == "log-key":
        return _new_log_key(settings)
    _ensure_sqlite_dir(settings.database_url)
    if args.command == "migrate":
        asyncio.run(upgrade(settings.database_url))
        print("database schema is at the newest revision")
        return 0
    if args.command == "seal":
        try:
            return asyncio.run(_seal(settings))
        except LogKeyError as exc:
            print(f"error: {exc}", file=sys.stderr)
            return 1
    if args.command == "bootstrap":
        try:
            return asyncio.run(_bootstrap(settings, args.admin_token_file))
        except LogKeyError as exc:
            print(f"error: {exc}", file=sys.stderr)
            return 1
    settings = replace(
        settings,
        listen=args.listen,
        region=args.region,
        tls_cert=args.tls_cert,
        tls_key=args.tls_key,
        tls_client_ca=args.tls_client_ca,
    )
    try:
        tls = tls_files(settings)
    except ConfigError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    try:
        asyncio.run(_serve(settings, args.ready_file, tls))
    except LogKeyError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
