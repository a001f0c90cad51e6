"""Settings from flags and AIRLOCK_* environment variables (flags win)."""

from __future__ import annotations

import os
from dataclasses import dataclass

DEFAULT_DATABASE_URL = "sqlite:///var/airlock.db"


@dataclass(frozen=True)
class Settings:
    listen: str = "127.0.0.1:50051"
    database_url: str = DEFAULT_DATABASE_URL
    log_format: str = "auto"
    log_level: str = "info"
    region: str = "us-east-1"
    shutdown_grace: float = 10.0
    sweep_interval: float = 30.0
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

    @classmethod
    def from_env(cls) -> Settings:
        env = os.environ
        d = cls()
        return cls(
            listen=env.get("AIRLOCK_LISTEN", d.listen),
            database_url=env.get("AIRLOCK_DATABASE_URL", d.database_url),
            log_format=env.get("AIRLOCK_LOG_FORMAT", d.log_format),
            log_level=env.get("AIRLOCK_LOG_LEVEL", d.log_level),
            region=env.get("AIRLOCK_REGION", d.region),
            shutdown_grace=float(env.get("AIRLOCK_SHUTDOWN_GRACE", d.shutdown_grace)),
            sweep_interval=float(env.get("AIRLOCK_SWEEP_INTERVAL", d.sweep_interval)),
            db_pool_size=int(env.get("AIRLOCK_DB_POOL_SIZE", d.db_pool_size)),
            log_key_file=env.get("AIRLOCK_LOG_KEY_FILE", d.log_key_file),
            events_poll_interval=float(
                env.get("AIRLOCK_EVENTS_POLL_INTERVAL", d.events_poll_interval)
            ),
            events_safety_poll=float(env.get("AIRLOCK_EVENTS_SAFETY_POLL", d.events_safety_poll)),
            tls_cert=env.get("AIRLOCK_TLS_CERT") or None,
            tls_key=env.get("AIRLOCK_TLS_KEY") or None,
            tls_client_ca=env.get("AIRLOCK_TLS_CLIENT_CA") or None,
        )
