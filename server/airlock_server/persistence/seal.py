"""The log key as storage uses it: signed heads and row MACs (domain/integrity.py).

One `Sealer` per wiring. Without a log key it writes no signature or MAC and checks none: a
keyless server trusts its database (docs/threat-model.md)."""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Sequence
from datetime import datetime

import structlog

from airlock_server.app.ports import LogSigner
from airlock_server.domain.events import checkpoint_message
from airlock_server.domain.integrity import RowField, row_mac, same_mac

log = structlog.get_logger("airlock.integrity")

# Heads this process signed, so its next append skips verifying them (the common case on one
# replica); a head signed by another replica is verified once (Ed25519, ~0.1 ms).
_REMEMBERED = 64
# Row MACs this process computed, by table and fields: a row read again (every GetSession
# reads the same session and votes) is checked by a lookup, not an HMAC over its encoding.
_MACS_REMEMBERED = 4096


class Sealer:
    def __init__(self, signer: LogSigner | None = None) -> None:
        self.signer = signer
        self._known: OrderedDict[tuple[int, bytes], None] = OrderedDict()
        self._macs: dict[tuple[str, tuple[RowField, ...]], bytes] = {}

    @property
    def keyed(self) -> bool:
        return self.signer is not None

    # --- signed heads ---------------------------------------------------------------------

    def sign_head(self, seq: int, hash_: bytes, time: datetime) -> bytes | None:
        if self.signer is None:
            return None
        signature = self.signer.sign(checkpoint_message(seq, hash_, time))
        self._remember((seq, hash_))
        return signature

    def head_is_ours(
        self, seq: int, hash_: bytes, time: datetime | None, signature: bytes | None
    ) -> bool:
        """Whether this server's key signed the head row (the genesis head needs nothing)."""
        if self.signer is None or seq == 0:
            return True
        if (seq, hash_) in self._known:
            return True
        if not signature or time is None:
            return False
        if not self.signer.verify(signature, checkpoint_message(seq, hash_, time)):
            return False
        self._remember((seq, hash_))
        return True

    def verifies(self, seq: int, hash_: bytes, time: datetime, signature: bytes | None) -> bool:
        """A stored head signature (VerifyLog, ListEvents readers): no cache."""
        if self.signer is None or not signature:
            return False
        return self.signer.verify(signature, checkpoint_message(seq, hash_, time))

    def _remember(self, head: tuple[int, bytes]) -> None:
        self._known[head] = None
        while len(self._known) > _REMEMBERED:
            self._known.popitem(last=False)

    # --- row MACs -------------------------------------------------------------------------

    def mac(self, table: str, fields: Sequence[RowField]) -> bytes | None:
        if self.signer is None:
            return None
        return self._mac(table, tuple(fields))

    def _mac(self, table: str, fields: tuple[RowField, ...]) -> bytes:
        assert self.signer is not None
        key = (table, fields)
        mac = self._macs.get(key)
        if mac is None:
            mac = row_mac(self.signer.row_mac_key, table, fields)
            if len(self._macs) >= _MACS_REMEMBERED:
                self._macs.clear()  # a bound, not an LRU: refilled by the next reads
            self._macs[key] = mac
        return mac

    def authentic(
        self, table: str, key: str, fields: Sequence[RowField], stored: bytes | None
    ) -> bool:
        if self.signer is None:
            return True
        if same_mac(self._mac(table, tuple(fields)), stored):
            return True
        log.warning("integrity.row_not_authentic", table=table, key=key)
        return False
