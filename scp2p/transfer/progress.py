"""Progress events, rate meters and bandwidth buckets (sans-I/O: ``now`` is an argument)."""

from __future__ import annotations

import math
from collections import deque
from dataclasses import dataclass, field
from typing import Hashable, Mapping, Optional

__all__ = ["Bandwidth", "ProviderProgress", "Progress", "RateMeter"]


class RateMeter:
    """Bytes per second over a sliding window of ``window`` seconds.

    Before a full window has passed the rate is taken over the time since the first
    sample (at least ``min_span``), so a new meter is not stuck near zero.
    """

    __slots__ = ("window", "min_span", "_samples", "_bytes", "_first", "total")

    def __init__(self, window: float = 2.0, min_span: float = 0.05) -> None:
        self.window = window
        self.min_span = min_span
        self._samples: deque = deque()
        self._bytes = 0
        self._first: Optional[float] = None
        self.total = 0

    def add(self, nbytes: int, now: float) -> None:
        if self._first is None:
            self._first = now
        self._samples.append((now, nbytes))
        self._bytes += nbytes
        self.total += nbytes
        self._trim(now)

    def start(self, now: float) -> None:
        """Start measuring at ``now`` (the time a request was first issued)."""
        if self._first is None:
            self._first = now

    def _trim(self, now: float) -> None:
        cut = now - self.window
        s = self._samples
        while s and s[0][0] < cut:
            self._bytes -= s.popleft()[1]

    def rate(self, now: float) -> float:
        if self._first is None:
            return 0.0
        self._trim(now)
        span = max(self.min_span, min(self.window, now - self._first))
        return self._bytes / span


class Bandwidth:
    """A token bucket of bytes: ``rate`` bytes/s, ``burst`` bytes saved up. ``rate`` None = unlimited."""

    __slots__ = ("rate", "burst", "tokens", "stamp")

    def __init__(self, rate: Optional[float], burst: Optional[float] = None, now: float = 0.0) -> None:
        self.rate = rate
        self.burst = burst if burst is not None else (rate if rate else 0.0)
        self.tokens = self.burst
        self.stamp = now

    @property
    def unlimited(self) -> bool:
        return not self.rate

    def _refill(self, now: float) -> None:
        if now > self.stamp:
            self.tokens = min(self.burst, self.tokens + (now - self.stamp) * self.rate)
            self.stamp = now

    def take(self, nbytes: int, now: float) -> bool:
        """Take ``nbytes`` if the bucket holds them (a request larger than ``burst`` needs a full bucket)."""
        if self.unlimited:
            return True
        self._refill(now)
        need = min(nbytes, self.burst)
        if self.tokens >= need:
            self.tokens -= nbytes  # may go negative for an over-burst request: the debt is paid by waiting
            return True
        return False

    def ready_at(self, nbytes: int, now: float) -> float:
        """When ``take(nbytes)`` will succeed (``now`` if it would now)."""
        if self.unlimited:
            return now
        self._refill(now)
        need = min(nbytes, self.burst)
        missing = need - self.tokens
        return now if missing <= 0 else now + missing / self.rate


@dataclass(frozen=True, slots=True)
class ProviderProgress:
    """One provider's share of a download."""

    bytes: int
    rate: float
    in_flight: int
    depth: int
    bad_chunks: int
    failures: int
    banned: bool


@dataclass(frozen=True, slots=True)
class Progress:
    """A progress event: verified bytes, overall rate (bytes/s), ETA (s, None if unknown), per provider."""

    content_id: bytes
    done_bytes: int
    total_bytes: int
    done_chunks: int
    total_chunks: int
    rate: float
    eta: Optional[float]
    providers: Mapping[Hashable, ProviderProgress] = field(default_factory=dict)

    @property
    def fraction(self) -> float:
        return 1.0 if self.total_bytes == 0 else self.done_bytes / self.total_bytes

    @property
    def complete(self) -> bool:
        return self.done_chunks == self.total_chunks


def eta(remaining: int, rate: float) -> Optional[float]:
    if remaining <= 0:
        return 0.0
    if rate <= 0 or math.isnan(rate):
        return None
    return remaining / rate
