"""The v0.1 data records (PROTOCOL.md sections 2-4), as frozen slotted dataclasses.

Field order is wire order. Constructing a record validates and normalises it
(lists become tuples, IP text becomes an ``ipaddress`` object, enum text the
member); decoding builds records directly from checked bytes.
"""

from __future__ import annotations

import enum
import ipaddress
from dataclasses import dataclass
from typing import Optional, Union

from .. import limits
from .schema import (
    boolean,
    bytestr,
    enum_text,
    fixed,
    ip,
    list_of,
    normalize,
    opt,
    record,
    repeating,
    text,
    u16,
    u32,
    u64,
    wire_record,
)

IPAddress = Union[ipaddress.IPv4Address, ipaddress.IPv6Address]


class Transport(str, enum.Enum):
    """How a peer is reached. v0.1 knows ``tcp`` and ``quic``."""

    TCP = "tcp"
    QUIC = "quic"

    def __str__(self) -> str:
        return self.value


class RelayKind(str, enum.Enum):
    """What a relay stream carries."""

    CONTROL = "control"
    CONTENT = "content"

    def __str__(self) -> str:
        return self.value


class _Record:
    """Mixin: validation on construction."""

    __slots__ = ()

    def __post_init__(self) -> None:
        normalize(self)


@wire_record(
    ip("ip"),
    u16("port"),
    enum_text("transport", Transport),
    opt(fixed("pubkey_hint", limits.PUBKEY_LEN)),
    max_size=limits.MAX_DHT_VALUE,
)
@dataclass(frozen=True, slots=True)
class PeerAddr(_Record):
    """Where a peer listens. ``pubkey_hint`` is the node public key expected there, if known."""

    ip: IPAddress
    port: int
    transport: Transport = Transport.TCP
    pubkey_hint: Optional[bytes] = None


@wire_record(
    boolean("dht"),
    boolean("store"),
    boolean("relay"),
    boolean("content_seed"),
    boolean("mobile_light"),
    max_size=limits.MAX_HELLO_FRAME,
)
@dataclass(frozen=True, slots=True)
class Capabilities(_Record):
    """What a node offers. Use :meth:`desktop` or :meth:`light` for the section 2 profiles."""

    dht: bool = False
    store: bool = False
    relay: bool = False
    content_seed: bool = False
    mobile_light: bool = False

    @classmethod
    def desktop(cls, *, relay: bool = False) -> "Capabilities":
        return cls(dht=True, store=True, relay=relay, content_seed=True, mobile_light=False)

    @classmethod
    def light(cls) -> "Capabilities":
        return cls(content_seed=True, mobile_light=True)


@wire_record(
    fixed("content_id", limits.ID_LEN),
    u64("size"),
    text("name"),
    opt(repeating(text("mime"))),
    list_of("tags", repeating(text("tag"))),
    list_of("chunks", fixed("chunk", limits.ID_LEN)),
    max_size=limits.MAX_MANIFEST,
)
@dataclass(frozen=True, slots=True)
class ItemV1(_Record):
    """One file in a manifest."""

    content_id: bytes
    size: int
    name: str
    mime: Optional[str] = None
    tags: tuple[str, ...] = ()
    chunks: tuple[bytes, ...] = ()


@wire_record(
    u64("version"),
    fixed("share_pubkey", limits.PUBKEY_LEN),
    fixed("share_id", limits.ID_LEN),
    u64("seq"),
    u64("created_at"),
    opt(u64("expires_at")),
    opt(text("title")),
    opt(text("description")),
    list_of("items", record("item", ItemV1)),
    list_of("recommended_shares", fixed("share_id", limits.ID_LEN)),
    opt(fixed("signature", limits.SIGNATURE_LEN)),
    max_size=limits.MAX_MANIFEST,
)
@dataclass(frozen=True, slots=True)
class ManifestV1(_Record):
    """A share's signed catalog (section 3.1). ``signature`` is None while unsigned."""

    version: int
    share_pubkey: bytes
    share_id: bytes
    seq: int
    created_at: int
    expires_at: Optional[int] = None
    title: Optional[str] = None
    description: Optional[str] = None
    items: tuple[ItemV1, ...] = ()
    recommended_shares: tuple[bytes, ...] = ()
    signature: Optional[bytes] = None


