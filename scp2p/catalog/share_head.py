"""ShareHead: the signed pointer to a share's latest manifest (PROTOCOL.md section 3.4)."""

from __future__ import annotations

from ..errors import IdMismatch
from ..identity import ShareKey, share_id, verify_signature
from ..limits import MAX_DHT_VALUE
from ..wire import codec
from ..wire.records import SHARE_HEAD_SIGNED_FIELDS, ShareHead


def share_head_signing_bytes(head: ShareHead) -> bytes:
    """CBOR array ``[share_id, latest_seq, latest_manifest_id, updated_at]``."""
    return codec.encode_signing(head, SHARE_HEAD_SIGNED_FIELDS, False)


def sign_share_head(key: ShareKey, latest_seq: int, latest_manifest_id: bytes, updated_at: int) -> ShareHead:
    unsigned = ShareHead(key.share_id, latest_seq, latest_manifest_id, updated_at, bytes(64))
    sig = key.sign(share_head_signing_bytes(unsigned))
    return ShareHead(key.share_id, latest_seq, latest_manifest_id, updated_at, sig)


def verify_share_head(head: ShareHead, share_pubkey: bytes) -> None:
    """Raise :class:`IdMismatch` / :class:`SignatureInvalid` unless ``head`` is signed by ``share_pubkey``."""
    if share_id(share_pubkey) != head.share_id:
        raise IdMismatch("share head share_id is not SHA-256 of the given share public key")
    verify_signature(share_pubkey, head.sig, share_head_signing_bytes(head))


def encode_share_head(head: ShareHead) -> bytes:
    return codec.encode(head)


def decode_share_head(data, *, max_size: int = MAX_DHT_VALUE) -> ShareHead:
    return codec.decode(ShareHead, data, max_size)
