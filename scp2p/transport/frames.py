"""The lean data path: frame assembly into reusable buffers and a fast envelope codec.

``FrameReader`` is sans-I/O and serves both ways of receiving bytes:

* ``get_buffer()`` / ``buffer_updated(n)`` (the ``asyncio.BufferedProtocol`` shape):
  the kernel writes straight into our memory. Small frames are assembled in one
  reusable 64 KiB scratch buffer; a large frame body (>= ``DIRECT_THRESHOLD``)
  gets one exact-size ``bytearray`` (allocated only *after* its length was
  checked against the limit) that the socket fills directly, so a 256 KiB
  CHUNK_DATA frame is never copied on its way in. After a large frame the
  next read is offered one buffer for a header and a body of the same length
  (a stream of chunks is read one whole frame per call); a frame of another
  length is copied out of it through the ordinary path;
* ``feed(data)`` for tests and for drivers that are handed ``bytes`` (QUIC).

``encode_envelope_header`` / ``parse_envelope`` are a fast path for the
canonical Envelope layout our encoder (and the v0.1 network) emits; the payload
stays a ``memoryview`` of the frame, so decoding a CHUNK_DATA response copies
the 256 KiB exactly once (into ``ChunkData.bytes``). Anything that is not the
canonical layout goes through the generic codec, which owns the error reporting.
"""

from __future__ import annotations

import ctypes
import sys
from collections import deque
from dataclasses import dataclass
from typing import Optional, Union

from ..errors import FrameTooLarge
from ..limits import MAX_FRAME, MAX_PAYLOAD, U16_MAX, U32_MAX
from ..wire.messages import decode_envelope

HEADER_LEN = 4
SCRATCH_SIZE = 64 * 1024
#: scratch bytes offered right after a large frame while other bytes are still buffered (see
#: ``FrameReader._peek``; with nothing buffered a whole next frame is offered instead)
PEEK = 4096
DIRECT_THRESHOLD = 16 * 1024
#: large-frame buffers a reader keeps for reuse (see :class:`RecvPool`): a download holds up to
#: its requests on the wire (64) plus the chunks waiting for verification and the disk (64) at
#: once; only a reader that received that many large frames at once keeps that many
POOL_KEEP = 136

Buffer = Union[bytes, bytearray, memoryview]


class RecvPool:
    """Reusable receive buffers for large frames (fresh 256 KiB allocations cost page faults
    on every frame). A buffer is handed out again only when nothing refers to it any more -
    no frame, payload view or held chunk (CPython reference counts tell; elsewhere every
    frame gets a new buffer). Frames are ``memoryview`` slices of pooled buffers."""

    __slots__ = ("keep", "min_size", "_bufs", "_refcounts", "allocated", "reused", "_next")

    def __init__(self, keep: int = POOL_KEEP, min_size: Optional[int] = None) -> None:
        self.keep = keep
        #: pooled buffers are at least this long, so later frames of any size fit
        #: (default: a full chunk frame plus alignment room)
        self.min_size = _POOL_MIN if min_size is None else min_size
        self._bufs: list[bytearray] = []
        self._refcounts = keep > 0 and sys.implementation.name == "cpython"
        self.allocated = 0
        self.reused = 0
        #: where the next search starts: buffers come back roughly in the order they were
        #: handed out (chunks are verified and written in order), so the one after the last
        #: hand-out is usually free and the search stops at once instead of passing every
        #: buffer still in flight
        self._next = 0

    def get(self, n: int) -> bytearray:
        """A buffer of at least ``n`` bytes that nobody else references."""
        bufs = self._bufs
        if self._refcounts:
            getrefcount = sys.getrefcount
            m = len(bufs)
            i = self._next if self._next < m else 0
            for _ in range(m):
                b = bufs[i]
                i += 1
                if i == m:
                    i = 0
                # references: the list, ``b``, getrefcount's argument
                if getrefcount(b) <= 3 and len(b) >= n:
                    self.reused += 1
                    self._next = i
                    return b
        b = bytearray(max(n, self.min_size)) if self._refcounts else bytearray(n)
        self.allocated += 1
        if self._refcounts:
            bufs.append(b)
            if len(bufs) > self.keep:
                bufs.pop(0)  # still referenced ones are freed by their last user
            self._next = 0  # every buffer was busy: the oldest one is freed first
        return b

    def view(self, n: int) -> memoryview:
        """``n`` bytes of a free buffer, placed so that they *end* on a :data:`FRAME_ALIGN`
        boundary: the tail of a frame - the chunk bytes of CHUNK_DATA - then starts on a page
        boundary when its length is a multiple of the page size, so it can be written to
        disk with ``O_DIRECT`` straight from this buffer."""
        b = self.get(n + FRAME_ALIGN)
        try:
            addr = ctypes.addressof(ctypes.c_char.from_buffer(b))
        except (TypeError, ValueError):  # pragma: no cover - bytearrays are writable
            addr = 0
        o = -(addr + n) % FRAME_ALIGN
        return memoryview(b)[o : o + n]


