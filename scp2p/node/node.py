"""``scp2p.Node``: the asyncio node wiring store, transport, DHT, catalog, search and transfer.

::

    async with Node(NodeConfig(data_dir="~/scp2p", listen=("tcp://127.0.0.1:0",))) as node:
        share = await node.publish("~/Music", title="My music")
        link = node.invite(share.share_id)
        events = node.events()
        ...

Every public coroutine raises :class:`~scp2p.errors.Scp2pError` subclasses on failure.
"""

from __future__ import annotations

import asyncio
import logging
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable, Optional

from ..catalog.invite import Invite, InvitePeer, format_invite, parse_invite
from ..catalog.manifest import decode_manifest, manifest_id
from ..catalog.publish import PublishResult, publish_folder
from ..catalog.service import CatalogService, SyncResult
from ..dht.link import invite_peer_addrs, make_service
from ..dht.service import DhtConfig
from ..errors import ConnectFailed, InvalidInvite, NodeError, Scp2pError
from ..identity import NodeKey, ShareKey
from ..identity import node_id as node_id_of
from ..identity import share_id as share_id_of
from ..store import AsyncStore, PeerRecord, Subscription, TrustLevel
from ..store.records import BlocklistRole
from ..transfer.server import ChunkServer
from ..transport.dispatch import Dispatcher
from ..transport.endpoint import Endpoint
from ..transport.session import PeerConnected as _TPeerConnected
from ..transport.urls import parse_url
from ..wire.messages import MsgType
from ..limits import DEFAULT_TTL
from ..wire.records import ManifestV1, PeerAddr
from . import events as ev
from . import downloads, indexing
from .config import NodeConfig

log = logging.getLogger(__name__)

#: the node API version; see docs/api.md for the compatibility policy
API_VERSION = "1.0"


@dataclass
class Counters:
    manifests_served: int = 0
    downloads: int = 0
    #: bytes of sessions already closed (open ones are added when status is read)
    bytes_in: int = 0
    bytes_out: int = 0
    syncs: int = 0
    sync_failures: int = 0
    published: int = 0
    started_at: float = field(default_factory=time.time)


