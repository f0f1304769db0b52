"""Reachability: is this node Direct, Outbound-only or Relayed (PROTOCOL.md section 8)?

* A node without listeners is **outbound-only** without asking anyone.
* Otherwise it asks connected peers to **dial it back**: REACHABILITY_PROBE (460) with its
  advertised addresses; the peer opens a *fresh* connection to each address whose IP equals the
  IP it sees the request come from (so a probe cannot aim a node at third parties), checks that
  the node key there is the requester's, and answers REACHABILITY_RESULT (461) with the addresses
  that worked and the address it observed. One success -> **direct**. ``needed`` negative answers
  -> **outbound-only**. A v0.1 peer answers "unknown message type 460": that peer cannot tell,
  the prober moves on to the next one (graceful fallback); with no capable peer the state stays
  **unknown**.
* An outbound-only (or unknown) node with a live relay registration is **relayed**.

:class:`Reachability` is the sans-I/O verdict; :func:`probe_peer` and :class:`ProbeResponder`
are the asyncio sides.
"""

from __future__ import annotations

import asyncio
import enum
import ipaddress
import logging
import os
import time
from typing import Any, Callable, Optional

from ..errors import Scp2pError
from ..transport.urls import from_peer_addr
from ..wire.records import FLAG_RESPONSE, PeerAddr, Transport
from ..transport.dispatch import Reply
from .messages import (
    MAX_PROBE_ADDRS,
    NONCE_LEN,
    REACHABILITY_PROBE,
    REACHABILITY_RESULT,
    ReachabilityProbe,
    ReachabilityResult,
    decode_probe,
    decode_result,
    encode,
)

log = logging.getLogger(__name__)


class ReachState(str, enum.Enum):
    UNKNOWN = "unknown"
    DIRECT = "direct"
    OUTBOUND_ONLY = "outbound-only"
    RELAYED = "relayed"


class Reachability:
    """The verdict from probe answers (sans-I/O)."""

    def __init__(self, *, has_listeners: bool, needed: int = 2) -> None:
        self.has_listeners = has_listeners
        self.needed = needed
        self.positive = 0
        self.negative = 0
        self.cannot_tell = 0
        self.relay_active = False
        self.observed: Optional[PeerAddr] = None

    def record(self, answer: Optional[bool], observed: Optional[PeerAddr] = None) -> None:
        """One peer's answer: True (dialled back), False (could not), None (cannot tell)."""
        if answer is None:
            self.cannot_tell += 1
        elif answer:
            self.positive += 1
        else:
            self.negative += 1
        if observed is not None:
            self.observed = observed

    @property
    def decided(self) -> bool:
        return not self.has_listeners or self.positive > 0 or self.negative >= self.needed

    @property
    def state(self) -> ReachState:
        if self.has_listeners and self.positive:
            return ReachState.DIRECT
        outbound = not self.has_listeners or self.negative >= self.needed
        if self.relay_active and (outbound or not self.positive):
            return ReachState.RELAYED
        return ReachState.OUTBOUND_ONLY if outbound else ReachState.UNKNOWN


async def probe_peer(session: Any, addrs: list[PeerAddr], *, timeout: float = 10.0) -> tuple[Optional[bool], Optional[PeerAddr]]:
    """Ask one peer to dial us back. (None, None) when the peer cannot tell (v0.1: unknown type)."""
    nonce = os.urandom(NONCE_LEN)
    try:
        env = await session.request_raw(REACHABILITY_PROBE, encode(ReachabilityProbe(tuple(addrs[:MAX_PROBE_ADDRS]), nonce)),
                                        timeout=timeout)  # fmt: skip
    except (Scp2pError, OSError) as exc:
        log.debug("reachability probe via %r failed: %s", session, exc)
        return None, None
    if env.is_error:
        log.debug("peer %r cannot probe: %s", session, bytes(env.payload).decode("utf-8", "replace"))
        return None, None
    if env.type != REACHABILITY_RESULT:
        return None, None
    try:
        res = decode_result(env.payload)
    except Scp2pError:
        return None, None
    if res.nonce != nonce:
        return None, None
    return bool(res.reachable), res.observed


class ProbeResponder:
    """Answers REACHABILITY_PROBE by dialling back (fresh connections, bounded, rate-limited)."""

    def __init__(self, endpoint: Any, *, dial_timeout: float = 5.0, min_interval: float = 10.0,
                 clock: Callable[[], float] = time.monotonic) -> None:  # fmt: skip
        self.endpoint = endpoint
        self.dial_timeout = dial_timeout
        self.min_interval = min_interval
        self.clock = clock
        self._last: dict[bytes, float] = {}
        self.probes = 0

    def register(self, dispatcher: Any) -> None:
        dispatcher.register(REACHABILITY_PROBE, self.on_probe)

    async def on_probe(self, ctx: Any, raw: bytes) -> Reply:
        from ..errors import RemoteError

        probe = decode_probe(raw)  # DecodeError -> the dispatcher's error response
        now = self.clock()
        pk = ctx.remote_pubkey
        last = self._last.get(pk)
        if last is not None and now - last < self.min_interval:
            raise RemoteError("reachability probes too frequent; slow down")
        self._last[pk] = now
        if len(self._last) > 4096:
            self._last = {k: t for k, t in self._last.items() if now - t < self.min_interval}
        self.probes += 1
        host = ctx.remote_addr[0] if isinstance(ctx.remote_addr, tuple) else None
        observed = None
        try:
            seen_ip = ipaddress.ip_address(str(host))
            observed = PeerAddr(seen_ip, int(ctx.remote_addr[1]), Transport.TCP, None)
        except (ValueError, TypeError, IndexError, Scp2pError):
            seen_ip = None
        ok = []
        if seen_ip is not None and ctx.transport != "relay":
            for a in probe.addrs:
                if a.ip != seen_ip:
                    continue  # never dial anyone but the requester's own address
                if await self._dial_back(a, pk):
                    ok.append(a)
        res = ReachabilityResult(probe.nonce, observed, tuple(ok))
        return Reply(REACHABILITY_RESULT, FLAG_RESPONSE, encode(res))

    async def _dial_back(self, addr: PeerAddr, pubkey: bytes) -> bool:
        url = from_peer_addr(addr).with_pubkey(pubkey)
        try:
            async with asyncio.timeout(self.dial_timeout):
                # a fresh connection (never a pooled one): the point is to test the listener
                session = await self.endpoint._dial(url)
        except (Scp2pError, OSError, TimeoutError) as exc:
            log.debug("dial-back to %s failed: %s", url, exc)
            return False
        ok = session.remote_pubkey == pubkey
        session.abort("dial-back probe done")
        return ok


__all__ = ["ProbeResponder", "ReachState", "Reachability", "probe_peer"]
