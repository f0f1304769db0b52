"""The message registry (PROTOCOL.md section 5): numbers, payload records, request/response pairing."""

from __future__ import annotations

import enum
from dataclasses import dataclass
from typing import Optional, Union

from .. import limits
from ..errors import TrailingBytes, UnknownMessageType
from . import codec as _codec
from .records import (
    FLAG_RESPONSE,
    FLAGS_ERROR_RESPONSE,
    Envelope,
    ManifestLocation,
    PeerAddr,
    Providers,
    RelayKind,
    _Record,
)
from .schema import (
    bytestr,
    enum_text,
    fixed,
    list_of,
    opt,
    record,
    u32,
    u64,
    u8,
    wire_record,
)


class MsgType(enum.IntEnum):
    """Frozen message numbers. A new kind of message takes a new number."""

    PEX_OFFER = 100
    PEX_REQUEST = 101
    FIND_NODE = 200
    FIND_VALUE = 201
    STORE = 202
    GET_MANIFEST = 400
    MANIFEST_DATA = 401
    RELAY_REGISTER = 450
    RELAY_REGISTERED = 451
    RELAY_CONNECT = 452
    RELAY_STREAM = 453
    PROVIDERS = 498
    HAVE_CONTENT = 499
    GET_CHUNK = 500
    CHUNK_DATA = 501


_peers = record("peer", PeerAddr)


def _payload(*fields, max_size: int = limits.MAX_PAYLOAD):
    return wire_record(*fields, max_size=max_size)


@_payload(list_of("peers", _peers, limits.MAX_PEX_PEERS))
@dataclass(frozen=True, slots=True)
class PexOffer(_Record):
    peers: tuple[PeerAddr, ...]


@_payload(u8("max_peers"))
@dataclass(frozen=True, slots=True)
class PexRequest(_Record):
    max_peers: int = limits.MAX_PEX_PEERS


@_payload(fixed("target_node_id", limits.NODE_ID_LEN))
@dataclass(frozen=True, slots=True)
class FindNode(_Record):
    target_node_id: bytes


@_payload(list_of("peers", _peers))
@dataclass(frozen=True, slots=True)
class FindNodeResult(_Record):
    peers: tuple[PeerAddr, ...]


@_payload(fixed("key", limits.ID_LEN))
@dataclass(frozen=True, slots=True)
class FindValue(_Record):
    key: bytes


@_payload(
    fixed("key", limits.ID_LEN),
    bytestr("value", limits.MAX_DHT_VALUE),
    u64("ttl_secs"),
)
@dataclass(frozen=True, slots=True)
class Store(_Record):
    """STORE request, and the value map inside a FIND_VALUE hit (``ttl_secs`` then = remaining)."""

    key: bytes
    value: bytes
    ttl_secs: int = limits.DEFAULT_TTL


@_payload(opt(record("value", Store)), list_of("closer_peers", _peers))
@dataclass(frozen=True, slots=True)
class FindValueResult(_Record):
    value: Optional[Store]
    closer_peers: tuple[PeerAddr, ...] = ()


@dataclass(frozen=True, slots=True)
class Ack:
    """The empty response payload of STORE and RELAY_CONNECT (zero bytes on the wire)."""


@_payload(fixed("manifest_id", limits.ID_LEN))
@dataclass(frozen=True, slots=True)
class GetManifest(_Record):
    manifest_id: bytes


@_payload(fixed("manifest_id", limits.ID_LEN), bytestr("bytes", limits.MAX_PAYLOAD))
@dataclass(frozen=True, slots=True)
class ManifestData(_Record):
    manifest_id: bytes
    bytes: bytes


@_payload(opt(u64("relay_slot_id")))
@dataclass(frozen=True, slots=True)
class RelayRegister(_Record):
    """``relay_slot_id`` None asks for a new slot; a number renews it."""

    relay_slot_id: Optional[int] = None


@_payload(u64("relay_slot_id"), u64("expires_at"))
@dataclass(frozen=True, slots=True)
class RelayRegistered(_Record):
    relay_slot_id: int
    expires_at: int


