"""Iterative FIND_NODE / FIND_VALUE as a sans-I/O state machine.

A :class:`Lookup` keeps a shortlist of candidates ordered by XOR distance to the
target. The driver loop is::

    lookup = Lookup(target, seeds, self_id=me, now=now)
    while not lookup.done:
        for q in lookup.next_queries(now):      # at most alpha in flight
            send FIND_NODE/FIND_VALUE to q.contact (q.deadline is its timeout)
        ... as replies arrive: lookup.on_response(node_id, peers, now, value=...)
        ... as requests fail:  lookup.on_failure(node_id, now)
        ... at lookup.next_deadline(): lookup.handle_timer(now)

Rules:

* at most ``alpha`` requests are in flight; a request not answered by its deadline
  counts as a failure (the driver may also report failures earlier);
* only the ``k`` closest candidates that have not failed are ever queried, nearest
  first; the lookup ends when each of them has answered (or failed) and nothing is
  in flight (FIND_NODE), at the first value (FIND_VALUE), or after ``max_queries``
  requests - so a lookup always finishes, whatever peers reply;
* a reply contributes at most ``k`` peers (the closest to the target among those it
  lists); peers without a ``pubkey_hint`` (no node id), our own id, the replier
  itself and candidates already known are ignored, so a peer that returns itself or
  garbage in every reply cannot stall or extend a lookup;
* replies from peers that are not in flight (late, unsolicited) are ignored.

Hop counts: the seeds are hop 0 and are queried in round 1; a candidate learned from
a peer at hop ``h`` is at hop ``h + 1``. :attr:`Lookup.hops` is the hop of the peer that
returned the value (FIND_VALUE) or the deepest of the ``k`` closest responders
(FIND_NODE), plus one: the number of sequential request rounds the answer needed.
"""

from __future__ import annotations

import bisect
import enum
from dataclasses import dataclass
from typing import Iterable, Optional, Union

from ..limits import ALPHA, K, NODE_ID_LEN
from ..wire.records import PeerAddr
from .table import Contact

__all__ = ["Lookup", "Query", "LookupStats", "DEFAULT_TIMEOUT", "DEFAULT_MAX_QUERIES"]

DEFAULT_TIMEOUT = 5.0
DEFAULT_MAX_QUERIES = 100


class _State(enum.IntEnum):
    NEW = 0
    IN_FLIGHT = 1
    OK = 2
    FAILED = 3


@dataclass(frozen=True, slots=True)
class Query:
    """Action: send the lookup's request to ``contact``; it times out at ``deadline``."""

    contact: Contact
    deadline: float


@dataclass(frozen=True, slots=True)
class LookupStats:
    queries: int
    responses: int
    failures: int
    hops: int


class _Cand:
    __slots__ = ("contact", "dist", "state", "hop", "deadline")

    def __init__(self, contact: Contact, dist: int, hop: int) -> None:
        self.contact = contact
        self.dist = dist
        self.state = _State.NEW
        self.hop = hop
        self.deadline = 0.0


