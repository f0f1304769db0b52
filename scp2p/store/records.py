"""What the store keeps: small frozen slotted dataclasses that validate on construction.

Ids are ``bytes`` (NodeId 20, ShareId/ContentId/ManifestId/DHT key 32). Times are
unix seconds passed in by the caller: the store never reads a clock.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass, field

from ..errors import KeyFormatError
from ..identity import NodeKey, ShareKey
from ..identity import share_id as share_id_of
from ..limits import ID_LEN, MAX_DHT_VALUE, MAX_TTL, NODE_ID_LEN, PUBKEY_LEN, U16_MAX, U64_MAX

__all__ = [
    "TrustLevel",
    "BlocklistRole",
    "NodeKey",
    "OwnedShareKey",
    "PeerRecord",
    "Subscription",
    "ManifestRow",
    "PublishedShare",
    "PublishedFile",
    "PartialDownload",
    "CompletedDownload",
    "OwnedDhtValue",
    "Blob",
    "TRANSPORTS",
]

#: transports a stored peer address may name (``tls`` = TLS 1.3 over TCP, our addition)
TRANSPORTS = ("tcp", "tls", "quic")
SEED_LEN = 32
HASH_LEN = 32


def _check_bytes(name: str, value: object, size: int, *, optional: bool = False) -> None:
    if value is None and optional:
        return
    if not isinstance(value, bytes) or len(value) != size:
        got = f"{len(value)} bytes" if isinstance(value, (bytes, bytearray)) else type(value).__name__
        raise ValueError(f"{name} must be {size} bytes, got {got}")


def _check_uint(name: str, value: object, maximum: int = U64_MAX, *, optional: bool = False) -> None:
    if value is None and optional:
        return
    if not isinstance(value, int) or isinstance(value, bool) or not 0 <= value <= maximum:
        raise ValueError(f"{name} must be an integer in 0..{maximum}, got {value!r}")


class TrustLevel(str, enum.Enum):
    """How much a subscription is trusted; search includes TRUSTED and NORMAL by default."""

    TRUSTED = "trusted"
    NORMAL = "normal"
    UNTRUSTED = "untrusted"


class BlocklistRole(str, enum.Enum):
    """Whether a subscribed share's blocklist entries are honoured."""

    NONE = "none"  #: an ordinary catalog
    HONOURED = "honoured"  #: the user chose to honour this share's blocklist


@dataclass(frozen=True, slots=True)
class OwnedShareKey:
    """A share this node publishes: its key (``scp2p.identity.ShareKey``) and a local label."""

    key: ShareKey
    label: str | None = None

    def __post_init__(self) -> None:
        if not isinstance(self.key, ShareKey):
            raise KeyFormatError("OwnedShareKey.key must be a scp2p.identity.ShareKey")

    @property
    def share_id(self) -> bytes:
        return self.key.share_id

    @property
    def public_key(self) -> bytes:
        return self.key.public_key


@dataclass(frozen=True, slots=True)
class PeerRecord:
    """A known peer address; unique by (host, port, transport)."""

    host: str
    port: int
    transport: str = "tcp"
    node_id: bytes | None = None
    pubkey_hint: bytes | None = None
    first_seen: int = 0
    last_seen: int = 0
    failures: int = 0
    score: float = 0.0

    def __post_init__(self) -> None:
        if not isinstance(self.host, str) or not self.host:
            raise ValueError("host must be a non-empty string")
        _check_uint("port", self.port, U16_MAX)
        if self.transport not in TRANSPORTS:
            raise ValueError(f"transport must be one of {TRANSPORTS}, got {self.transport!r}")
        _check_bytes("node_id", self.node_id, NODE_ID_LEN, optional=True)
        _check_bytes("pubkey_hint", self.pubkey_hint, PUBKEY_LEN, optional=True)
        _check_uint("first_seen", self.first_seen)
        _check_uint("last_seen", self.last_seen)
        _check_uint("failures", self.failures)