@_payload(u64("relay_slot_id"))
@dataclass(frozen=True, slots=True)
class RelayConnect(_Record):
    relay_slot_id: int


@_payload(
    u64("relay_slot_id"),
    u32("stream_id"),
    enum_text("kind", RelayKind),
    bytestr("payload", limits.MAX_PAYLOAD),
)
@dataclass(frozen=True, slots=True)
class RelayStream(_Record):
    relay_slot_id: int
    stream_id: int
    kind: RelayKind
    payload: bytes


@_payload(fixed("content_id", limits.ID_LEN))
@dataclass(frozen=True, slots=True)
class HaveContent(_Record):
    content_id: bytes


@_payload(fixed("content_id", limits.ID_LEN), u32("chunk_index"))
@dataclass(frozen=True, slots=True)
class GetChunk(_Record):
    content_id: bytes
    chunk_index: int


@_payload(fixed("content_id", limits.ID_LEN), u32("chunk_index"), bytestr("bytes", limits.MAX_PAYLOAD))
@dataclass(frozen=True, slots=True)
class ChunkData(_Record):
    content_id: bytes
    chunk_index: int
    bytes: bytes


Message = Union[
    PexOffer, PexRequest, FindNode, FindNodeResult, FindValue, FindValueResult, Store, Ack,
    GetManifest, ManifestData, RelayRegister, RelayRegistered, RelayConnect, RelayStream,
    Providers, HaveContent, GetChunk, ChunkData,
]  # fmt: skip

#: (type, response?) -> payload class. A response carries the request's req_id; the
#: "answered by" column of section 5 gives its type.
REGISTRY: dict[tuple[int, bool], type] = {
    (MsgType.PEX_OFFER, False): PexOffer,
    (MsgType.PEX_OFFER, True): PexOffer,
    (MsgType.PEX_REQUEST, False): PexRequest,
    (MsgType.FIND_NODE, False): FindNode,
    (MsgType.FIND_NODE, True): FindNodeResult,
    (MsgType.FIND_VALUE, False): FindValue,
    (MsgType.FIND_VALUE, True): FindValueResult,
    (MsgType.STORE, False): Store,
    (MsgType.STORE, True): Ack,
    (MsgType.GET_MANIFEST, False): GetManifest,
    (MsgType.MANIFEST_DATA, False): ManifestData,
    (MsgType.MANIFEST_DATA, True): ManifestData,
    (MsgType.RELAY_REGISTER, False): RelayRegister,
    (MsgType.RELAY_REGISTERED, False): RelayRegistered,
    (MsgType.RELAY_REGISTERED, True): RelayRegistered,
    (MsgType.RELAY_CONNECT, False): RelayConnect,
    (MsgType.RELAY_CONNECT, True): Ack,
    (MsgType.RELAY_STREAM, False): RelayStream,
    (MsgType.RELAY_STREAM, True): RelayStream,
    (MsgType.PROVIDERS, False): Providers,
    (MsgType.PROVIDERS, True): Providers,
    (MsgType.HAVE_CONTENT, False): HaveContent,
    (MsgType.GET_CHUNK, False): GetChunk,
    (MsgType.CHUNK_DATA, False): ChunkData,
    (MsgType.CHUNK_DATA, True): ChunkData,
}

#: request type -> type of its response (None: fire-and-forget / announce)
RESPONSE_TYPE: dict[int, Optional[int]] = {
    MsgType.PEX_OFFER: None,
    MsgType.PEX_REQUEST: MsgType.PEX_OFFER,
    MsgType.FIND_NODE: MsgType.FIND_NODE,
    MsgType.FIND_VALUE: MsgType.FIND_VALUE,
    MsgType.STORE: MsgType.STORE,
    MsgType.GET_MANIFEST: MsgType.MANIFEST_DATA,
    MsgType.MANIFEST_DATA: None,
    MsgType.RELAY_REGISTER: MsgType.RELAY_REGISTERED,
    MsgType.RELAY_REGISTERED: None,
    MsgType.RELAY_CONNECT: MsgType.RELAY_CONNECT,
    MsgType.RELAY_STREAM: MsgType.RELAY_STREAM,
    MsgType.PROVIDERS: None,
    MsgType.HAVE_CONTENT: None,
    MsgType.GET_CHUNK: MsgType.CHUNK_DATA,
    MsgType.CHUNK_DATA: None,
}

