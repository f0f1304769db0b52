"""The swarm scheduler, sans-I/O: which chunk to ask of which provider, and when.

No sockets, no clock, no hashing: the driver reports what happened (``now`` in)
and asks what to do next (requests and the next deadline out)::

    s = Scheduler(chunk_sizes, config)
    s.add_provider("a", now)
    for req in s.poll(now):                 # Request(provider, index, deadline)
        send GET_CHUNK ...
    # when a CHUNK_DATA arrives:
    if s.received(p, index, now):           # still wanted? then verify it
        s.chunk_verified(p, index, n, now)  # or s.chunk_bad(p, index, now)
    # a transport error / remote error / connection loss:
    s.request_failed(p, index, now)         # or s.remove_provider(p, now)
    # timers:
    s.handle_timer(now) -> [Cancel(...)]    # timed-out requests (their tasks should stop)
    s.deadline()                            # when to call handle_timer / poll next

Policies (all in :class:`SchedulerConfig`):

* **pipeline depth per provider** - additive increase (+1 per verified chunk from
  ``initial_depth``), halved on a failure, and capped by the measured rate: a
  provider never holds more than ``queue_time`` seconds of its own throughput
  (at least 2 requests), so a slow provider cannot sit on many chunks;
* **chunk choice** - chunks that failed elsewhere first, then in file order (which
  keeps the writer's in-order whole-file hash running from memory); with
  ``rarest_first`` and providers that announce partial availability the rarest
  wanted chunk; **endgame** - when every missing chunk is in flight, an idle
  provider re-requests the oldest in-flight chunks (at most ``endgame_copies``
  copies each), so a stalled or slow provider cannot hold back the end;
* **verification outcomes** - a bad chunk is never asked of that provider again,
  and after ``ban_after_bad`` bad chunks the provider is banned (its requests
  are cancelled and re-queued);
* **timeouts and backoff** - a request times out after ``timeout_factor`` x
  the provider's smoothed latency (between ``min_timeout`` and ``max_timeout``;
  ``first_timeout`` before any sample); each failure backs the provider off
  exponentially (``backoff_base * 2**(n-1)``, at most ``backoff_max``); after
  ``max_failures`` consecutive failures the provider is dropped;
* **download bandwidth cap** - a byte token bucket; requests wait for tokens.
"""

from __future__ import annotations

import math
from collections import deque
from dataclasses import dataclass
from typing import Hashable, Iterable, Optional, Sequence

from ..limits import CHUNK_SIZE
from .progress import Bandwidth, Progress, ProviderProgress, RateMeter, eta

__all__ = ["Cancel", "ProviderState", "Request", "Scheduler", "SchedulerConfig", "Verdict"]


@dataclass(frozen=True, slots=True)
class SchedulerConfig:
    initial_depth: int = 4
    min_depth: int = 1
    max_depth: int = 32
    #: a provider holds at most this many seconds of its measured throughput in requests
    queue_time: float = 1.0
    first_timeout: float = 10.0
    min_timeout: float = 2.0
    max_timeout: float = 30.0
    timeout_factor: float = 4.0
    backoff_base: float = 0.5
    backoff_max: float = 30.0
    max_failures: int = 8
    ban_after_bad: int = 2
    endgame: bool = True
    endgame_copies: int = 2
    rarest_first: bool = False
    #: refill a busy provider's pipeline only when this many slots are free (at most a
    #: quarter of its depth): requests then leave in batches, one write for several
    refill_batch: int = 8
    #: requests on the wire across all providers: bounds how far apart in the file the chunks
    #: in flight are (the writer hashes the whole file in order from memory when the spread
    #: stays within its window) and the bytes the providers may be sending at once
    max_inflight: int = 64
    #: chunks received and not yet verified and written, across providers; no request leaves
    #: while this many wait (memory bound, and backpressure from a slow disk). 64: a chunk is
    #: reported only once written, and with 32 the network stood still for a few ms whenever
    #: a burst of received chunks waited for the disk
    max_verifying: int = 64
    #: download cap in bytes/s (None: unlimited) and its burst in bytes
    rate_limit: Optional[float] = None
    rate_burst: Optional[float] = None
    rate_window: float = 2.0


