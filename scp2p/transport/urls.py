"""Listener/peer URLs (``tcp://``, ``tls://``, ``quic://``) and the dial policy.

``tcp://127.0.0.1:7001``, ``tls://[::1]:7002``, ``quic://127.0.0.1:7003``; an
optional ``?pubkey=<64 hex>`` names the node key expected there. A v0.1
``PeerAddr`` converts both ways for ``tcp`` and ``quic``; TLS exists only as a
URL (v0.1 ``PeerAddr.transport`` cannot say ``tls``, so it is never emitted
there; see docs/transport.md). The dial policy tries QUIC, then TLS, then TCP.
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass
from typing import Iterable, Optional, Sequence, Union
from urllib.parse import parse_qs, urlsplit

from ..limits import PUBKEY_LEN
from ..wire.records import PeerAddr, Transport

SCHEMES = ("quic", "tls", "tcp")
#: dial preference, best first
DIAL_ORDER = {"quic": 0, "tls": 1, "tcp": 2}


@dataclass(frozen=True, slots=True)
class PeerURL:
    """A parsed transport URL."""

    scheme: str
    host: str
    port: int
    pubkey: Optional[bytes] = None

    def __post_init__(self) -> None:
        if self.scheme not in SCHEMES:
            raise ValueError(f"unknown transport scheme {self.scheme!r} (expected one of {', '.join(SCHEMES)})")
        if not 0 <= self.port <= 0xFFFF:
            raise ValueError(f"port {self.port} out of range")
        if self.pubkey is not None and len(self.pubkey) != PUBKEY_LEN:
            raise ValueError("pubkey must be 32 bytes")

    @property
    def address(self) -> tuple[str, int]:
        return (self.host, self.port)

    def with_port(self, port: int) -> "PeerURL":
        return PeerURL(self.scheme, self.host, port, self.pubkey)

    def with_pubkey(self, pubkey: Optional[bytes]) -> "PeerURL":
        return PeerURL(self.scheme, self.host, self.port, None if pubkey is None else bytes(pubkey))

    def __str__(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        q = f"?pubkey={self.pubkey.hex()}" if self.pubkey is not None else ""
        return f"{self.scheme}://{host}:{self.port}{q}"

    def to_peer_addr(self) -> Optional[PeerAddr]:
        """The v0.1 PeerAddr for this URL; None for ``tls`` (v0.1 has no way to say it)."""
        if self.scheme == "tls":
            return None
        return PeerAddr(ipaddress.ip_address(self.host), self.port, Transport(self.scheme), self.pubkey)


def parse_url(url: str) -> PeerURL:
    """Parse ``scheme://host:port[?pubkey=hex]``; raises ValueError on anything else."""
    parts = urlsplit(url)
    if parts.scheme not in SCHEMES:
        raise ValueError(f"unknown transport scheme in {url!r} (expected one of {', '.join(SCHEMES)})")
    if parts.hostname is None or parts.port is None:
        raise ValueError(f"{url!r} needs a host and a port")
    if parts.path not in ("", "/") or parts.fragment:
        raise ValueError(f"{url!r} has a path or fragment")
    pubkey = None
    if parts.query:
        q = parse_qs(parts.query, strict_parsing=True)
        if set(q) != {"pubkey"} or len(q["pubkey"]) != 1:
            raise ValueError(f"{url!r}: the only query parameter is pubkey")
        pubkey = bytes.fromhex(q["pubkey"][0])
    return PeerURL(parts.scheme, parts.hostname, parts.port, pubkey)


def from_peer_addr(addr: PeerAddr) -> PeerURL:
    return PeerURL(str(addr.transport), str(addr.ip), addr.port, addr.pubkey_hint)


PeerLike = Union[PeerAddr, PeerURL, str]


def to_url(peer: PeerLike) -> PeerURL:
    if isinstance(peer, PeerURL):
        return peer
    if isinstance(peer, PeerAddr):
        return from_peer_addr(peer)
    if isinstance(peer, str):
        return parse_url(peer)
    raise TypeError(f"not a peer address: {peer!r}")


def dial_order(candidates: Iterable[PeerLike]) -> list[PeerURL]:
    """Candidates as URLs, QUIC first, then TLS, then TCP (stable within a transport)."""
    urls = [to_url(c) for c in candidates]
    return sorted(urls, key=lambda u: DIAL_ORDER[u.scheme])


def peer_addrs_for_v01(urls: Sequence[PeerURL]) -> list[PeerAddr]:
    """What may be advertised to v0.1 peers: tcp and quic listeners only (never tls)."""
    out = []
    for u in urls:
        pa = u.to_peer_addr()
        if pa is not None:
            out.append(pa)
    return out


__all__ = [
    "DIAL_ORDER", "PeerLike", "PeerURL", "SCHEMES", "dial_order", "from_peer_addr", "parse_url",
    "peer_addrs_for_v01", "to_url",
]  # fmt: skip
