"""The relayed client: keep registrations alive with one or more relays.

Candidates are relay addresses given in the configuration plus peers that connect with the
``relay`` capability. Each candidate has a :class:`RelayHealth` (successes, failures, RTT of the
last registration, back-off); :func:`pick` chooses the healthiest candidates that are not backing
off, so one failing relay is rotated out and no relay is sticky. Each registration is renewed
every ``lifetime / 3`` with its slot id on the same session; when that session ends (relay
restart, network loss) the slot is re-registered at once (the id is derived from our key, so it
is the same id), with exponential back-off on failure. Requests arriving over the registrations'
RELAY_STREAMs are served by the node's own dispatcher (``scp2p.relay.service``).
"""

from __future__ import annotations

import asyncio
import logging
import time
from dataclasses import dataclass, field
from typing import Any, Callable, Iterable, Optional

from .. import limits
from ..errors import RemoteError, Scp2pError
from ..transport.urls import PeerURL, to_url
from ..wire.messages import RelayRegister, RelayRegistered
from .addressing import RelayAddr

log = logging.getLogger(__name__)


@dataclass
class RelayHealth:
    """Sans-I/O health of one relay candidate. Times are arguments."""

    url: PeerURL
    successes: int = 0
    failures: int = 0
    consecutive: int = 0
    rtt: Optional[float] = None
    next_try: float = 0.0

    @property
    def score(self) -> float:
        base = (self.successes + 1) / (self.successes + self.failures + 2)
        return base - 0.5 * min(self.consecutive, 4) / 4 - (min(self.rtt, 1.0) * 0.1 if self.rtt else 0.0)

    def succeeded(self, rtt: float, now: float) -> None:
        self.successes += 1
        self.consecutive = 0
        self.rtt = rtt if self.rtt is None else 0.7 * self.rtt + 0.3 * rtt
        self.next_try = now

    def failed(self, now: float, *, base: float = 0.5, cap: float = 60.0) -> float:
        self.failures += 1
        self.consecutive += 1
        delay = min(cap, base * 2 ** (self.consecutive - 1))
        self.next_try = now + delay
        return delay


def pick(candidates: Iterable[RelayHealth], n: int, now: float, exclude: set) -> list[RelayHealth]:
    """The ``n`` best candidates not in ``exclude`` and not backing off."""
    ready = [c for c in candidates if c.next_try <= now and _ident(c.url) not in exclude]
    ready.sort(key=lambda c: (-c.score, c.rtt if c.rtt is not None else 0.0))
    return ready[:n]


def _ident(u: PeerURL) -> tuple:
    return (u.scheme, u.host, u.port)


@dataclass
class Registration:
    url: PeerURL
    session: Any
    slot_id: int
    expires_at: int
    renew_at: float
    relay_pubkey: bytes = field(default=b"")


