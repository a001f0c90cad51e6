"""Alembic environment: one chain for SQLite and PostgreSQL, run through the async drivers."""

from __future__ import annotations

import asyncio
import os
import warnings
from typing import Any

import sqlalchemy as sa
from alembic import context
from alembic.autogenerate.api import AutogenContext
from sqlalchemy.engine import Connection

from airlock_server.persistence.db import create_engine, is_sqlite
from airlock_server.persistence.models import Base, UTCDateTime

config = context.config
target_metadata = Base.metadata


def _url() -> str:
    url = config.get_main_option("sqlalchemy.url") or os.environ.get("AIRLOCK_DATABASE_URL")
    if not url:
        raise RuntimeError("no database URL: set AIRLOCK_DATABASE_URL")
    return url


def _render_item(type_: str, obj: Any, autogen_context: AutogenContext) -> str | bool:
    """Migrations stay frozen: they spell plain SQLAlchemy types, never the app's classes."""
    if type_ == "type" and isinstance(obj, UTCDateTime):
        return "sa.DateTime(timezone=True)"
    return False


def _compare_type(
    ctx: Any, inspected: Any, metadata: Any, inspected_type: Any, metadata_type: Any
) -> bool | None:
    if isinstance(metadata_type, UTCDateTime):
        return not isinstance(inspected_type, sa.DateTime)
    return None


def _run(connection: Connection) -> None:
    context.configure(
        connection=connection,
        target_metadata=target_metadata,
        render_as_batch=is_sqlite(_url()),
        compare_type=_compare_type,
        render_item=_render_item,
    )
    with context.begin_transaction(), warnings.catch_warnings():
        # SQLite's expression index (ix_events_actor_kind_seq) cannot be reflected, so
        # autogenerate skips it there, saying so; PostgreSQL reflects and compares it.
        warnings.filterwarnings("ignore", message="Skipped unsupported reflection of expression")
        warnings.filterwarnings("ignore", message="autogenerate skipping metadata-specified expr")
        context.run_migrations()


async def _run_async() -> None:
    engine = create_engine(_url())
    try:
        async with engine.connect() as connection:
            await connection.run_sync(_run)
            await connection.commit()
    finally:
        await engine.dispose()


if context.is_offline_mode():
    raise RuntimeError("offline migrations are not supported; run `airlock-server migrate`")
asyncio.run(_run_async())
