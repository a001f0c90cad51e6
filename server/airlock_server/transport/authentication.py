"""Who calls: the bearer token of a call's metadata, to the Caller its servicer sees.

One function of the call's context, kept apart from the interceptor's other jobs so that a
credential cache (or another scheme) changes only this module.
"""

from __future__ import annotations

import contextvars
from collections.abc import Iterable
from typing import Any

import grpc

from airlock_server.app.identity import Caller, IdentityService
from airlock_server.domain.principals import Principal

Ctx = grpc.aio.ServicerContext[Any, Any]

# Set in the task that runs the servicer (the interceptor's wrapped handler), read by it.
_caller: contextvars.ContextVar[Caller] = contextvars.ContextVar("airlock_caller")


def current_caller() -> Caller:
    return _caller.get()


def current_principal() -> Principal:
    return _caller.get().principal


def authenticated() -> Caller | None:
    """The caller of the call being served, None before (or without) authentication."""
    return _caller.get(None)


def bearer(metadata: Iterable[tuple[str, str | bytes]] | None) -> str:
    """The token of an `authorization: Bearer <token>` header (scheme in any case), or ""."""
    for key, value in metadata or ():
        if key == "authorization" and isinstance(value, str):
            scheme, _, token = value.partition(" ")
            if scheme.lower() == "bearer":
                return token.strip()
    return ""


class Authentication:
    """The caller of a call, from its token; UNAUTHENTICATED (a DomainError) otherwise."""

    def __init__(self, identities: IdentityService) -> None:
        self._identities = identities

    async def caller(self, metadata: Iterable[tuple[str, str | bytes]] | None) -> Caller:
        """From the call's metadata (read once per call by the interceptor)."""
        caller = await self._identities.authenticate(bearer(metadata))
        _caller.set(caller)
        return caller
