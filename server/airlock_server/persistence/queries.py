"""Statement helpers the repositories share."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from sqlalchemy import String, and_, any_, bindparam, or_
from sqlalchemy.dialects.postgresql import ARRAY
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.sql import ColumnElement

from airlock_server.app.ports import TimeCursor


def dialect_insert(session: AsyncSession):  # type: ignore[no-untyped-def]
    """The dialect's INSERT, for ON CONFLICT DO NOTHING."""
    return pg_insert if session.get_bind().dialect.name == "postgresql" else sqlite_insert


def ids_in(column: Any, name: str, dialect: str) -> Any:
    """`column` among the list parameter `name`: PostgreSQL's `= ANY(array)` keeps one
    statement text whatever the list's length (one prepared statement); SQLite expands IN."""
    if dialect == "postgresql":
        return column == any_(bindparam(name, type_=ARRAY(String)))
    return column.in_(bindparam(name, expanding=True))


def after_cursor(
    time_col: Any, id_col: Any, after: TimeCursor | None
) -> ColumnElement[bool] | None:
    """Newest-first keyset paging: rows strictly after the cursor."""
    if after is None:
        return None
    t, key = after
    return or_(time_col < t, and_(time_col == t, id_col < key))


class Fields:
    """Attribute access to a row that comes as a mapping (PostgreSQL's composite values, as
    asyncpg returns a row of a table selected whole), for the mappers that read attributes."""

    __slots__ = ("_row",)

    def __init__(self, row: Mapping[str, Any]) -> None:
        self._row = row

    def __getattr__(self, name: str) -> Any:
        try:
            return self._row[name]
        except KeyError:
            raise AttributeError(name) from None
