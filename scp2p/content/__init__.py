"""Content addressing: ContentId, chunk hashes, describing and verifying files (PROTOCOL.md section 1)."""

from scp2p.content.hashing import (
    CHUNK_SIZE,
    HASH_LEN,
    FileDescription,
    chunk_count,
    chunk_hash,
    content_id_of,
    describe_bytes,
    describe_file,
    verify_chunk,
    verify_file,
)

__all__ = [
    "CHUNK_SIZE",
    "HASH_LEN",
    "FileDescription",
    "chunk_count",
    "chunk_hash",
    "content_id_of",
    "describe_bytes",
    "describe_file",
    "verify_chunk",
    "verify_file",
]
