"""`airlock-server serve | migrate | bootstrap | log-key | healthcheck`.

Every failure to start (a bad setting, a database that cannot be reached or was never migrated,
an address in use) is one `error: ...` line on stderr and exit code 2, never a traceback.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import signal
import sys
from collections.abc import Callable
from dataclasses import replace
from importlib.metadata import PackageNotFoundError
from importlib.metadata import version as package_version
from pathlib import Path
from typing import Any

import structlog
from sqlalchemy.engine import make_url
from sqlalchemy.exc import ArgumentError, SQLAlchemyError

from airlock_server.bootstrap import Wiring, wire
from airlock_server.config import EVENT_LOOPS, LOG_LEVELS, ConfigError, Settings
from airlock_server.domain.errors import DomainError, Unavailable
from airlock_server.log_key import LogKeyError, create_log_key, load_log_key
from airlock_server.logs import configure_logging
from airlock_server.persistence.db import create_engine, is_sqlite, reachable, session_factory
from airlock_server.persistence.migrate import (
    head_revisions,
    known_revision,
    schema_revisions,
    upgrade,
)
from airlock_server.persistence.seal import Sealer
from airlock_server.persistence.vouch import seal_database
from airlock_server.transport.health_check import health_check
from airlock_server.transport.limits import Limits
from airlock_server.transport.metrics import MetricsEndpoint, Telemetry, serve_metrics
from airlock_server.transport.portal.app import PortalDeps, build_portal
from airlock_server.transport.portal.serve import PortalTls, ServedPortal, serve_portal
from airlock_server.transport.server import ListenError, TlsFiles, build_server

log = structlog.get_logger("airlock.server")

EXIT_STARTUP = 2  # a setting, the database or the address stops the server before it serves
EXIT_HEALTHY, EXIT_UNHEALTHY = 0, 1  # `healthcheck`: Docker's HEALTHCHECK convention


class StartupError(Exception):
    """The server cannot start; the message says why and what to do."""


def airlock_version() -> str:
    """The installed package's version (pyproject.toml's, through the package metadata)."""
    try:
        return package_version("airlock")
    except PackageNotFoundError:  # run from a source tree that was never installed
        return "unknown"


def _environment_help(d: Settings) -> str:
    """Every AIRLOCK_* setting, including those that have no flag."""
    rows = [
        ("AIRLOCK_DATABASE_URL", f"--database-url (default {d.database_url})"),
        ("AIRLOCK_LOG_FORMAT", f"--log-format (default {d.log_format})"),
        ("AIRLOCK_LOG_LEVEL", f"--log-level (default {d.log_level})"),
        ("AIRLOCK_LOG_KEY_FILE", f"--log-key-file (default {d.log_key_file})"),
        ("AIRLOCK_LISTEN", f"serve --listen (default {d.listen})"),
        ("AIRLOCK_REGION", f"serve --region (default {d.region})"),
        ("AIRLOCK_TLS_CERT", "serve --tls-cert"),
        ("AIRLOCK_TLS_KEY", "serve --tls-key"),
        ("AIRLOCK_TLS_CLIENT_CA", "serve --tls-client-ca"),
        ("AIRLOCK_ADMIN_TOKEN_FILE", "bootstrap --admin-token-file (default var/admin.token)"),
        ("AIRLOCK_SWEEP_INTERVAL", f"seconds between sweeps (default {d.sweep_interval:g})"),
        (
            "AIRLOCK_HEALTH_PROBE_INTERVAL",
            f"seconds between database probes for health (default {d.health_probe_interval:g})",
        ),
        ("AIRLOCK_EVENT_LOOP", f"serve --event-loop (default {d.event_loop})"),
        ("AIRLOCK_SHUTDOWN_GRACE", f"seconds to drain on SIGTERM (default {d.shutdown_grace:g})"),
        ("AIRLOCK_DB_POOL_SIZE", f"PostgreSQL connections (default {d.db_pool_size})"),
        ("AIRLOCK_EVENTS_POLL_INTERVAL", f"SQLite watch poll (default {d.events_poll_interval:g})"),
        ("AIRLOCK_EVENTS_SAFETY_POLL", f"PostgreSQL watch poll (default {d.events_safety_poll:g})"),
        # Notifications (docs/notifications.md).
        ("AIRLOCK_PORTAL_URL", "the approval portal, for links in notifications"),
        ("AIRLOCK_PORTAL_ORIGIN", "the portal's WebAuthn origin, scheme://host[:port]"),
        ("AIRLOCK_PORTAL_LISTEN", "serve --portal-listen (default off)"),
        ("AIRLOCK_PORTAL_RP_ID", "the passkeys' RP id (default: the origin's host)"),
        ("AIRLOCK_ADMIN_EMAILS", "comma-separated addresses for security alerts"),
        ("AIRLOCK_SMTP_HOST", "SMTP relay: email notifications are on when set"),
        ("AIRLOCK_SMTP_PORT", f"SMTP port (default {d.smtp_port})"),
        ("AIRLOCK_SMTP_SECURITY", f"starttls, tls or none (default {d.smtp_security})"),
        ("AIRLOCK_SMTP_USERNAME", "SMTP authentication, with the password"),
        ("AIRLOCK_SMTP_PASSWORD", "SMTP authentication, with the username"),
        ("AIRLOCK_SMTP_FROM", f"the From address (default {d.smtp_from})"),
        ("AIRLOCK_SMTP_CA_FILE", "PEM CA of the relay's certificate"),
        ("AIRLOCK_NOTIFY_INTERVAL", f"idle dispatcher's wait (default {d.notify_interval:g})"),
        ("AIRLOCK_NOTIFY_RETRY_BASE", f"first retry delay (default {d.notify_retry_base:g})"),
        ("AIRLOCK_NOTIFY_RETRY_CAP", f"longest retry delay (default {d.notify_retry_cap:g})"),
        ("AIRLOCK_NOTIFY_MAX_AGE", f"give up after (default {d.notify_max_age:g})"),
        ("AIRLOCK_NOTIFY_LEASE", f"a claimed delivery's lease (default {d.notify_lease:g})"),
        ("AIRLOCK_REMINDERS", "TTL fractions of reminders (default 0.5,0.9)"),
        ("AIRLOCK_REFUSAL_ALERT_COUNT", f"refusals that alert (default {d.refusal_alert_count})"),
        ("AIRLOCK_REFUSAL_ALERT_WINDOW", f"...within seconds (default {d.refusal_alert_window:g})"),
        ("AIRLOCK_METRICS_LISTEN", "serve --metrics-listen (default off)"),
        (
            "AIRLOCK_METRICS_INTERVAL",
            f"seconds between gauge samples (default {d.metrics_interval:g})",
        ),
        ("AIRLOCK_MAX_STREAMS", f"open streams per process (default {d.max_streams})"),
        (
            "AIRLOCK_MAX_STREAMS_PER_PRINCIPAL",
            f"open streams per caller (default {d.max_streams_per_principal})",
        ),
        ("AIRLOCK_STREAM_BUFFER", f"events buffered per stream (default {d.stream_buffer})"),
        ("AIRLOCK_REFUSAL_BURST", f"refused calls logged at once (default {d.refusal_burst})"),
        ("AIRLOCK_REFUSAL_RATE", f"... then per second (default {d.refusal_rate:g})"),
        ("GRPC_VERBOSITY", "gRPC's own stderr lines (default NONE: logs stay JSON)"),
    ]
    lines = ["environment (flags win; those without a flag exist only as variables; README.md):"]
    lines += [f"  {name:<33} {meaning}" for name, meaning in rows]
    lines += [
        "",
        "A setting the server cannot use, a database it cannot reach or that was never",
        "migrated, and an address in use each stop it with one `error:` line and exit code 2.",
    ]
    return "\n".join(lines)


def _parser() -> argparse.ArgumentParser:
    env = Settings.from_env()
    parser = argparse.ArgumentParser(
        prog="airlock-server",
        description="Airlock multi-party approval server",
        epilog=_environment_help(Settings()),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--version", action="version", version=f"airlock {airlock_version()}")
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
    serve.add_argument(
        "--metrics-listen",
        metavar="HOST:PORT",
        default=env.metrics_listen,
        help="serve metrics for Prometheus at http://HOST:PORT/metrics; off by default "
        "(env AIRLOCK_METRICS_LISTEN)",
    )

    serve.add_argument(
        "--portal-listen",
        metavar="HOST:PORT",
        default=env.portal_listen,
        help="serve the approval portal (web pages for approvers) at http(s)://HOST:PORT; off by "
        "default (env AIRLOCK_PORTAL_LISTEN; its WebAuthn origin: AIRLOCK_PORTAL_ORIGIN, default "
        "http(s)://localhost:PORT)",
    )
    serve.add_argument(
        "--event-loop",
        choices=EVENT_LOOPS,
        default=env.event_loop,
        help="uvloop (asyncio when it is not installed) or asyncio "
        f"(env AIRLOCK_EVENT_LOOP; default {env.event_loop})",
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

    check = sub.add_parser(
        "healthcheck",
        help="ask the server that serve's settings describe whether it is SERVING "
        "(exit 0) or not (exit 1); for a container's HEALTHCHECK or an exec probe",
        description="Reads the settings `serve` reads (AIRLOCK_LISTEN, AIRLOCK_TLS_CERT, "
        "AIRLOCK_TLS_KEY, AIRLOCK_TLS_CLIENT_CA) and calls grpc.health.v1.Health/Check on that "
        "port of this machine, with TLS when serve uses TLS: trusting --ca (default: serve's own "
        "certificate file) and checking the name the certificate carries; under mutual TLS it "
        "presents --client-cert/--client-key (default: serve's own certificate and key).",
    )
    check.add_argument("--listen", default=env.listen, help="as serve's (env AIRLOCK_LISTEN)")
    check.add_argument("--ca", metavar="PEM", help="CA certificates to trust")
    check.add_argument("--client-cert", metavar="PEM", help="client certificate, mutual TLS")
    check.add_argument("--client-key", metavar="PEM", help="its private key")
    check.add_argument(
        "--timeout", type=float, default=5.0, help="seconds to wait for the answer (default 5)"
    )
    return parser


def _check_database_url(url: str) -> None:
    """ConfigError unless the URL names a database Airlock supports."""
    usage = "use sqlite:///path/to/file.db or postgresql://user:password@host:5432/database"
    try:
        parsed = make_url(url)
    except ArgumentError:
        raise ConfigError(
            f"AIRLOCK_DATABASE_URL / --database-url: not a database URL: {url!r}; {usage}"
        ) from None
    if parsed.get_backend_name() not in ("sqlite", "postgresql"):
        raise ConfigError(
            f"AIRLOCK_DATABASE_URL / --database-url: {parsed.get_backend_name()} is not "
            f"supported; {usage}"
        )


def _sqlite_file(url: str) -> Path | None:
    database = make_url(url).database if is_sqlite(url) else None
    return Path(database) if database and database != ":memory:" else None


def _ensure_sqlite_dir(url: str) -> None:
    """`migrate` creates the SQLite file's directory (and SQLite the file)."""
    path = _sqlite_file(url)
    if path is not None:
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise StartupError(
                f"cannot create the directory {path.parent}: {exc.strerror}"
            ) from exc


