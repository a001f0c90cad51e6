"""The hot reads (GetSession, CheckAccess, GetApprovalTeam) on PostgreSQL's driver connection.

Issue 11: through an ORM session a one-SELECT read cost ~560 µs of CPU in process; the same
statement on a pooled asyncpg connection ~40 µs. A `HotReadUnit` is a read-only unit of work
whose repositories are the usual ones (same statements, same row mapping, same MAC checks) over
a `DriverSession`: each Core statement compiled once for asyncpg and run on the asyncpg
connection of one the engine's pool lends (`ReadPool`), its rows handed back with attribute
access as SQLAlchemy's are. Nothing else of SQLAlchemy runs per call: no ORM session, no
Connection, no execution context, no result processing.

Only reads pass here: a write (or any AsyncSession method the read repositories do not use)
fails loudly. SQLite keeps the ordinary unit of work (one connection, no gain to be had).
"""

from __future__ import annotations

from collections import OrderedDict, namedtuple
from collections.abc import Callable, Mapping
from typing import Any, cast

from sqlalchemy.dialects.postgresql.asyncpg import dialect as asyncpg_dialect
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession
from sqlalchemy.pool import PoolProxiedConnection
from sqlalchemy.sql.compiler import SQLCompiler
from sqlalchemy.util.concurrency import greenlet_spawn

from airlock_server.app import ports
from airlock_server.domain.errors import StaleConnection, Unavailable
from airlock_server.domain.events import NewEvent
from airlock_server.domain.notifications import Routing
from airlock_server.persistence.activity import SqlActivityRepository
from airlock_server.persistence.db import is_outage
from airlock_server.persistence.repositories import Repositories
from airlock_server.persistence.seal import Sealer

# Statements compiled, by identity, the least recently used dropped beyond this: the hot reads'
# are prebuilt and stay; one built per call (a rare read) is compiled each time.
_COMPILED_MAX = 256

_DIALECT = asyncpg_dialect()  # type: ignore[no-untyped-call]


class ReadPool:
    """The engine's own pool, lent to the hot reads: no connections beyond `db_pool_size`.
    A checkout of an idle connection does no I/O; its return does none either, as nothing
    began a transaction through SQLAlchemy's adapter (it rolls back only what it began)."""

    def __init__(self, engine: AsyncEngine) -> None:
        self._pool = engine.sync_engine.pool

    async def acquire(self) -> PoolProxiedConnection:
        return await greenlet_spawn(self._pool.connect)

    def release(
        self,
        lent: PoolProxiedConnection,
        *,
        dead: BaseException | None = None,
        in_doubt: bool = False,
    ) -> None:
        """Back to the pool. `dead`: the error that found it closed; the pool's older
        connections go with it (as SQLAlchemy does on a disconnect: they died together).
        `in_doubt`: a statement was cut short (the call cancelled); this one alone is closed."""
        if dead is not None:
            self._pool._invalidate(lent, dead)
        elif in_doubt:
            lent.invalidate()
        lent.close()


class _Rows(list[Any]):
    """A statement's rows, as much of a SQLAlchemy Result as the read repositories use."""

    def first(self) -> Any:
        return self[0] if self else None


def _row_type(names: tuple[str, ...]) -> Callable[..., Any]:
    base = namedtuple("Row", names)  # type: ignore[misc]

    class Row(base):
        """A row as SQLAlchemy's: by attribute, and as a mapping."""

        __slots__ = ()

        @property
        def _mapping(self) -> dict[str, Any]:
            return dict(zip(self._fields, self, strict=True))

    return cast(Callable[..., Any], Row)


class _Prepared:
    """A statement compiled once: asyncpg's SQL, its parameters in order, their processors."""

    def __init__(self, statement: Any) -> None:
        self.statement = statement  # held, so its id is not reused while cached
        self.compiled = cast(SQLCompiler, statement.compile(dialect=_DIALECT))
        self.expanding = bool(self.compiled.post_compile_params)
        self.sql = str(self.compiled)
        self.names = tuple(self.compiled.positiontup or ())
        self.processors = cast(
            dict[str, Callable[[Any], Any]], dict(self.compiled._bind_processors)
        )
        self.row_types: dict[tuple[str, ...], Callable[..., Any]] = {}
        # A list fixed in the statement (`state IN (...)`) expands the same way every time:
        # expanded once, the caller's values put in on each call.
        self._lists = frozenset(b.key for b in self.compiled.post_compile_params)
        self._expanded: tuple[str, tuple[str, ...], dict[str, Any], dict[str, Any]] | None = None

    def bound(self, params: dict[str, Any] | None) -> tuple[str, list[Any]]:
        if self.expanding:
            given = params or {}
            fixed = not (self._lists & given.keys())
            expanded = self._expanded if fixed else None
            if expanded is None:
                state = self.compiled.construct_expanded_state(params)
                expanded = (
                    state.statement,
                    tuple(state.positiontup or ()),
                    dict(state.parameters),
                    dict(state.processors),
                )
                if fixed:
                    self._expanded = expanded
            sql, names, literals, processors = expanded
            values: Mapping[str, Any] = {**literals, **given}
        else:
            values = self.compiled.construct_params(params)
            names, sql, processors = self.names, self.sql, self.processors
        args: list[Any] = []
        for name in names:
            value = values[name]
            process = processors.get(name)
            args.append(value if process is None or value is None else process(value))
        return sql, args

    def rows(self, records: list[Any]) -> _Rows:
        if not records:
            return _Rows()
        keys = tuple(records[0].keys())
        row = self.row_types.get(keys)
        if row is None:
            row = self.row_types[keys] = _row_type(keys)
        return _Rows(row(*r) for r in records)


