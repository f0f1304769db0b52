"""How an address points through a relay slot.

* **URL form** (invite links, configuration, our own nodes):
  ``relay+<transport>://<relay host>:<port>/<slot id>?node=<node pubkey hex>[&relay=<relay pubkey hex>]``
  e.g. ``relay+tcp://203.0.113.5:7001/1234567890?node=ab..``. It names the relay (how to dial
  it, optionally its key), the slot and the key of the node behind it (checked end to end by the
  relayed session's Hello).
* **v0.1 PeerAddr form** (provider hints, PEX, DHT): ``{ip: relay ip, port: relay port,
  transport: relay transport, pubkey_hint: the relayed node's key}``. It fits the frozen shape;
  the slot is implied because our relays derive slot ids from the node key
  (:func:`~scp2p.relay.slots.slot_id_for`). A v0.1 node that dials it meets the relay's key
  instead of the hinted one and drops the address (its handshake refuses a key mismatch), which
  is harmless; our nodes recognise the mismatch and go through the relay
  (:meth:`RelayService.connect <scp2p.relay.service.RelayService.connect>`).
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass
from typing import Optional, Union
from urllib.parse import parse_qs, urlsplit

from ..limits import PUBKEY_LEN
from ..transport.urls import PeerURL, from_peer_addr
from ..wire.records import PeerAddr, Transport
from .slots import slot_id_for

SCHEMES = {"relay+tcp": "tcp", "relay+quic": "quic", "relay+tls": "tls"}


@dataclass(frozen=True, slots=True)
class RelayAddr:
    """A node reachable through ``relay`` under ``slot_id``."""

    relay: PeerURL  #: how to dial the relay (``pubkey`` = the relay's key, if known)
    slot_id: int
    node_pubkey: bytes

    def __post_init__(self) -> None:
        if len(self.node_pubkey) != PUBKEY_LEN:
            raise ValueError("node_pubkey must be 32 bytes")
        if not 0 <= self.slot_id < 1 << 64:
            raise ValueError("slot id must be a u64")

    def __str__(self) -> str:
        r = self.relay
        host = f"[{r.host}]" if ":" in r.host else r.host
        q = f"?node={self.node_pubkey.hex()}"
        if r.pubkey is not None:
            q += f"&relay={r.pubkey.hex()}"
        return f"relay+{r.scheme}://{host}:{r.port}/{self.slot_id}{q}"

    def to_peer_addr(self) -> Optional[PeerAddr]:
        """The v0.1 form (None for a TLS relay, which v0.1 cannot name)."""
        if self.relay.scheme == "tls":
            return None
        return PeerAddr(ipaddress.ip_address(self.relay.host), self.relay.port, Transport(self.relay.scheme),
                        self.node_pubkey)  # fmt: skip

    @classmethod
    def from_peer_addr(cls, addr: PeerAddr, relay_pubkey: Optional[bytes] = None) -> "RelayAddr":
        """Read a v0.1 PeerAddr as "the node ``pubkey_hint`` behind the relay at ip:port"."""
        if addr.pubkey_hint is None:
            raise ValueError("a relayed PeerAddr needs the node key in pubkey_hint")
        return cls(from_peer_addr(addr).with_pubkey(relay_pubkey), slot_id_for(addr.pubkey_hint), addr.pubkey_hint)


def parse_relay_url(url: str) -> RelayAddr:
    parts = urlsplit(url)
    scheme = SCHEMES.get(parts.scheme)
    if scheme is None:
        raise ValueError(f"not a relay URL: {url!r}")
    if parts.hostname is None or parts.port is None:
        raise ValueError(f"{url!r} needs a host and a port")
    try:
        slot = int(parts.path.strip("/"))
        q = parse_qs(parts.query, strict_parsing=True)
        node = bytes.fromhex(q["node"][0])
        relay = bytes.fromhex(q["relay"][0]) if "relay" in q else None
    except (ValueError, KeyError, IndexError):
        raise ValueError(f"{url!r}: expected /<slot>?node=<hex>[&relay=<hex>]") from None
    if set(q) - {"node", "relay"}:
        raise ValueError(f"{url!r}: unknown query parameters")
    return RelayAddr(PeerURL(scheme, parts.hostname, parts.port, relay), slot, node)


def is_relay_url(url: str) -> bool:
    return isinstance(url, str) and url.split("://", 1)[0] in SCHEMES


RelayTarget = Union[RelayAddr, str, PeerAddr]

__all__ = ["RelayAddr", "RelayTarget", "is_relay_url", "parse_relay_url"]
