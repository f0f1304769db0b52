"""The DHT value store (sans-I/O): what this node holds for others.

* Every value passes :func:`scp2p.dht.values.validate_dht_value` (keyspace rules,
  64 KiB) before it is kept; the TTL is clamped to 7 days (``MAX_TTL``) and a TTL
  of 0 is refused (nothing to keep).
* A value expires ``ttl`` seconds after it was stored and is never served after
  that; :meth:`ValueStore.expire` drops expired values and
  :meth:`ValueStore.next_deadline` says when to call it next.
* Share heads never go back: a head with a lower ``latest_seq`` than the held one
  raises :class:`~scp2p.errors.StaleValue`; the same seq with the same bytes just
  refreshes the expiry; the same seq with different bytes is refused too (first
  one wins, a subscriber that knows the key verifies it anyway).
* Provider hints (``content:prov``, ``manifest:loc``) stored by different peers are
  *merged*: providers of the new hint first, then the held ones, deduplicated by
  address, at most ``max_providers``, and never over 64 KiB encoded. The merged hint
  expires with the latest store. Hints are untrusted (fetched data is verified).
* Quotas: each origin peer may hold at most ``per_peer_values`` values and
  ``per_peer_bytes`` bytes (values in unknown keyspaces: ``per_peer_unknown``);
  the node as a whole at most ``max_values`` / ``max_bytes``. Beyond that
  :class:`~scp2p.errors.QuotaExceeded`. Our own values (origin None) only count
  against the totals.

Time is an argument (unix seconds, int or float); nothing here reads a clock.
"""

from __future__ import annotations

import heapq
from dataclasses import dataclass, field, replace
from typing import Callable, Optional

from ..errors import QuotaExceeded, StaleValue
from ..limits import MAX_DHT_VALUE, MAX_TTL
from ..wire import codec
from ..wire.messages import Store
from ..wire.records import ShareHead
from .values import validate_dht_value

__all__ = ["StoredValue", "ValueStore", "MAX_PROVIDERS"]

#: providers kept in one merged hint
MAX_PROVIDERS = 32


@dataclass(frozen=True, slots=True)
class StoredValue:
    key: bytes
    value: bytes = field(repr=False)
    kind: str
    expires_at: float
    origin: Optional[bytes]
    record: object = field(default=None, repr=False, compare=False)


