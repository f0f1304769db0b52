"""The CHUNK_DATA fast path: parse and build the payload without intermediate objects.

A CHUNK_DATA payload (PROTOCOL.md section 5) is the CBOR map
``{content_id: [32 uints], chunk_index: u32, bytes: bstr}``. Our encoder and the
v0.1 network emit exactly that layout, so:

* :func:`parse_chunk_data` reads ``(content_id, chunk_index, data_offset,
  data_length)`` straight out of a buffer (a ``memoryview`` of the received
  frame): the chunk bytes are never copied - the caller hashes and writes them
  from the frame buffer itself. A payload in any other layout (keys in another
  order, unknown keys, a byte string where the array is expected) falls back to
  the generic codec, which also owns every error report.
* :func:`chunk_data_header` builds the bytes that precede the chunk bytes, so a
  server can lay the header into a buffer and ``preadv`` the chunk right after it:
  ``header + chunk`` is byte for byte ``encode_payload(ChunkData(...))``.
"""

from __future__ import annotations

from typing import Optional, Union

from ..limits import ID_LEN, MAX_PAYLOAD, U32_MAX
from ..transport.datapath import chunk_fields, chunk_tail, content_id_at
from ..wire import codec as _codec
from ..wire._codec_py import _BYTE_AS_UINT, _head
from ..wire.messages import ChunkData

Buffer = Union[bytes, bytearray, memoryview]

_K_CID = b"\xa3\x6acontent_id\x98\x20"
_K_IDX = b"\x6bchunk_index"
_K_BYTES = b"\x65bytes"

__all__ = ["chunk_data_header", "chunk_slice", "parse_chunk_data", "ChunkView"]

ChunkView = tuple  # (content_id: bytes, chunk_index: int, data_offset: int, data_length: int)


_BYTE_ITEMS = _BYTE_AS_UINT


def chunk_data_header(content_id: bytes, chunk_index: int, length: int) -> bytes:
    """The CHUNK_DATA payload up to (not including) the ``length`` chunk bytes."""
    if len(content_id) != ID_LEN:
        raise ValueError("content_id must be 32 bytes")
    if not 0 <= chunk_index <= U32_MAX:
        raise ValueError("chunk_index out of range")
    if not 0 <= length <= MAX_PAYLOAD:
        raise ValueError("chunk length out of range")
    return b"".join((_cid_prefix(content_id), _K_IDX, _head(0, chunk_index), _K_BYTES, _head(2, length)))


def _cid_prefix(content_id: bytes) -> bytes:
    """The canonical CHUNK_DATA bytes up to the end of ``content_id`` (cached)."""
    if type(content_id) is not bytes:
        content_id = bytes(content_id)
    p = _PREFIXES.get(content_id)
    if p is None:
        if len(_PREFIXES) >= 64:
            _PREFIXES.clear()
        p = _PREFIXES[content_id] = _K_CID + b"".join(_BYTE_ITEMS[b] for b in content_id)
    return p


_PREFIXES: dict[bytes, bytes] = {}


def _fast(b, expect: Optional[bytes] = None) -> ChunkView | None:
    if expect is not None:  # the expected content id, compared in its encoded form (one memcmp)
        r = chunk_fields(b, _cid_prefix(expect))
        if r is not None:
            return expect, r[0], r[1], r[2]
    if len(b) < 48 or b[:14] != _K_CID:
        return None
    r = content_id_at(b, 14)
    if r is None:
        return None
    t = chunk_tail(b, r[1])
    return None if t is None else (r[0], t[0], t[1], t[2])


def parse_chunk_data(payload: Buffer) -> ChunkView | None:
    """``(content_id, chunk_index, data_offset, data_length)`` of a canonical CHUNK_DATA
    payload, or None when the layout is not the canonical one (use :func:`chunk_slice`,
    which falls back to the generic codec). Only a chunk over ``MAX_PAYLOAD`` raises here."""
    return _fast(payload if isinstance(payload, memoryview) else memoryview(payload))


def chunk_slice(payload: Buffer, expect: Optional[bytes] = None) -> tuple[bytes, int, memoryview]:
    """``(content_id, chunk_index, data)`` where ``data`` is a memoryview (of ``payload`` on the fast path).

    ``expect``: the content id the caller wants (a download): matched in its encoded form
    instead of decoding the 32 id bytes one by one; any other id is still decoded and returned."""
    mv = payload if isinstance(payload, memoryview) else memoryview(payload)
    fast = _fast(mv, expect)
    if fast is not None:
        cid, idx, start, length = fast
        return cid, idx, mv[start : start + length]
    msg = _codec.decode(ChunkData, mv)
    return msg.content_id, msg.chunk_index, memoryview(msg.bytes)
