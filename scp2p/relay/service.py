"""``RelayService``: the relay pieces of one node, on the node's Endpoint and Dispatcher.

::

    relay = await attach_relay(node, relays=["tcp://203.0.113.5:7001"])   # or RelayService(...).start()
    relay.state                      # ReachState.DIRECT / OUTBOUND_ONLY / RELAYED / UNKNOWN
    relay.relay_addrs()              # where others reach us (RelayAddr; str() is the relay URL)
    session = await relay.connect("relay+tcp://...")     # a Session to a relayed node
    await node.endpoint.pool.request(peer_addr_with_its_key, GetManifest(mid))  # reuses it
    await relay.close()

* **Tunnel ends** (always): RELAY_STREAM segments for our own relayed sessions are delivered to
  them. A relayed session is a real :class:`~scp2p.transport.session.Session` built on the
  endpoint's ``LocalNode``, so it runs the same Hello (end-to-end identity), registers in the
  ``SessionPool`` (``pool.find(pubkey)``, ``pool.request(PeerAddr with that key)`` reuse it),
  emits PeerConnected/PeerDisconnected, and is served by the **same Dispatcher** as direct
  sessions. Catalog and transfer code use it unchanged (``transport == "relay"``).
* **Relay role** (``serve=True``, capability ``relay``): :class:`~scp2p.relay.server.RelayServer`.
* **Relayed client** (``register``): :class:`~scp2p.relay.client.RelayClient` registrations.
* **Reachability**: answers dial-back probes; decides our own state (``reachability.py``).
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any, Iterable, Optional

from ..errors import RelayError, RelayRefused, RemoteError, Scp2pError
from ..transport.session import PeerConnected, Session
from ..transport.urls import PeerURL, to_url
from ..wire.messages import MsgType, RelayConnect, RelayStream
from ..wire.records import PeerAddr
from .addressing import RelayAddr, is_relay_url, parse_relay_url
from .client import RelayClient
from .quotas import RelayPolicy
from .reachability import ProbeResponder, Reachability, ReachState, probe_peer
from .server import RelayServer
from .tunnel import Tunnel

log = logging.getLogger(__name__)


class RelayService:
    def __init__(
        self,
        endpoint: Any,
        *,
        store: Any = None,
        serve: bool = False,
        policy: Optional[RelayPolicy] = None,
        relays: Iterable[Any] = (),
        register: Optional[bool] = None,
        want: int = 1,
        max_tunnels: int = 256,
        timeout: float = 10.0,
        segment: Optional[int] = None,
    ) -> None:
        """``register``: keep relay registrations (None: when we have no listener or probes say
        we are outbound-only). ``relays``: relay addresses to use (peers that connect with the
        relay capability are added as candidates)."""
        self.endpoint = endpoint
        self.timeout = timeout
        self.max_tunnels = max_tunnels
        self.segment = segment
        self.server = RelayServer(policy=policy, store=store) if serve else None
        self.register_mode = register
        self.client = RelayClient(endpoint, relays, want=want, timeout=timeout)
        self.responder = ProbeResponder(endpoint)
        self.reach = Reachability(has_listeners=bool(endpoint.listen_urls))
        self._tunnels: dict[tuple, Tunnel] = {}
        self._next_sid: dict[Any, int] = {}
        self._watched: set = set()
        self._tasks: set[asyncio.Task] = set()
        self._client_started = False
        self._started = False

    # ------------------------------------------------------------------ lifecycle
    async def start(self) -> "RelayService":
        if self._started:
            return self
        self._started = True
        d = self.endpoint.dispatcher
        d.register(MsgType.RELAY_STREAM, self._on_stream)
        self.responder.register(d)
        if self.server is not None:
            self.server.register(d)
            await self.server.start()
        self.endpoint.add_listener(self._on_event)
        for s in self.endpoint.pool.sessions:
            self._consider_candidate(s)
        if self.register_mode or (self.register_mode is None and not self.reach.has_listeners):
            self._start_client()
        return self

    async def close(self) -> None:
        try:
            self.endpoint.remove_listener(self._on_event)
        except ValueError:
            pass
        for t in list(self._tunnels.values()):
            if t.session is not None:
                t.session.abort("relay service closed")
        tasks = list(self._tasks)
        for t in tasks:
            t.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        await self.client.close()
        if self.server is not None:
            await self.server.close()
        d = self.endpoint.dispatcher
        for t in (MsgType.RELAY_STREAM, MsgType.RELAY_REGISTER, MsgType.RELAY_CONNECT, 460):
            d.unregister(t)

    async def __aenter__(self) -> "RelayService":
        return await self.start()

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    def _start_client(self) -> None:
        if not self._client_started:
            self._client_started = True
            self.client.on_change = self._client_changed
            self.client.start()

    def _client_changed(self) -> None:
        self.reach.relay_active = bool(self.client.active)

    def _spawn(self, coro: Any) -> None:
        t = asyncio.get_running_loop().create_task(coro)
        self._tasks.add(t)
        t.add_done_callback(self._tasks.discard)

    def _on_event(self, ev: Any) -> None:
        if isinstance(ev, PeerConnected):
            self._consider_candidate(ev.session)

    def _consider_candidate(self, session: Any) -> None:
        if session.transport == "relay" or not session.initiator:
            return  # only relays we dialled (their address is known to work)
        try:
            if session.remote_capabilities.relay and session.remote_addr:
                host, port = session.remote_addr[0], session.remote_addr[1]
                self.client.add_candidate(PeerURL(session.transport, str(host), int(port), session.remote_pubkey))
        except (Scp2pError, ValueError, TypeError, IndexError):
            pass

    # ------------------------------------------------------------------ reachability
    @property
    def state(self) -> ReachState:
        self.reach.relay_active = bool(self.client.active)
        return self.reach.state

    async def check_reachability(self, sessions: Optional[Iterable[Any]] = None) -> ReachState:
        """Probe peers (default: every open direct session) until the verdict is decided."""
        addrs = self.endpoint.peer_addrs()
        if addrs:
            for s in list(sessions if sessions is not None else self.endpoint.pool.sessions):
                if self.reach.decided:
                    break
                if s.transport == "relay" or not s.is_open:
                    continue
                ans, observed = await probe_peer(s, addrs, timeout=self.timeout)
                self.reach.record(ans, observed)
        if self.register_mode is None and self.reach.state is ReachState.OUTBOUND_ONLY:
            self._start_client()
        return self.state

    # ------------------------------------------------------------------ addressing
    def relay_addrs(self) -> list[RelayAddr]:
        return self.client.relay_addrs()

    def peer_addrs(self) -> list[PeerAddr]:
        """Our relayed addresses in the v0.1 PeerAddr form (for provider hints and PEX)."""
        return [pa for pa in (a.to_peer_addr() for a in self.relay_addrs()) if pa is not None]

    # ------------------------------------------------------------------ requester side
    async def connect(self, target: Any, *, timeout: Optional[float] = None) -> Session:
        """An open session to a node behind a relay (reused when one is live).

        ``target``: a :class:`RelayAddr`, a ``relay+tcp://`` URL, or a v0.1 PeerAddr that may point
        through a relay (its ``pubkey_hint`` is the node's key; tried as a direct address first)."""
        timeout = self.timeout if timeout is None else timeout
        pool = self.endpoint.pool
        async with asyncio.timeout(timeout):
            if isinstance(target, str) and is_relay_url(target):
                target = parse_relay_url(target)
            if isinstance(target, PeerAddr):
                if target.pubkey_hint is None:
                    raise RelayError("a relayed PeerAddr needs the node key (pubkey_hint)")
                live = pool.find(target.pubkey_hint)
                if live is not None:
                    return live
                sess = await pool.session(to_url(target).with_pubkey(None))
                if sess.remote_pubkey == target.pubkey_hint:
                    return sess  # a direct address after all
                if not sess.remote_capabilities.relay:
                    raise RelayError(f"{to_url(target)} is neither the node nor a relay")
                target = RelayAddr(to_url(target).with_pubkey(sess.remote_pubkey), _slot_for(target.pubkey_hint),
                                   target.pubkey_hint)  # fmt: skip
            if not isinstance(target, RelayAddr):
                raise TypeError(f"not a relay target: {target!r}")
            live = pool.find(target.node_pubkey)
            if live is not None:
                return live
            relay = await pool.session(target.relay)
            try:
                await relay.request(RelayConnect(target.slot_id), timeout=timeout)
            except RemoteError as exc:
                raise RelayRefused(exc.reason) from None
            session = self._open_tunnel(relay, target.slot_id, self._alloc_sid(relay), initiator=True,
                                        expected=target.node_pubkey)  # fmt: skip
            try:
                await asyncio.shield(session.ready)
            except BaseException:
                session.abort("relayed handshake failed")
                raise
            return session

    def _alloc_sid(self, relay: Any) -> int:
        sid = self._next_sid.get(relay, 1)
        while any(k[0] is relay and k[2] == sid for k in self._tunnels):
            sid = sid % 0xFFFFFFFF + 1
        self._next_sid[relay] = sid % 0xFFFFFFFF + 1
        return sid

    def _open_tunnel(self, relay: Any, slot_id: int, sid: int, *, initiator: bool, expected: Optional[bytes] = None) -> Session:
        if len(self._tunnels) >= self.max_tunnels:
            raise RelayError(f"too many relayed sessions ({self.max_tunnels})")
        kw = {} if self.segment is None else {"segment": self.segment}
        tunnel = Tunnel(relay, slot_id, sid, timeout=max(self.timeout, 30.0), on_done=self._tunnel_done,
                        spawn=self._spawn, **kw)  # fmt: skip
        session = Session(self.endpoint.local, tunnel, initiator=initiator, transport="relay",
                          remote_addr=tuple(relay.remote_addr), expected_pubkey=expected)  # fmt: skip
        tunnel.attach(session)
        self._tunnels[tunnel.key] = tunnel
        if relay not in self._watched:
            self._watched.add(relay)
            relay.closed.add_done_callback(lambda _f, r=relay: self._relay_gone(r))
        session.start()
        return session

    def _tunnel_done(self, tunnel: Tunnel) -> None:
        if self._tunnels.get(tunnel.key) is tunnel:
            del self._tunnels[tunnel.key]

    def _relay_gone(self, relay: Any) -> None:
        self._watched.discard(relay)
        self._next_sid.pop(relay, None)
        for t in [t for k, t in self._tunnels.items() if k[0] is relay]:
            t.relay_lost(f"relay session ended: {relay.close_reason}")

    def tunnels(self) -> list[Tunnel]:
        return list(self._tunnels.values())

    # ------------------------------------------------------------------ RELAY_STREAM
    async def _on_stream(self, ctx: Any, msg: RelayStream) -> RelayStream:
        ack = RelayStream(msg.relay_slot_id, msg.stream_id, msg.kind, b"")
        t = self._tunnels.get((ctx.session, msg.relay_slot_id, msg.stream_id))
        if t is not None:
            await t.deliver(msg.payload)
            return ack
        if self.client.owns(ctx.session, msg.relay_slot_id):
            if not msg.payload:
                return ack
            try:
                session = self._open_tunnel(ctx.session, msg.relay_slot_id, msg.stream_id, initiator=False)
            except RelayError as exc:
                raise RemoteError(str(exc)) from None
            await self._tunnels[(ctx.session, msg.relay_slot_id, msg.stream_id)].deliver(msg.payload)
            del session
            return ack
        if self.server is not None:
            return await self.server.on_stream(ctx, msg)
        if not msg.payload:
            return ack
        raise RemoteError("not a relay, and no such relayed stream")


def _slot_for(pubkey: bytes) -> int:
    from .slots import slot_id_for

    return slot_id_for(pubkey)


async def attach_relay(node: Any, *, relays: Iterable[Any] = (), policy: Optional[RelayPolicy] = None,
                       register: Optional[bool] = None, want: int = 1, **kw: Any) -> RelayService:  # fmt: skip
    """Start the relay pieces on a running :class:`~scp2p.node.Node`: the relay role when
    ``node.config.relay``, registrations when the node has no listener (or ``register=True``)."""
    svc = RelayService(node.endpoint, store=node.store, serve=bool(node.config.relay), policy=policy,
                       relays=relays, register=register, want=want, **kw)  # fmt: skip
    return await svc.start()


__all__ = ["RelayService", "attach_relay"]
