"""An in-process simulated network for the DHT core (no sockets, virtual time).

The simulator drives the *same* sans-I/O pieces as the asyncio service -
:class:`~scp2p.dht.core.DhtCore` (routing table, value store, rate limiter) and
:class:`~scp2p.dht.lookup.Lookup` - with a discrete-event loop: a request to a live
node is answered after a random latency, a request to a dead node is never
answered and fails at its deadline (the lookup's own timeout path). Messages are
passed as typed objects (the wire codec is tested elsewhere).

A request carries its sender's contact, as our nodes announce their listening
address to the peers they contact (see docs/dht.md), so the receiver observes the
sender in its table, with ping-then-evict resolved against the simulated network.

Used by ``benchmarks/dht_sim.py`` (1,000 and 10,000 nodes) and the tests (200 nodes).
"""

from __future__ import annotations

import hashlib
import heapq
import ipaddress
import random
from dataclasses import dataclass, field
from typing import Optional

from ..errors import Scp2pError
from ..identity import routing_id
from ..limits import ALPHA, K
from ..wire.messages import FindNode, FindNodeResult, FindValue, FindValueResult, Store
from ..wire.records import PeerAddr
from .core import DhtCore
from .lookup import Lookup
from .ratelimit import Rate, RateLimiter
from .storage import ValueStore
from .table import Contact

__all__ = ["SimNetwork", "SimNode", "LookupOutcome"]


@dataclass(slots=True)
class SimNode:
    index: int
    contact: Contact
    core: DhtCore
    alive: bool = True

    @property
    def node_id(self) -> bytes:
        return self.contact.node_id


@dataclass(frozen=True, slots=True)
class LookupOutcome:
    found: bool
    hops: int
    messages: int
    failures: int
    duration: float
    closest: tuple = field(default=(), repr=False)


