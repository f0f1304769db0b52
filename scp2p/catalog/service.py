"""The network side of shares: announce what we publish, serve manifests, sync subscriptions.

- **Announce** (after a publish, and again before the values expire): the signed ShareHead
  under ``share:head:``, a ``manifest:loc:`` hint naming us, and ``content:prov:`` hints for
  the items (bounded concurrency). Connected peers get the head pushed as a STORE, so a
  subscriber connected to us syncs at once instead of at its next interval, and HAVE_CONTENT
  for new items.
- **Serve** GET_MANIFEST from the store's manifest cache: our own manifests and every one we
  synced (subscribers help each other).
- **Sync** each subscription at start and every ``interval`` (backoff on failure, see
  ``scp2p.catalog.sync``): find the head in the DHT, verify it, fetch the manifest from
  ``manifest:loc`` providers, peers we know for the share, connected peers and the nodes
  closest to the manifest id; accept it only after every check in ``accept_manifest``;
  store it, advance the subscription, hand it to the index and announce ourselves as a
  ``manifest:loc`` provider.
"""

from __future__ import annotations

import asyncio
import logging
import time
from dataclasses import dataclass
from typing import Any, Awaitable, Callable, Iterable, Optional

from ..errors import RemoteError, Scp2pError
from ..identity import content_prov_key, manifest_loc_key, share_head_key
from ..limits import DEFAULT_TTL
from ..store import ManifestRow, Subscription
from ..wire import codec
from ..wire.messages import GetManifest, HaveContent, ManifestData, MsgType, Store
from ..wire.records import ManifestLocation, ManifestV1, PeerAddr, Providers, ShareHead
from .publish import PublishResult
from .share_head import decode_share_head
from .sync import SyncSchedule, accept_manifest, check_head

log = logging.getLogger(__name__)

#: called with each newly accepted manifest (e.g. to replace the share in the search index)
ManifestCallback = Callable[[Subscription, ManifestV1], Optional[Awaitable[None]]]


@dataclass(frozen=True, slots=True)
class SyncResult:
    share_id: bytes
    updated: bool
    seq: Optional[int]
    error: Optional[str] = None