_compiled: OrderedDict[int, _Prepared] = OrderedDict()


def _prepared(statement: Any) -> _Prepared:
    found = _compiled.get(id(statement))
    if found is not None and found.statement is statement:
        _compiled.move_to_end(id(statement))
        return found
    prepared = _compiled[id(statement)] = _Prepared(statement)
    while len(_compiled) > _COMPILED_MAX:
        _compiled.popitem(last=False)  # least recently used: a statement built per call
    return prepared


class _Bind:
    dialect = _DIALECT


class DriverSession:
    """What the read repositories use of an AsyncSession (`connection()`, `execute`), on one
    asyncpg connection. An outage becomes Unavailable; a pooled connection found dead before
    anything went through, StaleConnection (the read is tried again on a new one)."""

    def __init__(self, con: Any) -> None:
        self.con = con
        self.sent = False
        self.dead: BaseException | None = None
        # A statement under way: still True after it, the call was cancelled in the middle.
        self.in_doubt = False

    async def connection(self, **_options: Any) -> DriverSession:
        return self

    def get_bind(self) -> Any:
        """What a repository asks to tell the dialect (`.dialect.name`)."""
        return _Bind

    async def execute(self, statement: Any, params: dict[str, Any] | None = None) -> _Rows:
        prepared = _prepared(statement)
        sql, args = prepared.bound(params)
        records = await self.run(self.con.fetch(sql, *args))
        return prepared.rows(records)

    async def run(self, call: Any) -> Any:
        self.in_doubt = True
        try:
            result = await call
        except Exception as error:
            self.in_doubt = False
            if not (is_outage(error) or self.con.is_closed()):
                raise
            self.dead = error
            if not self.sent:
                raise StaleConnection() from error
            raise Unavailable() from error
        self.in_doubt = False
        self.sent = True
        return result


class HotReadUnit(Repositories):
    """A read-only unit of work on a connection lent by the engine's pool; `snapshot`: its reads
    see one instant (REPEATABLE READ, READ ONLY), else each statement is its own (autocommit)."""

    def __init__(self, pool: ReadPool, sealer: Sealer, *, snapshot: bool) -> None:
        self._pool = pool
        self._sealer = sealer
        self._snapshot = snapshot
        self._lent: PoolProxiedConnection | None = None
        self._session: DriverSession | None = None

    async def __aenter__(self) -> HotReadUnit:
        try:
            lent = await self._pool.acquire()
        except Exception as error:
            if not is_outage(error):
                raise
            raise Unavailable() from error
        self._lent = lent
        d = self._session = DriverSession(lent.driver_connection)
        if self._snapshot:
            try:
                await d.run(d.con.execute("BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY"))
            except BaseException:
                await self.__aexit__()
                raise
            d.sent = False  # BEGIN alone read nothing: a retry is still safe
        s = cast(AsyncSession, d)
        self._attach(s, self._sealer, Routing(), SqlActivityRepository(s))
        return self

    def record(self, event: NewEvent) -> None:
        raise RuntimeError("a hot read records no events")

    async def commit(self) -> None:
        raise RuntimeError("a hot read commits nothing")

    async def __aexit__(self, *_exc_info: object) -> None:
        lent, d = self._lent, self._session
        self._lent = self._session = None
        if lent is None or d is None:
            return
        in_doubt = d.in_doubt
        if not self._snapshot or d.dead is not None or in_doubt:
            self._pool.release(lent, dead=d.dead, in_doubt=in_doubt)
            return
        ended = False
        try:
            await d.con.execute("ROLLBACK")
            ended = True
        except Exception:
            pass  # what was read stands; the connection is not lent again
        finally:
            self._pool.release(lent, in_doubt=not ended)


def hot_reads_of(engine: AsyncEngine, sealer: Sealer) -> ports.UnitOfWorkFactory | None:
    """PostgreSQL's hot read units; None on SQLite (the ordinary unit of work serves)."""
    if engine.dialect.name != "postgresql":
        return None
    pool = ReadPool(engine)

    def unit(*, read_only: bool = True, one_statement: bool = False) -> ports.UnitOfWork:
        return HotReadUnit(pool, sealer, snapshot=not one_statement)

    return unit