#: payload class -> the type number it is sent under as a request
TYPE_OF: dict[type, int] = {}
for (_t, _resp), _cls in REGISTRY.items():
    if not _resp:
        TYPE_OF.setdefault(_cls, _t)
del _t, _resp, _cls


def payload_class(msg_type: int, response: bool) -> type:
    """The payload class for a type; raises :class:`UnknownMessageType` for unregistered types."""
    try:
        return REGISTRY[(msg_type, response)]
    except KeyError:
        raise UnknownMessageType(msg_type) from None


def payload_classes(msg_type: int) -> tuple[type, ...]:
    """Every payload class registered under a type (request first)."""
    out = []
    for resp in (False, True):
        cls = REGISTRY.get((msg_type, resp))
        if cls is not None and cls not in out:
            out.append(cls)
    if not out:
        raise UnknownMessageType(msg_type)
    return tuple(out)


__all__ = [
    "Ack", "ChunkData", "FindNode", "FindNodeResult", "FindValue", "FindValueResult",
    "GetChunk", "GetManifest", "HaveContent", "ManifestData", "ManifestLocation", "Message",
    "MsgType", "PexOffer", "PexRequest", "Providers", "REGISTRY", "RESPONSE_TYPE",
    "RelayConnect", "RelayRegister", "RelayRegistered", "RelayStream", "Store", "TYPE_OF",
    "payload_class", "payload_classes", "ACK", "encode_payload", "decode_payload",
    "encode_envelope", "decode_envelope", "request_envelope", "response_envelope",
    "error_envelope", "decode_typed",
]  # fmt: skip


# ----------------------------------------------------------------------------- payloads and envelopes
ACK = Ack()


def encode_payload(msg) -> bytes:
    """The payload bytes of a message (``Ack`` is the empty payload)."""
    if isinstance(msg, Ack):
        return b""
    return _codec.encode(msg)


def decode_payload(msg_type: int, payload, response: bool = False):
    """Decode a payload by its type; :class:`UnknownMessageType` for unregistered types."""
    cls = payload_class(msg_type, response)
    if cls is Ack:
        if len(payload):
            raise TrailingBytes(f"{len(payload)} bytes in an empty acknowledgement", offset=0)
        return ACK
    return _codec.decode(cls, payload)


def encode_envelope(env: Envelope) -> bytes:
    return _codec.encode(env)


def decode_envelope(data) -> Envelope:
    """Decode an envelope (limits: 2 MiB encoded, 1 MiB payload)."""
    return _codec.decode(Envelope, data)


def request_envelope(msg, req_id: int, msg_type: int | None = None) -> Envelope:
    """Wrap a request (or with ``req_id`` 0, a fire-and-forget message)."""
    t = TYPE_OF[type(msg)] if msg_type is None else msg_type
    return Envelope(t, req_id, 0, encode_payload(msg))


def response_envelope(request: Envelope, msg) -> Envelope:
    """Wrap the response to ``request``: the registry's response type, the request's req_id."""
    t = RESPONSE_TYPE.get(request.type)
    if t is None:
        raise UnknownMessageType(request.type)
    return Envelope(t, request.req_id, FLAG_RESPONSE, encode_payload(msg))


def error_envelope(request_type: int, req_id: int, reason: str) -> Envelope:
    """An error response: flags 3, the request's type, a UTF-8 reason (trimmed to fit)."""
    data = reason.encode("utf-8", "replace")[: limits.MAX_PAYLOAD]
    return Envelope(request_type, req_id, FLAGS_ERROR_RESPONSE, data.decode("utf-8", "ignore").encode())


def decode_typed(data):
    """Decode an envelope and then its payload by type: (envelope, message)."""
    env = decode_envelope(data)
    if env.is_error:
        return env, env.payload.decode("utf-8", "replace")
    return env, decode_payload(env.type, env.payload, env.is_response)