class Node:
    """A running SCP2P node. Use as an async context manager."""

    def __init__(self, config: Optional[NodeConfig] = None, *, dht_config: DhtConfig = DhtConfig()) -> None:
        self.config = config if config is not None else NodeConfig()
        self._dht_config = dht_config
        self.bus = ev.EventBus()
        self.counters = Counters()
        self.store: Optional[AsyncStore] = None
        self.key: Optional[NodeKey] = None
        self.endpoint: Optional[Endpoint] = None
        self.dht: Any = None
        self.catalog: Optional[CatalogService] = None
        self._tasks: set[asyncio.Task] = set()
        self._started = False
        self.control: Any = None
        self.stop_requested = asyncio.Event()
        self.index: Any = None
        self._blocklist = None
        self._index_dirty = False
        self._indexed_seq: dict[bytes, int] = {}
        self.chunks: Any = None
        self.relay: Any = None
        self.transfer_config: Any = None
        self._downloads: dict[tuple[bytes, str], downloads.DownloadHandle] = {}

    # ------------------------------------------------------------------ lifecycle
    async def __aenter__(self) -> "Node":
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    async def start(self) -> None:
        if self._started:
            return
        self._started = True
        cfg = self.config
        try:
            self.store = await AsyncStore.open(cfg.db_path, passphrase=cfg.passphrase)
            self.key = await self.store.run(lambda s: s.ensure_node_key())
            dispatcher = Dispatcher()
            self.endpoint = Endpoint(self.key, cfg.capabilities, cfg.listen, dispatcher)
            await self.endpoint.start()
            self.endpoint.add_listener(self._on_transport_event)
            self.dht = make_service(self.endpoint, store=self.store, config=self._dht_config)
            self.catalog = CatalogService(
                self.store, self.endpoint, self.dht, on_manifest=self._on_manifest, on_failure=self._on_sync_failure,
                interval=cfg.sync_interval, addresses=self.reachable_addrs,
            )  # fmt: skip
            self.catalog.register(dispatcher)
            self.chunks = ChunkServer(self.store, upload_rate=cfg.upload_rate, self_addrs=self.reachable_addrs)
            self.chunks.register(dispatcher)
            await downloads.restore_completed(self)
            self.dht.on_store = self.catalog.head_stored  # a pushed head of a followed share: sync now
            await self._load_index()
            self.dht.start()
            await self._bootstrap()
            from ..relay import RelayPolicy, attach_relay

            # relay role when configured; registrations with relays when we cannot be dialled
            self.relay = await attach_relay(self, relays=cfg.relays, policy=RelayPolicy(content=cfg.relay_content))
            self.endpoint.pool.fallback = self._relay_fallback
            await self.catalog.start(background=cfg.auto_sync)
            self._spawn(self.catalog.announce_published(), "announce-published")
            if cfg.control:
                from .commands import make_commands
                from .control import ControlServer

                self.control = ControlServer(cfg.data_dir, make_commands(self, on_stop=self.stop_requested.set))
                await self.control.start()
            log.info("node %s listening on %s", self.key.node_id.hex()[:16], ", ".join(self.endpoint.listen_addrs))
        except BaseException:
            await self.close()
            raise

    async def _bootstrap(self) -> None:
        seeds: list[PeerAddr] = []
        for url in self.config.bootstrap:
            try:
                seeds += list(invite_peer_addrs(Invite(bytes(32), None, (_invite_peer(url),))))
            except InvalidInvite as exc:
                raise NodeError(f"bad bootstrap peer {url!r}: {exc}") from None
        await self.dht.bootstrap(seeds)

    async def close(self) -> None:
        """Stop everything, in reverse order; safe to call twice."""
        for t in list(self._tasks):
            t.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        if self.index is not None and self._index_dirty and self.store is not None:
            await self._save_index()
        if self.relay is not None:
            await self.relay.close()
            self.relay = None
        if self.catalog is not None:
            await self.catalog.close()
        if self.dht is not None:
            await self.dht.close()
        if self.endpoint is not None:
            await self.endpoint.close()
        if self.store is not None:
            await self.store.close()
        if self.control is not None:  # last: once the socket is gone, the data dir is free
            await self.control.close()
            self.control = None
        self.bus.close()
        self.catalog = self.dht = self.endpoint = self.store = None

    def _need(self) -> None:
        if self.store is None or self.endpoint is None:
            raise NodeError("the node is not running")

    # ------------------------------------------------------------------ events
    def events(self, maxsize: int = 1024) -> ev.EventStream:
        """A stream of typed events from now on (see ``scp2p.node.events`` for ordering)."""
        return self.bus.subscribe(maxsize)

    def _on_transport_event(self, e: Any) -> None:
        addr = f"{e.transport}://{_host_port(e.remote_addr)}"
        if isinstance(e, _TPeerConnected):
            self.bus.emit(ev.PeerConnected(e.remote_node_id, addr))
        else:
            self.counters.bytes_in += getattr(e.session, "bytes_in", 0)
            self.counters.bytes_out += getattr(e.session, "bytes_out", 0)
            self.bus.emit(ev.PeerDisconnected(e.remote_node_id, addr, str(e.reason)))

    async def _on_manifest(self, sub: Subscription, m: ManifestV1) -> None:
        self.counters.syncs += 1
        self.bus.emit(ev.ManifestUpdated(m.share_id, m.seq, manifest_id(m), len(m.items)))
        self._index_share(sub.share_id, m, weight=sub.weight, trust=sub.trust.value)
        if sub.blocklist is BlocklistRole.HONOURED:
            self._blocklist = None  # rebuilt on the next search
        self._spawn(self._save_index_soon(), "index-save")

    # ------------------------------------------------------------------ search
    async def _load_index(self) -> None:
        """The persisted index, brought up to date with the manifests in the store."""
        self.index, self._indexed_seq, changed = await self.store.run(indexing.load_index)
        self._index_dirty = changed

    def _index_share(self, share_id: bytes, m: ManifestV1, *, weight: float, trust: str) -> None:
        indexing.index_manifest(self.index, self._indexed_seq, share_id, m, weight=weight, trust=trust)
        self._index_dirty = True
        self.bus.emit(ev.SearchIndexUpdated(share_id, len(m.items)))

    async def _save_index(self) -> None:
        """Snapshot on the loop (the index is only mutated there), write in the store's thread."""
        self._index_dirty = False
        image = indexing.index_image(self.index, self._indexed_seq)
        await self.store.run(indexing.save_image, image)

    async def _save_index_soon(self, delay: float = 2.0) -> None:
        await asyncio.sleep(delay)  # coalesce bursts of updates into one write
        if self._index_dirty:
            await self._save_index()

    async def _current_blocklist(self) -> Any:
        if self._blocklist is None:
            from .views import honoured_blocklist

            self._blocklist = await self.store.run(honoured_blocklist)
        return self._blocklist

    async def search(
        self,
        query: str,
        *,
        limit: int = 20,
        offset: int = 0,
        scope: Optional[Iterable[bytes]] = None,
        trust_levels: Iterable[str] = ("trusted", "normal"),
        typing: bool = False,
    ) -> Any:
        """Search the subscribed (and own) catalogs; returns a ``scp2p.search.SearchPage``.

        Honoured blocklists apply; by default trusted and normal shares are searched."""
        self._need()
        bl = await self._current_blocklist()
        return self.index.search(query, scope=scope, trust_levels=tuple(trust_levels), blocklist=bl,
                                 limit=limit, offset=offset, typing=typing)  # fmt: skip

    def _spawn(self, coro: Any, name: str) -> None:
        task = asyncio.create_task(coro, name=name)
        self._tasks.add(task)
        task.add_done_callback(self._task_done)

    def _task_done(self, task: asyncio.Task) -> None:
        self._tasks.discard(task)
        if not task.cancelled() and task.exception() is not None:
            log.warning("node task %s failed: %r", task.get_name(), task.exception())

    def _on_sync_failure(self, share_id: bytes, reason: str) -> None:
        self.counters.sync_failures += 1
        self.bus.emit(ev.SyncFailed(share_id, reason))

    # ------------------------------------------------------------------ identity and addresses
    @property
    def node_id(self) -> bytes:
        self._need()
        return self.key.node_id

    @property
    def listen_urls(self) -> list[str]:
        self._need()
        return [str(u).split("?", 1)[0] for u in self.endpoint.listen_urls]

    def advertised_urls(self) -> list[str]:
        """Our listener URLs as others should dial them (``advertise`` config, else the listeners)."""
        if self.config.advertise:
            return list(self.config.advertise)
        out = []
        for url in self.listen_urls:
            scheme, _, rest = url.partition("://")
            host, _, port = rest.rpartition(":")
            host = {"0.0.0.0": "127.0.0.1", "[::]": "[::1]"}.get(host, host)
            out.append(f"{scheme}://{host}:{port}")
        return out

    def reachable_addrs(self) -> list[PeerAddr]:
        """v0.1 addresses others can reach us at: our listeners, and relay slots we hold."""
        addrs = list(self.endpoint.peer_addrs()) if self.endpoint is not None else []
        if self.relay is not None:
            addrs += self.relay.peer_addrs()
        return addrs

    async def _relay_fallback(self, peer: Any) -> Any:
        """Reach a peer whose address did not answer with its key: maybe it is a relay slot."""
        if self.relay is None or not isinstance(peer, PeerAddr) or peer.pubkey_hint is None:
            raise ConnectFailed("no relay route to this peer")
        try:
            return await self.relay.connect(peer)
        except Scp2pError as exc:
            raise ConnectFailed(f"through a relay: {exc}") from None

    async def connect(self, url: str) -> bytes:
        """Open a session to a peer URL; returns its node id."""
        self._need()
        try:
            target = parse_url(url)
        except ValueError as exc:
            raise NodeError(str(exc)) from None
        session = await self.endpoint.pool.session(target)
        return node_id_of(session.remote_pubkey)

    # ------------------------------------------------------------------ shares
    async def publish(
        self,
        folder: str | Path,
        *,
        title: Optional[str] = None,
        description: Optional[str] = None,
        tags: Iterable[str] = (),
        share_key: Optional[ShareKey] = None,
        recommended: Optional[Iterable[bytes]] = None,
    ) -> PublishResult:
        """Publish (or update) ``folder`` as a share and announce it. A folder published before
        keeps its share; otherwise a new share key is created (or ``share_key`` used)."""
        self._need()
        folder = Path(folder).expanduser().resolve()
        tags = list(tags)

        def work(s: Any) -> PublishResult:
            key = share_key
            if key is None:
                for pub in s.published_shares():
                    if pub.root_path and Path(pub.root_path) == folder:
                        owned = s.share_key(pub.share_id)
                        key = owned.key if owned else None
                        break
            return publish_folder(s, key or ShareKey.generate(), folder, title=title, description=description,
                                  tags=tags, recommended=recommended)  # fmt: skip

        res = await self.store.run(work)
        self.counters.published += 1
        self._index_share(res.share_id, res.manifest, weight=1.0, trust="trusted")
        self._spawn(self._save_index_soon(), "index-save")
        await self.catalog.announce(res)
        return res

    async def publish_manifest(self, manifest: ManifestV1, *, now: Optional[int] = None) -> PublishResult:
        """Publish a manifest built elsewhere (e.g. a blocklist, or a catalog of files this node
        does not hold). It must be signed by a share key this node owns and newer than the last
        publication of that share; it is kept, served and announced like a published folder."""
        self._need()
        from ..catalog.manifest import encode_manifest, verify_manifest
        from ..catalog.publish import check_manifest_fits
        from ..catalog.share_head import encode_share_head, sign_share_head
        from ..identity import share_head_key
        from ..store import ManifestRow, OwnedDhtValue, PublishedShare

        verify_manifest(manifest)
        wire, mid = encode_manifest(manifest), manifest_id(manifest)
        check_manifest_fits(manifest, wire, mid)
        now = int(time.time()) if now is None else now

        def work(s: Any) -> PublishResult:
            owned = s.share_key(manifest.share_id)
            if owned is None:
                raise NodeError(f"share {manifest.share_id.hex()} is not owned by this node")
            prev = s.published_share(manifest.share_id)
            if prev is not None and manifest.seq <= prev.latest_seq:
                raise NodeError(f"manifest seq {manifest.seq} is not newer than published seq {prev.latest_seq}")
            head = sign_share_head(owned.key, manifest.seq, mid, now)
            with s.transaction():
                s.put_published_share(PublishedShare(manifest.share_id, prev.root_path if prev else None,
                                                     manifest.title, manifest.description, manifest.seq, mid))  # fmt: skip
                s.put_manifest(ManifestRow(mid, manifest.share_id, manifest.seq, manifest.created_at,
                                           manifest.expires_at, wire, manifest.title, len(manifest.items)),
                               pinned=True)  # fmt: skip
                key = share_head_key(manifest.share_id)
                s.put_dht_value(OwnedDhtValue(key, encode_share_head(head), DEFAULT_TTL, now + DEFAULT_TTL // 2))
            return PublishResult(manifest, mid, wire, head, (), 0, 0)

        res = await self.store.run(work)
        self.counters.published += 1
        self._index_share(res.share_id, manifest, weight=1.0, trust="trusted")
        self._spawn(self._save_index_soon(), "index-save")
        await self.catalog.announce(res)
        return res

    async def invite(self, share_id: bytes) -> str:
        """The ``scp2p://`` invite link of one of our shares, naming our listeners."""
        self._need()
        owned = await self.store.run(lambda s: s.share_key(share_id))
        if owned is None:
            raise NodeError(f"share {share_id.hex()} is not published by this node")
        peers = tuple(InvitePeer(u, self.key.public_key) for u in self.advertised_urls())
        return format_invite(Invite(share_id, owned.public_key, peers))

    async def subscribe(
        self,
        target: str | bytes,
        *,
        pubkey: Optional[bytes] = None,
        trust: TrustLevel | str = TrustLevel.NORMAL,
        weight: float = 1.0,
        blocklist: bool = False,
        sync: bool = True,
    ) -> SyncResult | Subscription:
        """Subscribe by invite link or share id (+ ``pubkey``); contacts the link's peers and syncs."""
        self._need()
        if isinstance(target, str) and target.strip().lower().startswith("scp2p://"):
            inv = parse_invite(target)
        else:
            sid = bytes.fromhex(target) if isinstance(target, str) else bytes(target)
            inv = Invite(sid, None)
        pk = pubkey if pubkey is not None else inv.share_pubkey
        if pk is not None and share_id_of(pk) != inv.share_id:
            raise InvalidInvite("the public key does not match the share id (SHA-256)")
        sub = Subscription(inv.share_id, pk, TrustLevel(trust), weight,
                           blocklist=BlocklistRole.HONOURED if blocklist else BlocklistRole.NONE)  # fmt: skip
        peers = [
            PeerRecord(p.host, p.port, p.transport, node_id=node_id_of(p.node_pubkey) if p.node_pubkey else None,
                       pubkey_hint=p.node_pubkey, last_seen=int(time.time()))
            for p in inv.peers
        ]  # fmt: skip

        def save(s: Any) -> None:
            with s.transaction():
                s.put_subscription(sub)
                s.upsert_peers(peers)

        await self.store.run(save)
        if inv.share_id in self._indexed_seq:  # re-subscribing changes trust / weight in place
            self.index.set_share_meta(inv.share_id, weight=sub.weight, trust=sub.trust.value)
            self._index_dirty = True
        self._blocklist = None
        seeds = invite_peer_addrs(inv)
        if seeds:
            await self.dht.bootstrap(seeds)
        self.catalog.subscribed(inv.share_id)
        if sync:
            return await self.catalog.sync_one(inv.share_id)
        return sub

    async def unsubscribe(self, share_id: bytes) -> bool:
        self._need()
        removed = await self.store.run(lambda s: s.delete_subscription(share_id))
        self.catalog.unsubscribed(share_id)
        owned = await self.store.run(lambda s: s.published_share(share_id))
        if removed and owned is None and share_id in self.index.share_ids():
            self.index.remove_share(share_id)
            self._indexed_seq.pop(share_id, None)
            self._index_dirty = True
            self._blocklist = None
        return removed

    async def subscriptions(self) -> list[Subscription]:
        self._need()
        return await self.store.run(lambda s: s.subscriptions())

    async def recommended(self) -> list[dict]:
        """Shares that the catalogs we follow recommend, not yet subscribed (most recommended first)."""
        self._need()
        from .views import recommended_view

        return await self.store.run(recommended_view)

    async def sync_subscriptions(self) -> list[SyncResult]:
        """Sync every subscription now; returns when done."""
        self._need()
        return await self.catalog.sync_all()

    async def manifest(self, share_id: bytes) -> Optional[ManifestV1]:
        """The latest manifest we hold for a share (ours or synced)."""
        self._need()
        row = await self.store.run(lambda s: s.latest_manifest(share_id))
        return None if row is None else decode_manifest(row.wire)

    async def control_sync(self) -> list[dict]:
        """``sync_subscriptions`` as JSON-able rows."""
        return [{"share_id": r.share_id.hex(), "updated": r.updated, "seq": r.seq, "error": r.error}
                for r in await self.sync_subscriptions()]  # fmt: skip

    # ------------------------------------------------------------------ downloads
    async def download(
        self, content_id: bytes, target: Optional[str | Path] = None, *, share_id: Optional[bytes] = None
    ) -> downloads.DownloadHandle:
        """Start downloading ``content_id`` (an item of a catalog we hold) to ``target``.

        ``target`` defaults to ``<data dir>/downloads/<item name>``; a directory gets the item name.
        Returns a handle: ``await handle`` -> path; ``handle.cancel()``; ``handle.progress``.
        The same content to the same path resumes from the verified chunks on disk.
        """
        self._need()
        return await downloads.start_download(self, content_id, target, share_id)

    # ------------------------------------------------------------------ status
    async def status(self) -> dict:
        self._need()

        def read(s: Any) -> dict:
            return {"shares": len(s.published_shares()), "subscriptions": len(s.subscriptions()),
                    "known_peers": s.count_peers()}  # fmt: skip

        st = await self.store.run(read)
        sessions = self.endpoint.sessions
        c = self.counters
        active = [
            {"content_id": h.content_id.hex(), "target": str(h.target),
             "done": h.progress.done_bytes if h.progress else 0, "total": h.progress.total_bytes if h.progress else None,
             "rate": h.progress.rate if h.progress else 0.0}
            for h in self._downloads.values() if not h.done
        ]  # fmt: skip
        handled = self.endpoint.dispatcher.handled
        return {
            "node_id": self.key.node_id.hex(),
            "node_pubkey": self.key.public_key.hex(),
            "listen": self.listen_urls,
            "reachability": getattr(getattr(self.relay, "state", None), "value", None),
            "peers": len(sessions),
            "peers_by_state": {"connected": len(sessions), "dht_contacts": len(self.dht.core.table),
                               "known": st["known_peers"]},  # fmt: skip
            "dht_contacts": len(self.dht.core.table),
            "dht_values_held": len(self.dht.core.storage),
            "uptime_s": round(time.time() - c.started_at, 1),
            "transfers": active,
            "counters": {
                "manifests_served": self.catalog.served, "syncs": c.syncs, "sync_failures": c.sync_failures,
                "published": c.published, "downloads_completed": c.downloads, "downloads_active": len(active),
                "requests_handled": sum(handled.values()),
                "chunks_served": handled.get(int(MsgType.GET_CHUNK), 0),
                "bytes_in": c.bytes_in + sum(getattr(x, "bytes_in", 0) for x in sessions),
                "bytes_out": c.bytes_out + sum(getattr(x, "bytes_out", 0) for x in sessions),
            },  # fmt: skip
            **st,
        }


def _host_port(addr: Any) -> str:
    if isinstance(addr, tuple) and len(addr) >= 2:
        host = str(addr[0])
        return f"[{host}]:{addr[1]}" if ":" in host else f"{host}:{addr[1]}"
    return str(addr)


def _invite_peer(url: str) -> InvitePeer:
    base, _, key = url.partition("#")
    return InvitePeer(base, bytes.fromhex(key) if key else None)


__all__ = ["API_VERSION", "Node", "NodeConfig", "MsgType"]
