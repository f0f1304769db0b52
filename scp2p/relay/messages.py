"""Relay-side wire additions: the dial-back reachability probe (types 460/461).

The v0.1 registry (450-453) is used as frozen; the probe is a new message kind under new
numbers, registered here (not in ``scp2p.wire.messages``). A v0.1 peer answers 460 with an
error response ("unknown message type 460") and keeps the connection; the prober treats that
as "this peer cannot tell" and asks another one (see docs/relay.md).

=====  ====================  ==========================================================
type   name                  payload map (field order)
=====  ====================  ==========================================================
460    REACHABILITY_PROBE    ``addrs: [PeerAddr]`` (at most 4), ``nonce: 16-byte array``
461    REACHABILITY_RESULT   ``nonce``, ``observed: PeerAddr | null``,
                             ``reachable: [PeerAddr]`` (the subset of ``addrs`` dialled back)
=====  ====================  ==========================================================

460 is a request; its answer is an envelope of type 461 with the RESPONSE flag and the
request's req_id.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Optional

from .. import limits
from ..wire import codec
from ..wire.records import PeerAddr, RelayKind, _Record
from ..wire.messages import RelayStream
from ..wire.schema import fixed, list_of, opt, record, wire_record

REACHABILITY_PROBE = 460
REACHABILITY_RESULT = 461

#: at most this many addresses are dialled back per probe
MAX_PROBE_ADDRS = 4
NONCE_LEN = 16

_peer = record("peer", PeerAddr)


@wire_record(list_of("addrs", _peer, MAX_PROBE_ADDRS), fixed("nonce", NONCE_LEN), max_size=4096)
@dataclass(frozen=True, slots=True)
class ReachabilityProbe(_Record):
    addrs: tuple[PeerAddr, ...]
    nonce: bytes


@wire_record(
    fixed("nonce", NONCE_LEN),
    opt(record("observed", PeerAddr)),
    list_of("reachable", _peer, MAX_PROBE_ADDRS),
    max_size=4096,
)
@dataclass(frozen=True, slots=True)
class ReachabilityResult(_Record):
    nonce: bytes
    observed: Optional[PeerAddr]
    reachable: tuple[PeerAddr, ...] = ()


def encode(msg) -> bytes:
    return codec.encode(msg)


def decode_probe(data) -> ReachabilityProbe:
    return codec.decode(ReachabilityProbe, data)


def decode_result(data) -> ReachabilityResult:
    return codec.decode(ReachabilityResult, data)


#: bytes a RELAY_STREAM record adds around its payload (slot u64, stream u32, kind, keys);
#: generous, so that a segment of ``MAX_SEGMENT`` always fits the 1 MiB envelope payload
STREAM_OVERHEAD = 96
MAX_SEGMENT = limits.MAX_PAYLOAD - STREAM_OVERHEAD


def stream_payload(slot: int, stream_id: int, kind: RelayKind, data) -> bytes:
    return codec.encode(RelayStream(slot, stream_id, kind, bytes(data)))


__all__ = [
    "MAX_PROBE_ADDRS", "MAX_SEGMENT", "NONCE_LEN", "REACHABILITY_PROBE", "REACHABILITY_RESULT",
    "ReachabilityProbe", "ReachabilityResult", "decode_probe", "decode_result", "encode", "stream_payload",
]  # fmt: skip
