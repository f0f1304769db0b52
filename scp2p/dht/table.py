"""The routing table (sans-I/O): K-buckets over 160-bit ids with ping-then-evict.

Bucket ``i`` holds the contacts whose XOR distance from our id has bit length
``i + 1`` (bucket 159 is the far half of the id space, bucket 0 our nearest
neighbour). Each bucket keeps at most ``k`` contacts ordered least recently seen
first, plus a small replacement cache.

Only contacts we heard from *directly* (a response, or a request whose sender's
listening address we verified) are :meth:`RoutingTable.observe`-d; addresses
learned second-hand from FIND_NODE replies go to lookups, not the table.

When a full bucket meets a new contact, the table does not decide alone: it
returns a :class:`PingRequest` for the least recently seen entry. The driver
pings it (v0.1 has no PING message; we use FIND_NODE for the peer's own id) and
reports :meth:`RoutingTable.ping_result`: alive -> the old entry moves to the
tail and the newcomer waits in the replacement cache; dead -> the old entry is
evicted and the newcomer takes its place. One ping per bucket is in flight at a
time. Request failures seen elsewhere (:meth:`RoutingTable.failed`) evict an entry
after ``max_failures`` consecutive failures, or at once when a replacement waits.

Time is an argument everywhere (``now``, seconds as float); the table never reads a
clock. :meth:`RoutingTable.buckets_due` / :meth:`RoutingTable.next_deadline` say when
a bucket needs a refresh lookup (for a random id in it, :meth:`RoutingTable.random_id_in_bucket`).
"""

from __future__ import annotations

from collections import OrderedDict
from dataclasses import dataclass, field
from typing import Iterable, Iterator, Optional

from ..identity import node_id as node_id_of
from ..limits import K, NODE_ID_LEN
from ..wire.records import PeerAddr
from . import routing

__all__ = ["Contact", "PingRequest", "RoutingTable", "ID_BITS", "REFRESH_INTERVAL"]

ID_BITS = NODE_ID_LEN * 8
#: a bucket with no activity for this long gets a refresh lookup (seconds)
REFRESH_INTERVAL = 3600.0


@dataclass(frozen=True, slots=True)
class Contact:
    """A node we can route to: its 160-bit id and the address it listens on."""

    node_id: bytes
    addr: PeerAddr

    def __post_init__(self) -> None:
        if not isinstance(self.node_id, bytes) or len(self.node_id) != NODE_ID_LEN:
            raise ValueError(f"node_id must be {NODE_ID_LEN} bytes")

    @classmethod
    def from_addr(cls, addr: PeerAddr) -> Optional["Contact"]:
        """A contact for an address that names its node key (``pubkey_hint``), else None."""
        if addr.pubkey_hint is None:
            return None
        return cls(node_id_of(addr.pubkey_hint), addr)


@dataclass(frozen=True, slots=True)
class PingRequest:
    """Action: ping ``contact`` (the bucket's least recently seen entry); ``candidate`` waits for its place."""

    contact: Contact
    candidate: Contact


@dataclass(slots=True)
class _Entry:
    contact: Contact
    last_seen: float
    failures: int = 0


@dataclass(slots=True)
class _Bucket:
    entries: "OrderedDict[bytes, _Entry]" = field(default_factory=OrderedDict)  # LRS first
    replacements: "OrderedDict[bytes, Contact]" = field(default_factory=OrderedDict)  # newest last
    pinging: Optional[bytes] = None
    last_changed: float = 0.0


