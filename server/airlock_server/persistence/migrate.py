"""Running the Alembic chain from the server's CLI and from tests."""

from __future__ import annotations

import asyncio
import logging
from pathlib import Path

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy.engine import Connection
from sqlalchemy.ext.asyncio import AsyncEngine

from airlock_server.persistence.db import READ_ONLY_OPTION


def migrations_dir() -> Path:
    here = Path(__file__).resolve()
    for candidate in (here.parents[3] / "migrations", here.parents[1] / "_migrations"):
        if (candidate / "env.py").exists():
            return candidate
    raise RuntimeError("the migrations folder is missing from this installation")


def alembic_config(url: str) -> Config:
    config = Config()
    config.set_main_option("script_location", str(migrations_dir()))
    config.set_main_option("sqlalchemy.url", url.replace("%", "%%"))
    return config


def _in_thread(url: str, revision: str) -> None:
    command.upgrade(alembic_config(url), revision)


async def upgrade(url: str, revision: str = "head") -> None:
    """env.py runs its own event loop, so Alembic runs in a worker thread."""
    await asyncio.to_thread(_in_thread, url, revision)


def upgrade_sync(url: str, revision: str = "head") -> None:
    _in_thread(url, revision)


def _scripts() -> ScriptDirectory:
    return ScriptDirectory.from_config(alembic_config("sqlite://"))


def head_revisions() -> tuple[str, ...]:
    """The revisions `migrate` brings a database to (the chain's heads)."""
    return tuple(_scripts().get_heads())


def known_revision(revision: str) -> bool:
    """Whether this installation's migrations hold `revision` (a newer server's do not)."""
    return any(script.revision == revision for script in _scripts().walk_revisions())


async def schema_revisions(engine: AsyncEngine) -> tuple[str, ...]:
    """The revisions the database is at; empty for a database never migrated. Read-only: it
    opens a connection (so it also says whether the database can be reached) and reads
    Alembic's version table, if there is one."""
    async with engine.connect() as conn:
        reading = await conn.execution_options(**{READ_ONLY_OPTION: True})
        return tuple(await reading.run_sync(_current_heads))


def _current_heads(connection: Connection) -> tuple[str, ...]:
    # Alembic announces its dialect at INFO each time; a read at start-up is not a migration.
    announcer = logging.getLogger("alembic.runtime.migration")
    level = announcer.level
    announcer.setLevel(logging.WARNING)
    try:
        return tuple(MigrationContext.configure(connection).get_current_heads())
    finally:
        announcer.setLevel(level)