@dataclass(frozen=True, slots=True)
class Request:
    """Ask ``provider`` for chunk ``index``; give up at ``deadline``."""

    provider: Hashable
    index: int
    deadline: float


@dataclass(frozen=True, slots=True)
class Cancel:
    """Stop waiting for ``provider``'s answer for chunk ``index`` (``reason``: timeout, done, banned, removed)."""

    provider: Hashable
    index: int
    reason: str


@dataclass(frozen=True, slots=True)
class Verdict:
    """What a bad chunk cost its provider."""

    provider: Hashable
    bad_chunks: int
    banned: bool
    cancels: tuple = ()


class ProviderState:
    __slots__ = (
        "key", "have", "inflight", "verifying", "depth", "meter", "srtt", "failures", "bad", "banned", "backoff_until",
        "dropped", "bytes", "added",
    )  # fmt: skip

    def __init__(self, key: Hashable, have: Optional[frozenset], depth: int, now: float, window: float) -> None:
        self.key = key
        self.have = have
        self.inflight: dict[int, float] = {}  # index -> issue time
        #: received, being verified and written (no longer in the provider's pipeline)
        self.verifying: dict[int, float] = {}  # index -> issue time
        self.depth = depth
        self.meter = RateMeter(window)
        self.srtt: Optional[float] = None
        self.failures = 0
        self.bad = 0
        self.banned = False
        self.dropped = False
        self.backoff_until = 0.0
        self.bytes = 0
        self.added = now

    def has(self, index: int) -> bool:
        return self.have is None or index in self.have

    def usable(self, now: float) -> bool:
        return not self.banned and not self.dropped and now >= self.backoff_until


