"""Pure-Python twin of ``_native/datapath.pyx`` (the reference): the per-chunk steps of the
receive and request path, which run once per 256 KiB chunk on the downloader's event loop.

Both twins have the same API, results and exceptions (``tests/transport/test_transport_datapath_twins.py``):

* ``envelope_fields(body)`` -> ``(type, req_id, flags, payload_start)`` of a frame body in the
  canonical Envelope layout, or None (anything else goes through the generic codec);
* ``chunk_fields(payload, prefix)`` -> ``(chunk_index, data_start, data_length)`` of a canonical
  CHUNK_DATA payload that starts with ``prefix`` (the encoded bytes up to the end of the
  content id), or None; ``chunk_tail(payload, i)`` the same from offset ``i`` (right after the
  content id); a chunk longer than ``MAX_PAYLOAD`` raises :class:`LimitExceeded`;
* ``envelope_header(msg_type, req_id, flags, payload_len)`` -> the 4-byte frame length plus
  the Envelope map up to the payload bytes (``ValueError`` / :class:`FrameTooLarge` out of range);
* ``uint(v)`` -> the shortest CBOR encoding of an unsigned integer (``ValueError`` if negative or
  above 2**64-1);
* ``content_id_at(payload, i)`` -> ``(content_id, next index)``: a content id encoded as 32
  canonical CBOR uints at ``payload[i]``, or None;
* ``get_chunk_fields(payload)`` -> ``(content_id, chunk_index)`` of a GET_CHUNK payload in the
  canonical layout (``{content_id: [32 uints], chunk_index: u32}``), or None (the generic codec);
* ``chunk_frame(buf, msg_type, req_id, prefix, index, fd, offset, n)`` -> lays a whole response
  frame into the writable ``buf``: the frame length, the Envelope map (flags RESPONSE) and the
  CHUNK_DATA payload whose encoded bytes up to the end of the content id are ``prefix``, then
  reads the ``n`` chunk bytes from ``fd`` at ``offset`` right behind them (one positioned read);
  returns the frame's length, or -1 when the read came back short (the file changed). Fields out
  of range or a buffer too short raise ``ValueError`` (a read-only one ``BufferError``) (:class:`FrameTooLarge` over the payload
  limit), a failed read ``OSError``. The provider's inline GET_CHUNK answer is this one call;
* ``free_buffer(bufs, start, n)`` -> the index of the first buffer in the list ``bufs``, searched
  round from ``start``, that is at least ``n`` long and referenced by nothing but the list
  (CPython reference counts), or -1.
"""

from __future__ import annotations

import sys

from ..errors import FrameTooLarge, LimitExceeded
from ..limits import MAX_PAYLOAD, U16_MAX, U32_MAX
from . import pio
from ..wire._codec_py import _head

_K_TYPE = b"\xa4\x64type"
_K_REQ = b"\x66req_id"
_K_FLAGS = b"\x65flags"
_K_PAYLOAD = b"\x67payload"
_K_IDX = b"\x6bchunk_index"
_K_BYTES = b"\x65bytes"

__all__ = [
    "chunk_fields", "chunk_frame", "chunk_tail", "content_id_at", "envelope_fields", "envelope_header", "free_buffer",
    "get_chunk_fields", "uint",
]  # fmt: skip


def uint(v: int) -> bytes:
    if v < 0 or v > 0xFFFF_FFFF_FFFF_FFFF:
        raise ValueError("unsigned integer out of range")
    return _head(0, v)  # the pure codec's head encoder (major type 0)


def envelope_header(msg_type: int, req_id: int, flags: int, payload_len: int) -> bytes:
    if not (0 <= msg_type <= U16_MAX and 0 <= req_id <= U32_MAX and 0 <= flags <= U16_MAX and payload_len >= 0):
        raise ValueError("envelope field out of range")
    if payload_len > MAX_PAYLOAD:
        raise FrameTooLarge(f"payload of {payload_len} bytes exceeds the limit of {MAX_PAYLOAD}")
    h = uint(payload_len)
    env = b"".join((_K_TYPE, uint(msg_type), _K_REQ, uint(req_id), _K_FLAGS, uint(flags), _K_PAYLOAD,
                    bytes((h[0] | 0x40,)), h[1:]))  # fmt: skip
    return (len(env) + payload_len).to_bytes(4, "big") + env


def _read_uint(b, i: int, n: int, limit: int):
    """Shortest-form CBOR uint (major type 0, at most 4 bytes wide) at ``b[i]``:
    (value, next index), or None if absent, not canonical or above ``limit``."""
    if i >= n:
        return None
    ib = b[i]
    if ib < 24:
        v, j = ib, i + 1
    elif ib == 0x18:
        if i + 2 > n or b[i + 1] < 24:
            return None
        v, j = b[i + 1], i + 2
    elif ib == 0x19 or ib == 0x1A:
        w = 2 if ib == 0x19 else 4
        j = i + 1 + w
        if j > n:
            return None
        v = int.from_bytes(b[i + 1 : j], "big")
        if v < (0x100 if w == 2 else 0x10000):
            return None
    else:
        return None
    return (v, j) if v <= limit else None


