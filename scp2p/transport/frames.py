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
from ..limits import MAX_FRAME
from ..wire.messages import decode_envelope
from .datapath import envelope_fields, envelope_header, free_buffer, uint as _uint

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

    __slots__ = ("keep", "min_size", "_bufs", "_refcounts", "allocated", "reused", "_next", "_skew")

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
        #: each pooled buffer's address modulo FRAME_ALIGN (pooled buffers never move)
        self._skew: list[int] = []

    def get(self, n: int) -> bytearray:
        """A buffer of at least ``n`` bytes that nobody else references."""
        return self._get(n)[0]

    def _get(self, n: int) -> tuple:
        bufs = self._bufs
        if self._refcounts:
            i = free_buffer(bufs, self._next, n)
            if i >= 0:
                self.reused += 1
                self._next = i + 1
                return bufs[i], self._skew[i]
        b = bytearray(max(n, self.min_size)) if self._refcounts else bytearray(n)
        self.allocated += 1
        skew = (buffer_address(b) or 0) % FRAME_ALIGN  # a bytearray is writable: never None
        if self._refcounts:
            bufs.append(b)
            self._skew.append(skew)
            if len(bufs) > self.keep:
                bufs.pop(0)  # still referenced ones are freed by their last user
                self._skew.pop(0)
            self._next = 0  # every buffer was busy: the oldest one is freed first
        return b, skew

    def view(self, n: int) -> memoryview:
        """``n`` bytes of a free buffer, placed so that they *end* on a :data:`FRAME_ALIGN`
        boundary: the tail of a frame - the chunk bytes of CHUNK_DATA - then starts on a page
        boundary when its length is a multiple of the page size, so it can be written to
        disk with ``O_DIRECT`` straight from this buffer."""
        b, skew = self._get(n + FRAME_ALIGN)
        o = -(skew + n) % FRAME_ALIGN
        return memoryview(b)[o : o + n]


def buffer_address(buf) -> Optional[int]:
    """Address of a writable buffer's first byte (None for read-only buffers)."""
    try:
        return ctypes.addressof(ctypes.c_char.from_buffer(buf))
    except (TypeError, ValueError):
        return None


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
    def expects_large(self) -> bool:
        """The next read is offered a whole large frame (a stream of chunks; nothing buffered)."""
        return self._peek and self._start == self._end and self._big is None and not self.single

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
def _bstr_head(n: int) -> bytes:
    h = _uint(n)
    return bytes((h[0] | 0x40,)) + h[1:]


#: frame length prefix plus the Envelope map up to (not including) the payload bytes:
#: ``header + payload`` is byte for byte ``encode_frame(encode_envelope(Envelope(...)))``
#: (``encode_envelope_header(msg_type, req_id, flags, payload_len)``; the data-path twin)
encode_envelope_header = envelope_header


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


def parse_envelope(body: Buffer) -> RawEnvelope:
    """Decode one envelope frame body; the generic codec decides (and names) every error."""
    f = envelope_fields(body)
    if f is not None:
        return RawEnvelope(f[0], f[1], f[2], memoryview(body)[f[3] :])
    e = decode_envelope(body)
    return RawEnvelope(e.type, e.req_id, e.flags, e.payload)


__all__ = [
    "DIRECT_THRESHOLD", "FrameReader", "HEADER_LEN", "RawEnvelope", "SCRATCH_SIZE",
    "buffer_address", "encode_envelope_frame", "encode_envelope_header", "parse_envelope",
]  # fmt: skip
