"""The DHT node core (sans-I/O): answers FIND_NODE, FIND_VALUE and STORE.

One :class:`DhtCore` per node holds the routing table, the value store and the
per-peer rate limiter. Drivers - the asyncio :mod:`scp2p.dht.service` and the
in-process simulator :mod:`scp2p.dht.simnet` - feed it requests with the sender's
node id and the time, and get the typed response back (or a :class:`~scp2p.errors.Scp2pError`
to send as an error response). The core never touches sockets or clocks.

What the core does *not* decide: whether a sender goes into the routing table.
The driver calls :meth:`DhtCore.observe` only for contacts whose listening address
it has verified (see :mod:`scp2p.dht.table`) and carries out the returned
:class:`~scp2p.dht.table.PingRequest`.
"""

from __future__ import annotations

from typing import Optional

from ..errors import RateLimited, UnknownMessageType
from ..identity import routing_id
from ..limits import K, NODE_ID_LEN
from ..wire.messages import ACK, FindNode, FindNodeResult, FindValue, FindValueResult, Store
from .ratelimit import RateLimiter
from .storage import ValueStore
from .table import Contact, PingRequest, RoutingTable
from .values import validate_store

__all__ = ["DhtCore", "request_kind"]


def request_kind(msg: object) -> str:
    """The rate-limit bucket a request draws from."""
    return "store" if isinstance(msg, Store) else "request"


class DhtCore:
    def __init__(
        self,
        self_id: bytes,
        *,
        now: float,
        k: int = K,
        table: Optional[RoutingTable] = None,
        storage: Optional[ValueStore] = None,
        limiter: Optional[RateLimiter] = None,
    ) -> None:
        if len(self_id) != NODE_ID_LEN:
            raise ValueError(f"self_id must be {NODE_ID_LEN} bytes")
        self.self_id = self_id
        self.k = k
        self.table = table if table is not None else RoutingTable(self_id, k=k, now=now)
        self.storage = storage if storage is not None else ValueStore()
        self.limiter = limiter if limiter is not None else RateLimiter()

    def observe(self, contact: Contact, now: float) -> Optional[PingRequest]:
        if contact.node_id == self.self_id:
            return None
        return self.table.observe(contact, now)

    def closest_addrs(self, target: bytes, *, exclude: tuple[bytes, ...] = ()) -> tuple:
        return tuple(c.addr for c in self.table.closest(target, self.k, exclude=exclude))

    def handle_request(self, sender_id: Optional[bytes], msg: object, now: float):
        """Answer one DHT request from ``sender_id`` (a verified node id; None if unknown).

        Raises :class:`~scp2p.errors.RateLimited`, the store's refusals
        (:class:`~scp2p.errors.QuotaExceeded`, :class:`~scp2p.errors.StaleValue`, keyspace
        errors), or :class:`~scp2p.errors.UnknownMessageType` for a non-DHT message.
        """
        limiter_key = sender_id if sender_id is not None else b""
        if not self.limiter.allow(limiter_key, request_kind(msg), now):
            raise RateLimited("too many DHT requests; slow down")
        exclude = (sender_id,) if sender_id is not None else ()
        if isinstance(msg, FindNode):
            return FindNodeResult(self.closest_addrs(msg.target_node_id, exclude=exclude))
        if isinstance(msg, FindValue):
            hit = self.storage.get(msg.key, now)
            if hit is not None:
                return FindValueResult(hit, ())
            return FindValueResult(None, self.closest_addrs(routing_id(msg.key), exclude=exclude))
        if isinstance(msg, Store):
            msg = validate_store(msg)
            self.storage.put(msg.key, msg.value, msg.ttl_secs, now, origin=sender_id)
            return ACK
        raise UnknownMessageType(getattr(type(msg), "__name__", "?"))  # type: ignore[arg-type]

