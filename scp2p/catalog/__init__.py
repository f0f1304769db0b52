"""Catalogs: building, signing and verifying manifests and share heads."""

from .manifest import (
    DEFAULT_MIME,
    build_manifest,
    check_manifest_id,
    decode_manifest,
    encode_manifest,
    item_from_file,
    manifest_id,
    manifest_id_preimage,
    manifest_signing_bytes,
    sign_manifest,
    verify_manifest,
    verify_manifest_wire,
)
from .share_head import (
    decode_share_head,
    encode_share_head,
    share_head_signing_bytes,
    sign_share_head,
    verify_share_head,
)

__all__ = [
    "DEFAULT_MIME", "build_manifest", "check_manifest_id", "decode_manifest", "decode_share_head",
    "encode_manifest", "encode_share_head", "item_from_file", "manifest_id", "manifest_id_preimage",
    "manifest_signing_bytes", "share_head_signing_bytes", "sign_manifest", "sign_share_head",
    "verify_manifest", "verify_manifest_wire", "verify_share_head",
]  # fmt: skip