#: see :meth:`RecvPool.view`
FRAME_ALIGN = 4096
_POOL_MIN = 256 * 1024 + 256 + FRAME_ALIGN


class FrameReader:
    """Incremental, limit-checked frame reader. Complete bodies collect in ``frames``.

    ``single`` makes the reader stop after one frame (the handshake: the next
    frame must be checked against the post-handshake limit, not the Hello one);
    clear it and call :meth:`resume` to parse what is already buffered.
    """

    __slots__ = (
        "limit", "single", "frames", "_buf", "_mv", "_start", "_end", "_big", "_big_mv", "_big_fill", "pool", "_peek",
        "_last_big", "_spec", "speculated", "mispredicted",
    )  # fmt: skip

    def __init__(
        self, limit: int = MAX_FRAME, *, single: bool = False, scratch: int = SCRATCH_SIZE, pool_keep: int = POOL_KEEP
    ) -> None:
        self.limit = limit
        self.single = single
        self.frames: deque = deque()
        self._buf = bytearray(scratch)
        self._mv = memoryview(self._buf)
        self._start = 0
        self._end = 0
        self._big: memoryview | None = None
        self._big_mv: memoryview | None = None
        self._big_fill = 0
        self.pool = RecvPool(pool_keep)
        #: the last frame was large: offer only PEEK bytes of scratch for the next header, so
        #: the body of a large frame that follows is read into its own buffer, not copied there
        self._peek = False
        #: body length of the last large frame; the next frame is expected to be as long
        self._last_big = 0
        #: a speculative buffer offered for the next frame (header + body of the expected length)
        self._spec: memoryview | None = None
        self.speculated = 0
        self.mispredicted = 0

    @property
    def buffered(self) -> int:
        """Bytes received but not yet returned as frames."""
        return self._end - self._start + self._big_fill

    def get_buffer(self, sizehint: int = -1) -> memoryview:
        if self._big_mv is not None:
            return self._big_mv[self._big_fill :]
        if self._spec is not None:
            return self._spec
        if self._end == len(self._buf):
            self._compact()
        if self._peek:
            if self._start == self._end and not self.single:
                # after a large frame with nothing buffered: offer a buffer for the header and a
                # body as long as the last one (a stream of chunks), so that the next chunk is
                # read whole in one call, straight into its own buffer; a frame of another
                # length is copied out of it through the ordinary path (see _unspeculate)
                self._spec = self.pool.view(HEADER_LEN + self._last_big)
                return self._spec
            return self._mv[self._end : self._end + PEEK]
        return self._mv[self._end :]

    def _unspeculate(self, nbytes: int) -> None:
        spec, self._spec = self._spec, None
        n = int.from_bytes(spec[:HEADER_LEN], "big") if nbytes >= HEADER_LEN else -1
        if n == self._last_big and n <= self.limit and not self.single:
            self.speculated += 1
            body = spec[HEADER_LEN:]
            if nbytes - HEADER_LEN == n:
                self.frames.append(body)  # _peek stays set: the next one is offered the same way
            else:
                self._big, self._big_mv, self._big_fill = body, body, nbytes - HEADER_LEN
            return
        # another frame (or several, or a short read of a header): the ordinary path, one copy
        self.mispredicted += 1
        self._peek = False
        self.feed(spec[:nbytes])

    def buffer_updated(self, nbytes: int) -> None:
        if self._spec is not None:
            self._unspeculate(nbytes)
            return
        if self._big is not None:
            self._big_fill += nbytes
            if self._big_fill == len(self._big):
                self._last_big = len(self._big)
                self.frames.append(self._big)
                self._big = self._big_mv = None
                self._big_fill = 0
                self._peek = True
            return
        self._end += nbytes
        self._parse()

    def feed(self, data: Buffer) -> None:
        """Copy ``data`` in (the non-buffered path)."""
        mv = memoryview(data).cast("B")
        while len(mv):
            dst = self.get_buffer()
            n = min(len(dst), len(mv))
            dst[:n] = mv[:n]
            mv = mv[n:]
            self.buffer_updated(n)

    def resume(self) -> None:
        """Parse buffered bytes again (after ``single`` or ``limit`` changed)."""
        if self._big is None:
            self._parse()

    def take_buffered(self) -> bytes:
        """Every byte not yet returned as a frame (for handing a stream to another reader)."""
        out = bytes(self._mv[self._start : self._end])
        if self._big is not None:
            out = out + bytes(self._big_mv[: self._big_fill])
        self._start = self._end = 0
        self._big = self._big_mv = None
        self._big_fill = 0
        self._spec = None
        return out

    def _compact(self) -> None:
        s, e = self._start, self._end
        if s:
            self._buf[: e - s] = self._mv[s:e]
            self._start, self._end = 0, e - s

    def _parse(self) -> None:
        buf, mv = self._buf, self._mv
        s, e = self._start, self._end
        frames = self.frames
        while e - s >= HEADER_LEN and not (self.single and frames):
            n = int.from_bytes(buf[s : s + HEADER_LEN], "big")
            if n > self.limit:
                self._start, self._end = s, e
                raise FrameTooLarge(f"frame length {n} exceeds the limit of {self.limit}", offset=0)
            have = e - s - HEADER_LEN
            if have >= n:
                frames.append(bytes(mv[s + HEADER_LEN : s + HEADER_LEN + n]))
                s += HEADER_LEN + n
                self._peek = False
                continue
            if n >= DIRECT_THRESHOLD:
                big = self.pool.view(n)  # length already checked against the limit
                big[:have] = mv[s + HEADER_LEN : e]
                self._big, self._big_mv, self._big_fill = big, big, have
                s = e
            break
        if s == e:
            s = e = 0
        elif len(buf) - e < DIRECT_THRESHOLD + HEADER_LEN:
            self._start, self._end = s, e
            self._compact()
            return
        self._start, self._end = s, e


