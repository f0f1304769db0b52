"""The :class:`~scp2p.dht.service.DhtLink` over the transport's ``Endpoint`` / ``SessionPool``.

``EndpointLink(endpoint)`` needs only ``endpoint.pool.request(peer, message, timeout=...)``,
``endpoint.pool.session(peer)`` (a session with ``remote_pubkey`` and ``request``) and
``endpoint.pool.send(peer, message)``. A peer with a ``pubkey_hint`` is verified by the
handshake against that key; for an address-only peer (a seed given as ``host:port``) the
session's verified key is returned.
"""

from __future__ import annotations

import asyncio
from typing import Any

from ..wire.records import PeerAddr

__all__ = ["EndpointLink", "invite_peer_addrs", "make_service"]


class EndpointLink:
    def __init__(self, endpoint: Any) -> None:
        self.endpoint = endpoint

    async def request(self, peer: PeerAddr, message: Any, timeout: float) -> tuple[bytes, Any]:
        pool = self.endpoint.pool
        if peer.pubkey_hint is not None:
            return peer.pubkey_hint, await pool.request(peer, message, timeout=timeout)
        async with asyncio.timeout(timeout):
            session = await pool.session(peer)
            return session.remote_pubkey, await session.request(message, timeout=timeout)

    async def send(self, peer: PeerAddr, message: Any) -> None:
        await self.endpoint.pool.send(peer, message)


def make_service(endpoint: Any, **kwargs: Any):
    """A :class:`~scp2p.dht.service.DhtService` for a started ``Endpoint``: its key, its first
    v0.1 address as ours, its dispatcher serving the DHT and PEX messages."""
    from .service import DhtService

    addrs = endpoint.peer_addrs()
    svc = DhtService(endpoint.key.public_key, EndpointLink(endpoint), self_addr=addrs[0] if addrs else None, **kwargs)
    svc.register(endpoint.dispatcher)
    return svc


def invite_peer_addrs(invite: Any) -> list[PeerAddr]:
    """Bootstrap addresses from an invite link's peers (``scp2p.catalog.invite.Invite``).

    ``tcp`` and ``quic`` peers with an IP address become :class:`PeerAddr` (with the node key
    when the link gives it); ``tls://`` peers and host names cannot be a v0.1 ``PeerAddr``
    and are skipped (dial those by URL through the transport)."""
    import ipaddress

    from ..wire.records import Transport

    out = []
    for p in invite.peers:
        if p.transport not in ("tcp", "quic"):
            continue
        try:
            ip = ipaddress.ip_address(p.host.strip("[]"))
        except ValueError:
            continue
        out.append(PeerAddr(ip, p.port, Transport(p.transport), p.node_pubkey))
    return out