class RoutingTable:
    """K-buckets around ``self_id``. See the module docstring for the rules."""

    def __init__(
        self,
        self_id: bytes,
        *,
        k: int = K,
        now: float = 0.0,
        refresh_interval: float = REFRESH_INTERVAL,
        max_failures: int = 3,
        replacement_cache: Optional[int] = None,
    ) -> None:
        if not isinstance(self_id, bytes) or len(self_id) != NODE_ID_LEN:
            raise ValueError(f"self_id must be {NODE_ID_LEN} bytes")
        if k < 1:
            raise ValueError("k must be >= 1")
        self.self_id = self_id
        self.k = k
        self.refresh_interval = refresh_interval
        self.max_failures = max_failures
        self.replacement_cache = k if replacement_cache is None else replacement_cache
        self._buckets = [_Bucket(last_changed=now) for _ in range(ID_BITS)]
        self._index: dict[bytes, int] = {}

    # ------------------------------------------------------------------ queries
    def __len__(self) -> int:
        return len(self._index)

    def __contains__(self, node_id: object) -> bool:
        return node_id in self._index

    def __iter__(self) -> Iterator[Contact]:
        return self.contacts()

    def contacts(self) -> Iterator[Contact]:
        for b in self._buckets:
            for e in b.entries.values():
                yield e.contact

    def get(self, node_id: bytes) -> Optional[Contact]:
        i = self._index.get(node_id)
        if i is None:
            return None
        return self._buckets[i].entries[node_id].contact

    def bucket(self, index: int) -> list[Contact]:
        """The contacts of bucket ``index``, least recently seen first."""
        return [e.contact for e in self._buckets[index].entries.values()]

    def replacements(self, index: int) -> list[Contact]:
        return list(self._buckets[index].replacements.values())

    def closest(self, target: bytes, k: Optional[int] = None, *, exclude: Iterable[bytes] = ()) -> list[Contact]:
        """The ``k`` (default K) known contacts nearest ``target``, nearest first."""
        k = self.k if k is None else k
        skip = set(exclude)
        by_id = {nid: self._buckets[i].entries[nid].contact for nid, i in self._index.items() if nid not in skip}
        return [by_id[n] for n in routing.closest(target, list(by_id), k)]

    # ------------------------------------------------------------------ updates
    def observe(self, contact: Contact, now: float) -> Optional[PingRequest]:
        """We heard from ``contact`` directly. Returns a :class:`PingRequest` when its bucket is full."""
        nid = contact.node_id
        idx = routing.bucket_index(self.self_id, nid)
        if idx < 0:
            return None  # ourselves
        b = self._buckets[idx]
        e = b.entries.get(nid)
        if e is not None:
            e.contact = contact
            e.last_seen = now
            e.failures = 0
            b.entries.move_to_end(nid)
            b.last_changed = now
            return None
        if len(b.entries) < self.k:
            self._insert(b, idx, contact, now)
            b.replacements.pop(nid, None)
            return None
        # full: remember the newcomer, ask the driver to ping the least recently seen entry
        b.replacements.pop(nid, None)
        b.replacements[nid] = contact
        while len(b.replacements) > self.replacement_cache:
            b.replacements.popitem(last=False)
        if b.pinging is not None:
            return None
        lrs = next(iter(b.entries.values()))
        b.pinging = lrs.contact.node_id
        return PingRequest(lrs.contact, contact)

    def ping_result(self, node_id: bytes, alive: bool, now: float) -> None:
        """Report the outcome of a :class:`PingRequest` for ``node_id``."""
        idx = routing.bucket_index(self.self_id, node_id)
        if idx < 0:
            return
        b = self._buckets[idx]
        if b.pinging == node_id:
            b.pinging = None
        e = b.entries.get(node_id)
        if e is None:
            return
        if alive:
            e.last_seen = now
            e.failures = 0
            b.entries.move_to_end(node_id)
        else:
            self._evict(b, idx, node_id, now)

    def failed(self, node_id: bytes, now: float) -> bool:
        """A request to ``node_id`` failed. Returns True if the entry was evicted."""
        idx = self._index.get(node_id)
        if idx is None:
            return False
        b = self._buckets[idx]
        e = b.entries[node_id]
        e.failures += 1
        if e.failures >= self.max_failures or b.replacements:
            self._evict(b, idx, node_id, now)
            return True
        return False

    def remove(self, node_id: bytes) -> bool:
        idx = self._index.pop(node_id, None)
        if idx is None:
            return False
        b = self._buckets[idx]
        del b.entries[node_id]
        if b.pinging == node_id:
            b.pinging = None
        return True

    def _insert(self, b: _Bucket, idx: int, contact: Contact, now: float) -> None:
        b.entries[contact.node_id] = _Entry(contact, now)
        b.last_changed = now
        self._index[contact.node_id] = idx

    def _evict(self, b: _Bucket, idx: int, node_id: bytes, now: float) -> None:
        self.remove(node_id)
        if b.replacements:
            _, repl = b.replacements.popitem(last=True)  # the most recently seen newcomer
            self._insert(b, idx, repl, now)

    # ------------------------------------------------------------------ refresh
    def _refresh_range(self) -> range:
        """Buckets worth refreshing: from the nearest non-empty bucket out to the farthest."""
        lowest = min(self._index.values(), default=ID_BITS - 1)
        return range(lowest, ID_BITS)

    def touch_bucket(self, index: int, now: float) -> None:
        """A lookup covered bucket ``index`` (its refresh deadline moves on)."""
        self._buckets[index].last_changed = max(self._buckets[index].last_changed, now)

    def touch_target(self, target: bytes, now: float) -> None:
        idx = routing.bucket_index(self.self_id, target)
        if idx >= 0:
            self.touch_bucket(idx, now)

    def buckets_due(self, now: float) -> list[int]:
        """Bucket indices whose refresh deadline has passed."""
        return [i for i in self._refresh_range() if self._buckets[i].last_changed + self.refresh_interval <= now]

    def next_deadline(self) -> float:
        """When the next bucket refresh falls due."""
        return min(self._buckets[i].last_changed for i in self._refresh_range()) + self.refresh_interval

    def random_id_in_bucket(self, index: int, random20: bytes) -> bytes:
        """An id in bucket ``index``: our bits above ``index``, bit ``index`` flipped, ``random20`` below."""
        if not 0 <= index < ID_BITS:
            raise ValueError("bucket index out of range")
        if len(random20) != NODE_ID_LEN:
            raise ValueError(f"random20 must be {NODE_ID_LEN} bytes")
        me = int.from_bytes(self.self_id, "big")
        rnd = int.from_bytes(random20, "big")
        low = (1 << index) - 1
        value = ((me >> (index + 1)) << (index + 1)) | ((~me) & (1 << index)) | (rnd & low)
        return value.to_bytes(NODE_ID_LEN, "big")
