"""``Endpoint``: listeners, the session pool and connection events for one node key.

::

    dispatcher = Dispatcher()
    dispatcher.register(MsgType.PEX_REQUEST, handle_pex)
    async with Endpoint(key, Capabilities.desktop(), ["tcp://127.0.0.1:0", "quic://127.0.0.1:0"],
                        dispatcher) as ep:
        print(ep.listen_addrs)                      # actual ports
        offer = await ep.pool.request("tcp://127.0.0.1:7001", PexRequest(16), timeout=5)
        async for ev in ep.events():                # PeerConnected / PeerDisconnected
            ...
"""

from __future__ import annotations

import asyncio
import logging
import time
from typing import Awaitable, Callable, Iterable, Optional, Sequence, Union

from ..errors import (
    Backpressure,
    ConnectFailed,
    HandshakeError,
    RequestTimeout,
    SessionClosed,
    TransportError,
)
from ..identity import NodeKey
from ..wire.records import Capabilities, PeerAddr
from .dispatch import Dispatcher
from .session import (
    LocalNode,
    PeerConnected,
    PeerDisconnected,
    Session,
    TransportConfig,
)
from .tcp import dial_stream, listen_stream
from .urls import PeerLike, PeerURL, dial_order, parse_url, peer_addrs_for_v01

log = logging.getLogger(__name__)

Event = Union[PeerConnected, PeerDisconnected]
PeerSpec = Union[PeerLike, Sequence[PeerLike]]


class _PeerSlots:
    """Per-peer cap on outstanding pool requests, with a bounded wait queue."""

    __slots__ = ("sem", "waiting")

    def __init__(self, n: int) -> None:
        self.sem = asyncio.Semaphore(n)
        self.waiting = 0


