"""Relays: nodes behind NAT stay reachable (docs/relay.md)."""

from .addressing import RelayAddr, is_relay_url, parse_relay_url
from .client import RelayClient, RelayHealth
from .quotas import QuotaBook, RelayLimits, RelayPolicy
from .reachability import Reachability, ReachState
from .server import RelayServer
from .service import RelayService, attach_relay
from .slots import SlotTable, slot_id_for

__all__ = [
    "QuotaBook", "ReachState", "Reachability", "RelayAddr", "RelayClient", "RelayHealth", "RelayLimits",
    "RelayPolicy", "RelayServer", "RelayService", "SlotTable", "attach_relay", "is_relay_url", "parse_relay_url",
    "slot_id_for",
]  # fmt: skip
