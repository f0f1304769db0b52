"""The asyncio DHT driver: runs the sans-I/O core over a request/response link.

:class:`DhtService` owns a :class:`~scp2p.dht.core.DhtCore` and drives it:

* **serving** - :meth:`DhtService.handle` answers FIND_NODE, FIND_VALUE, STORE,
  PEX_REQUEST and PEX_OFFER from a verified remote key; :meth:`DhtService.register`
  installs these handlers on a transport ``Dispatcher`` (``register(msg_type, async
  handler(ctx, message))`` with ``ctx.remote_pubkey`` / ``ctx.remote_addr``). Refusals
  (rate limit, quota, stale head, bad keyspace) become error responses; the node
  keeps serving everyone else.
* **lookups** - :meth:`find_node`, :meth:`find_value` run :class:`~scp2p.dht.lookup.Lookup`
  with ``alpha`` requests in flight over :class:`DhtLink.request`; every reply is
  type-checked and every value validated before the lookup sees it.
* **storing** - :meth:`store` replicates to the K closest; :meth:`publish` also keeps
  the value in the store's ``dht_owned`` table and the maintenance loop republishes it
  before it expires (at ``REPUBLISH_FRACTION`` of its TTL).
* **joining** - :meth:`bootstrap` contacts seed peers / invite-link peers and the
  persisted peer database, announces our address, runs an own-id lookup and asks
  for PEX offers.
* **maintenance** (:meth:`start` / :meth:`close`, or ``async with``) - bucket refresh,
  value expiry, owner republish, peer-database flushes; every task is held and
  cancelled on close.

Address announcement: a v0.1 Hello does not say where a node *listens*, so a node
that contacts a peer for the first time sends it a fire-and-forget PEX_OFFER
holding only its own address. The receiver accepts such a self-announcement only if
the address carries the session's verified key and the session's IP, then pings the
address (FIND_NODE for the announcer's id) and only on success adds it to its table.

The link is any object with ``request(peer, message, timeout) -> (remote_pubkey,
response)`` and ``send(peer, message)`` (see :class:`DhtLink`); tests use an in-memory
fake, nodes the transport's session pool.
"""

from __future__ import annotations

import asyncio
import logging
import random
import time
from dataclasses import dataclass
from typing import Any, Awaitable, Callable, Iterable, Optional, Protocol

from ..errors import LookupFailed, RateLimited, Scp2pError
from ..identity import node_id as node_id_of
from ..identity import routing_id
from ..limits import ALPHA, DEFAULT_TTL, K, MAX_PEX_PEERS, MAX_TTL
from ..store.records import OwnedDhtValue
from ..wire.messages import (
    Ack,
    FindNode,
    FindNodeResult,
    FindValue,
    FindValueResult,
    MsgType,
    PexOffer,
    PexRequest,
    Store,
)
from ..wire.records import PeerAddr
from . import peerdb, pex, routing
from .core import DhtCore
from .lookup import Lookup
from .ratelimit import RateLimiter
from .storage import ValueStore
from .table import Contact, PingRequest
from .values import validate_dht_value

log = logging.getLogger(__name__)

__all__ = ["DhtLink", "DhtConfig", "DhtService", "REPUBLISH_FRACTION"]

#: an owned value is republished when this fraction of its TTL has passed
REPUBLISH_FRACTION = 0.75


class DhtLink(Protocol):
    """What the service needs from the transport."""

    async def request(self, peer: PeerAddr, message: Any, timeout: float) -> tuple[bytes, Any]:
        """Send a request, return (the remote's verified node public key, the typed response).

        Raises on any failure (refused, handshake, timeout, error response)."""

    async def send(self, peer: PeerAddr, message: Any) -> None:
        """Fire-and-forget message (req_id 0)."""


@dataclass(frozen=True, slots=True)
class DhtConfig:
    k: int = K
    alpha: int = ALPHA
    request_timeout: float = 5.0
    ping_timeout: float = 3.0
    lookup_timeout: float = 60.0
    max_queries: int = 100
    refresh_interval: float = 3600.0
    #: maintenance wakes at least this often (seconds)
    tick: float = 30.0
    #: peer-database writes are batched and flushed this often
    flush_interval: float = 10.0
    announce_interval: float = 3600.0
    pex_peers: int = MAX_PEX_PEERS