def _bstr_len(b, i: int, n: int):
    """A canonical byte-string head at ``b[i]`` (major type 2, at most 4 length bytes):
    (length, next index) or None."""
    if i >= n or b[i] >> 5 != 2:
        return None
    info = b[i] & 0x1F
    if info < 24:
        return info, i + 1
    if info == 24:
        if i + 2 > n or b[i + 1] < 24:
            return None
        return b[i + 1], i + 2
    w = 2 if info == 25 else 4 if info == 26 else 0
    if not w or i + 1 + w > n:
        return None
    v = int.from_bytes(b[i + 1 : i + 1 + w], "big")
    if v < (0x100 if w == 2 else 0x10000):
        return None
    return v, i + 1 + w


def envelope_fields(body):
    b = memoryview(body).cast("B") if not isinstance(body, (bytes, bytearray)) else body
    n = len(b)
    if n < 30 or b[:6] != _K_TYPE:
        return None
    r = _read_uint(b, 6, n, U16_MAX)
    if r is None or b[r[1] : r[1] + 7] != _K_REQ:
        return None
    t = r[0]
    r = _read_uint(b, r[1] + 7, n, U32_MAX)
    if r is None or b[r[1] : r[1] + 6] != _K_FLAGS:
        return None
    req = r[0]
    r = _read_uint(b, r[1] + 6, n, U16_MAX)
    if r is None or b[r[1] : r[1] + 8] != _K_PAYLOAD:
        return None
    flags = r[0]
    ln = _bstr_len(b, r[1] + 8, n)
    if ln is None or ln[0] > MAX_PAYLOAD or n - ln[1] != ln[0]:
        return None
    return t, req, flags, ln[1]


def chunk_tail(payload, i: int):
    b = memoryview(payload).cast("B") if not isinstance(payload, (bytes, bytearray)) else payload
    n = len(b)
    if i < 0 or b[i : i + 12] != _K_IDX:
        return None
    r = _read_uint(b, i + 12, n, U32_MAX)
    if r is None:
        return None
    idx, i = r
    if b[i : i + 6] != _K_BYTES:
        return None
    i += 6
    ln = _bstr_len(b, i, n)
    if ln is None:
        return None
    length, start = ln
    if length > MAX_PAYLOAD:
        raise LimitExceeded(f"chunk of {length} bytes exceeds the limit of {MAX_PAYLOAD}", offset=i)
    if n - start != length:
        return None  # truncated or trailing bytes: the generic codec names the error
    return idx, start, length


def chunk_fields(payload, prefix: bytes):
    b = memoryview(payload).cast("B") if not isinstance(payload, (bytes, bytearray)) else payload
    k = len(prefix)
    if len(b) <= k or b[:k] != prefix:
        return None
    return chunk_tail(b, k)


def free_buffer(bufs: list, start: int, n: int) -> int:
    m = len(bufs)
    if not m:
        return -1
    i = start if 0 <= start < m else 0
    getrefcount = sys.getrefcount
    for _ in range(m):
        # references: the list, ``b``, getrefcount's argument
        b = bufs[i]
        if getrefcount(b) <= 3 and len(b) >= n:
            return i
        i += 1
        if i == m:
            i = 0
    return -1


_K_GET = b"\xa2\x6acontent_id\x98\x20"


def content_id_at(payload, i: int):
    b = memoryview(payload).cast("B") if not isinstance(payload, (bytes, bytearray)) else payload
    n = len(b)
    if i < 0:
        return None
    cid = bytearray(32)
    for k in range(32):
        if i >= n:
            return None
        c = b[i]
        if c < 24:
            cid[k] = c
            i += 1
        elif c == 0x18 and i + 1 < n and b[i + 1] >= 24:
            cid[k] = b[i + 1]
            i += 2
        else:
            return None
    return bytes(cid), i


def get_chunk_fields(payload):
    b = memoryview(payload).cast("B") if not isinstance(payload, (bytes, bytearray)) else payload
    n = len(b)
    if n < 14 + 32 + 13 or b[:14] != _K_GET:
        return None
    r = content_id_at(b, 14)
    if r is None or b[r[1] : r[1] + 12] != _K_IDX:
        return None
    cid = r[0]
    r = _read_uint(b, r[1] + 12, n, U32_MAX)
    if r is None or r[1] != n:
        return None
    return cid, r[0]


def chunk_frame(buf, msg_type: int, req_id: int, prefix: bytes, index: int, fd: int, offset: int, n: int) -> int:
    if not (0 <= msg_type <= U16_MAX and 0 <= req_id <= U32_MAX and 0 <= index <= U32_MAX
            and 0 <= n <= MAX_PAYLOAD and offset >= 0):  # fmt: skip
        raise ValueError("chunk frame field out of range")
    h = uint(n)
    tail = b"".join((prefix, _K_IDX, uint(index), _K_BYTES, bytes((h[0] | 0x40,)), h[1:]))
    plen = len(tail) + n
    if plen > MAX_PAYLOAD:
        raise FrameTooLarge(f"payload of {plen} bytes exceeds the limit of {MAX_PAYLOAD}")
    head = envelope_header(msg_type, req_id, 1, plen) + tail
    total = len(head) + n
    mv = memoryview(buf).cast("B")
    if mv.readonly:
        raise BufferError("Object is not writable.")
    if len(mv) < total:
        raise ValueError(f"buffer of {len(mv)} bytes too short for a {total}-byte frame")
    mv[: len(head)] = head
    got = pio.preadv(fd, [mv[len(head) : total]], offset) if n else 0
    return total if got == n else -1