class SessionPool:
    """Sessions by peer: reuse, coalesced dials, redial after breakage, per-peer caps."""

    def __init__(self, endpoint: "Endpoint") -> None:
        self._ep = endpoint
        self._by_addr: dict[tuple, Session] = {}
        self._by_pubkey: dict[bytes, list[Session]] = {}
        self._dialing: dict[tuple, asyncio.Task] = {}
        self._slots: dict[object, _PeerSlots] = {}
        self._closed = False
        self.dials = 0
        #: tried when every direct dial failed: ``async (peer) -> Session`` (the node sets it to
        #: reach peers through relay slots); raise a TransportError if it cannot help either
        self.fallback: Optional[Callable[[PeerSpec], Awaitable[Session]]] = None

    # ------------------------------------------------------------------ bookkeeping
    def _register(self, session: Session) -> None:
        self._by_pubkey.setdefault(session.remote_pubkey, []).append(session)

    def _unregister(self, session: Session) -> None:
        lst = self._by_pubkey.get(session.result.remote_pubkey if session.result else b"", [])
        if session in lst:
            lst.remove(session)
            if not lst:
                self._by_pubkey.pop(session.remote_pubkey, None)
        for k, s in list(self._by_addr.items()):
            if s is session:
                del self._by_addr[k]

    @property
    def sessions(self) -> list[Session]:
        return [s for lst in self._by_pubkey.values() for s in lst]

    def find(self, pubkey: bytes) -> Optional[Session]:
        """A live session with the node holding ``pubkey`` (any direction, any transport)."""
        for s in self._by_pubkey.get(bytes(pubkey), ()):
            if s.is_open:
                return s
        return None

    def _lookup(self, urls: list[PeerURL]) -> Optional[Session]:
        for u in urls:
            if u.pubkey is not None:
                s = self.find(u.pubkey)
                if s is not None:
                    return s
            s = self._by_addr.get(_key(u))
            # an address reuses its session only for the key expected there (a relay's address
            # stands for every node it relays: a different expected key is a different peer)
            if s is not None and s.is_open and (u.pubkey is None or s.remote_pubkey == u.pubkey):
                return s
        return None

    # ------------------------------------------------------------------ sessions
    async def session(self, peer: PeerSpec) -> Session:
        """An open session to ``peer`` (a PeerAddr, URL, or several: tried QUIC > TLS > TCP)."""
        if self._closed:
            raise SessionClosed("endpoint closed")
        urls = dial_order(_candidates(peer))
        if not urls:
            raise ConnectFailed("no address to dial")
        s = self._lookup(urls)
        if s is not None:
            return s
        errors = []
        for u in urls:
            try:
                return await self._dial(u)
            except (TransportError, HandshakeError, OSError) as exc:
                errors.append(f"{u}: {exc}")
                log.debug("dial %s failed: %s", u, exc)
        if self.fallback is not None:  # e.g. the address is a relay slot for the expected key
            try:
                return await self.fallback(peer)
            except (TransportError, HandshakeError, OSError) as exc:
                errors.append(f"fallback: {exc}")
        raise ConnectFailed("; ".join(errors))

    async def _dial(self, url: PeerURL) -> Session:
        key = (*_key(url), url.pubkey)  # concurrent dials coalesce only when they expect the same key
        task = self._dialing.get(key)
        if task is None:
            task = asyncio.get_running_loop().create_task(self._do_dial(url))
            self._dialing[key] = task
            task.add_done_callback(lambda t, k=key: self._dial_done(k, t))
        return await asyncio.shield(task)

    def _dial_done(self, key: tuple, task: asyncio.Task) -> None:
        if self._dialing.get(key) is task:
            del self._dialing[key]
        if not task.cancelled():
            task.exception()  # retrieved by the awaiting callers; never "never retrieved"

    async def _do_dial(self, url: PeerURL) -> Session:
        self.dials += 1
        session = await self._ep._dial(url)
        if self._closed:
            session.abort("endpoint closed")
            raise SessionClosed("endpoint closed")
        self._by_addr[_key(url)] = session
        return session

    # ------------------------------------------------------------------ requests
    def _slots_for(self, peer: PeerSpec) -> _PeerSlots:
        urls = dial_order(_candidates(peer))
        pk = next((u.pubkey for u in urls if u.pubkey is not None), None)
        key = pk if pk is not None else _key(urls[0])
        slots = self._slots.get(key)
        if slots is None:
            slots = self._slots[key] = _PeerSlots(self._ep.config.max_requests_per_peer)
        return slots

    async def request(self, peer: PeerSpec, message, *, timeout: Optional[float] = None, msg_type: Optional[int] = None):
        """Send ``message`` to ``peer`` and return the typed response.

        Raises :class:`RemoteError` for an error response, :class:`RequestTimeout`
        when ``timeout`` (dial + queueing + response) runs out, :class:`ConnectFailed`,
        :class:`SessionClosed`, :class:`Backpressure` when too many requests to this
        peer are already waiting.
        """
        loop = asyncio.get_running_loop()
        timeout = self._ep.config.request_timeout if timeout is None else timeout
        deadline = loop.time() + timeout
        slots = self._slots_for(peer)
        if slots.sem.locked() and slots.waiting >= self._ep.config.max_queued_per_peer:
            raise Backpressure(f"{slots.waiting} requests already queued for this peer")
        try:
            async with asyncio.timeout_at(deadline):
                slots.waiting += 1
                try:
                    await slots.sem.acquire()
                finally:
                    slots.waiting -= 1
                try:
                    for attempt in (0, 1):
                        reused = self._lookup(dial_order(_candidates(peer))) is not None
                        s = await self.session(peer)
                        try:
                            return await s.request(message, timeout=max(0.0, deadline - loop.time()), msg_type=msg_type)
                        except SessionClosed:
                            if attempt or not reused:
                                raise
                            log.debug("reused session %r broke; redialling once", s)
                finally:
                    slots.sem.release()
        except TimeoutError:
            raise RequestTimeout(f"no response within {timeout} s") from None

    async def send(self, peer: PeerSpec, message, *, msg_type: Optional[int] = None, timeout: Optional[float] = None) -> None:
        """Fire-and-forget ``message`` (req_id 0) to ``peer``."""
        timeout = self._ep.config.request_timeout if timeout is None else timeout
        try:
            async with asyncio.timeout(timeout):
                s = await self.session(peer)
        except TimeoutError:
            raise RequestTimeout(f"could not reach the peer within {timeout} s") from None
        await s.send(message, msg_type=msg_type, timeout=timeout)

    async def close(self) -> None:
        self._closed = True
        for t in list(self._dialing.values()):
            t.cancel()
        if self._dialing:
            await asyncio.wait(list(self._dialing.values()), timeout=self._ep.config.close_timeout)