@dataclass(frozen=True, slots=True)
class Subscription:
    """A share this node follows."""

    share_id: bytes
    share_pubkey: bytes | None = None
    trust: TrustLevel = TrustLevel.NORMAL
    weight: float = 1.0
    latest_seq: int | None = None
    latest_manifest_id: bytes | None = None
    blocklist: BlocklistRole = BlocklistRole.NONE

    def __post_init__(self) -> None:
        _check_bytes("share_id", self.share_id, ID_LEN)
        _check_bytes("share_pubkey", self.share_pubkey, PUBKEY_LEN, optional=True)
        if self.share_pubkey is not None and share_id_of(self.share_pubkey) != self.share_id:
            raise ValueError("share_pubkey does not hash to share_id")
        object.__setattr__(self, "trust", TrustLevel(self.trust))
        object.__setattr__(self, "blocklist", BlocklistRole(self.blocklist))
        if not isinstance(self.weight, (int, float)) or not self.weight >= 0.0:
            raise ValueError(f"weight must be a non-negative number, got {self.weight!r}")
        _check_uint("latest_seq", self.latest_seq, optional=True)
        _check_bytes("latest_manifest_id", self.latest_manifest_id, ID_LEN, optional=True)
        if (self.latest_seq is None) != (self.latest_manifest_id is None):
            raise ValueError("latest_seq and latest_manifest_id are set together")


@dataclass(frozen=True, slots=True)
class ManifestRow:
    """A cached manifest: its wire bytes plus the few decoded columns queries need."""

    manifest_id: bytes
    share_id: bytes
    seq: int
    created_at: int
    expires_at: int | None
    wire: bytes = field(repr=False)
    title: str | None = None
    item_count: int = 0

    def __post_init__(self) -> None:
        _check_bytes("manifest_id", self.manifest_id, ID_LEN)
        _check_bytes("share_id", self.share_id, ID_LEN)
        _check_uint("seq", self.seq)
        _check_uint("created_at", self.created_at)
        _check_uint("expires_at", self.expires_at, optional=True)
        _check_uint("item_count", self.item_count)
        if not isinstance(self.wire, bytes) or not self.wire:
            raise ValueError("wire must be non-empty bytes")


@dataclass(frozen=True, slots=True)
class PublishedShare:
    """A share this node publishes (its key is in the share keys)."""

    share_id: bytes
    root_path: str | None = None
    title: str | None = None
    description: str | None = None
    latest_seq: int = 0
    latest_manifest_id: bytes | None = None

    def __post_init__(self) -> None:
        _check_bytes("share_id", self.share_id, ID_LEN)
        _check_uint("latest_seq", self.latest_seq)
        _check_bytes("latest_manifest_id", self.latest_manifest_id, ID_LEN, optional=True)


@dataclass(frozen=True, slots=True)
class PublishedFile:
    """A local file in a published share. (size, mtime_ns, inode) unchanged => hashes still valid."""

    path: str
    size: int
    mtime_ns: int
    inode: int
    content_id: bytes
    chunk_hashes: tuple[bytes, ...] = field(default=(), repr=False)

    def __post_init__(self) -> None:
        if not isinstance(self.path, str) or not self.path:
            raise ValueError("path must be a non-empty string")
        _check_uint("size", self.size)
        _check_uint("mtime_ns", self.mtime_ns)
        _check_uint("inode", self.inode)
        _check_bytes("content_id", self.content_id, ID_LEN)
        object.__setattr__(self, "chunk_hashes", tuple(self.chunk_hashes))
        for i, h in enumerate(self.chunk_hashes):
            _check_bytes(f"chunk_hashes[{i}]", h, HASH_LEN)

    def matches_stat(self, size: int, mtime_ns: int, inode: int) -> bool:
        """True if a fresh ``os.stat`` shows the file unchanged (no re-hash needed)."""
        return self.size == size and self.mtime_ns == mtime_ns and self.inode == inode


