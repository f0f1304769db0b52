"""Provider discovery and announcement.

Where providers of a content id come from (PROTOCOL.md section 8):

* **announcements we received** - HAVE_CONTENT and PROVIDERS messages recorded by
  our :class:`~scp2p.transfer.server.ChunkServer` in its :class:`ProviderBook`;
* **connected peers** - every open session is asked with a PROVIDERS query (our
  extension: PROVIDERS with a req_id, answered by a PROVIDERS response listing the
  providers the peer knows, itself first if it holds the content). A v0.1 peer
  answers it with an error response, which costs one round trip and nothing else;
* **the DHT** - the ``content:prov:`` hint (FIND_VALUE, validated by the DHT service);
* **PEX-learned peers** - any callables returning PeerAddrs (the node passes the DHT's
  PEX hearsay); at most ``max_probe`` of them are asked per round with PROVIDERS.

:meth:`ProviderDiscovery.run` repeats the rounds every ``refresh`` seconds while a
download runs (and at once when an announcement for the content arrives), handing each
new provider to a callback. :func:`announce` publishes us as a provider after a
download completes: HAVE_CONTENT to connected peers and our addresses merged into the
DHT hint.
"""

from __future__ import annotations

import asyncio
import logging
import time
from typing import Any, Callable, Iterable, Optional, Sequence

from ..errors import DecodeError, RemoteError, Scp2pError, TransportError
from ..identity import content_prov_key
from ..limits import MAX_PEX_PEERS
from ..transport.urls import parse_url
from ..wire import codec
from ..wire.messages import HaveContent, MsgType, decode_payload, encode_payload
from ..wire.records import PeerAddr, Providers

log = logging.getLogger(__name__)

__all__ = ["ProviderDiscovery", "announce", "provider_key"]


def provider_key(spec: Any) -> Any:
    """A stable scheduler key for a provider spec (Session, PeerAddr or URL)."""
    pk = getattr(spec, "remote_pubkey", None) if hasattr(spec, "request_raw") else None
    if pk is None and isinstance(spec, PeerAddr):
        pk = spec.pubkey_hint
        if pk is None:
            return ("addr", str(spec.ip), spec.port, spec.transport.value)
    if pk is None and isinstance(spec, str):
        try:
            pk = parse_url(spec).pubkey
        except (ValueError, Scp2pError):
            pk = None
    if pk is None:
        return ("url", str(spec))
    return bytes(pk)


async def query_providers(session: Any, content_id: bytes, timeout: float) -> list[PeerAddr]:
    """Ask one session for the providers it knows of ``content_id`` (empty on any failure)."""
    payload = encode_payload(Providers(content_id, (), int(time.time())))
    try:
        env = await session.request_raw(MsgType.PROVIDERS, payload, timeout=timeout)
    except (TransportError, OSError) as exc:
        log.debug("PROVIDERS query to %r failed: %s", session, exc)
        return []
    if env.is_error or not env.is_response or env.type != MsgType.PROVIDERS:
        return []
    try:
        msg = decode_payload(MsgType.PROVIDERS, env.payload, True)
    except DecodeError:
        return []
    if bytes(msg.content_id) != content_id:
        return []
    return list(msg.providers[:MAX_PEX_PEERS])