# --------------------------------------------------------------------------- envelopes
def _uint(v: int) -> bytes:
    if v < 24:
        return bytes((v,))
    if v < 0x100:
        return bytes((0x18, v))
    if v < 0x10000:
        return b"\x19" + v.to_bytes(2, "big")
    if v < 0x1_0000_0000:
        return b"\x1a" + v.to_bytes(4, "big")
    return b"\x1b" + v.to_bytes(8, "big")


def _bstr_head(n: int) -> bytes:
    h = _uint(n)
    return bytes((h[0] | 0x40,)) + h[1:]


_K_TYPE = b"\xa4\x64type"
_K_REQ = b"\x66req_id"
_K_FLAGS = b"\x65flags"
_K_PAYLOAD = b"\x67payload"


def encode_envelope_header(msg_type: int, req_id: int, flags: int, payload_len: int) -> bytes:
    """Frame length prefix plus the Envelope map up to (not including) the payload bytes.

    ``header + payload`` is byte for byte ``encode_frame(encode_envelope(Envelope(...)))``.
    """
    if not (0 <= msg_type <= U16_MAX and 0 <= req_id <= U32_MAX and 0 <= flags <= U16_MAX):
        raise ValueError("envelope field out of range")
    if payload_len > MAX_PAYLOAD:
        raise FrameTooLarge(f"payload of {payload_len} bytes exceeds the limit of {MAX_PAYLOAD}")
    env = b"".join(
        (_K_TYPE, _uint(msg_type), _K_REQ, _uint(req_id), _K_FLAGS, _uint(flags), _K_PAYLOAD, _bstr_head(payload_len))
    )
    return (len(env) + payload_len).to_bytes(HEADER_LEN, "big") + env


