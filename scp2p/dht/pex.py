"""Peer exchange (sans-I/O): which peers to offer, which offered peers to accept.

**Address policy.** Every IP falls in one scope:

* ``LOOPBACK`` - 127.0.0.0/8, ::1;
* ``PRIVATE``  - RFC 1918, 100.64.0.0/10 (CGNAT), 169.254.0.0/16 and fe80::/10
  (link-local), fc00::/7 (ULA), and IPv4-mapped forms of these;
* ``PUBLIC``   - any other global unicast address;
* ``INVALID``  - unspecified (0.0.0.0, ::), multicast, broadcast, reserved,
  documentation ranges - never offered, never accepted; nor is port 0.

An address is offered to a requester, and accepted from an offerer, only when the
other side is on the same kind of network or a more local one: public addresses
go to anyone; private addresses only to (and from) peers that reach us over a
private or loopback address; loopback addresses only to (and from) loopback
peers. So a peer on the internet never learns our LAN or localhost peers, and can
never make us dial into our own LAN or localhost.

**Offers** (PEX_REQUEST -> PEX_OFFER): at most ``min(max_peers, 64)`` peers, drawn at
random from the peers we *ourselves* reached within the last 24 h (``PEX_MAX_AGE``),
never the requester itself.

**Merging** offered peers (freshness rules, see :mod:`scp2p.dht.peerdb`): an offer is
hearsay. New addresses are recorded as never seen (``last_seen`` 0, so they are not
offered on until we reach them ourselves); an offer never changes what we know of
an address already in the database (its node key, times, failures or score).
"""

from __future__ import annotations

import enum
import ipaddress
import random
from typing import Iterable, Optional, Sequence

from ..limits import MAX_PEX_PEERS, PEX_MAX_AGE
from ..wire.records import PeerAddr

__all__ = ["Scope", "scope", "may_share", "select_offer", "filter_offer"]


class Scope(enum.IntEnum):
    """Ordered from most to least local (INVALID last)."""

    LOOPBACK = 0
    PRIVATE = 1
    PUBLIC = 2
    INVALID = 3


_CGNAT = ipaddress.ip_network("100.64.0.0/10")


def scope(ip) -> Scope:
    """The scope of an IP address (an ``ipaddress`` object or text)."""
    if not isinstance(ip, (ipaddress.IPv4Address, ipaddress.IPv6Address)):
        try:
            ip = ipaddress.ip_address(ip)
        except ValueError:
            return Scope.INVALID
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        ip = ip.ipv4_mapped
    if ip.is_loopback:
        return Scope.LOOPBACK
    if ip.is_unspecified or ip.is_multicast or ip.is_reserved:
        return Scope.INVALID
    if isinstance(ip, ipaddress.IPv4Address) and ip == ipaddress.IPv4Address("255.255.255.255"):
        return Scope.INVALID
    if ip.is_link_local or (isinstance(ip, ipaddress.IPv4Address) and ip in _CGNAT):
        return Scope.PRIVATE
    if ip.is_private:
        # is_private also covers documentation / benchmarking ranges: treat those as invalid
        if isinstance(ip, ipaddress.IPv4Address):
            if any(ip in ipaddress.ip_network(n) for n in ("192.0.2.0/24", "198.51.100.0/24", "203.0.113.0/24", "198.18.0.0/15", "192.0.0.0/24")):
                return Scope.INVALID
        elif ip in ipaddress.ip_network("2001:db8::/32"):
            return Scope.INVALID
        return Scope.PRIVATE
    if not ip.is_global:
        return Scope.INVALID
    return Scope.PUBLIC


def may_share(addr_scope: Scope, other_scope: Scope) -> bool:
    """May an address of ``addr_scope`` travel to/from a peer that reaches us at ``other_scope``?"""
    if addr_scope is Scope.INVALID or other_scope is Scope.INVALID:
        return False
    return addr_scope >= other_scope


def _same(a: PeerAddr, b: PeerAddr) -> bool:
    return a.ip == b.ip and a.port == b.port and a.transport == b.transport


def select_offer(
    candidates: Iterable[tuple[PeerAddr, int]],
    *,
    requester_ip,
    now: int,
    max_peers: int = MAX_PEX_PEERS,
    rng: Optional[random.Random] = None,
    requester_pubkey: Optional[bytes] = None,
) -> tuple[PeerAddr, ...]:
    """Pick the PEX_OFFER for a requester from ``(addr, last_seen)`` candidates."""
    limit = max(0, min(int(max_peers), MAX_PEX_PEERS))
    if limit == 0:
        return ()
    req_scope = scope(requester_ip)
    cutoff = now - PEX_MAX_AGE
    pool: list[PeerAddr] = []
    seen: set[tuple] = set()
    for addr, last_seen in candidates:
        if last_seen < cutoff or last_seen <= 0 or addr.port == 0:
            continue
        if requester_pubkey is not None and addr.pubkey_hint == requester_pubkey:
            continue
        ident = (addr.ip, addr.port, addr.transport)
        if ident in seen or not may_share(scope(addr.ip), req_scope):
            continue
        seen.add(ident)
        pool.append(addr)
    rng = rng or random.SystemRandom()
    if len(pool) <= limit:
        rng.shuffle(pool)
        return tuple(pool)
    return tuple(rng.sample(pool, limit))


def filter_offer(
    peers: Sequence[PeerAddr],
    *,
    offerer_ip,
    self_pubkey: Optional[bytes] = None,
    self_addrs: Iterable[PeerAddr] = (),
    limit: int = MAX_PEX_PEERS,
) -> list[PeerAddr]:
    """The acceptable part of an offer: at most ``limit`` valid, de-duplicated addresses, not ours."""
    off_scope = scope(offerer_ip)
    mine = list(self_addrs)
    out: list[PeerAddr] = []
    seen: set[tuple] = set()
    for p in peers[: max(limit, 0) * 4]:  # never look at more than a bounded prefix
        if len(out) >= limit:
            break
        if p.port == 0 or not may_share(scope(p.ip), off_scope):
            continue
        if self_pubkey is not None and p.pubkey_hint == self_pubkey:
            continue
        if any(_same(p, m) for m in mine):
            continue
        ident = (p.ip, p.port, p.transport)
        if ident in seen:
            continue
        seen.add(ident)
        out.append(p)
    return out
