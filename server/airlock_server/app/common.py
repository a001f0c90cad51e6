"""What every use case shares: its dependencies, the transaction runner, request ids.

A use case that changes something reads top to bottom: its caller checked (`require`), its
input checked, then `run_once` with the work done the first time (`act`) and how its answer is
read on a replay (`answer`): one transaction, idempotent on the request_id."""

from __future__ import annotations

import contextvars
import secrets
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Generic, TypeVar

from airlock_server.app.credential_cache import CredentialCache
from airlock_server.app.ports import Clock, UnitOfWork, UnitOfWorkFactory
from airlock_server.domain.errors import (
    REQUEST_ID_REUSED,
    Conflict,
    DomainError,
    FieldViolation,
    InvalidArgument,
    StaleConnection,
)
from airlock_server.domain.principals import Principal

T = TypeVar("T")

MAX_REQUEST_ID = 36
ATTEMPTS = 5

# The fingerprint of the request being served (SHA-256 hex of its deterministic serialization
# with request_id cleared), set by the transport before the use case runs. Empty when a use
# case is called without a wire request (tests, the demo): then the key binds to the caller and
# the method only.
request_fingerprint: contextvars.ContextVar[str] = contextvars.ContextVar(
    "airlock_request_fingerprint", default=""
)


def utcnow() -> datetime:
    return datetime.now(UTC)


def new_id(prefix: str) -> str:
    return f"{prefix}-{secrets.token_hex(8)}"


@dataclass(frozen=True)
class Deps:
    """The app layer's view of the world, wired by bootstrap."""

    uow: UnitOfWorkFactory
    clock: Clock = utcnow
    region: str = "us-east-1"
    new_id: Callable[[str], str] = field(default=new_id)
    # Verified credentials of this process (app/credential_cache.py); None reads every time.
    credentials: CredentialCache | None = None
    # The hot reads' units (`transact(..., hot=True)`): PostgreSQL's driver connection, no ORM
    # session (persistence/hot_reads.py); None: `uow`.
    reads: UnitOfWorkFactory | None = None


class RefuseAfter(Exception):
    """Refuse the call with `error`, but first `write` down what the refusal found (an expired
    session settled) in a transaction of its own: the refused one rolls back."""

    def __init__(self, error: DomainError, write: Callable[[], Awaitable[object]]) -> None:
        super().__init__(error.message)
        self.error = error
        self.write = write


async def transact(
    deps: Deps,
    work: Callable[[UnitOfWork], Awaitable[T]],
    *,
    read_only: bool = False,
    one_statement: bool = False,
    hot: bool = False,
) -> T:
    """Run one use case as one transaction; retry when a concurrent change won, and once when
    the database had closed the connection before the transaction sent anything (a restart).

    `read_only`, `one_statement`: see UnitOfWorkFactory. `hot`: a read only, on `deps.reads`
    when there is one (the work neither writes nor commits)."""
    factory = deps.reads if hot and deps.reads is not None else deps.uow
    try:
        return await _attempts(
            factory, work, read_only=read_only or hot, one_statement=one_statement
        )
    except RefuseAfter as refused:
        await refused.write()
        raise refused.error from None


async def _attempts(
    factory: UnitOfWorkFactory,
    work: Callable[[UnitOfWork], Awaitable[T]],
    *,
    read_only: bool,
    one_statement: bool,
) -> T:
    stale = False
    for attempt in range(ATTEMPTS):
        try:
            async with factory(read_only=read_only, one_statement=one_statement) as uow:
                return await work(uow)
        except Conflict:
            if attempt == ATTEMPTS - 1:
                raise
        except StaleConnection:
            if stale:
                raise
            stale = True
    raise AssertionError("unreachable")


def check_request_id(request_id: str) -> None:
    if len(request_id) > MAX_REQUEST_ID:
        raise InvalidArgument.field("request_id", f"at most {MAX_REQUEST_ID} characters")


def request_scope(principal: Principal, method: str) -> str:
    """Whose request_ids a key is among: the caller's, for one method."""
    return f"{principal}:{method}"


async def once(
    uow: UnitOfWork,
    deps: Deps,
    principal: Principal,
    method: str,
    request_id: str,
    create: Callable[[], Awaitable[str]],
    known: str | None = None,
) -> tuple[str, bool]:
    """AIP-155, as payment APIs do it: a request_id belongs to the caller, the method and the
    request. The first call does the work; the same request again gets its result; another
    request with the same id is refused (REQUEST_ID_REUSED) rather than answered with the first
    one's result.

    Returns (result, replayed). The key is claimed first, so a racing twin waits for it.
    `known`: the result when it is known before the work (Vote's is the session id), stored
    with the claim: a statement fewer on the hot path (the transaction stores both or none).
    """
    check_request_id(request_id)
    if not request_id:
        return await create(), False
    scope = request_scope(principal, method)
    fingerprint = request_fingerprint.get()
    earlier = await uow.idempotency.claim(scope, request_id, fingerprint, deps.clock(), known)
    if earlier is not None:
        if earlier.fingerprint is not None and earlier.fingerprint != fingerprint:
            raise InvalidArgument(
                [
                    FieldViolation(
                        "request_id",
                        f"already used by this caller for another {method} request; "
                        "a retry must repeat the request unchanged, a new request needs a new id",
                    )
                ],
                reason=REQUEST_ID_REUSED,
            )
        return earlier.result, True
    result = await create()
    if known is None:
        await uow.idempotency.complete(scope, request_id, result)
    elif result != known:
        raise AssertionError(f"{method}: the result {result!r} is not the one claimed {known!r}")
    return result, False


@dataclass(frozen=True)
class Done(Generic[T]):
    """What a use case's work did the first time: the key its request_id remembers, and the
    answer itself when the work has it in hand (None: `answer` reads it by the key)."""

    key: str
    result: T | None = None


async def run_once(
    deps: Deps,
    caller: Principal,
    method: str,
    request_id: str,
    act: Callable[[UnitOfWork], Awaitable[Done[T]]],
    answer: Callable[[UnitOfWork, str], Awaitable[T]],
    *,
    known: str | None = None,
) -> T:
    """One use case that changes something: one transaction (transact), idempotent on the
    caller's request_id (once). `act` does the work, the first time only; the answer is the
    one it had in hand, or `answer(uow, key)` (always on a replay). Commits after the answer.
    `known`: the key when it is known before the work (see once)."""

    async def work(uow: UnitOfWork) -> T:
        done: Done[T] | None = None

        async def first() -> str:
            nonlocal done
            done = await act(uow)
            return done.key

        key, _ = await once(uow, deps, caller, method, request_id, first, known)
        if done is not None and done.result is not None:
            result = done.result
        else:
            result = await answer(uow, key)
        await uow.commit()
        return result

    return await transact(deps, work)