class RelayClient:
    def __init__(
        self,
        endpoint: Any,
        relays: Iterable[Any] = (),
        *,
        want: int = 1,
        lifetime: float = limits.RELAY_SLOT_LIFETIME,
        timeout: float = 10.0,
        clock: Callable[[], float] = time.monotonic,
        on_change: Optional[Callable[[], None]] = None,
    ) -> None:
        self.endpoint = endpoint
        self.want = want
        self.lifetime = lifetime
        self.timeout = timeout
        self.clock = clock
        self.on_change = on_change
        self.candidates: dict[tuple, RelayHealth] = {}
        self._wake = asyncio.Event()
        for r in relays:
            self.add_candidate(r)
        self.active: dict[tuple, Registration] = {}
        self._changed = asyncio.Condition()
        self._task: Optional[asyncio.Task] = None
        self._pending: set[asyncio.Task] = set()
        self.registrations = 0

    def add_candidate(self, relay: Any) -> None:
        url = to_url(relay)
        key = _ident(url)
        if key not in self.candidates:
            self.candidates[key] = RelayHealth(url)
            self._wake.set()

    # ------------------------------------------------------------------ lifecycle
    def start(self) -> None:
        self._task = asyncio.get_running_loop().create_task(self._run(), name="relay-client")

    async def close(self) -> None:
        tasks = list(self._pending) + ([self._task] if self._task else [])
        for t in tasks:
            t.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)

    def owns(self, session: Any, slot_id: int) -> bool:
        for r in self.active.values():
            if r.session is session and r.slot_id == slot_id:
                return True
        return False

    def relay_addrs(self) -> list[RelayAddr]:
        pk = self.endpoint.key.public_key
        return [RelayAddr(r.url.with_pubkey(r.relay_pubkey), r.slot_id, pk) for r in self.active.values()]

    async def wait_registered(self, n: int = 1, *, timeout: float = 10.0, generation: int = 0) -> list[RelayAddr]:
        """Wait until ``n`` registrations are live and ``registrations`` > ``generation``."""
        async with asyncio.timeout(timeout):
            async with self._changed:
                await self._changed.wait_for(lambda: len(self.active) >= n and self.registrations > generation)
        return self.relay_addrs()

    async def _notify(self) -> None:
        async with self._changed:
            self._changed.notify_all()
        if self.on_change is not None:
            self.on_change()

    # ------------------------------------------------------------------ the loop
    async def _run(self) -> None:
        while True:
            now = self.clock()
            for key, reg in list(self.active.items()):
                if not reg.session.is_open:
                    self._lost(key, "session closed")
                elif reg.renew_at <= now:
                    self._start(self._renew(key, reg))
            missing = self.want - len(self.active) - len(self._pending)
            if missing > 0:
                busy = set(self.active) | {getattr(t, "relay_key", None) for t in self._pending}
                for c in pick(self.candidates.values(), missing, now, busy):
                    t = self._start(self._register(c))
                    t.relay_key = _ident(c.url)  # type: ignore[attr-defined]
            deadlines = [r.renew_at for r in self.active.values()]
            deadlines += [c.next_try for c in self.candidates.values() if c.next_try > now]
            timeout = max(0.05, min(deadlines) - now) if deadlines else None
            self._wake.clear()
            try:
                async with asyncio.timeout(timeout):
                    await self._wake.wait()
            except TimeoutError:
                pass

    def _start(self, coro: Any) -> asyncio.Task:
        t = asyncio.get_running_loop().create_task(coro)
        self._pending.add(t)
        t.add_done_callback(self._done)
        return t

    def _done(self, t: asyncio.Task) -> None:
        self._pending.discard(t)
        if not t.cancelled() and t.exception() is not None:
            log.warning("relay registration task failed: %r", t.exception())
        self._wake.set()

    def _lost(self, key: tuple, reason: str) -> None:
        reg = self.active.pop(key, None)
        if reg is not None:
            log.info("relay registration at %s lost (%s); re-registering", reg.url, reason)
            c = self.candidates.get(key)
            if c is not None:
                c.failed(self.clock(), base=0.1)
            self._wake.set()

    async def _register(self, c: RelayHealth) -> None:
        key = _ident(c.url)
        t0 = self.clock()
        try:
            async with asyncio.timeout(self.timeout):
                session = await self.endpoint.pool.session(c.url)
                if not session.remote_capabilities.relay:
                    raise RemoteError("peer does not offer the relay capability")
                reply = await session.request(RelayRegister(None), timeout=self.timeout)
        except (Scp2pError, OSError, TimeoutError) as exc:
            delay = c.failed(self.clock())
            log.info("registering with relay %s failed (%s); next try in %.1fs", c.url, exc, delay)
            return
        if not isinstance(reply, RelayRegistered):
            c.failed(self.clock())
            return
        now = self.clock()
        c.succeeded(now - t0, now)
        self.active[key] = Registration(c.url, session, reply.relay_slot_id, reply.expires_at,
                                        now + self.lifetime / 3, session.remote_pubkey)  # fmt: skip
        session.closed.add_done_callback(lambda _f: self._wake.set())
        self.registrations += 1
        log.info("registered relay slot %d at %s", reply.relay_slot_id, c.url)
        await self._notify()

    async def _renew(self, key: tuple, reg: Registration) -> None:
        reg.renew_at = self.clock() + self.lifetime / 3
        try:
            reply = await reg.session.request(RelayRegister(reg.slot_id), timeout=self.timeout)
        except (Scp2pError, OSError) as exc:
            self._lost(key, f"renewal failed: {exc}")
            return
        reg.expires_at = reply.expires_at
        reg.slot_id = reply.relay_slot_id


__all__ = ["Registration", "RelayClient", "RelayHealth", "pick"]
