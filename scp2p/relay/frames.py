"""Sans-I/O frame tracking over a relayed byte stream: which bytes are control, which content.

A relayed stream carries an end-to-end session (Hello frames, then Envelope frames, PROTOCOL.md
4.1) as opaque bytes cut into RELAY_STREAM segments. Each segment is labelled ``control`` or
``content``. :class:`FrameTracker` follows the frame boundaries of one direction and classifies
every byte by the frame it belongs to: a frame whose Envelope type is GET_CHUNK (500) or
CHUNK_DATA (501) is **content**, every other frame (the Hello, DHT, manifests, PEX, errors...)
is **control**. The sender uses it to label its segments; the relay uses the same tracker to
check the labels (a segment that mislabels its frames is refused), so a client cannot pass
content through a control-only relay by calling it control.

The type is read from the canonical envelope head ``a4 64 'type' <uint>``; an envelope with its
keys in another order classifies as control (v0.1 decoders accept any key order). Such traffic
is still bounded by the relay's per-peer control byte caps (docs/relay.md).
"""

from __future__ import annotations

from typing import Optional

from .. import limits
from ..errors import RelayStreamError
from ..wire.records import RelayKind

CONTENT_TYPES = frozenset({500, 501})  # GET_CHUNK, CHUNK_DATA
_HEAD = 9  # a4 64 74 79 70 65 + up to 3 bytes of the type
_PREFIX = b"\xa4\x64type"


def classify_head(head: bytes) -> RelayKind:
    """The kind of a frame from the first (up to 9) bytes of its body."""
    if len(head) >= 7 and head[:6] == _PREFIX:
        b = head[6]
        if b < 24:
            t: Optional[int] = b
        elif b == 0x18 and len(head) >= 8:
            t = head[7]
        elif b == 0x19 and len(head) >= 9:
            t = (head[7] << 8) | head[8]
        else:
            t = None
        if t in CONTENT_TYPES:
            return RelayKind.CONTENT
    return RelayKind.CONTROL


class FrameTracker:
    """Follows frames in one direction of a relayed stream.

    :meth:`feed` consumes bytes and returns ``[(kind, n), ...]`` runs covering them in order;
    bytes at the start of a frame whose kind is not known yet (its length prefix and first
    body bytes) are held back as :attr:`undetermined` and reported in a later run."""

    __slots__ = ("max_frame", "_hdr", "_head", "_left", "_kind", "_undet", "_first", "_in_body", "frames")

    def __init__(self, *, hello_first: bool = True, max_frame: int = limits.MAX_FRAME) -> None:
        self.max_frame = max_frame
        self._hdr = bytearray()
        self._head = bytearray()
        self._left = 0
        self._kind: Optional[RelayKind] = None
        self._undet = 0
        self._first = hello_first
        self._in_body = False
        self.frames = 0

    @property
    def undetermined(self) -> int:
        return self._undet

    def feed(self, data) -> list[tuple[RelayKind, int]]:
        mv = memoryview(data)
        n = len(mv)
        i = 0
        runs: list[tuple[RelayKind, int]] = []

        def emit(kind: RelayKind, k: int) -> None:
            if k <= 0:
                return
            if runs and runs[-1][0] is kind:
                runs[-1] = (kind, runs[-1][1] + k)
            else:
                runs.append((kind, k))

        while i < n:
            if not self._in_body:
                take = min(4 - len(self._hdr), n - i)
                self._hdr += mv[i : i + take]
                i += take
                self._undet += take
                if len(self._hdr) < 4:
                    break
                length = int.from_bytes(self._hdr, "big")
                if length > self.max_frame:
                    raise RelayStreamError(f"relayed frame of {length} bytes exceeds {self.max_frame}")
                self._left = length
                self._in_body = True
                if self._first:
                    self._kind = RelayKind.CONTROL  # the Hello
            if self._kind is None:
                take = min(_HEAD - len(self._head), self._left, n - i)
                self._head += mv[i : i + take]
                i += take
                self._left -= take
                self._undet += take
                if len(self._head) < _HEAD and self._left > 0:
                    break
                self._kind = classify_head(bytes(self._head))
            if self._undet:
                emit(self._kind, self._undet)
                self._undet = 0
            take = min(self._left, n - i)
            emit(self._kind, take)
            i += take
            self._left -= take
            if self._left == 0:
                self._hdr.clear()
                self._head.clear()
                self._kind = None
                self._in_body = False
                self._first = False
                self.frames += 1
        return runs

    def check(self, data, label: RelayKind) -> int:
        """Relay side: every byte of a received segment must belong to frames of ``label``, and a
        segment may not end inside a frame head whose kind is still unknown. Returns the byte count."""
        for kind, _n in self.feed(data):
            if kind is not label:
                raise RelayStreamError(f"segment labelled {label.value} carries {kind.value} frames")
        if self._undet:
            raise RelayStreamError("segment ends inside a frame head")
        return len(data)


__all__ = ["CONTENT_TYPES", "FrameTracker", "classify_head"]
