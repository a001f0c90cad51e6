"""Verified credentials of this process, by token hash: authentication without a round trip.

Every RPC authenticates; reading the credential row each time cost a statement and ~0.8 ms of
CPU (issue 11). An entry holds what the database said when it was loaded (the row's MAC checked
on that load), and is dropped:
- on this process, by the use case that revoked it, before that use case answers;
- on every process, when the database announces a change of the row (PostgreSQL: the
  `credentials` trigger's NOTIFY on `airlock_credentials`, persistence/credential_watch.py);
- all at once whenever those announcements may have been missed: the cache serves nothing
  while it is not `live` (no LISTEN connection), and is emptied when it becomes live again.

A load that started before a drop does not store what it read (the `generation` it saw is old):
it may have read the row before the change committed.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Iterable

from airlock_server.domain.identities import Credential
from airlock_server.domain.principals import Principal

CAPACITY = 10_000


class CredentialCache:
    def __init__(self, *, live: bool = True, capacity: int = CAPACITY) -> None:
        self._entries: OrderedDict[bytes, Credential] = OrderedDict()
        self._digest_of: dict[str, bytes] = {}
        self._capacity = capacity
        self._live = live
        self.generation = 0

    @property
    def live(self) -> bool:
        return self._live

    def __len__(self) -> int:
        return len(self._entries)

    def get(self, digest: bytes) -> Credential | None:
        if not self._live:
            return None
        cred = self._entries.get(digest)
        if cred is not None:
            self._entries.move_to_end(digest)
        return cred

    def put(self, digest: bytes, cred: Credential, generation: int) -> None:
        """Store what a load read, unless something was dropped since it began."""
        if not self._live or generation != self.generation:
            return
        self._entries[digest] = cred
        self._digest_of[cred.credential_id] = digest
        while len(self._entries) > self._capacity:
            _, old = self._entries.popitem(last=False)
            self._digest_of.pop(old.credential_id, None)

    def drop(self, credential_ids: Iterable[str]) -> None:
        self.generation += 1
        for credential_id in credential_ids:
            digest = self._digest_of.pop(credential_id, None)
            if digest is not None:
                self._entries.pop(digest, None)

    def drop_principal(self, principal: Principal) -> None:
        self.drop([c.credential_id for c in self._entries.values() if c.principal == principal])

    def drop_all(self) -> None:
        self.generation += 1
        self._entries.clear()
        self._digest_of.clear()

    def suspend(self) -> None:
        """Announcements may be missed from now on: serve and keep nothing."""
        self._live = False
        self.drop_all()

    def resume(self) -> None:
        """Announcements arrive again; what was loaded before may be stale."""
        self.drop_all()
        self._live = True