class SimNetwork:
    """``n`` nodes joined one after another through random earlier nodes."""

    def __init__(
        self,
        *,
        seed: int = 1,
        k: int = K,
        alpha: int = ALPHA,
        timeout: float = 2.0,
        latency: tuple[float, float] = (0.01, 0.15),
    ) -> None:
        self.rng = random.Random(seed)
        self.k = k
        self.alpha = alpha
        self.timeout = timeout
        self.latency = latency
        self.now = 1_700_000_000.0
        self.nodes: list[SimNode] = []
        self.by_id: dict[bytes, SimNode] = {}
        self.messages = 0

    # ------------------------------------------------------------------ membership
    def _new_node(self) -> SimNode:
        i = len(self.nodes)
        pubkey = self.rng.randbytes(32)  # only hashed into a node id; never used to sign here
        ip = ipaddress.IPv4Address(0x0A000000 + i + 1)
        contact = Contact(hashlib.sha256(pubkey).digest()[:20], PeerAddr(ip, 4000, pubkey_hint=pubkey))
        unlimited = RateLimiter({"request": Rate(1e9, 1e9), "store": Rate(1e9, 1e9)})
        core = DhtCore(contact.node_id, now=self.now, k=self.k, limiter=unlimited,
                       storage=ValueStore(per_peer_values=10**9, per_peer_bytes=10**12))  # fmt: skip
        node = SimNode(i, contact, core)
        self.nodes.append(node)
        self.by_id[contact.node_id] = node
        return node

    def add_nodes(self, n: int, *, refresh_buckets: int = 0) -> None:
        """Add ``n`` nodes; each joins through a random live node (own-id lookup on join)."""
        for _ in range(n):
            node = self._new_node()
            live = [m for m in self.nodes[-64:-1] if m.alive] or [m for m in self.nodes[:-1] if m.alive]
            if not live:
                continue
            seed = self.rng.choice(live)
            self.join(node, [seed.contact], refresh_buckets=refresh_buckets)

    def join(self, node: SimNode, seeds: list[Contact], *, refresh_buckets: int = 0) -> None:
        for s in seeds:
            node.core.observe(s, self.now)
        self.lookup(node, node.node_id)
        if refresh_buckets:
            # refresh the farthest buckets so the joiner is known outside its neighbourhood
            for idx in range(159, 159 - refresh_buckets, -1):
                self.lookup(node, node.core.table.random_id_in_bucket(idx, self.rng.randbytes(20)))

    def kill(self, fraction: float, *, protect: tuple[SimNode, ...] = ()) -> list[SimNode]:
        """Take ``fraction`` of the live nodes down without telling anyone."""
        live = [n for n in self.nodes if n.alive and n not in protect]
        victims = self.rng.sample(live, int(round(fraction * len([n for n in self.nodes if n.alive]))))
        for v in victims:
            v.alive = False
        return victims

    def live_nodes(self) -> list[SimNode]:
        return [n for n in self.nodes if n.alive]

    # ------------------------------------------------------------------ messaging
    def _observe(self, at: SimNode, contact: Contact) -> None:
        ping = at.core.observe(contact, self.now)
        if ping is not None:
            self.messages += 1
            target = self.by_id.get(ping.contact.node_id)
            at.core.table.ping_result(ping.contact.node_id, bool(target and target.alive), self.now)

    def _deliver(self, sender: SimNode, to: SimNode, msg: object):
        """One request; returns the response, or raises the receiver's refusal."""
        self.messages += 1
        self._observe(to, sender.contact)
        return to.core.handle_request(sender.node_id, msg, self.now)

    def lookup(self, origin: SimNode, target: bytes, *, key: Optional[bytes] = None) -> Lookup:
        """Run one iterative lookup from ``origin`` on the virtual clock."""
        start = self.now
        seeds = origin.core.table.closest(target, self.k)
        lk = Lookup(target, seeds, self_id=origin.node_id, now=self.now, key=key,
                    k=self.k, alpha=self.alpha, timeout=self.timeout)  # fmt: skip
        events: list[tuple[float, int, bytes, object]] = []
        seq = 0
        msg = FindValue(key) if key is not None else FindNode(target)
        while True:
            for q in lk.next_queries(self.now):
                to = self.by_id.get(q.contact.node_id)
                if to is None or not to.alive:
                    self.messages += 1
                    continue  # never answered: fails at its deadline
                try:
                    resp = self._deliver(origin, to, msg)
                except Scp2pError:
                    resp = None
                seq += 1
                heapq.heappush(events, (self.now + self.rng.uniform(*self.latency), seq, q.contact.node_id, resp))
            if lk.done:
                break
            deadline = lk.next_deadline()
            if events and (deadline is None or events[0][0] < deadline):
                at, _, nid, resp = heapq.heappop(events)
                self.now = max(self.now, at)
                if resp is None:
                    lk.on_failure(nid, self.now)
                    continue
                responder = self.by_id[nid]
                self._observe(origin, responder.contact)
                if isinstance(resp, FindValueResult):
                    lk.on_response(nid, resp.closer_peers, self.now, value=resp.value)
                elif isinstance(resp, FindNodeResult):
                    lk.on_response(nid, resp.peers, self.now)
                else:
                    lk.on_failure(nid, self.now)
            elif deadline is not None:
                self.now = max(self.now, deadline)
                for c in lk.handle_timer(self.now):
                    origin.core.table.failed(c.node_id, self.now)
            else:
                lk.next_queries(self.now)
                if lk.done:
                    break
        origin.core.table.touch_target(target, self.now)
        lk.duration = self.now - start  # type: ignore[attr-defined]
        return lk

    def store(self, origin: SimNode, key: bytes, value: bytes, ttl: int = 24 * 3600) -> int:
        """STORE ``value`` at the K closest live nodes found by a lookup; returns how many accepted."""
        lk = self.lookup(origin, routing_id(key))
        ok = 0
        for c in lk.closest(self.k):
            to = self.by_id.get(c.node_id)
            if to is None or not to.alive:
                continue
            try:
                self._deliver(origin, to, Store(key, value, ttl))
                ok += 1
            except Scp2pError:
                pass
        return ok

    def find_value(self, origin: SimNode, key: bytes) -> LookupOutcome:
        lk = self.lookup(origin, routing_id(key), key=key)
        return LookupOutcome(lk.value is not None, lk.hops, lk.queries, lk.failures, lk.duration)  # type: ignore[attr-defined]

    def find_node(self, origin: SimNode, target: bytes) -> LookupOutcome:
        lk = self.lookup(origin, target)
        found = any(c.node_id == target for c in lk.closest(self.k))
        return LookupOutcome(found, lk.hops, lk.queries, lk.failures, lk.duration, tuple(lk.closest(self.k)))  # type: ignore[attr-defined]