#: fields covered by the manifest signature (section 3.2): all but ``signature``
MANIFEST_SIGNED_FIELDS = 10


@wire_record(
    fixed("share_id", limits.ID_LEN),
    u64("latest_seq"),
    fixed("latest_manifest_id", limits.ID_LEN),
    u64("updated_at"),
    fixed("sig", limits.SIGNATURE_LEN),
    max_size=limits.MAX_DHT_VALUE,
)
@dataclass(frozen=True, slots=True)
class ShareHead(_Record):
    """The DHT value under ``share:head:`` || ShareId (section 3.4)."""

    share_id: bytes
    latest_seq: int
    latest_manifest_id: bytes
    updated_at: int
    sig: bytes


SHARE_HEAD_SIGNED_FIELDS = 4


@wire_record(
    fixed("content_id", limits.ID_LEN),
    list_of("providers", record("provider", PeerAddr)),
    u64("updated_at"),
    max_size=limits.MAX_PAYLOAD,
)
@dataclass(frozen=True, slots=True)
class Providers(_Record):
    """Provider hint for a content id: DHT value under ``content:prov:`` and message 498."""

    content_id: bytes
    providers: tuple[PeerAddr, ...]
    updated_at: int


@wire_record(
    fixed("manifest_id", limits.ID_LEN),
    list_of("providers", record("provider", PeerAddr)),
    u64("updated_at"),
    max_size=limits.MAX_DHT_VALUE,
)
@dataclass(frozen=True, slots=True)
class ManifestLocation(_Record):
    """Provider hint for a manifest: DHT value under ``manifest:loc:``."""

    manifest_id: bytes
    providers: tuple[PeerAddr, ...]
    updated_at: int


@wire_record(
    u16("type"),
    u32("req_id"),
    u16("flags"),
    bytestr("payload", limits.MAX_PAYLOAD),
    max_size=limits.MAX_ENVELOPE,
)
@dataclass(frozen=True, slots=True)
class Envelope(_Record):
    """Every post-handshake frame (section 4.4). ``type`` is an int so unknown types decode."""

    type: int
    req_id: int
    flags: int
    payload: bytes

    @property
    def is_response(self) -> bool:
        return bool(self.flags & FLAG_RESPONSE)

    @property
    def is_error(self) -> bool:
        return bool(self.flags & FLAG_ERROR)


FLAG_RESPONSE = 0x0001
FLAG_ERROR = 0x0002
#: flags of an error response
FLAGS_ERROR_RESPONSE = FLAG_RESPONSE | FLAG_ERROR


@wire_record(
    fixed("node_pubkey", limits.PUBKEY_LEN),
    record("capabilities", Capabilities),
    fixed("nonce", limits.NONCE_LEN),
    opt(fixed("echoed_nonce", limits.NONCE_LEN)),
    u64("timestamp_unix_secs"),
    fixed("signature", limits.SIGNATURE_LEN),
    max_size=limits.MAX_HELLO_FRAME,
)
@dataclass(frozen=True, slots=True)
class Hello(_Record):
    """The handshake message (section 4.2)."""

    node_pubkey: bytes
    capabilities: Capabilities
    nonce: bytes
    echoed_nonce: Optional[bytes]
    timestamp_unix_secs: int
    signature: bytes


HELLO_SIGNED_FIELDS = 5

__all__ = [
    "Capabilities",
    "Envelope",
    "FLAG_ERROR",
    "FLAG_RESPONSE",
    "FLAGS_ERROR_RESPONSE",
    "HELLO_SIGNED_FIELDS",
    "Hello",
    "IPAddress",
    "ItemV1",
    "MANIFEST_SIGNED_FIELDS",
    "ManifestLocation",
    "ManifestV1",
    "PeerAddr",
    "Providers",
    "RelayKind",
    "SHARE_HEAD_SIGNED_FIELDS",
    "ShareHead",
    "Transport",
]
