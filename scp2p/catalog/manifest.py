"""ManifestV1: build, sign, verify, identify (PROTOCOL.md sections 3.1-3.3)."""

from __future__ import annotations

import dataclasses
import mimetypes
import os
import time
from pathlib import Path
from typing import Callable, Iterable, Optional, Sequence

import blake3

from ..errors import IdMismatch, SignatureInvalid, VerificationError
from ..identity import ManifestId, ShareKey, share_id, verify_signature
from ..limits import DEFAULT_MANIFEST_LIFETIME, MAX_MANIFEST
from ..wire import codec
from ..wire.records import MANIFEST_SIGNED_FIELDS, ItemV1, ManifestV1

MANIFEST_VERSION = 1
#: mime given to files whose type cannot be guessed from the name
DEFAULT_MIME = "application/octet-stream"
_PREIMAGE_FIELDS = MANIFEST_SIGNED_FIELDS + 1


def manifest_signing_bytes(m: ManifestV1) -> bytes:
    """Section 3.2: positional array of the first ten fields, items as positional arrays."""
    return codec.encode_signing(m, MANIFEST_SIGNED_FIELDS, True)


def manifest_id_preimage(m: ManifestV1) -> bytes:
    """Section 3.3: positional array of all eleven fields, items as maps."""
    return codec.encode_signing(m, _PREIMAGE_FIELDS, False)


def manifest_id(m: ManifestV1) -> ManifestId:
    return ManifestId(blake3.blake3(manifest_id_preimage(m)).digest())


def encode_manifest(m: ManifestV1) -> bytes:
    """The manifest's wire map (what GET_MANIFEST serves)."""
    return codec.encode(m)


def decode_manifest(data, *, max_size: int = MAX_MANIFEST) -> ManifestV1:
    """Decode a manifest wire map (no signature check: see :func:`verify_manifest`)."""
    return codec.decode(ManifestV1, data, max_size)


def sign_manifest(m: ManifestV1, key: ShareKey) -> ManifestV1:
    """Return ``m`` signed by ``key``; its share_pubkey and share_id must be the key's."""
    if m.share_pubkey != key.public_key:
        raise IdMismatch("manifest share_pubkey is not the signing key's public key")
    if m.share_id != key.share_id:
        raise IdMismatch("manifest share_id is not SHA-256 of the signing key")
    return dataclasses.replace(m, signature=key.sign(manifest_signing_bytes(m)))


def verify_manifest(m: ManifestV1) -> None:
    """Raise a :class:`VerificationError` unless ``m`` is a valid signed v1 manifest."""
    if m.version != MANIFEST_VERSION:
        raise VerificationError(f"unsupported manifest version {m.version}")
    if share_id(m.share_pubkey) != m.share_id:
        raise IdMismatch("manifest share_id is not SHA-256(share_pubkey)")
    if m.signature is None:
        raise SignatureInvalid("manifest is not signed")
    verify_signature(m.share_pubkey, m.signature, manifest_signing_bytes(m))


def verify_manifest_wire(data, *, max_size: int = MAX_MANIFEST) -> ManifestV1:
    """Decode wire bytes and verify; returns the manifest."""
    m = decode_manifest(data, max_size=max_size)
    verify_manifest(m)
    return m


def check_manifest_id(m: ManifestV1, claimed: bytes) -> None:
    """Raise :class:`IdMismatch` unless ``m`` hashes to the ManifestId that was asked for."""
    actual = manifest_id(m)
    if actual != bytes(claimed):
        raise IdMismatch(f"manifest id is {actual.hex()}, expected {bytes(claimed).hex()}")


def build_manifest(
    key: ShareKey,
    seq: int,
    items: Iterable[ItemV1],
    *,
    title: Optional[str] = None,
    description: Optional[str] = None,
    recommended_shares: Sequence[bytes] = (),
    created_at: Optional[int] = None,
    expires_at: Optional[int] | type[dataclasses.MISSING] = dataclasses.MISSING,
) -> ManifestV1:
    """Build and sign a manifest. ``expires_at`` defaults to created_at + 30 days; pass None for none."""
    now = int(time.time()) if created_at is None else created_at
    if expires_at is dataclasses.MISSING:
        expires_at = now + DEFAULT_MANIFEST_LIFETIME
    m = ManifestV1(
        version=MANIFEST_VERSION,
        share_pubkey=key.public_key,
        share_id=key.share_id,
        seq=seq,
        created_at=now,
        expires_at=expires_at,
        title=title,
        description=description,
        items=tuple(items),
        recommended_shares=tuple(recommended_shares),
    )
    return sign_manifest(m, key)


def guess_mime(name: str) -> str:
    mime, _ = mimetypes.guess_type(name, strict=False)
    return mime or DEFAULT_MIME


def item_from_file(
    path: str | os.PathLike,
    *,
    root: str | os.PathLike | None = None,
    tags: Iterable[str] = (),
    mime: Optional[str] = None,
    progress: Callable[[int, int], None] | None = None,
) -> ItemV1:
    """Describe one file as an item: name, size, mime guess, chunk hashes and tags.

    Tags are the names of the sub-folders between ``root`` and the file (lower-cased,
    in order), followed by ``tags``; duplicates are dropped, order kept.
    """
    from ..content.hashing import describe_file

    p = Path(path)
    desc = describe_file(p, progress=progress)
    folder_tags: list[str] = []
    if root is not None:
        rel = p.resolve().relative_to(Path(root).resolve())
        folder_tags = [part.lower() for part in rel.parts[:-1]]
    all_tags = list(dict.fromkeys([*folder_tags, *(t for t in tags if t)]))
    return ItemV1(
        content_id=desc.content_id,
        size=desc.size,
        name=p.name,
        mime=mime if mime is not None else guess_mime(p.name),
        tags=tuple(all_tags),
        chunks=desc.chunks,
    )
