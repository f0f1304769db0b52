"""Per-peer token buckets (sans-I/O: time is an argument).

Each (peer, kind) pair has a bucket of ``burst`` tokens refilled at ``rate`` per
second; a request takes ``cost`` tokens or is refused. Kinds used by the DHT:
``"request"`` (FIND_NODE, FIND_VALUE, PEX_REQUEST) and ``"store"`` (STORE). Memory is
bounded: at most ``max_peers`` peers are tracked; the least recently used idle
peer is forgotten first (a forgotten peer starts again with a full bucket, which
is no more than a fresh identity would get).
"""

from __future__ import annotations

from collections import OrderedDict
from dataclasses import dataclass
from typing import Hashable, Mapping

__all__ = ["TokenBucket", "RateLimiter", "Rate", "DEFAULT_RATES"]


@dataclass(frozen=True, slots=True)
class Rate:
    """``rate`` tokens per second, at most ``burst`` saved up."""

    rate: float
    burst: float


#: defaults: lookups are cheap, stores cost storage
DEFAULT_RATES: Mapping[str, Rate] = {"request": Rate(20.0, 100.0), "store": Rate(10.0, 200.0)}


class TokenBucket:
    __slots__ = ("rate", "burst", "tokens", "stamp")

    def __init__(self, rate: float, burst: float, now: float) -> None:
        self.rate = rate
        self.burst = burst
        self.tokens = burst
        self.stamp = now

    def take(self, now: float, cost: float = 1.0) -> bool:
        if now > self.stamp:
            self.tokens = min(self.burst, self.tokens + (now - self.stamp) * self.rate)
            self.stamp = now
        if self.tokens >= cost:
            self.tokens -= cost
            return True
        return False

    def retry_after(self, cost: float = 1.0) -> float:
        """Seconds until ``cost`` tokens are available (from the last ``take``)."""
        missing = cost - self.tokens
        return 0.0 if missing <= 0 else missing / self.rate if self.rate > 0 else float("inf")


class RateLimiter:
    """Token buckets per (peer, kind)."""

    def __init__(self, rates: Mapping[str, Rate] = DEFAULT_RATES, *, max_peers: int = 10_000) -> None:
        self.rates = dict(rates)
        self.max_peers = max_peers
        self._peers: "OrderedDict[Hashable, dict[str, TokenBucket]]" = OrderedDict()

    def allow(self, peer: Hashable, kind: str, now: float, cost: float = 1.0) -> bool:
        """Take ``cost`` tokens from ``peer``'s ``kind`` bucket; False means refuse the request."""
        rate = self.rates.get(kind)
        if rate is None:
            return True
        buckets = self._peers.get(peer)
        if buckets is None:
            buckets = self._peers[peer] = {}
            while len(self._peers) > self.max_peers:
                self._peers.popitem(last=False)
        else:
            self._peers.move_to_end(peer)
        b = buckets.get(kind)
        if b is None:
            b = buckets[kind] = TokenBucket(rate.rate, rate.burst, now)
        return b.take(now, cost)

    def __len__(self) -> int:
        return len(self._peers)