def _shown(url: str) -> str:
    """The URL as an error line may print it: without its password."""
    return make_url(url).render_as_string(hide_password=True)


def _unreachable(url: str, exc: BaseException) -> StartupError:
    """The cause of a failed connection, without a traceback. A connection attempt and the read
    of Alembic's version table bind no values, so the driver's message quotes none."""
    cause: BaseException = getattr(exc, "orig", None) or exc
    detail = str(cause).strip().splitlines()[0] if str(cause).strip() else type(cause).__name__
    return StartupError(f"cannot use the database {_shown(url)}: {detail}")


async def _check_schema(wiring: Wiring, url: str) -> None:
    """Before serving: the database can be reached and is at the migrations' head. A missing
    SQLite file is not created (SQLite would make an empty one)."""
    path = _sqlite_file(url)
    if path is not None and not path.exists():
        raise StartupError(
            f"the database {path} does not exist: run `airlock-server migrate` first "
            "(it creates it)"
        )
    try:
        current = await schema_revisions(wiring.engine)
    except (OSError, SQLAlchemyError) as exc:
        raise _unreachable(url, exc) from exc
    heads = head_revisions()
    if not current:
        raise StartupError(
            f"the database {_shown(url)} has no schema: run `airlock-server migrate` first"
        )
    if set(current) == set(heads):
        return
    at = f"the database {_shown(url)} is at schema revision {', '.join(current)}"
    if not all(known_revision(revision) for revision in current):
        raise StartupError(f"{at}, newer than this server ({', '.join(heads)}): run a newer server")
    raise StartupError(f"{at}, this server needs {', '.join(heads)}: run `airlock-server migrate`")


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
    wiring = wire(settings, log_key)
    limits = Limits.of(
        max_streams=settings.max_streams,
        max_streams_per_principal=settings.max_streams_per_principal,
        refusal_rate=settings.refusal_rate,
        refusal_burst=settings.refusal_burst,
    )
    metrics: MetricsEndpoint | None = None
    try:
        await _check_schema(wiring, settings.database_url)
        wiring.start()
        metrics = _serve_metrics(settings.metrics_listen, wiring, limits)
        telemetry = metrics.telemetry if metrics else Telemetry()
        served = build_server(wiring.app, settings.listen, tls, limits, telemetry)
        portal = await _serve_portal(settings, wiring)
    except (StartupError, ListenError):
        if metrics is not None:
            metrics.close()
        await wiring.close()
        raise
    if log_key is None:
        log.warning(
            "server.no_log_key",
            log_key_file=str(key_file),
            effect="GetLogCheckpoint and ExportApprovalProof answer FAILED_PRECONDITION "
            "LOG_KEY_MISSING; run `airlock-server log-key` to create the key",
        )
    await served.server.start()
    serving = await reachable(wiring.engine, settings.health_probe_interval * 2)
    await served.set_serving(serving)
    host = settings.listen.rsplit(":", 1)[0]
    metrics_host = settings.metrics_listen.rsplit(":", 1)[0] if settings.metrics_listen else ""
    log.info(
        "server.started",
        version=airlock_version(),
        listen=f"{host}:{served.port}",
        region=settings.region,
        tls="mutual" if tls and tls.client_ca else "server" if tls else "off",
        event_loop=type(asyncio.get_running_loop()).__module__.split(".")[0],
        log_public_key=log_key.public_key.hex() if log_key else "",
        log_key_id=log_key.key_id if log_key else "",
        metrics_listen=f"{metrics_host}:{metrics.port}" if metrics else "",
        portal_url=settings.portal_origin if portal else "",
    )
    if portal is not None:
        print(f"approval portal: {settings.portal_origin}", flush=True)
    if ready_file is not None:
        # Written in the loop: a few bytes once. asyncio.to_thread here started the default
        # executor's worker thread, which then idled for the server's life and showed in
        # py-spy profiles as a busy thread (≈ 15 % of samples, 0 % of CPU).
        ready_file.write_text(f"{served.port}\n")  # noqa: ASYNC240

    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)

    sweeps = (
        ("invitations", wiring.app.teams.sweep_expired_invitations, "sweeper.settled_teams"),
        ("deletions", wiring.app.teams.sweep_due_deletions, "sweeper.deleted_teams"),
        ("sessions", wiring.app.sessions.sweep_expired_sessions, "sweeper.expired_sessions"),
        ("reminders", wiring.notifications.remind, "sweeper.reminders"),
    )

    for name, _, _ in sweeps:
        telemetry.sweeper_failed(name, 0)

    async def sweep() -> None:
        while True:
            for task, run, done in sweeps:
                try:
                    count = await run()
                    if count:
                        log.info(done, count=count)
                except Unavailable:
                    # An outage, not a bug: no traceback; health says so already.
                    log.warning("sweeper.database_unavailable", task=task)
                    telemetry.sweeper_failed(task)
                except Exception:
                    log.exception("sweeper.failed", task=task)
                    telemetry.sweeper_failed(task)
            await asyncio.sleep(settings.sweep_interval)

    async def probe() -> None:
        """Health follows the database: NOT_SERVING while it cannot be reached, SERVING again
        once it answers, without a restart of this process."""
        nonlocal serving
        while True:
            await asyncio.sleep(settings.health_probe_interval)
            now = await reachable(wiring.engine, settings.health_probe_interval * 2)
            if now != serving:
                serving = now
                await served.set_serving(now)
                if now:
                    log.info("server.database_reachable")
                else:
                    log.warning("server.database_unreachable")

    background = [asyncio.create_task(sweep())]
    prober = asyncio.create_task(probe())
    if metrics is not None:
        background.append(
            asyncio.create_task(
                telemetry.sample(
                    wiring.app.sessions.pending_summary,
                    wiring.app.teams.team_slack,
                    settings.metrics_interval,
                )
            )
        )
    # Notifications leave from every replica; each is claimed in the database.
    wiring.dispatcher.observe(telemetry.notification_attempt)
    dispatch_stop = asyncio.Event()
    dispatcher = asyncio.create_task(wiring.dispatcher.run(dispatch_stop, settings.notify_interval))
    await stop.wait()
    log.info("server.stopping", grace_seconds=settings.shutdown_grace)
    prober.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await prober
    await served.set_serving(False)
    await served.server.stop(settings.shutdown_grace)
    if portal is not None:
        await portal.stop()
    dispatch_stop.set()
    for task in background:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
    if metrics is not None:
        metrics.close()
    # A delivery in flight finishes (bounded by the sender's timeout); one not recorded is
    # claimed again once its lease runs out.
    with contextlib.suppress(asyncio.CancelledError, TimeoutError):
        await asyncio.wait_for(dispatcher, settings.shutdown_grace)
    await wiring.close()
    log.info("server.stopped")