def encode_envelope_frame(msg_type: int, req_id: int, flags: int, payload: Buffer) -> bytes:
    return encode_envelope_header(msg_type, req_id, flags, len(payload)) + bytes(payload)


@dataclass(frozen=True, slots=True)
class RawEnvelope:
    """A received envelope; ``payload`` may be a memoryview into the frame (no copy)."""

    type: int
    req_id: int
    flags: int
    payload: Buffer

    @property
    def is_response(self) -> bool:
        return bool(self.flags & 1)

    @property
    def is_error(self) -> bool:
        return bool(self.flags & 2)


def _read_uint(b, i: int, limit: int):
    """Shortest-form CBOR uint at ``b[i]``: (value, next index), or None if not canonical."""
    if i >= len(b):
        return None
    ib = b[i]
    if ib < 24:
        return ib, i + 1
    if ib == 0x18:
        if i + 2 > len(b) or b[i + 1] < 24:
            return None
        v, j = b[i + 1], i + 2
    elif ib == 0x19:
        v, j = int.from_bytes(b[i + 1 : i + 3], "big"), i + 3
        if j > len(b) or v < 0x100:
            return None
    elif ib == 0x1A:
        v, j = int.from_bytes(b[i + 1 : i + 5], "big"), i + 5
        if j > len(b) or v < 0x10000:
            return None
    else:
        return None
    return (v, j) if v <= limit else None


def _fast(body) -> RawEnvelope | None:
    n = len(body)
    if n < 30 or body[:6] != _K_TYPE:
        return None
    r = _read_uint(body, 6, U16_MAX)
    if r is None or body[r[1] : r[1] + 7] != _K_REQ:
        return None
    t = r[0]
    r = _read_uint(body, r[1] + 7, U32_MAX)
    if r is None or body[r[1] : r[1] + 6] != _K_FLAGS:
        return None
    req = r[0]
    r = _read_uint(body, r[1] + 6, U16_MAX)
    if r is None or body[r[1] : r[1] + 8] != _K_PAYLOAD:
        return None
    flags = r[0]
    i = r[1] + 8
    if i >= n or body[i] >> 5 != 2:
        return None
    ln = _read_uint(bytes((body[i] & 0x1F,)) + bytes(body[i + 1 : i + 5]), 0, MAX_PAYLOAD)
    if ln is None:
        return None
    start = i + ln[1]
    if n - start != ln[0]:
        return None
    return RawEnvelope(t, req, flags, memoryview(body)[start:])


def parse_envelope(body: Buffer) -> RawEnvelope:
    """Decode one envelope frame body; the generic codec decides (and names) every error."""
    env = _fast(body)
    if env is not None:
        return env
    e = decode_envelope(body)
    return RawEnvelope(e.type, e.req_id, e.flags, e.payload)


__all__ = [
    "DIRECT_THRESHOLD", "FrameReader", "HEADER_LEN", "RawEnvelope", "SCRATCH_SIZE",
    "encode_envelope_frame", "encode_envelope_header", "parse_envelope",
]  # fmt: skip