class CatalogService:
    def __init__(
        self,
        store: Any,
        endpoint: Any,
        dht: Any,
        *,
        on_manifest: Optional[ManifestCallback] = None,
        on_failure: Optional[Callable[[bytes, str], None]] = None,
        interval: float = 300.0,
        request_timeout: float = 5.0,
        announce_concurrency: int = 8,
        clock: Callable[[], float] = time.time,
        addresses: Optional[Callable[[], Iterable[PeerAddr]]] = None,
    ) -> None:
        """``store`` is an :class:`~scp2p.store.AsyncStore`; ``endpoint`` the transport Endpoint;
        ``dht`` the :class:`~scp2p.dht.service.DhtService`."""
        self.store = store
        self.endpoint = endpoint
        self.dht = dht
        self.on_manifest = on_manifest
        self.on_failure = on_failure
        self.request_timeout = request_timeout
        self.clock = clock
        self._addresses = addresses if addresses is not None else endpoint.peer_addrs
        self.schedule = SyncSchedule(interval=interval)
        self._announce_sem = asyncio.Semaphore(announce_concurrency)
        self._tasks: set[asyncio.Task] = set()
        self._wake = asyncio.Event()
        self._locks: dict[bytes, asyncio.Lock] = {}
        self._loop_task: Optional[asyncio.Task] = None
        self._pushed: dict[bytes, tuple[ShareHead, Optional[bytes]]] = {}  # share -> newest pushed head, sender
        self._announced: set[bytes] = set()  # content ids whose hints we put (the DHT republishes them)
        self.served = 0

    # ------------------------------------------------------------------ lifecycle
    def register(self, dispatcher: Any) -> None:
        dispatcher.register(MsgType.GET_MANIFEST, self._handle_get_manifest)

    async def start(self, *, background: bool = True) -> None:
        """Start serving; with ``background`` also the periodic sync (first round at once)."""
        if not background:
            return
        subs = await self.store.run(lambda s: s.subscriptions())
        now = self.clock()
        for sub in subs:
            self.schedule.add(sub.share_id, now)
        self._loop_task = asyncio.create_task(self._sync_loop(), name="catalog-sync")

    async def close(self) -> None:
        tasks = list(self._tasks) + ([self._loop_task] if self._loop_task else [])
        for t in tasks:
            t.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        self._tasks.clear()

    async def wait_idle(self) -> None:
        """Wait until background announcements have finished (tests, orderly shutdown)."""
        while self._tasks:
            await asyncio.gather(*list(self._tasks), return_exceptions=True)

    def _spawn(self, coro: Awaitable[Any], name: str) -> None:
        task = asyncio.create_task(coro, name=name)  # type: ignore[arg-type]
        self._tasks.add(task)
        task.add_done_callback(self._done)

    def _done(self, task: asyncio.Task) -> None:
        self._tasks.discard(task)
        if not task.cancelled() and task.exception() is not None:
            log.warning("catalog task %s failed: %r", task.get_name(), task.exception())

    # ------------------------------------------------------------------ serving
    async def _handle_get_manifest(self, ctx: Any, msg: GetManifest) -> ManifestData:
        row = await self.store.run(lambda s: s.manifest(msg.manifest_id))
        if row is None:
            raise RemoteError("manifest not found")
        self.served += 1
        return ManifestData(msg.manifest_id, row.wire)

    # ------------------------------------------------------------------ announcing
    def _our_addrs(self) -> tuple[PeerAddr, ...]:
        return tuple(self._addresses())

    async def announce(self, res: PublishResult) -> None:
        """Put a publication's head and hints into the DHT and push the head to connected peers."""
        await self._announce_share(res.share_id, codec.encode(res.head), DEFAULT_TTL, res.manifest_id,
                                   [it.content_id for it in res.manifest.items])  # fmt: skip

    async def announce_published(self) -> int:
        """Announce every share we publish (at start: a publication made while no node ran, or a
        DHT that forgot us). Returns how many shares were announced."""
        from .manifest import decode_manifest

        def read(s: Any) -> list[tuple[Any, Any, Any]]:
            out = []
            for p in s.published_shares():
                if p.latest_manifest_id is None:
                    continue
                out.append((p, s.manifest(p.latest_manifest_id, touch=False), s.dht_value(share_head_key(p.share_id))))
            return out

        rows = await self.store.run(read)
        for pub, mrow, head in rows:
            items = [it.content_id for it in decode_manifest(mrow.wire).items] if mrow is not None else []
            await self._announce_share(pub.share_id, head.value if head else None, head.ttl if head else DEFAULT_TTL,
                                       pub.latest_manifest_id, items)  # fmt: skip
        return len(rows)

    async def _announce_share(self, share_id: bytes, head_value: Optional[bytes], ttl: int, manifest_id: bytes,
                              content_ids: list[bytes]) -> None:  # fmt: skip
        """Head first (pushed to connected peers, then stored in the DHT), then the manifest
        location, then provider hints for items not announced yet, in the background."""
        key = share_head_key(share_id)
        if head_value is not None:
            await self._push_head(key, head_value)
            await self.dht.publish(key, head_value, ttl)
        await self.announce_manifest(manifest_id)
        fresh = [cid for cid in dict.fromkeys(content_ids) if cid not in self._announced]
        self._announced.update(fresh)
        if fresh:  # hints matter less than the head: in the background, bounded
            self._spawn(self.announce_contents(fresh), f"announce-items-{share_id.hex()[:8]}")

    async def announce_manifest(self, mid: bytes) -> None:
        loc = ManifestLocation(mid, self._our_addrs(), int(self.clock()))
        await self._put_hint(manifest_loc_key(mid), codec.encode(loc))

    async def announce_contents(self, content_ids: Iterable[bytes], now: Optional[int] = None) -> None:
        """HAVE_CONTENT to connected peers (fire-and-forget) and ``content:prov`` hints in the DHT."""
        now = int(self.clock()) if now is None else now
        addrs = self._our_addrs()
        content_ids = list(dict.fromkeys(content_ids))
        for sess in list(self.endpoint.pool.sessions):
            for cid in content_ids:
                try:
                    await sess.send(HaveContent(cid))
                except (Scp2pError, OSError):
                    break  # that session is gone or saturated; the DHT hint still tells others
        await asyncio.gather(*(
            self._put_hint(content_prov_key(cid), codec.encode(Providers(cid, addrs, now)))
            for cid in content_ids
        ))  # fmt: skip

    async def _put_hint(self, key: bytes, value: bytes) -> None:
        async with self._announce_sem:
            try:
                await self.dht.publish(key, value, DEFAULT_TTL)
            except Scp2pError as exc:
                log.debug("announcing %s failed: %s", key.hex()[:16], exc)

    async def _push_head(self, key: bytes, value: bytes) -> None:
        """STORE the head at every connected peer: subscribers among them sync right away."""
        msg = Store(key, value, DEFAULT_TTL)
        sessions = list(self.endpoint.pool.sessions)

        async def one(sess: Any) -> None:
            try:
                await sess.request(msg, timeout=self.request_timeout)
            except (Scp2pError, OSError) as exc:
                log.debug("pushing head to %s failed: %s", sess, exc)

        await asyncio.gather(*(one(s) for s in sessions))

    def head_stored(self, key: bytes, value: bytes, sender: Optional[bytes] = None) -> None:
        """Hook for the DHT STORE handler: a head of a share we follow arrived -> sync it now,
        starting from that head and asking its sender (who has the manifest, usually) first."""
        try:
            head = decode_share_head(value)
        except Scp2pError:
            return
        if share_head_key(head.share_id) == key and head.share_id in self.schedule._entries:
            prev = self._pushed.get(head.share_id)
            if prev is None or head.latest_seq > prev[0].latest_seq:
                self._pushed[head.share_id] = (head, sender)
            self.schedule.sync_now(self.clock(), head.share_id)
            self._wake.set()

    # ------------------------------------------------------------------ subscriptions
    def subscribed(self, share_id: bytes) -> None:
        self.schedule.add(share_id, self.clock())
        self._wake.set()

    def unsubscribed(self, share_id: bytes) -> None:
        self.schedule.remove(share_id)

    async def _sync_loop(self) -> None:
        while True:
            now = self.clock()
            due = self.schedule.due(now)
            if due:
                await asyncio.gather(*(self._sync_scheduled(sid) for sid in due))
                continue
            deadline = self.schedule.next_deadline()
            self._wake.clear()
            timeout = None if deadline is None else max(0.0, deadline - self.clock())
            try:
                async with asyncio.timeout(timeout):
                    await self._wake.wait()
            except TimeoutError:
                pass

    async def _sync_scheduled(self, sid: bytes) -> None:
        started = self.schedule.generation(sid)
        res = await self.sync_one(sid)
        now = self.clock()
        if res.error is None:
            self.schedule.succeeded(sid, now, started)
        else:
            delay = self.schedule.failed(sid, now, started)
            log.info("sync of %s failed (%s); retry in %.0fs", sid.hex()[:16], res.error, delay)
            if self.on_failure is not None:
                self.on_failure(sid, res.error)

    async def sync_all(self) -> list[SyncResult]:
        """Sync every subscription now, concurrently; returns one result per subscription."""
        subs = await self.store.run(lambda s: s.subscriptions())
        results = await asyncio.gather(*(self.sync_one(s.share_id) for s in subs))
        now = self.clock()
        for r in results:
            (self.schedule.succeeded if r.error is None else self.schedule.failed)(r.share_id, now)
        return list(results)

    async def sync_one(self, sid: bytes) -> SyncResult:
        lock = self._locks.setdefault(sid, asyncio.Lock())
        async with lock:
            try:
                return await self._sync(sid)
            except (Scp2pError, OSError) as exc:
                sub = await self.store.run(lambda s: s.subscription(sid))
                held = sub.latest_seq if sub is not None else None
                return SyncResult(sid, False, held, f"{type(exc).__name__}: {exc}")

    async def _sync(self, sid: bytes) -> SyncResult:
        sub = await self.store.run(lambda s: s.subscription(sid))
        if sub is None:
            return SyncResult(sid, False, None, "not subscribed")
        head, first = await self._pushed_head(sub)
        if head is None:
            found = await self.dht.find_value(share_head_key(sid), share_pubkey=sub.share_pubkey, newest=_head_seq)
            if found is None:
                return SyncResult(sid, False, sub.latest_seq, "no share head found in the DHT")
            head = decode_share_head(found.value)
        if not check_head(sub, head):
            return SyncResult(sid, False, sub.latest_seq)  # nothing newer
        m, wire = await self._fetch_manifest(sub, head, first)
        mid = head.latest_manifest_id

        def apply(s: Any) -> bool:
            with s.transaction():
                s.put_manifest(ManifestRow(mid, sid, m.seq, m.created_at, m.expires_at, wire, m.title, len(m.items)))
                return s.advance_subscription_head(sid, m.seq, mid)

        if not await self.store.run(apply):
            return SyncResult(sid, False, sub.latest_seq)  # a concurrent sync got there first
        log.info("share %s synced to seq %d (%d items)", sid.hex()[:16], m.seq, len(m.items))
        if self.on_manifest is not None:
            updated_sub = await self.store.run(lambda s: s.subscription(sid))
            r = self.on_manifest(updated_sub, m)
            if r is not None:
                await r
        self._spawn(self.announce_manifest(mid), f"announce-manifest-{mid.hex()[:8]}")
        return SyncResult(sid, True, m.seq)

    async def _pushed_head(self, sub: Subscription) -> tuple[Optional[ShareHead], list[Any]]:
        """A head pushed to us that is newer than ours and checks out, and its sender's session."""
        pushed = self._pushed.pop(sub.share_id, None)
        if pushed is None:
            return None, []
        head, sender = pushed
        try:
            if not check_head(sub, head):
                return None, []
        except Scp2pError:
            return None, []  # unverifiable or forged: fall back to the DHT
        if sub.share_pubkey is None:
            return None, []  # cannot verify a pushed head: ask the DHT for the newest copy
        session = self.endpoint.pool.find(sender) if sender is not None else None
        return head, [session] if session is not None else []

    async def _candidates(self, sub: Subscription, mid: bytes) -> list[Any]:
        """Who may hold the manifest: hinted providers, connected peers, known peers, DHT neighbours."""
        out: list[Any] = []
        loc = await self.dht.find_value(manifest_loc_key(mid))
        if loc is not None:
            try:
                out += list(codec.decode(ManifestLocation, loc.value).providers)
            except Scp2pError:
                pass
        out += [s for s in self.endpoint.pool.sessions if s.is_open]
        peers = await self.store.run(lambda s: s.peers(limit=16))
        for p in peers:
            try:
                out.append(PeerAddr(p.host, p.port, p.transport if p.transport in ("tcp", "quic") else "tcp",
                                    p.pubkey_hint))  # fmt: skip
            except Scp2pError:
                continue
        try:
            out += [c.addr for c in await self.dht.find_node(mid[:20])]
        except Scp2pError:
            pass
        return out

    async def _fetch_manifest(self, sub: Subscription, head: ShareHead, first: Iterable[Any] = ()
                              ) -> tuple[ManifestV1, bytes]:  # fmt: skip
        mid = head.latest_manifest_id
        local = await self.store.run(lambda s: s.manifest(mid, touch=False))
        if local is not None:
            return accept_manifest(sub, head, local.wire, now=int(self.clock())), local.wire
        last: Optional[Exception] = None
        tried: set = set()

        async def candidates():
            for peer in first:
                yield peer
            for peer in await self._candidates(sub, mid):
                yield peer

        async for peer in candidates():
            ident = getattr(peer, "remote_pubkey", None) or (peer.ip, peer.port, peer.transport)
            if ident in tried or getattr(peer, "pubkey_hint", None) == self.endpoint.key.public_key:
                continue
            tried.add(ident)
            try:
                if hasattr(peer, "request"):
                    reply = await peer.request(GetManifest(mid), timeout=self.request_timeout)
                else:
                    reply = await self.endpoint.pool.request(peer, GetManifest(mid), timeout=self.request_timeout)
                if not isinstance(reply, ManifestData) or reply.manifest_id != mid:
                    raise RemoteError("unexpected reply to GET_MANIFEST")
                return accept_manifest(sub, head, reply.bytes, now=int(self.clock())), reply.bytes
            except (Scp2pError, OSError) as exc:
                last = exc
                log.debug("GET_MANIFEST %s from %s failed: %s", mid.hex()[:16], peer, exc)
        raise last if isinstance(last, Scp2pError) else RemoteError(f"no peer served manifest {mid.hex()}")


def _head_seq(value: Store) -> int:
    return decode_share_head(value.value).latest_seq


__all__ = ["CatalogService", "SyncResult"]