class ValueStore:
    """Values held for the network; see the module docstring for the rules."""

    def __init__(
        self,
        *,
        max_values: int = 100_000,
        max_bytes: int = 256 * 1024 * 1024,
        per_peer_values: int = 4096,
        per_peer_bytes: int = 8 * 1024 * 1024,
        per_peer_unknown: int = 64,
        max_providers: int = MAX_PROVIDERS,
        share_pubkey: Optional[Callable[[bytes], Optional[bytes]]] = None,
    ) -> None:
        self.max_values = max_values
        self.max_bytes = max_bytes
        self.per_peer_values = per_peer_values
        self.per_peer_bytes = per_peer_bytes
        self.per_peer_unknown = per_peer_unknown
        self.max_providers = max_providers
        self.share_pubkey = share_pubkey
        self._values: dict[bytes, StoredValue] = {}
        self._heap: list[tuple[float, bytes]] = []
        self._bytes = 0
        # origin -> [values, bytes, unknown values]
        self._usage: dict[bytes, list[int]] = {}

    def __len__(self) -> int:
        return len(self._values)

    def __contains__(self, key: object) -> bool:
        return key in self._values

    @property
    def total_bytes(self) -> int:
        return self._bytes

    def usage(self, origin: bytes) -> tuple[int, int]:
        u = self._usage.get(origin)
        return (u[0], u[1]) if u else (0, 0)

    # ------------------------------------------------------------------ reads
    def get(self, key: bytes, now: float) -> Optional[Store]:
        """The value under ``key`` as a FIND_VALUE hit (``ttl_secs`` = time left), or None (absent or expired)."""
        sv = self._values.get(key)
        if sv is None:
            return None
        left = int(sv.expires_at - now)
        if left <= 0:
            self._drop(key)
            return None
        return Store(key, sv.value, left)

    def entry(self, key: bytes, now: float) -> Optional[StoredValue]:
        sv = self._values.get(key)
        if sv is None or sv.expires_at <= now:
            return None
        return sv

    # ------------------------------------------------------------------ writes
    def put(self, key: bytes, value: bytes, ttl_secs: int, now: float, *, origin: Optional[bytes] = None) -> StoredValue:
        """Validate and keep a value. Raises a :class:`~scp2p.errors.Scp2pError` subclass if refused."""
        key = bytes(key)
        value = bytes(value)
        ttl = min(int(ttl_secs), MAX_TTL)
        if ttl <= 0:
            raise QuotaExceeded("a TTL of 0 stores nothing")
        pub = None
        if self.share_pubkey is not None and len(value) <= MAX_DHT_VALUE:
            # cheap pre-decode is done by validate_dht_value; the share key lookup needs the share id
            pub = self._pubkey_for(value)
        checked = validate_dht_value(key, value, share_pubkey=pub)
        expires = now + ttl
        old = self._values.get(key)
        if old is not None and old.expires_at <= now:
            self._drop(key)
            old = None
        kind = checked.kind
        record = checked.value
        if old is not None and old.kind == kind:
            if kind == "share:head":
                assert isinstance(record, ShareHead) and isinstance(old.record, ShareHead)
                if record.latest_seq < old.record.latest_seq:
                    raise StaleValue(f"share head seq {record.latest_seq} is older than the held {old.record.latest_seq}")
                if record.latest_seq == old.record.latest_seq and value != old.value:
                    raise StaleValue(f"a different share head for seq {record.latest_seq} is already held")
            elif kind in ("content:prov", "manifest:loc"):
                record = self._merge(record, old.record)
                value = codec.encode(record)
                expires = max(expires, old.expires_at)
        sv = StoredValue(key, value, kind, expires, origin, record)
        self._admit(sv, old)
        return sv

    def _pubkey_for(self, value: bytes) -> Optional[bytes]:
        try:
            head = codec.decode(ShareHead, value, MAX_DHT_VALUE)
        except Exception:  # noqa: BLE001 - not a head; validate_dht_value decides
            return None
        assert self.share_pubkey is not None
        return self.share_pubkey(head.share_id)

    def _merge(self, new, old):
        seen = set()
        merged = []
        for p in (*new.providers, *old.providers):
            ident = (p.ip, p.port, p.transport)
            if ident in seen:
                continue
            seen.add(ident)
            merged.append(p)
            if len(merged) >= self.max_providers:
                break
        rec = replace(new, providers=tuple(merged), updated_at=max(new.updated_at, old.updated_at))
        while len(codec.encode(rec)) > MAX_DHT_VALUE and len(rec.providers) > len(new.providers):
            rec = replace(rec, providers=rec.providers[:-1])
        return rec

    def _admit(self, sv: StoredValue, old: Optional[StoredValue]) -> None:
        size = len(sv.value)
        old_size = len(old.value) if old is not None else 0
        if self._bytes - old_size + size > self.max_bytes or (old is None and len(self._values) >= self.max_values):
            raise QuotaExceeded("this node's value storage is full")
        if sv.origin is not None:
            u = self._usage.get(sv.origin, [0, 0, 0])
            same = old is not None and old.origin == sv.origin
            n = u[0] + (0 if same else 1)
            b = u[1] + size - (old_size if same else 0)
            unk = u[2] + (1 if sv.kind == "unknown" and not (same and old.kind == "unknown") else 0)
            if n > self.per_peer_values or b > self.per_peer_bytes:
                raise QuotaExceeded("peer storage quota exceeded")
            if sv.kind == "unknown" and unk > self.per_peer_unknown:
                raise QuotaExceeded("peer quota for values in unknown keyspaces exceeded")
        if old is not None:
            self._release(old)
        self._values[sv.key] = sv
        self._bytes += size
        if sv.origin is not None:
            u = self._usage.setdefault(sv.origin, [0, 0, 0])
            u[0] += 1
            u[1] += size
            u[2] += sv.kind == "unknown"
        heapq.heappush(self._heap, (sv.expires_at, sv.key))

    def _release(self, sv: StoredValue) -> None:
        self._bytes -= len(sv.value)
        if sv.origin is not None:
            u = self._usage[sv.origin]
            u[0] -= 1
            u[1] -= len(sv.value)
            u[2] -= sv.kind == "unknown"
            if u[0] == 0:
                del self._usage[sv.origin]

    def _drop(self, key: bytes) -> None:
        sv = self._values.pop(key, None)
        if sv is not None:
            self._release(sv)

    def delete(self, key: bytes) -> bool:
        present = key in self._values
        self._drop(key)
        return present

    # ------------------------------------------------------------------ expiry
    def expire(self, now: float) -> int:
        """Drop every value expired at ``now``; returns how many."""
        n = 0
        while self._heap and self._heap[0][0] <= now:
            at, key = heapq.heappop(self._heap)
            sv = self._values.get(key)
            if sv is not None and sv.expires_at <= now:
                self._drop(key)
                n += 1
        return n

    def next_deadline(self) -> Optional[float]:
        """When the next held value expires (None when empty)."""
        while self._heap:
            at, key = self._heap[0]
            sv = self._values.get(key)
            if sv is not None and sv.expires_at == at:
                return at
            heapq.heappop(self._heap)  # stale heap entry (value replaced or dropped)
        return None

    def keys(self) -> list[bytes]:
        return list(self._values)
