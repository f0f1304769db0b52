"""Identities and hashes (PROTOCOL.md section 1): Ed25519 keys, ids and DHT key derivations."""

from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass, field
from typing import NewType

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

from .errors import KeyFormatError, SignatureInvalid
from .limits import ID_LEN, NODE_ID_LEN, PUBKEY_LEN, SIGNATURE_LEN

#: first 20 bytes of SHA-256(node public key)
NodeId = NewType("NodeId", bytes)
#: SHA-256(share public key)
ShareId = NewType("ShareId", bytes)
#: BLAKE3(whole file bytes)
ContentId = NewType("ContentId", bytes)
#: BLAKE3(manifest id preimage)
ManifestId = NewType("ManifestId", bytes)
#: SHA-256(prefix || id), routed by its first 20 bytes
DhtKey = NewType("DhtKey", bytes)

SHARE_HEAD_PREFIX = b"share:head:"
MANIFEST_LOC_PREFIX = b"manifest:loc:"
CONTENT_PROV_PREFIX = b"content:prov:"
DHT_PREFIXES = {
    "share:head": SHARE_HEAD_PREFIX,
    "manifest:loc": MANIFEST_LOC_PREFIX,
    "content:prov": CONTENT_PROV_PREFIX,
}


def _check_len(value: bytes, n: int, what: str) -> bytes:
    if not isinstance(value, (bytes, bytearray, memoryview)) or len(value) != n:
        size = len(value) if isinstance(value, (bytes, bytearray, memoryview)) else type(value).__name__
        raise KeyFormatError(f"{what} must be {n} bytes, got {size}")
    return bytes(value)


def node_id(node_pubkey: bytes) -> NodeId:
    return NodeId(hashlib.sha256(_check_len(node_pubkey, PUBKEY_LEN, "node public key")).digest()[:NODE_ID_LEN])


def share_id(share_pubkey: bytes) -> ShareId:
    return ShareId(hashlib.sha256(_check_len(share_pubkey, PUBKEY_LEN, "share public key")).digest())


def dht_key(prefix: bytes, ident: bytes) -> DhtKey:
    return DhtKey(hashlib.sha256(prefix + _check_len(ident, ID_LEN, "id")).digest())


def share_head_key(sid: bytes) -> DhtKey:
    return dht_key(SHARE_HEAD_PREFIX, sid)


def manifest_loc_key(manifest_id: bytes) -> DhtKey:
    return dht_key(MANIFEST_LOC_PREFIX, manifest_id)


def content_prov_key(content_id: bytes) -> DhtKey:
    return dht_key(CONTENT_PROV_PREFIX, content_id)


def routing_id(key: bytes) -> bytes:
    """The 160-bit id a 32-byte DHT key is routed by (its first 20 bytes)."""
    return bytes(key[:NODE_ID_LEN])


def verify_signature(pubkey: bytes, signature: bytes, message: bytes) -> None:
    """Raise :class:`SignatureInvalid` unless ``signature`` is ``pubkey``'s Ed25519 signature of ``message``."""
    _check_len(signature, SIGNATURE_LEN, "signature")
    try:
        key = Ed25519PublicKey.from_public_bytes(_check_len(pubkey, PUBKEY_LEN, "public key"))
        key.verify(bytes(signature), message)
    except InvalidSignature:
        raise SignatureInvalid("Ed25519 signature does not verify") from None
    except ValueError as exc:  # not a valid curve point
        raise SignatureInvalid(f"invalid Ed25519 public key: {exc}") from None


@dataclass(frozen=True, slots=True, repr=False)
class SigningKey:
    """An Ed25519 key pair. The 32-byte ``seed`` is the secret; never logged (see ``repr``)."""

    seed: bytes
    public_key: bytes = field(init=False)
    _sk: Ed25519PrivateKey = field(init=False, compare=False)

    def __post_init__(self) -> None:
        seed = _check_len(self.seed, 32, "Ed25519 secret seed")
        sk = Ed25519PrivateKey.from_private_bytes(seed)
        object.__setattr__(self, "seed", seed)
        object.__setattr__(self, "_sk", sk)
        object.__setattr__(self, "public_key", sk.public_key().public_bytes(Encoding.Raw, PublicFormat.Raw))

    @classmethod
    def generate(cls):
        return cls(os.urandom(32))

    def sign(self, message: bytes) -> bytes:
        return self._sk.sign(message)

    def __repr__(self) -> str:
        return f"{type(self).__name__}(public_key={self.public_key.hex()})"


@dataclass(frozen=True, slots=True, repr=False)
class NodeKey(SigningKey):
    """A node's identity key."""

    @property
    def node_id(self) -> NodeId:
        return node_id(self.public_key)


@dataclass(frozen=True, slots=True, repr=False)
class ShareKey(SigningKey):
    """A share's publishing key (a node may own several)."""

    @property
    def share_id(self) -> ShareId:
        return share_id(self.public_key)


__all__ = [
    "CONTENT_PROV_PREFIX", "ContentId", "DHT_PREFIXES", "DhtKey", "MANIFEST_LOC_PREFIX",
    "ManifestId", "NodeId", "NodeKey", "SHARE_HEAD_PREFIX", "ShareId", "ShareKey", "SigningKey",
    "content_prov_key", "dht_key", "manifest_loc_key", "node_id", "routing_id", "share_head_key",
    "share_id", "verify_signature",
]  # fmt: skip
