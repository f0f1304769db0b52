"""DHT value validation (PROTOCOL.md section 6).

Known keyspaces are recognised by the value's shape: a ShareHead must sit under
``share:head:`` || its share_id (and verify when the share key is known), a
provider hint under ``content:prov:`` || its content_id, a manifest location under
``manifest:loc:`` || its manifest_id. A value of none of these shapes belongs to
an unknown keyspace and is accepted within the size limit. TTLs above 7 days
are clamped to 7 days (never stored longer).
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Optional, Union

from ..catalog.share_head import verify_share_head
from ..errors import DecodeError, IdMismatch, LimitExceeded
from ..identity import content_prov_key, manifest_loc_key, share_head_key
from ..limits import ID_LEN, MAX_DHT_VALUE, MAX_TTL
from ..wire import codec
from ..wire.messages import Store
from ..wire.records import ManifestLocation, Providers, ShareHead

DhtValue = Union[ShareHead, Providers, ManifestLocation, bytes]


@dataclass(frozen=True, slots=True)
class ValidatedValue:
    """A value that passed keyspace validation: ``kind`` and the decoded record (or raw bytes)."""

    kind: str  # "share:head" | "content:prov" | "manifest:loc" | "unknown"
    value: DhtValue


def _try(cls, value: bytes):
    try:
        return codec.decode(cls, value, MAX_DHT_VALUE)
    except DecodeError:
        return None


def validate_dht_value(key: bytes, value: bytes, *, share_pubkey: Optional[bytes] = None) -> ValidatedValue:
    """Check a value against its 32-byte key; raise a specific :class:`Scp2pError` if it does not belong."""
    if len(key) != ID_LEN:
        raise IdMismatch(f"DHT key must be {ID_LEN} bytes, got {len(key)}")
    if len(value) > MAX_DHT_VALUE:
        raise LimitExceeded(f"DHT value of {len(value)} bytes exceeds {MAX_DHT_VALUE}")
    key = bytes(key)
    head = _try(ShareHead, value)
    if head is not None:
        if share_head_key(head.share_id) != key:
            raise IdMismatch("share head stored under a key that is not share:head of its share_id")
        if share_pubkey is not None:
            verify_share_head(head, share_pubkey)
        return ValidatedValue("share:head", head)
    prov = _try(Providers, value)
    if prov is not None:
        if content_prov_key(prov.content_id) != key:
            raise IdMismatch("provider hint stored under a key that is not content:prov of its content_id")
        return ValidatedValue("content:prov", prov)
    loc = _try(ManifestLocation, value)
    if loc is not None:
        if manifest_loc_key(loc.manifest_id) != key:
            raise IdMismatch("manifest location stored under a key that is not manifest:loc of its manifest_id")
        return ValidatedValue("manifest:loc", loc)
    return ValidatedValue("unknown", bytes(value))


def validate_store(store: Store) -> Store:
    """Apply the STORE limits: the value size (enforced by the decoder too) and TTL clamped to 7 days."""
    if len(store.value) > MAX_DHT_VALUE:
        raise LimitExceeded(f"DHT value of {len(store.value)} bytes exceeds {MAX_DHT_VALUE}")
    if store.ttl_secs > MAX_TTL:
        return replace(store, ttl_secs=MAX_TTL)
    return store


def decode_store(payload) -> Store:
    """Decode a STORE payload and apply :func:`validate_store`."""
    return validate_store(codec.decode(Store, payload))