def with_portal_origin(settings: Settings) -> Settings:
    """A portal without an origin set is reached at http(s)://localhost:PORT: WebAuthn needs a
    host name (never an IP address) and the exact origin the browser shows."""
    if not settings.portal_listen or settings.portal_origin:
        return settings
    port = settings.portal_listen.rpartition(":")[2]
    if not port.isdigit() or port == "0":
        raise ConfigError(
            "--portal-listen with port 0 or none needs AIRLOCK_PORTAL_ORIGIN (the URL browsers "
            "open, e.g. http://localhost:8080)"
        )
    scheme = "https" if settings.tls_cert else "http"
    return replace(settings, portal_origin=f"{scheme}://localhost:{port}")


async def _serve_portal(settings: Settings, wiring: Wiring) -> ServedPortal | None:
    """The approval portal in this loop, with serve's TLS settings, when asked for."""
    if not settings.portal_listen:
        return None
    if wiring.portal is None:
        raise StartupError("--portal-listen needs AIRLOCK_PORTAL_ORIGIN")
    app = build_portal(
        PortalDeps(
            portal=wiring.portal,
            teams=wiring.app.teams,
            sessions=wiring.app.sessions,
            audit=wiring.app.audit,
            feed=wiring.feed,
            origin=settings.portal_origin,
            secure=settings.tls_cert is not None,
        )
    )
    tls = (
        PortalTls(settings.tls_cert, settings.tls_key, settings.tls_client_ca)
        if settings.tls_cert and settings.tls_key
        else None
    )
    try:
        return await serve_portal(app, settings.portal_listen, tls)
    except (OSError, ValueError) as exc:
        raise StartupError(f"cannot serve the portal on {settings.portal_listen}: {exc}") from exc