class DhtService:
    def __init__(
        self,
        node_pubkey: bytes,
        link: DhtLink,
        *,
        self_addr: Optional[PeerAddr] = None,
        store: Any = None,
        config: DhtConfig = DhtConfig(),
        clock: Callable[[], float] = time.time,
        rng: Optional[random.Random] = None,
        limiter: Optional[RateLimiter] = None,
        storage: Optional[ValueStore] = None,
    ) -> None:
        """``store`` is an :class:`~scp2p.store.AsyncStore` (peer database, owned values) or None."""
        self.pubkey = node_pubkey
        self.node_id = node_id_of(node_pubkey)
        self.link = link
        self.self_addr = self_addr
        self.db = store
        self.config = config
        self.clock = clock
        self.rng = rng or random.Random()
        now = clock()
        self.core = DhtCore(self.node_id, now=now, k=config.k, limiter=limiter, storage=storage)
        self.core.table.refresh_interval = config.refresh_interval
        self._tasks: set[asyncio.Task] = set()
        self._announced: dict[bytes, float] = {}
        self._verifying: set[bytes] = set()
        self._contacts: dict[tuple, PeerAddr] = {}  # pending peer-db writes: direct contacts
        self._failures: dict[tuple, PeerAddr] = {}
        self._hearsay: dict[tuple, PeerAddr] = {}
        self._wake = asyncio.Event()
        self._closed = False
        self._maintenance: Optional[asyncio.Task] = None
        # values we own when there is no store: key -> (value, ttl, next republish time)
        self._owned: dict[bytes, tuple[bytes, int, float]] = {}
        # recently reached peers from the peer database, for PEX offers
        self._offer_cache: dict[tuple, tuple[PeerAddr, int]] = {}
        self._last_flush = now
        #: called with (key, value, sender pubkey) after a STORE from a peer was accepted
        self.on_store: Optional[Callable[[bytes, bytes, bytes], None]] = None

    # ------------------------------------------------------------------ lifecycle
    async def __aenter__(self) -> "DhtService":
        self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    def start(self) -> None:
        if self._maintenance is None:
            self._maintenance = asyncio.create_task(self._maintain(), name=f"dht-maintenance-{self.node_id.hex()[:8]}")

    async def close(self) -> None:
        """Stop maintenance and every held task, then flush the peer database. Idempotent."""
        if self._closed:
            return
        self._closed = True
        tasks = list(self._tasks) + ([self._maintenance] if self._maintenance else [])
        for t in tasks:
            t.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        self._tasks.clear()
        try:
            await self.flush_peers()
        except Exception:  # noqa: BLE001 - a closing store must not stop shutdown
            log.exception("flushing the peer database failed")

    def _spawn(self, coro: Awaitable[Any], name: str) -> None:
        if self._closed:
            if hasattr(coro, "close"):
                coro.close()  # type: ignore[union-attr]
            return
        task = asyncio.create_task(coro, name=name)  # type: ignore[arg-type]
        self._tasks.add(task)
        task.add_done_callback(self._task_done)

    def _task_done(self, task: asyncio.Task) -> None:
        self._tasks.discard(task)
        if not task.cancelled() and task.exception() is not None:
            log.warning("DHT task %s failed: %r", task.get_name(), task.exception())

    async def wait_idle(self) -> None:
        """Wait until no background task (pings, announcements, stores) is running."""
        while self._tasks:
            await asyncio.gather(*list(self._tasks), return_exceptions=True)

    # ------------------------------------------------------------------ contacts
    def contact(self, addr: PeerAddr) -> Optional[Contact]:
        return Contact.from_addr(addr)

    def _seen(self, addr: PeerAddr, pubkey: bytes) -> Optional[Contact]:
        """A verified reply from ``pubkey`` at ``addr``: table, peer db, announcement."""
        if addr.pubkey_hint != pubkey:
            addr = PeerAddr(addr.ip, addr.port, addr.transport, pubkey)
        c = Contact(node_id_of(pubkey), addr)
        if c.node_id == self.node_id:
            return None
        now = self.clock()
        ping = self.core.observe(c, now)
        if ping is not None:
            self._spawn(self._ping(ping), "dht-ping")
        ident = (addr.ip, addr.port, addr.transport)
        self._contacts[ident] = addr
        self._failures.pop(ident, None)
        if self.self_addr is not None and now - self._announced.get(c.node_id, -1e18) >= self.config.announce_interval:
            self._announced[c.node_id] = now
            self._spawn(self._announce(addr), "dht-announce")
        return c

    def _failed(self, addr: PeerAddr) -> None:
        if addr.pubkey_hint is not None:
            self.core.table.failed(node_id_of(addr.pubkey_hint), self.clock())
        self._failures[(addr.ip, addr.port, addr.transport)] = addr

    async def _announce(self, to: PeerAddr) -> None:
        assert self.self_addr is not None
        try:
            await self.link.send(to, PexOffer((self.self_addr,)))
        except Exception as exc:  # noqa: BLE001 - best effort
            log.debug("announcing to %s failed: %r", to, exc)

    async def _ping(self, ping: PingRequest) -> None:
        alive = await self._request(ping.contact.addr, FindNode(ping.contact.node_id), self.config.ping_timeout)
        self.core.table.ping_result(ping.contact.node_id, alive is not None, self.clock())
        if alive is None:
            self._failures[(ping.contact.addr.ip, ping.contact.addr.port, ping.contact.addr.transport)] = ping.contact.addr

    async def _request(self, addr: PeerAddr, msg: Any, timeout: float) -> Optional[tuple[bytes, Any]]:
        """One request; None on any failure (recorded). A reply of the wrong type is a failure."""
        try:
            async with asyncio.timeout(timeout):
                pubkey, resp = await self.link.request(addr, msg, timeout)
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # noqa: BLE001 - every failure counts the same
            log.debug("%s to %s failed: %r", type(msg).__name__, addr, exc)
            self._failed(addr)
            return None
        expected = {FindNode: FindNodeResult, FindValue: FindValueResult, Store: Ack, PexRequest: PexOffer}.get(type(msg))
        if expected is not None and not isinstance(resp, expected):
            log.debug("%s answered %s with %s", addr, type(msg).__name__, type(resp).__name__)
            self._failed(addr)
            return None
        if addr.pubkey_hint is not None and pubkey != addr.pubkey_hint:
            self._failed(addr)
            return None
        self._seen(addr, pubkey)
        return pubkey, resp

    # ------------------------------------------------------------------ serving
    def handle(self, remote_pubkey: bytes, remote_ip: Any, msg: Any) -> Any:
        """Answer one request from a verified remote key; raises a Scp2pError to refuse it."""
        now = self.clock()
        sender = node_id_of(remote_pubkey)
        known = self.core.table.get(sender)
        if known is not None:
            self.core.observe(known, now)  # heard from it again
        if isinstance(msg, PexRequest):
            if not self.core.limiter.allow(sender, "request", now):
                raise RateLimited("too many PEX requests; slow down")
            return PexOffer(self._offer(remote_ip, remote_pubkey, msg.max_peers, now))
        if isinstance(msg, PexOffer):
            self._take_offer(remote_pubkey, remote_ip, msg.peers)
            return None
        reply = self.core.handle_request(sender, msg, now)
        if isinstance(msg, Store) and self.on_store is not None:
            try:
                self.on_store(msg.key, msg.value, remote_pubkey)  # accepted (a refusal raised above)
            except Exception:  # noqa: BLE001 - an observer must not break the STORE
                log.exception("on_store observer failed")
        return reply

    def _offer(self, remote_ip: Any, remote_pubkey: bytes, max_peers: int, now: float) -> tuple[PeerAddr, ...]:
        cands: dict[tuple, tuple[PeerAddr, int]] = {}
        for c in self.core.table.contacts():
            cands[(c.addr.ip, c.addr.port, c.addr.transport)] = (c.addr, int(now))
        for ident, (addr, seen) in self._offer_cache.items():
            cands.setdefault(ident, (addr, seen))
        return pex.select_offer(cands.values(), requester_ip=remote_ip, now=int(now), max_peers=max_peers,
                                rng=self.rng, requester_pubkey=remote_pubkey)  # fmt: skip

    def _take_offer(self, remote_pubkey: bytes, remote_ip: Any, peers: Iterable[PeerAddr]) -> None:
        peers = list(peers)
        # a self-announcement: our peer's own key at the IP it connected from
        for p in peers[:4]:
            if p.pubkey_hint == remote_pubkey and self._same_host(p.ip, remote_ip):
                nid = node_id_of(remote_pubkey)
                if nid not in self.core.table and nid not in self._verifying and nid != self.node_id:
                    self._verifying.add(nid)
                    self._spawn(self._verify(p, nid), "dht-verify")
        good = pex.filter_offer([p for p in peers if p.pubkey_hint != remote_pubkey], offerer_ip=remote_ip,
                                self_pubkey=self.pubkey,
                                self_addrs=[self.self_addr] if self.self_addr else [])  # fmt: skip
        for p in good:
            self._hearsay.setdefault((p.ip, p.port, p.transport), p)

    @staticmethod
    def _same_host(a: Any, b: Any) -> bool:
        try:
            return str(a) == str(b) or (pex.scope(a) is pex.Scope.LOOPBACK and pex.scope(b) is pex.Scope.LOOPBACK)
        except Exception:  # noqa: BLE001
            return False

    async def _verify(self, addr: PeerAddr, nid: bytes) -> None:
        try:
            await self._request(addr, FindNode(nid), self.config.ping_timeout)
        finally:
            self._verifying.discard(nid)

    def register(self, dispatcher: Any) -> None:
        """Install the DHT and PEX handlers on a transport dispatcher."""
        from .. import errors

        remote_error = getattr(errors, "RemoteError", None)

        async def handler(ctx: Any, message: Any) -> Any:
            addr = getattr(ctx, "remote_addr", None)
            ip = addr[0] if isinstance(addr, tuple) and addr else addr
            try:
                return self.handle(ctx.remote_pubkey, ip, message)
            except Scp2pError as exc:
                if remote_error is not None:
                    raise remote_error(f"{type(exc).__name__}: {exc}") from None
                raise

        for t in (MsgType.FIND_NODE, MsgType.FIND_VALUE, MsgType.STORE, MsgType.PEX_REQUEST, MsgType.PEX_OFFER):
            dispatcher.register(t, handler)

    # ------------------------------------------------------------------ lookups
    async def _lookup(self, target: bytes, *, key: Optional[bytes] = None, share_pubkey: Optional[bytes] = None,
                      seeds: Optional[list[Contact]] = None) -> Lookup:  # fmt: skip
        cfg = self.config
        now = self.clock()
        start = seeds if seeds is not None else self.core.table.closest(target, cfg.k)
        lk = Lookup(target, start, self_id=self.node_id, now=now, key=key, k=cfg.k, alpha=cfg.alpha,
                    timeout=cfg.request_timeout, max_queries=cfg.max_queries)  # fmt: skip
        msg = FindValue(key) if key is not None else FindNode(target)
        pending: dict[asyncio.Task, Contact] = {}
        try:
            async with asyncio.timeout(cfg.lookup_timeout):
                while True:
                    now = self.clock()
                    for q in lk.next_queries(now):
                        t = asyncio.create_task(self._request(q.contact.addr, msg, max(0.0, q.deadline - now)))
                        pending[t] = q.contact
                    if lk.done or not pending:
                        break
                    done, _ = await asyncio.wait(pending, return_when=asyncio.FIRST_COMPLETED)
                    for t in done:
                        c = pending.pop(t)
                        r = t.result()
                        now = self.clock()
                        if r is None:
                            lk.on_failure(c.node_id, now)
                            continue
                        resp = r[1]
                        if isinstance(resp, FindValueResult):
                            value = None
                            if resp.value is not None:
                                value = self._check_value(key, resp.value, share_pubkey)
                                if value is None:  # a bad value: treat the peer as failed
                                    lk.on_failure(c.node_id, now)
                                    self._failed(c.addr)
                                    continue
                            lk.on_response(c.node_id, resp.closer_peers, now, value=value)
                        else:
                            lk.on_response(c.node_id, resp.peers, now)
                    lk.handle_timer(self.clock())
        except TimeoutError:
            log.debug("lookup for %s hit the overall timeout", target.hex())
        finally:
            for t in pending:
                t.cancel()
            if pending:
                await asyncio.gather(*pending, return_exceptions=True)
        self.core.table.touch_target(target, self.clock())
        return lk

    @staticmethod
    def _check_value(key: Optional[bytes], value: Store, share_pubkey: Optional[bytes]) -> Optional[Store]:
        if key is None or value.key != key or value.ttl_secs <= 0:
            return None
        try:
            validate_dht_value(key, value.value, share_pubkey=share_pubkey)
        except Scp2pError:
            return None
        return value

    async def find_node(self, target: bytes) -> list[Contact]:
        """The K closest live nodes to ``target`` (a 20-byte id), nearest first."""
        return (await self._lookup(target)).closest()

    async def find_value(
        self,
        key: bytes,
        *,
        share_pubkey: Optional[bytes] = None,
        newest: Optional[Callable[[Store], Any]] = None,
        sample: int = 8,
    ) -> Optional[Store]:
        """The value under ``key`` (validated; a share head verified when ``share_pubkey`` is given), or None.

        For a mutable value (a share head) pass ``newest``, a sort key: instead of the first copy
        found, the copies held locally and by the ``sample`` closest nodes are compared and the
        greatest returned, so a stale copy at one node cannot hide a newer one.
        """
        if newest is not None:
            return await self._find_newest(key, share_pubkey, newest, sample)
        now = self.clock()
        local = self.core.storage.get(key, now)
        if local is not None and self._check_value(key, local, share_pubkey) is not None:
            return local
        lk = await self._lookup(routing_id(key), key=key, share_pubkey=share_pubkey)
        return lk.value  # type: ignore[return-value]

    async def _find_newest(self, key: bytes, share_pubkey: Optional[bytes], newest: Callable[[Store], Any],
                           sample: int) -> Optional[Store]:  # fmt: skip
        found: list[Store] = []
        local = self.core.storage.get(key, self.clock())
        if local is not None and self._check_value(key, local, share_pubkey) is not None:
            found.append(local)
        closest = (await self._lookup(routing_id(key))).closest()[:sample]
        replies = await asyncio.gather(*(self._request(c.addr, FindValue(key), self.config.request_timeout)
                                         for c in closest))  # fmt: skip
        for r in replies:
            if r is not None and isinstance(r[1], FindValueResult) and r[1].value is not None:
                v = self._check_value(key, r[1].value, share_pubkey)
                if v is not None:
                    found.append(v)
        best: Optional[Store] = None
        for v in found:
            try:
                if best is None or newest(v) > newest(best):
                    best = v
            except Scp2pError:
                continue
        return best

    async def store(self, key: bytes, value: bytes, ttl: int = DEFAULT_TTL) -> int:
        """STORE at the K closest nodes (and locally if we are among them); returns how many accepted."""
        ttl = min(int(ttl), MAX_TTL)
        validate_dht_value(key, value)  # refuse our own bad values early
        lk = await self._lookup(routing_id(key))
        targets = lk.closest()
        msg = Store(key, value, ttl)
        results = await asyncio.gather(*(self._request(c.addr, msg, self.config.request_timeout) for c in targets))
        accepted = sum(r is not None for r in results)
        # we hold a copy too when we are one of the K closest known
        closest_ids = [c.node_id for c in targets]
        if len(closest_ids) < self.config.k or routing.closer(routing_id(key), self.node_id, closest_ids[-1]):
            try:
                self.core.storage.put(key, value, ttl, self.clock(), origin=None)
                accepted += 1
            except Scp2pError:
                pass
        if not accepted:
            raise LookupFailed("no node accepted the value")
        return accepted

    async def publish(self, key: bytes, value: bytes, ttl: int = DEFAULT_TTL) -> int:
        """Store a value we own and keep republishing it before it expires."""
        ttl = min(int(ttl), MAX_TTL)
        now = int(self.clock())
        if self.db is not None:
            await self.db.run(lambda s: s.put_dht_value(
                OwnedDhtValue(key, value, ttl, now + max(1, int(ttl * REPUBLISH_FRACTION)))))  # fmt: skip
        else:
            self._owned[key] = (value, ttl, now + max(1, int(ttl * REPUBLISH_FRACTION)))
        n = await self.store_value_quietly(key, value, ttl)
        self._wake.set()
        return n

    async def store_value_quietly(self, key: bytes, value: bytes, ttl: int) -> int:
        try:
            return await self.store(key, value, ttl)
        except LookupFailed:
            return 0

    # ------------------------------------------------------------------ joining and PEX
    async def bootstrap(self, seeds: Iterable[PeerAddr] = ()) -> int:
        """Join: contact ``seeds`` (and the persisted peer database), own-id lookup, PEX. Returns table size."""
        addrs = list(seeds)
        if self.db is not None:
            addrs += await self.db.run(peerdb.bootstrap_candidates, limit=64)
        seen: set[tuple] = set()
        unique = []
        for a in addrs:
            ident = (a.ip, a.port, a.transport)
            if ident not in seen and a.pubkey_hint != self.pubkey:
                seen.add(ident)
                unique.append(a)
        results = await asyncio.gather(*(self._request(a, FindNode(self.node_id), self.config.request_timeout)
                                         for a in unique))  # fmt: skip
        for a, r in zip(unique, results):
            if r is not None:
                for p in r[1].peers:
                    self._hearsay.setdefault((p.ip, p.port, p.transport), p)
        await self._lookup(self.node_id)
        # ask a few peers for more peers
        contacts = self.core.table.closest(self.node_id, 3)
        await asyncio.gather(*(self.request_pex(c.addr) for c in contacts))
        self._wake.set()
        return len(self.core.table)

    async def request_pex(self, peer: PeerAddr) -> list[PeerAddr]:
        r = await self._request(peer, PexRequest(self.config.pex_peers), self.config.request_timeout)
        if r is None:
            return []
        good = pex.filter_offer(list(r[1].peers), offerer_ip=peer.ip, self_pubkey=self.pubkey,
                                self_addrs=[self.self_addr] if self.self_addr else [])  # fmt: skip
        for p in good:
            self._hearsay.setdefault((p.ip, p.port, p.transport), p)
        return good

    async def flush_peers(self) -> None:
        """Write batched peer-database updates (direct contacts, failures, hearsay)."""
        if self.db is None or self.db.closed:
            self._contacts.clear()
            self._failures.clear()
            self._hearsay.clear()
            return
        contacts, failures, hearsay = self._contacts, self._failures, self._hearsay
        self._contacts, self._failures, self._hearsay = {}, {}, {}
        now = int(self.clock())

        def write(s: Any) -> None:
            with s.transaction():
                for a in contacts.values():
                    peerdb.record_contact(s, a, now)
                for ident, a in failures.items():
                    if ident not in contacts:
                        peerdb.record_failure(s, a, now)
                peerdb.merge_hearsay(s, [a for i, a in hearsay.items() if i not in contacts], now)

        if contacts or failures or hearsay:
            await self.db.run(write)
            self._offer_cache = {}
            for a, seen in await self.db.run(peerdb.offer_candidates, now, limit=500):
                self._offer_cache[(a.ip, a.port, a.transport)] = (a, seen)

    # ------------------------------------------------------------------ maintenance
    async def maintain_once(self) -> float:
        """One maintenance pass (expiry, bucket refresh, republish, peer-db flush); returns the next deadline."""
        now = self.clock()
        self.core.storage.expire(now)
        for idx in self.core.table.buckets_due(now):
            self.core.table.touch_bucket(idx, now)
            await self._lookup(self.core.table.random_id_in_bucket(idx, self.rng.randbytes(20)))
        await self._republish(now)
        if now - self._last_flush >= self.config.flush_interval:
            await self.flush_peers()
            self._last_flush = now
        deadlines = [self.core.table.next_deadline(), now + self.config.tick, self._last_flush + self.config.flush_interval]
        for d in (self.core.storage.next_deadline(), await self._next_republish()):
            if d is not None:
                deadlines.append(d)
        return min(deadlines)

    async def _maintain(self) -> None:
        while True:
            deadline = await self.maintain_once()
            delay = max(0.05, deadline - self.clock())
            self._wake.clear()
            try:
                async with asyncio.timeout(delay):
                    await self._wake.wait()
            except TimeoutError:
                pass

    async def _due_values(self, now: float) -> list[tuple[bytes, bytes, int]]:
        if self.db is not None:
            rows = await self.db.run(lambda s: s.dht_values_due(int(now), limit=100))
            return [(r.key, r.value, r.ttl) for r in rows]
        return [(k, v, ttl) for k, (v, ttl, at) in self._owned.items() if at <= now]

    async def _next_republish(self) -> Optional[float]:
        if self.db is not None:
            rows = await self.db.run(lambda s: s.dht_values_due(2**62, limit=1))
            return float(rows[0].next_republish_at) if rows else None
        return min((at for _, _, at in self._owned.values()), default=None)

    async def _republish(self, now: float) -> None:
        for key, value, ttl in await self._due_values(now):
            nxt = int(now) + max(1, int(ttl * REPUBLISH_FRACTION))
            if self.db is not None:
                await self.db.run(lambda s, k=key, n=nxt: s.mark_republished(k, n))
            else:
                self._owned[key] = (value, ttl, nxt)
            await self.store_value_quietly(key, value, ttl)

