"""The per-process cache of verified credentials (app/credential_cache.py)."""

from __future__ import annotations

from datetime import UTC, datetime

from airlock_server.app.credential_cache import CredentialCache
from airlock_server.domain.identities import Credential
from airlock_server.domain.principals import Principal, PrincipalKind

NOW = datetime(2026, 12, 7, tzinfo=UTC)


def cred(credential_id: str, subject: str = "a") -> Credential:
    return Credential(credential_id, Principal(PrincipalKind.APPROVER, subject), "", NOW)


def test_a_stored_credential_is_served_until_dropped() -> None:
    cache = CredentialCache()
    cache.put(b"h1", cred("c1"), cache.generation)
    assert cache.get(b"h1") == cred("c1")
    cache.drop(["c1"])
    assert cache.get(b"h1") is None


def test_a_load_begun_before_a_drop_is_not_stored() -> None:
    """It may have read the row before the revocation committed."""
    cache = CredentialCache()
    began = cache.generation
    cache.drop(["c-other"])
    cache.put(b"h1", cred("c1"), began)
    assert cache.get(b"h1") is None
    cache.put(b"h1", cred("c1"), cache.generation)
    assert cache.get(b"h1") is not None


def test_a_principal_is_dropped_with_all_its_credentials() -> None:
    cache = CredentialCache()
    for n, subject in enumerate(("a", "a", "b")):
        cache.put(f"h{n}".encode(), cred(f"c{n}", subject), cache.generation)
    cache.drop_principal(Principal(PrincipalKind.APPROVER, "a"))
    assert [cache.get(h) is None for h in (b"h0", b"h1", b"h2")] == [True, True, False]


def test_suspended_it_serves_and_keeps_nothing_and_resumes_empty() -> None:
    cache = CredentialCache(live=False)
    cache.put(b"h1", cred("c1"), cache.generation)
    assert cache.get(b"h1") is None
    cache.resume()
    cache.put(b"h1", cred("c1"), cache.generation)
    assert cache.get(b"h1") is not None
    cache.suspend()
    assert cache.get(b"h1") is None
    cache.resume()
    assert cache.get(b"h1") is None
    assert len(cache) == 0


def test_it_keeps_at_most_its_capacity_dropping_the_least_recent() -> None:
    cache = CredentialCache(capacity=2)
    cache.put(b"h1", cred("c1"), cache.generation)
    cache.put(b"h2", cred("c2"), cache.generation)
    assert cache.get(b"h1") is not None  # h1 is now the most recent
    cache.put(b"h3", cred("c3"), cache.generation)
    assert cache.get(b"h2") is None
    assert cache.get(b"h1") is not None
    assert len(cache) == 2