def _serve_metrics(listen: str | None, wiring: Wiring, limits: Limits) -> MetricsEndpoint | None:
    """The Prometheus endpoint with the process's gauges, when asked for."""
    if not listen:
        return None
    try:
        metrics = serve_metrics(listen)
    except (OSError, ValueError) as exc:
        raise ListenError(
            f"cannot listen on {listen} for metrics (--metrics-listen HOST:PORT): {exc}"
        ) from None
    t = metrics.telemetry
    t.observe_state()
    t.gauge(
        "airlock.streams.open",
        "Streams open (WatchEvents, WatchSession)",
        lambda: limits.streams.open,
    )
    t.gauge(
        "airlock.events.buffered",
        "Events buffered for streams, in all",
        lambda: wiring.feed.buffered,
    )
    pool: Any = wiring.engine.pool
    t.gauge("airlock.db.pool.in_use", "Database connections checked out", lambda: pool.checkedout())
    t.gauge("airlock.db.pool.size", "Database connections the pool keeps", lambda: pool.size())
    return metrics


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
    wiring = wire(settings)
    try:
        # First: on a database that cannot take it, neither the key nor the token file is made.
        await _check_schema(wiring, settings.database_url)
        return await _bootstrap_admin(settings, token_file)
    finally:
        await wiring.close()