class Scheduler:
    """Chunk assignment for one download. ``chunk_sizes[i]`` is the byte length of chunk i."""

    def __init__(
        self,
        chunk_sizes: Sequence[int],
        config: Optional[SchedulerConfig] = None,
        *,
        done: Iterable[int] = (),
        content_id: bytes = b"",
        now: float = 0.0,
    ) -> None:
        self.config = cfg = config if config is not None else SchedulerConfig()
        self.sizes = list(chunk_sizes)
        self.n = len(self.sizes)
        self.content_id = content_id
        self.total_bytes = sum(self.sizes)
        self.done = bytearray(self.n)
        self.done_count = 0
        self.done_bytes = 0
        for i in done:
            if not self.done[i]:
                self.done[i] = 1
                self.done_count += 1
                self.done_bytes += self.sizes[i]
        self._started = bytearray(self.done)  # handed out at least once (or done)
        self._cursor = 0
        self._retry: deque[int] = deque()
        self._inflight: dict[int, list] = {}  # index -> providers asked
        self._bad_from: dict[int, set] = {}
        self.providers: dict[Hashable, ProviderState] = {}
        self._order: list = []
        self.bucket = Bandwidth(cfg.rate_limit, cfg.rate_burst, now)
        self.meter = RateMeter(cfg.rate_window)
        self.meter.start(now)
        self.fetched_bytes = 0  # verified bytes received (excludes resumed chunks)
        self.wasted_bytes = 0  # duplicates and bad chunks
        #: chunks received and waiting for verification and the disk (all providers)
        self.verifying = 0

    # ------------------------------------------------------------------ providers
    def add_provider(self, key: Hashable, now: float, have: Optional[Iterable[int]] = None) -> bool:
        """Add a provider (``have``: the chunks it holds, None = all). False if known or banned."""
        p = self.providers.get(key)
        if p is not None:
            if p.dropped and not p.banned:
                p.dropped = False
                p.failures = 0
                p.backoff_until = now
                p.depth = self.config.initial_depth
                return True
            return False
        self.providers[key] = ProviderState(
            key, None if have is None else frozenset(have), self.config.initial_depth, now, self.config.rate_window
        )
        return True

    def remove_provider(self, key: Hashable, now: float, reason: str = "removed") -> list[Cancel]:
        """Forget a provider's requests (connection lost); it may be added again later."""
        p = self.providers.get(key)
        if p is None:
            return []
        p.dropped = True
        return self._drop_inflight(p, reason)

    def _drop_inflight(self, p: ProviderState, reason: str) -> list[Cancel]:
        out = []
        for idx in list(p.inflight):
            self._forget(p, idx)
            out.append(Cancel(p.key, idx, reason))
        return out

    def active_providers(self) -> list:
        return [k for k, p in self.providers.items() if not p.banned and not p.dropped]

    def banned(self) -> list:
        return [k for k, p in self.providers.items() if p.banned]

    @property
    def complete(self) -> bool:
        return self.done_count == self.n

    @property
    def stuck(self) -> bool:
        """Nothing in flight and no provider that could ever be asked (all banned or dropped)."""
        return not self.complete and not self._inflight and not self.active_providers()

    def is_done(self, index: int) -> bool:
        return bool(self.done[index])

    # ------------------------------------------------------------------ assignment
    def _forget(self, p: ProviderState, idx: int) -> None:
        self._unlist(p, idx)
        lst = self._inflight.get(idx)
        if lst is not None:
            if p.key in lst:
                lst.remove(p.key)
            if not lst:
                del self._inflight[idx]
                if not self.done[idx]:
                    self._retry.append(idx)

    def _unlist(self, p: ProviderState, idx: int) -> Optional[float]:
        """Take ``idx`` out of ``p``'s pipeline or verification set; its issue time."""
        t = p.inflight.pop(idx, None)
        if t is None:
            t = p.verifying.pop(idx, None)
            if t is not None:
                self.verifying -= 1
        return t

    def _timeout(self, p: ProviderState) -> float:
        c = self.config
        if p.srtt is None:
            return c.first_timeout
        return min(c.max_timeout, max(c.min_timeout, c.timeout_factor * p.srtt))

    def _allowed(self, p: ProviderState, idx: int) -> bool:
        bad = self._bad_from.get(idx)
        return p.has(idx) and (bad is None or p.key not in bad)

    def _pick(self, p: ProviderState) -> Optional[int]:
        # 1. chunks that failed somewhere (bounded scan; they are few)
        r = self._retry
        for _ in range(min(len(r), 64)):
            idx = r.popleft()
            if self.done[idx] or idx in self._inflight:
                continue  # stale entry
            if self._allowed(p, idx):
                return idx
            r.append(idx)
        # 2. fresh chunks
        if self.config.rarest_first and any(q.have is not None for q in self.providers.values()):
            return self._pick_rarest(p)
        n = self.n
        while self._cursor < n and self._started[self._cursor]:
            self._cursor += 1
        i = self._cursor
        if i < n and p.has(i):
            return i
        if i < n:  # a partial provider: scan for a chunk it has
            for j in range(i, n):
                if not self._started[j] and p.has(j):
                    return j
        return None

    def _pick_rarest(self, p: ProviderState) -> Optional[int]:
        best, best_avail = None, math.inf
        live = [q for q in self.providers.values() if not q.banned and not q.dropped]
        for j in range(self._cursor, self.n):
            if self._started[j] or not p.has(j):
                continue
            avail = sum(1 for q in live if q.has(j))
            if avail < best_avail:
                best, best_avail = j, avail
                if avail <= 1:
                    break
        return best

    def _pick_endgame(self, p: ProviderState) -> Optional[int]:
        limit = self.config.endgame_copies
        best, best_t = None, math.inf
        for idx, asked in self._inflight.items():
            if len(asked) >= limit or p.key in asked or not self._allowed(p, idx):
                continue
            t = min(self.providers[k].inflight.get(idx, math.inf) for k in asked)
            if t < best_t:
                best, best_t = idx, t
        return best

    def poll(self, now: float) -> list[Request]:
        """Requests to send now (each provider filled up to its depth)."""
        out: list[Request] = []
        if self.complete or self.verifying >= self.config.max_verifying:
            return out
        provs = sorted(
            (p for p in self.providers.values() if p.usable(now)), key=lambda p: -p.meter.rate(now)
        )
        wire = sum(len(p.inflight) for p in self.providers.values())
        cap = self.config.max_inflight
        if wire and cap - wire < min(self.config.refill_batch, cap // 4):
            return out  # the global cap binds: refill in batches too
        for endgame in (False, True):
            if endgame and (not self.config.endgame or self._has_unstarted()):
                break
            for p in provs:
                if not endgame and p.inflight and p.depth - len(p.inflight) < self._batch(p):
                    continue
                while len(p.inflight) < (p.depth if not endgame else max(1, p.depth // 2)) and wire < cap:
                    idx = self._pick_endgame(p) if endgame else self._pick(p)
                    if idx is None:
                        break
                    if not self.bucket.take(self.sizes[idx], now):
                        if not endgame and idx not in self._inflight and self._started[idx]:
                            self._retry.append(idx)
                        return out
                    self._issue(p, idx, now)
                    wire += 1
                    out.append(Request(p.key, idx, now + self._timeout(p)))
        return out

    def refill_ready(self) -> bool:
        """Whether :meth:`poll` may have requests to issue (a driver can skip waking its loop
        otherwise). Errs on the side of True: backoff is not checked; in the endgame always True."""
        if self.complete or not self._has_unstarted():
            return True
        c = self.config
        if self.verifying >= c.max_verifying:
            return False
        # (runs for most received and verified chunks: plain loops, no generators)
        provs = self.providers.values()
        wire = 0
        for p in provs:
            wire += len(p.inflight)
        if wire and c.max_inflight - wire < min(c.refill_batch, c.max_inflight // 4):
            return False
        for p in provs:
            if not p.banned and not p.dropped and (not p.inflight or p.depth - len(p.inflight) >= self._batch(p)):
                return True
        return False

    def _batch(self, p: ProviderState) -> int:
        return max(1, min(self.config.refill_batch, p.depth // 4))

    def _has_unstarted(self) -> bool:
        while self._cursor < self.n and self._started[self._cursor]:
            self._cursor += 1
        return self._cursor < self.n or any(not self.done[i] and i not in self._inflight for i in self._retry)

    def _issue(self, p: ProviderState, idx: int, now: float) -> None:
        self._started[idx] = 1
        p.inflight[idx] = now
        p.meter.start(now)
        self._inflight.setdefault(idx, []).append(p.key)

    # ------------------------------------------------------------------ outcomes
    def received(self, key: Hashable, index: int, now: float) -> bool:
        """A CHUNK_DATA arrived. True if it should be verified (still wanted and was asked of ``key``)."""
        p = self.providers.get(key)
        if not 0 <= index < self.n or self.done[index]:
            if p is not None and index in p.inflight:
                self._forget(p, index)
            self.wasted_bytes += self.sizes[index] if 0 <= index < self.n else 0
            return False
        if p is None or index not in p.inflight:
            return False
        # the chunk leaves the provider's pipeline (its slot is free for the next request) and
        # waits for verification and the disk; its round trip ends here
        issued = p.inflight.pop(index)
        p.verifying[index] = issued
        self.verifying += 1
        rtt = max(0.0, now - issued)
        p.srtt = rtt if p.srtt is None else 0.875 * p.srtt + 0.125 * rtt
        return True

    def chunk_verified(self, key: Hashable, index: int, now: float) -> list[Cancel]:
        """Chunk ``index`` from ``key`` matched its hash and was written. Returns duplicate requests to cancel."""
        p = self.providers[key]
        fresh = index in p.inflight  # verified without received(): the round trip ends now
        issued = self._unlist(p, index)
        nbytes = self.sizes[index]
        cancels = []
        for other in list(self._inflight.get(index, ())):
            if other != key:
                cancels.append(Cancel(other, index, "done"))
                self._unlist(self.providers[other], index)
        self._inflight.pop(index, None)
        if not self.done[index]:
            self.done[index] = 1
            self.done_count += 1
            self.done_bytes += nbytes
            self.fetched_bytes += nbytes
            self.meter.add(nbytes, now)
        p.bytes += nbytes
        p.meter.add(nbytes, now)
        if fresh:
            rtt = max(0.0, now - issued)
            p.srtt = rtt if p.srtt is None else 0.875 * p.srtt + 0.125 * rtt
        p.failures = 0
        c = self.config
        cap = max(2, math.ceil(p.meter.rate(now) * c.queue_time / CHUNK_SIZE) + 1)
        p.depth = max(c.min_depth, min(c.max_depth, p.depth + 1, max(cap, c.min_depth)))
        return cancels

    def chunk_bad(self, key: Hashable, index: int, now: float) -> Verdict:
        """Chunk ``index`` from ``key`` failed verification (hash, length or content id)."""
        p = self.providers[key]
        self.wasted_bytes += self.sizes[index] if 0 <= index < self.n else 0
        if 0 <= index < self.n:
            self._bad_from.setdefault(index, set()).add(key)
            self._forget(p, index)
        p.bad += 1
        p.depth = max(self.config.min_depth, p.depth // 2)
        cancels: tuple = ()
        if p.bad >= self.config.ban_after_bad and not p.banned:
            p.banned = True
            cancels = tuple(self._drop_inflight(p, "banned"))
        return Verdict(key, p.bad, p.banned, cancels)

    def request_failed(self, key: Hashable, index: int, now: float, reason: str = "error") -> None:
        """A request failed (timeout, error response, decode error). Backs the provider off."""
        p = self.providers.get(key)
        if p is None or index not in p.inflight:
            return
        self._forget(p, index)
        self._penalise(p, now)

    def _penalise(self, p: ProviderState, now: float) -> None:
        c = self.config
        p.failures += 1
        p.depth = max(c.min_depth, p.depth // 2)
        p.backoff_until = max(p.backoff_until, now + min(c.backoff_max, c.backoff_base * 2 ** (p.failures - 1)))
        if p.failures >= c.max_failures:
            p.dropped = True

    def handle_timer(self, now: float) -> list[Cancel]:
        """Expire requests past their deadline (each one a failure of its provider)."""
        out = []
        for p in self.providers.values():
            if not p.inflight:
                continue
            t = self._timeout(p)
            expired = [i for i, at in p.inflight.items() if now >= at + t]
            for idx in expired:
                self._forget(p, idx)
                out.append(Cancel(p.key, idx, "timeout"))
            if expired:
                self._penalise(p, now)
        return out

    def deadline(self, now: float) -> Optional[float]:
        """The next time :meth:`handle_timer` / :meth:`poll` has work (a timeout, a backoff, tokens)."""
        best = math.inf
        want_more = not self.complete
        for p in self.providers.values():
            if p.inflight:
                best = min(best, min(p.inflight.values()) + self._timeout(p))
            if want_more and not p.banned and not p.dropped and p.backoff_until > now:
                best = min(best, p.backoff_until)
        if want_more and not self.bucket.unlimited:
            best = min(best, self.bucket.ready_at(CHUNK_SIZE, now))
        return None if best == math.inf else best

    # ------------------------------------------------------------------ resume support
    def reopen(self, indices: Iterable[int]) -> None:
        """Mark verified chunks as missing again (found bad on disk); they are fetched again."""
        for i in indices:
            if self.done[i]:
                self.done[i] = 0
                self.done_count -= 1
                self.done_bytes -= self.sizes[i]
            self._retry.append(i)

    # ------------------------------------------------------------------ progress
    def progress(self, now: float) -> Progress:
        rate = self.meter.rate(now)
        provs = {
            k: ProviderProgress(p.bytes, p.meter.rate(now), len(p.inflight), p.depth, p.bad, p.failures, p.banned)
            for k, p in self.providers.items()
        }
        return Progress(
            self.content_id, self.done_bytes, self.total_bytes, self.done_count, self.n, rate,
            eta(self.total_bytes - self.done_bytes, rate), provs,
        )  # fmt: skip


def chunk_sizes(size: int, chunk_size: int = CHUNK_SIZE) -> list[int]:
    """Byte length of every chunk of a ``size``-byte file (an empty file has none)."""
    full, rest = divmod(size, chunk_size)
    return [chunk_size] * full + ([rest] if rest else [])