class Lookup:
    """One iterative lookup. ``key`` (32 bytes) makes it a FIND_VALUE for that key, routed by its first 20 bytes."""

    def __init__(
        self,
        target: bytes,
        seeds: Iterable[Contact],
        *,
        self_id: bytes,
        now: float,
        key: Optional[bytes] = None,
        k: int = K,
        alpha: int = ALPHA,
        timeout: float = DEFAULT_TIMEOUT,
        max_queries: int = DEFAULT_MAX_QUERIES,
    ) -> None:
        if len(target) != NODE_ID_LEN:
            raise ValueError(f"target must be {NODE_ID_LEN} bytes")
        self.target = bytes(target)
        self.key = key
        self.self_id = self_id
        self.k = k
        self.alpha = alpha
        self.timeout = timeout
        self.max_queries = max_queries
        self.started = now
        self._t = int.from_bytes(self.target, "big")
        self._cands: dict[bytes, _Cand] = {}
        self._order: list[tuple[int, bytes]] = []
        self._in_flight = 0
        self.queries = 0
        self.responses = 0
        self.failures = 0
        self.done = False
        self.value: object = None
        self.value_from: Optional[Contact] = None
        self._value_hop = 0
        for c in seeds:
            self._add(c, 0)

    @property
    def is_find_value(self) -> bool:
        return self.key is not None

    # ------------------------------------------------------------------ shortlist
    def _add(self, contact: Contact, hop: int) -> None:
        nid = contact.node_id
        if nid == self.self_id or nid in self._cands:
            return
        d = int.from_bytes(nid, "big") ^ self._t
        self._cands[nid] = _Cand(contact, d, hop)
        bisect.insort(self._order, (d, nid))

    def next_queries(self, now: float) -> list[Query]:
        """Requests to send now (each marked in flight until answered, failed or timed out)."""
        if self.done:
            return []
        out: list[Query] = []
        live = 0
        for _, nid in self._order:
            c = self._cands[nid]
            if c.state is _State.FAILED:
                continue
            live += 1
            if live > self.k:
                break
            if c.state is _State.NEW:
                if self._in_flight >= self.alpha or self.queries >= self.max_queries:
                    break
                c.state = _State.IN_FLIGHT
                c.deadline = now + self.timeout
                self._in_flight += 1
                self.queries += 1
                out.append(Query(c.contact, c.deadline))
        if not out and self._in_flight == 0:
            self.done = True
        return out

    # ------------------------------------------------------------------ events
    def on_response(
        self,
        node_id: bytes,
        peers: Iterable[Union[PeerAddr, Contact]],
        now: float,
        *,
        value: object = None,
    ) -> None:
        """``node_id`` answered, listing ``peers`` (and, for FIND_VALUE, maybe a validated ``value``)."""
        c = self._cands.get(node_id)
        if c is None or c.state is not _State.IN_FLIGHT:
            return
        c.state = _State.OK
        self._in_flight -= 1
        self.responses += 1
        if value is not None and self.is_find_value and self.value is None:
            self.value = value
            self.value_from = c.contact
            self._value_hop = c.hop
            self.done = True
            return
        fresh: dict[bytes, Contact] = {}
        for p in peers:
            contact = p if isinstance(p, Contact) else Contact.from_addr(p)
            if contact is None:
                continue
            nid = contact.node_id
            if nid == node_id or nid == self.self_id or nid in self._cands or nid in fresh:
                continue
            fresh[nid] = contact
        if len(fresh) > self.k:
            t = self._t
            best = sorted(fresh, key=lambda n: int.from_bytes(n, "big") ^ t)[: self.k]
            fresh = {n: fresh[n] for n in best}
        for contact in fresh.values():
            self._add(contact, c.hop + 1)

    def on_failure(self, node_id: bytes, now: float) -> None:
        """The request to ``node_id`` failed (error reply, refused, bad reply, timeout)."""
        c = self._cands.get(node_id)
        if c is None or c.state is not _State.IN_FLIGHT:
            return
        c.state = _State.FAILED
        self._in_flight -= 1
        self.failures += 1

    def handle_timer(self, now: float) -> list[Contact]:
        """Fail every in-flight request whose deadline has passed; returns their contacts."""
        out = []
        for c in self._cands.values():
            if c.state is _State.IN_FLIGHT and c.deadline <= now:
                self.on_failure(c.contact.node_id, now)
                out.append(c.contact)
        return out

    def next_deadline(self) -> Optional[float]:
        """The earliest in-flight deadline, or None when nothing is in flight."""
        ds = [c.deadline for c in self._cands.values() if c.state is _State.IN_FLIGHT]
        return min(ds) if ds else None

    # ------------------------------------------------------------------ results
    def closest(self, k: Optional[int] = None) -> list[Contact]:
        """The ``k`` nearest contacts that answered, nearest first."""
        k = self.k if k is None else k
        out = []
        for _, nid in self._order:
            c = self._cands[nid]
            if c.state is _State.OK:
                out.append(c.contact)
                if len(out) >= k:
                    break
        return out

    def responded(self) -> list[Contact]:
        return [c.contact for c in self._cands.values() if c.state is _State.OK]

    def failed(self) -> list[Contact]:
        return [c.contact for c in self._cands.values() if c.state is _State.FAILED]

    @property
    def in_flight(self) -> int:
        return self._in_flight

    @property
    def hops(self) -> int:
        if self.value_from is not None:
            return self._value_hop + 1
        best = [self._cands[c.node_id].hop for c in self.closest()]
        return max(best) + 1 if best else 0

    def stats(self) -> LookupStats:
        return LookupStats(self.queries, self.responses, self.failures, self.hops)