def _key(u: PeerURL) -> tuple:
    return (u.scheme, u.host, u.port)


def _candidates(peer: PeerSpec) -> list:
    if isinstance(peer, (PeerAddr, PeerURL, str)):
        return [peer]
    return list(peer)


class EventStream:
    """An async iterator over connection events (bounded; the oldest is dropped when full)."""

    def __init__(self, endpoint: "Endpoint", maxsize: int) -> None:
        self._ep = endpoint
        self._q: asyncio.Queue = asyncio.Queue(maxsize)
        self.dropped = 0

    def _put(self, ev) -> None:
        if self._q.full():
            self._q.get_nowait()
            self.dropped += 1
        self._q.put_nowait(ev)

    def __aiter__(self) -> "EventStream":
        return self

    async def __anext__(self):
        ev = await self._q.get()
        if ev is None:
            raise StopAsyncIteration
        return ev

    def close(self) -> None:
        self._ep._streams.discard(self)
        if self._q.full():
            self._q.get_nowait()
        self._q.put_nowait(None)


class Endpoint:
    """A node's transport: listeners (``tcp://``, ``tls://``, ``quic://`` URLs), a :class:`SessionPool`,
    the :class:`Dispatcher` serving incoming requests, and connection events."""

    def __init__(
        self,
        key: NodeKey,
        capabilities: Optional[Capabilities] = None,
        listen: Iterable[str] = (),
        dispatcher: Optional[Dispatcher] = None,
        config: Optional[TransportConfig] = None,
        *,
        wall_clock: Callable[[], float] = time.time,
    ) -> None:
        self.key = key
        self.capabilities = capabilities if capabilities is not None else Capabilities.desktop()
        self.dispatcher = dispatcher if dispatcher is not None else Dispatcher()
        self.config = config if config is not None else TransportConfig()
        self._listen = [parse_url(u) for u in listen]
        self.local = LocalNode(
            key, self.capabilities, self.dispatcher, self.config,
            on_open=self._on_open, on_closed=self._on_closed, wall_clock=wall_clock,
        )  # fmt: skip
        self.pool = SessionPool(self)
        self.listen_urls: list[PeerURL] = []
        self._servers: list = []
        self._sessions: set[Session] = set()
        self._inbound = 0
        self._streams: set[EventStream] = set()
        self._listeners: list[Callable[[Event], None]] = []
        self._cert = None
        self._tls_client = None
        self._started = False
        self._closed = False

    # ------------------------------------------------------------------ lifecycle
    async def __aenter__(self) -> "Endpoint":
        await self.start()
        return self

    async def __aexit__(self, *exc) -> None:
        await self.close()

    async def start(self) -> None:
        if self._started:
            return
        self._started = True
        try:
            for url in self._listen:
                await self._start_listener(url)
        except BaseException:
            await self.close()
            raise

    async def _start_listener(self, url: PeerURL) -> None:
        if url.scheme in ("tcp", "tls"):
            ctx = None
            if url.scheme == "tls":
                from .tls import server_context

                ctx = server_context(self.certificate)
            server = await listen_stream(
                self.local, url.host, url.port, scheme=url.scheme, on_session=self._accept, ssl_context=ctx
            )
            self._servers.append(server)
            port = server.sockets[0].getsockname()[1]
        else:
            from .quic import listen_quic

            server = await listen_quic(self.local, url.host, url.port, self.certificate, on_session=self._accept)
            self._servers.append(server)
            port = server.port
        self.listen_urls.append(PeerURL(url.scheme, url.host, port, self.key.public_key))

    @property
    def listen_addrs(self) -> list[str]:
        """The actual listener URLs (bound ports filled in), with ``?pubkey=``."""
        return [str(u) for u in self.listen_urls]

    def peer_addrs(self) -> list[PeerAddr]:
        """PeerAddrs to advertise to v0.1 peers: tcp and quic listeners (TLS is never a v0.1 PeerAddr)."""
        return peer_addrs_for_v01(self.listen_urls)

    @property
    def certificate(self):
        if self._cert is None:
            from .tls import make_self_signed

            self._cert = make_self_signed()
        return self._cert

    async def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        await self.pool.close()
        for s in self._servers:
            s.close()
        sessions = list(self._sessions)
        if sessions:
            await asyncio.gather(*(s.close() for s in sessions), return_exceptions=True)
        for s in self._servers:
            try:
                async with asyncio.timeout(self.config.close_timeout):
                    await s.wait_closed()
            except TimeoutError:  # pragma: no cover
                log.warning("listener did not close in time")
        for st in list(self._streams):
            st.close()

    # ------------------------------------------------------------------ sessions
    @property
    def sessions(self) -> list[Session]:
        return list(self._sessions)

    def _accept(self, session: Session) -> bool:
        if self._closed or self._inbound >= self.config.max_inbound_sessions:
            return False
        self._inbound += 1
        self._sessions.add(session)
        session.closed.add_done_callback(lambda _f, s=session: self._inbound_done(s))
        return True

    def _inbound_done(self, session: Session) -> None:
        self._inbound -= 1
        self._sessions.discard(session)

    async def _dial(self, url: PeerURL) -> Session:
        if url.scheme in ("tcp", "tls"):
            ctx = None
            if url.scheme == "tls":
                if self._tls_client is None:
                    from .tls import client_context

                    self._tls_client = client_context()
                ctx = self._tls_client
            session = await dial_stream(
                self.local, url.host, url.port, scheme=url.scheme, ssl_context=ctx, expected_pubkey=url.pubkey
            )
        else:
            from .quic import dial_quic

            session = await dial_quic(self.local, url.host, url.port, expected_pubkey=url.pubkey)
        self._sessions.add(session)
        session.closed.add_done_callback(lambda _f, s=session: self._sessions.discard(s))
        return session

    # ------------------------------------------------------------------ events
    def _on_open(self, session: Session) -> None:
        self.pool._register(session)
        r = session.result
        self._emit(
            PeerConnected(
                session, r.remote_node_id, r.remote_pubkey, session.remote_addr,
                r.remote_capabilities, session.transport, session.initiator,
            )  # fmt: skip
        )

    def _on_closed(self, session: Session, reason: str) -> None:
        self.pool._unregister(session)
        r = session.result
        self._emit(
            PeerDisconnected(
                session, r.remote_node_id, r.remote_pubkey, session.remote_addr, session.transport, reason,
                r.remote_capabilities,
            )  # fmt: skip
        )

    def _emit(self, ev: Event) -> None:
        for cb in list(self._listeners):
            try:
                cb(ev)
            except Exception:  # noqa: BLE001 - a listener bug must not break the transport
                log.exception("connection event listener failed")
        for st in list(self._streams):
            st._put(ev)

    def add_listener(self, callback: Callable[[Event], None]) -> None:
        """Call ``callback(event)`` for every PeerConnected / PeerDisconnected (must not block)."""
        self._listeners.append(callback)

    def remove_listener(self, callback: Callable[[Event], None]) -> None:
        self._listeners.remove(callback)

    def events(self, maxsize: int = 1024) -> EventStream:
        """An async iterator of connection events from now on; ends when the endpoint closes."""
        st = EventStream(self, maxsize)
        self._streams.add(st)
        return st


__all__ = ["Endpoint", "EventStream", "SessionPool"]