class ProviderDiscovery:
    """Finds providers of one content id from announcements, connected peers, the DHT and PEX."""

    def __init__(
        self,
        pool: Any,
        content_id: bytes,
        *,
        book: Any = None,
        dht: Any = None,
        peer_sources: Sequence[Callable[[], Iterable[PeerAddr]]] = (),
        self_pubkey: Optional[bytes] = None,
        refresh: float = 30.0,
        query_timeout: float = 5.0,
        max_probe: int = 16,
    ) -> None:
        self.pool = pool
        self.content_id = bytes(content_id)
        self.book = book
        self.dht = dht
        self.peer_sources = list(peer_sources)
        self.self_pubkey = self_pubkey
        self.refresh = refresh
        self.query_timeout = query_timeout
        self.max_probe = max_probe
        self._seen: set = set()
        self._probed: set = set()
        self.rounds = 0

    def _session_of(self, pubkey: Optional[bytes]) -> Any:
        return self.pool.find(pubkey) if pubkey is not None else None

    async def find(self) -> list:
        """One discovery round: provider specs (open Sessions or PeerAddrs) not returned before."""
        self.rounds += 1
        found: list = []

        def take(spec: Any) -> None:
            k = provider_key(spec)
            if k == self.self_pubkey or k in self._seen:
                return
            self._seen.add(k)
            found.append(spec)

        # 1. announcements received
        if self.book is not None:
            for pk, addr in self.book.get(self.content_id):
                s = self._session_of(pk if isinstance(pk, bytes) and len(pk) == 32 else None)
                if s is not None:
                    take(s)
                elif addr is not None:
                    take(addr)
        # 2. connected peers (PROVIDERS query)
        sessions = [s for s in self.pool.sessions if s.is_open]
        answers = await asyncio.gather(*(query_providers(s, self.content_id, self.query_timeout) for s in sessions))
        for s, addrs in zip(sessions, answers):
            for a in addrs:
                if a.pubkey_hint is not None and a.pubkey_hint == s.remote_pubkey:
                    take(s)  # the peer itself: use the session we have
                else:
                    take(a)
        # 3. the DHT hint
        if self.dht is not None:
            try:
                value = await self.dht.find_value(content_prov_key(self.content_id))
            except Scp2pError as exc:
                log.debug("DHT provider lookup failed: %s", exc)
                value = None
            if value is not None:
                try:
                    hint = codec.decode(Providers, value.value)
                    for a in hint.providers:
                        take(a)
                except DecodeError as exc:
                    log.debug("bad provider hint: %s", exc)
        # 4. PEX-learned peers: ask a few we have not asked yet
        probe: list[PeerAddr] = []
        for src in self.peer_sources:
            for a in src():
                k = provider_key(a)
                if k not in self._probed and k != self.self_pubkey and len(probe) < self.max_probe:
                    self._probed.add(k)
                    probe.append(a)
        if probe:
            answers = await asyncio.gather(*(self._probe(a) for a in probe))
            for addrs in answers:
                for a in addrs:
                    take(a)
        return found

    async def _probe(self, addr: PeerAddr) -> list[PeerAddr]:
        try:
            async with asyncio.timeout(self.query_timeout):
                s = await self.pool.session(addr)
        except (TimeoutError, TransportError, OSError, Scp2pError):
            return []
        return await query_providers(s, self.content_id, self.query_timeout)

    def forget(self, spec: Any) -> None:
        """Let a provider be found again (after it was dropped)."""
        self._seen.discard(provider_key(spec))

    async def run(self, on_found: Callable[[Any], None]) -> None:
        """Discovery rounds every ``refresh`` seconds (or when an announcement arrives) until cancelled."""
        watch = self.book.watch(self.content_id) if self.book is not None else None
        try:
            while True:
                for spec in await self.find():
                    on_found(spec)
                if watch is None:
                    await asyncio.sleep(self.refresh)
                    continue
                try:
                    async with asyncio.timeout(self.refresh):
                        await watch.wait()
                except TimeoutError:
                    pass
                watch.clear()
        finally:
            if watch is not None:
                self.book.unwatch(watch)


async def announce(
    pool: Any,
    content_id: bytes,
    self_addrs: Sequence[PeerAddr],
    *,
    dht: Any = None,
    ttl: Optional[int] = None,
    timeout: float = 5.0,
) -> int:
    """Tell connected peers (HAVE_CONTENT) and the DHT (``content:prov`` hint) that we hold the
    content. Returns how many peers were told."""
    told = 0
    for s in [s for s in pool.sessions if s.is_open]:
        try:
            await s.send(HaveContent(bytes(content_id)), timeout=timeout)
            told += 1
        except (TransportError, OSError) as exc:
            log.debug("HAVE_CONTENT to %r failed: %s", s, exc)
    if dht is not None and self_addrs:
        hint = codec.encode(Providers(bytes(content_id), tuple(self_addrs)[:MAX_PEX_PEERS], int(time.time())))
        try:
            kw = {} if ttl is None else {"ttl": ttl}
            await dht.publish(content_prov_key(content_id), hint, **kw)
        except (Scp2pError, RemoteError) as exc:
            log.info("could not publish the provider hint: %s", exc)
    return told
