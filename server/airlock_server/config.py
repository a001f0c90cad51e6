"""Settings from flags and AIRLOCK_* environment variables (flags win)."""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass
from urllib.parse import urlsplit

from airlock_server.domain.notifications import parse_fractions

DEFAULT_DATABASE_URL = "sqlite:///var/airlock.db"
LOG_LEVELS = ("debug", "info", "warning", "error")
# The server's event loop: uvloop serves the same calls with less CPU (docs/benchmarks.md);
# asyncio when asked, or when uvloop is not installed.
EVENT_LOOPS = ("uvloop", "asyncio")


class ConfigError(Exception):
    """A setting the server cannot start with; the message names the flag or variable."""


def _positive(env: Mapping[str, str], name: str, default: float) -> float:
    raw = env.get(name)
    if raw is None or raw == "":
        return default
    try:
        value = float(raw)
    except ValueError:
        raise ConfigError(f"{name}: must be a number, got {raw!r}") from None
    if not value > 0:
        raise ConfigError(f"{name}: must be greater than 0, got {raw!r}")
    return value


def _choice(env: Mapping[str, str], name: str, default: str, choices: tuple[str, ...]) -> str:
    value = env.get(name) or default
    if value.lower() not in choices:
        raise ConfigError(f"{name}: must be one of {', '.join(choices)}, got {value!r}")
    return value.lower()


def _whole(env: Mapping[str, str], name: str, default: int) -> int:
    size = _positive(env, name, default)
    if size != int(size):
        raise ConfigError(f"{name}: must be a whole number, got {size:g}")
    return int(size)


def _list(env: Mapping[str, str], name: str) -> tuple[str, ...]:
    return tuple(p.strip() for p in env.get(name, "").split(",") if p.strip())


def _port(env: Mapping[str, str], name: str, default: int) -> int:
    value = _positive(env, name, default)
    if value != int(value) or value > 65535:
        raise ConfigError(f"{name}: must be a port number, got {value:g}")
    return int(value)


def _fractions(env: Mapping[str, str], name: str, default: tuple[float, ...]) -> tuple[float, ...]:
    raw = env.get(name)
    if raw is None:
        return default
    try:
        return parse_fractions(raw)
    except ValueError as exc:
        raise ConfigError(f"{name}: fractions of a session's TTL, e.g. 0.5,0.9 ({exc})") from None


def _origin(env: Mapping[str, str], name: str, default: str) -> str:
    value = env.get(name, default)
    if not value:
        return value
    parts = urlsplit(value)
    if parts.scheme not in ("http", "https") or not parts.hostname or parts.path not in ("", "/"):
        raise ConfigError(f"{name} must be scheme://host[:port], got {value!r}")
    return f"{parts.scheme}://{parts.netloc}"


def _pool_size(env: Mapping[str, str], default: int) -> int:
    return _whole(env, "AIRLOCK_DB_POOL_SIZE", default)