@dataclass(frozen=True, slots=True)
class PartialDownload:
    """A download in progress. ``bitmap`` bit i (MSB first in each byte) = chunk i verified on disk."""

    content_id: bytes
    target_path: str
    size: int
    chunk_count: int
    bitmap: bytes = field(default=b"", repr=False)
    manifest_id: bytes | None = None
    share_id: bytes | None = None

    def __post_init__(self) -> None:
        _check_bytes("content_id", self.content_id, ID_LEN)
        if not isinstance(self.target_path, str) or not self.target_path:
            raise ValueError("target_path must be a non-empty string")
        _check_uint("size", self.size)
        _check_uint("chunk_count", self.chunk_count, 0xFFFF_FFFF)
        need = (self.chunk_count + 7) // 8
        if self.bitmap == b"":
            object.__setattr__(self, "bitmap", bytes(need))
        if not isinstance(self.bitmap, bytes) or len(self.bitmap) != need:
            raise ValueError(f"bitmap must be {need} bytes for {self.chunk_count} chunks")
        _check_bytes("manifest_id", self.manifest_id, ID_LEN, optional=True)
        _check_bytes("share_id", self.share_id, ID_LEN, optional=True)

    def has_chunk(self, index: int) -> bool:
        if not 0 <= index < self.chunk_count:
            raise IndexError(index)
        return bool(self.bitmap[index >> 3] & (0x80 >> (index & 7)))

    @property
    def chunks_done(self) -> int:
        return sum(bin(b).count("1") for b in self.bitmap)

    @property
    def complete(self) -> bool:
        return self.chunks_done == self.chunk_count


def set_bits(bitmap: bytes, indices, chunk_count: int) -> bytes:
    """Return ``bitmap`` with the bits for ``indices`` set (MSB first)."""
    out = bytearray(bitmap)
    for i in indices:
        if not 0 <= i < chunk_count:
            raise IndexError(f"chunk index {i} out of range 0..{chunk_count - 1}")
        out[i >> 3] |= 0x80 >> (i & 7)
    return bytes(out)


@dataclass(frozen=True, slots=True)
class CompletedDownload:
    """A downloaded, verified file; served while (size, mtime_ns, inode) still match the disk."""

    content_id: bytes
    path: str
    size: int
    mtime_ns: int
    inode: int
    completed_at: int = 0

    def __post_init__(self) -> None:
        _check_bytes("content_id", self.content_id, ID_LEN)
        if not isinstance(self.path, str) or not self.path:
            raise ValueError("path must be a non-empty string")
        _check_uint("size", self.size)
        _check_uint("mtime_ns", self.mtime_ns)
        _check_uint("inode", self.inode)
        _check_uint("completed_at", self.completed_at)

    def matches_stat(self, size: int, mtime_ns: int, inode: int) -> bool:
        return self.size == size and self.mtime_ns == mtime_ns and self.inode == inode


@dataclass(frozen=True, slots=True)
class OwnedDhtValue:
    """A DHT value this node published and must republish before ``ttl`` runs out."""

    key: bytes
    value: bytes = field(repr=False)
    ttl: int
    next_republish_at: int

    def __post_init__(self) -> None:
        _check_bytes("key", self.key, ID_LEN)
        if not isinstance(self.value, bytes) or len(self.value) > MAX_DHT_VALUE:
            raise ValueError(f"value must be bytes of at most {MAX_DHT_VALUE}")
        if not isinstance(self.ttl, int) or not 1 <= self.ttl <= MAX_TTL:
            raise ValueError(f"ttl must be in 1..{MAX_TTL}, got {self.ttl!r}")
        _check_uint("next_republish_at", self.next_republish_at)


@dataclass(frozen=True, slots=True)
class Blob:
    """A named blob (e.g. the persisted search index). ``generation`` grows on every write."""

    name: str
    generation: int
    data: bytes = field(repr=False)