async def _bootstrap_admin(settings: Settings, token_file: Path) -> int:
    _make_log_key(settings)
    # The first event and the admin credential are signed and MACed with the key serve uses.
    log_key = load_log_key(Path(settings.log_key_file))
    token_file.parent.mkdir(parents=True, exist_ok=True)
    try:
        fd = os.open(token_file, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        print(f"error: {token_file} exists; refusing to overwrite it", file=sys.stderr)
        return 1
    keyed = wire(settings, log_key)
    try:
        issued = await keyed.app.identities.bootstrap_admin()
    except DomainError as err:
        os.close(fd)
        os.unlink(token_file)
        print(f"error: {err.reason}: {err.message}", file=sys.stderr)
        return 1
    finally:
        await keyed.close()
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


async def _migrate(url: str) -> None:
    try:
        await upgrade(url)
    except (OSError, SQLAlchemyError) as exc:
        raise _unreachable(url, exc) from exc


def loop_factory(name: str) -> Callable[[], asyncio.AbstractEventLoop] | None:
    """The event loop the server runs on: uvloop's when asked for and installed; None, asyncio's."""
    if name == "uvloop":
        try:
            import uvloop
        except ImportError:
            return None
        return uvloop.new_event_loop
    return None


def _run(args: argparse.Namespace, settings: Settings) -> int:
    """One command; a start-up failure raises ConfigError, StartupError, ListenError or
    LogKeyError."""
    if args.command == "log-key":
        return _new_log_key(settings)
    if args.command == "healthcheck":
        try:
            healthy, said = health_check(
                args.listen,
                settings,
                ca=args.ca,
                client_cert=args.client_cert,
                client_key=args.client_key,
                timeout=args.timeout,
            )
        except ConfigError as exc:  # unhealthy too: Docker reserves exit code 2
            healthy, said = False, str(exc)
        print(said if healthy else f"error: {said}", file=sys.stdout if healthy else sys.stderr)
        return EXIT_HEALTHY if healthy else EXIT_UNHEALTHY
    _check_database_url(settings.database_url)
    if args.command == "migrate":
        _ensure_sqlite_dir(settings.database_url)
        asyncio.run(_migrate(settings.database_url))
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
        metrics_listen=args.metrics_listen or None,
        portal_listen=args.portal_listen or None,
        event_loop=args.event_loop,
    )
    settings = with_portal_origin(settings)
    with asyncio.Runner(loop_factory=loop_factory(settings.event_loop)) as runner:
        runner.run(_serve(settings, args.ready_file, tls_files(settings)))
    return 0


def main(argv: list[str] | None = None) -> int:
    try:
        parser = _parser()
    except ConfigError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_STARTUP
    args = parser.parse_args(argv)
    settings = replace(
        Settings.from_env(),
        database_url=args.database_url,
        log_format=args.log_format,
        log_level=args.log_level,
        log_key_file=str(args.log_key_file),
    )
    configure_logging(settings.log_format, settings.log_level)
    try:
        return _run(args, settings)
    except (ConfigError, StartupError, ListenError, LogKeyError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_STARTUP


if __name__ == "__main__":
    sys.exit(main())