@dataclass(frozen=True)
class Settings:
    listen: str = "127.0.0.1:50051"
    database_url: str = DEFAULT_DATABASE_URL
    log_format: str = "auto"
    log_level: str = "info"
    region: str = "us-east-1"
    shutdown_grace: float = 10.0
    event_loop: str = "uvloop"
    sweep_interval: float = 30.0
    # Health answers NOT_SERVING while this probe (SELECT 1, every so many seconds) fails.
    health_probe_interval: float = 1.0
    db_pool_size: int = 10
    log_key_file: str = "var/log-key.pem"
    # WatchEvents: SQLite followers look again this often; on PostgreSQL LISTEN wakes them
    # and the safety poll only covers a lost notification.
    events_poll_interval: float = 0.25
    events_safety_poll: float = 5.0
    # TLS: with a certificate and its key the server speaks TLS only; with a client CA too it
    # requires client certificates signed by that CA (mutual TLS). Paths to PEM files.
    tls_cert: str | None = None
    tls_key: str | None = None
    tls_client_ca: str | None = None
    # Notifications (docs/notifications.md). Email is on when smtp_host is set.
    portal_url: str = ""
    # The approval portal's WebAuthn relying party: the origin its pages are served from
    # (scheme://host[:port]) and the RP id passkeys are bound to (default: the origin's host;
    # a host name, never an IP address). Empty origin: no passkey use cases are wired.
    portal_origin: str = ""
    portal_rp_id: str = ""
    # host:port the portal's pages are served on (same process and loop as gRPC); None: no
    # portal. Its origin defaults to http(s)://localhost:PORT when AIRLOCK_PORTAL_ORIGIN is empty.
    portal_listen: str | None = None
    admin_emails: tuple[str, ...] = ()
    smtp_host: str = ""
    smtp_port: int = 587
    smtp_security: str = "starttls"
    smtp_username: str = ""
    smtp_password: str = ""
    smtp_from: str = "airlock@localhost"
    smtp_ca_file: str = ""
    notify_interval: float = 1.0
    notify_retry_base: float = 5.0
    notify_retry_cap: float = 3600.0
    notify_max_age: float = 86400.0
    notify_lease: float = 60.0
    reminders: tuple[float, ...] = (0.5, 0.9)
    refusal_alert_count: int = 10
    refusal_alert_window: float = 300.0
    # Load bounds (transport/limits.py): open streams (WatchEvents, WatchSession) per process
    # and per principal; events buffered for one stream before a reader that does not keep up
    # is disconnected; refused calls a principal may make (a token bucket: `refusal_burst` at
    # once, `refusal_rate` a second after that) before they are answered RESOURCE_EXHAUSTED
    # instead of being written to the log.
    max_streams: int = 1000
    max_streams_per_principal: int = 32
    stream_buffer: int = 1000
    refusal_rate: float = 1.0
    refusal_burst: int = 20
    # host:port of the Prometheus metrics endpoint; None: no metrics served. The gauges read
    # from the database (pending sessions, team slack) are sampled this often (seconds).
    metrics_listen: str | None = None
    metrics_interval: float = 15.0

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> Settings:
        """Raises ConfigError naming the variable that cannot be used."""
        env = os.environ if env is None else env
        d = cls()
        return cls(
            listen=env.get("AIRLOCK_LISTEN", d.listen),
            database_url=env.get("AIRLOCK_DATABASE_URL", d.database_url),
            log_format=_choice(
                env, "AIRLOCK_LOG_FORMAT", d.log_format, ("auto", "json", "console")
            ),
            log_level=_choice(env, "AIRLOCK_LOG_LEVEL", d.log_level, LOG_LEVELS),
            region=env.get("AIRLOCK_REGION", d.region),
            shutdown_grace=_positive(env, "AIRLOCK_SHUTDOWN_GRACE", d.shutdown_grace),
            event_loop=_choice(env, "AIRLOCK_EVENT_LOOP", d.event_loop, EVENT_LOOPS),
            sweep_interval=_positive(env, "AIRLOCK_SWEEP_INTERVAL", d.sweep_interval),
            health_probe_interval=_positive(
                env, "AIRLOCK_HEALTH_PROBE_INTERVAL", d.health_probe_interval
            ),
            db_pool_size=_pool_size(env, d.db_pool_size),
            log_key_file=env.get("AIRLOCK_LOG_KEY_FILE", d.log_key_file),
            events_poll_interval=_positive(
                env, "AIRLOCK_EVENTS_POLL_INTERVAL", d.events_poll_interval
            ),
            events_safety_poll=_positive(env, "AIRLOCK_EVENTS_SAFETY_POLL", d.events_safety_poll),
            tls_cert=env.get("AIRLOCK_TLS_CERT") or None,
            tls_key=env.get("AIRLOCK_TLS_KEY") or None,
            tls_client_ca=env.get("AIRLOCK_TLS_CLIENT_CA") or None,
            portal_url=env.get("AIRLOCK_PORTAL_URL", d.portal_url),
            portal_origin=_origin(env, "AIRLOCK_PORTAL_ORIGIN", d.portal_origin),
            portal_rp_id=env.get("AIRLOCK_PORTAL_RP_ID", d.portal_rp_id),
            admin_emails=_list(env, "AIRLOCK_ADMIN_EMAILS"),
            smtp_host=env.get("AIRLOCK_SMTP_HOST", d.smtp_host),
            smtp_port=_port(env, "AIRLOCK_SMTP_PORT", d.smtp_port),
            smtp_security=_choice(
                env, "AIRLOCK_SMTP_SECURITY", d.smtp_security, ("starttls", "tls", "none")
            ),
            smtp_username=env.get("AIRLOCK_SMTP_USERNAME", d.smtp_username),
            smtp_password=env.get("AIRLOCK_SMTP_PASSWORD", d.smtp_password),
            smtp_from=env.get("AIRLOCK_SMTP_FROM", d.smtp_from),
            smtp_ca_file=env.get("AIRLOCK_SMTP_CA_FILE", d.smtp_ca_file),
            notify_interval=_positive(env, "AIRLOCK_NOTIFY_INTERVAL", d.notify_interval),
            notify_retry_base=_positive(env, "AIRLOCK_NOTIFY_RETRY_BASE", d.notify_retry_base),
            notify_retry_cap=_positive(env, "AIRLOCK_NOTIFY_RETRY_CAP", d.notify_retry_cap),
            notify_max_age=_positive(env, "AIRLOCK_NOTIFY_MAX_AGE", d.notify_max_age),
            notify_lease=_positive(env, "AIRLOCK_NOTIFY_LEASE", d.notify_lease),
            reminders=_fractions(env, "AIRLOCK_REMINDERS", d.reminders),
            refusal_alert_count=_whole(env, "AIRLOCK_REFUSAL_ALERT_COUNT", d.refusal_alert_count),
            refusal_alert_window=_positive(
                env, "AIRLOCK_REFUSAL_ALERT_WINDOW", d.refusal_alert_window
            ),
            max_streams=_whole(env, "AIRLOCK_MAX_STREAMS", d.max_streams),
            max_streams_per_principal=_whole(
                env, "AIRLOCK_MAX_STREAMS_PER_PRINCIPAL", d.max_streams_per_principal
            ),
            stream_buffer=_whole(env, "AIRLOCK_STREAM_BUFFER", d.stream_buffer),
            refusal_rate=_positive(env, "AIRLOCK_REFUSAL_RATE", d.refusal_rate),
            refusal_burst=_whole(env, "AIRLOCK_REFUSAL_BURST", d.refusal_burst),
            metrics_listen=env.get("AIRLOCK_METRICS_LISTEN") or None,
            portal_listen=env.get("AIRLOCK_PORTAL_LISTEN") or None,
            metrics_interval=_positive(env, "AIRLOCK_METRICS_INTERVAL", d.metrics_interval),
        )
