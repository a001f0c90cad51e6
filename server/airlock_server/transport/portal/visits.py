"""The portal's browser sessions ("visits"): a random cookie, kept server-side as a hash.

A visit carries its CSRF token and, once a passkey signed in, the approver. Nothing secret is
derived from the cookie on the server: a database or log reader learns no cookie. Visits live in
this process's memory, so a restart signs everybody out (short lifetimes make that cheap).
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
import time
from dataclasses import dataclass

COOKIE = "airlock_portal"
# An anonymous visit (invitation, sign-in page) and a signed-in one; absolute, never extended.
ANONYMOUS_TTL = 30 * 60.0
SIGNED_IN_TTL = 15 * 60.0
MAX_VISITS = 10_000


@dataclass(frozen=True)
class Visit:
    csrf: str
    expires: float
    approver_id: str = ""  # "" while nobody signed in


def _digest(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


class Visits:
    def __init__(self) -> None:
        self._by_digest: dict[str, Visit] = {}

    def _prune(self) -> None:
        now = time.monotonic()
        for key in [k for k, v in self._by_digest.items() if v.expires <= now]:
            del self._by_digest[key]
        while len(self._by_digest) >= MAX_VISITS:  # oldest first: dicts keep insertion order
            del self._by_digest[next(iter(self._by_digest))]

    def get(self, token: str | None) -> Visit | None:
        if not token:
            return None
        visit = self._by_digest.get(_digest(token))
        if visit is None or visit.expires <= time.monotonic():
            return None
        return visit

    def start(self, approver_id: str = "") -> tuple[str, Visit]:
        """A new visit and its cookie value (a new one at sign-in: no session fixation)."""
        self._prune()
        token = secrets.token_urlsafe(32)
        ttl = SIGNED_IN_TTL if approver_id else ANONYMOUS_TTL
        visit = Visit(secrets.token_urlsafe(32), time.monotonic() + ttl, approver_id)
        self._by_digest[_digest(token)] = visit
        return token, visit

    def end(self, token: str | None) -> None:
        if token:
            self._by_digest.pop(_digest(token), None)


def csrf_ok(visit: Visit | None, supplied: str | None) -> bool:
    return visit is not None and bool(supplied) and hmac.compare_digest(visit.csrf, supplied or "")
