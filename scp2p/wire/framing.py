"""Length-prefixed frames (PROTOCOL.md section 4.1), sans-I/O.

``FrameDecoder`` buffers bytes fed to it and yields complete frame bodies. The
4-byte big-endian length is checked against the limit *before* the body is
awaited, so a peer cannot make us buffer more than ``limit`` bytes. The limit
can be changed between frames (64 KiB during the handshake, 2 MiB after).
"""

from __future__ import annotations

from ..errors import FrameTooLarge, TruncatedInput
from ..limits import MAX_FRAME, MAX_HELLO_FRAME

HEADER_LEN = 4


def encode_frame(body: bytes, limit: int = MAX_FRAME) -> bytes:
    """Prefix ``body`` with its length; refuses bodies over ``limit`` (we never send what peers must reject)."""
    n = len(body)
    if n > limit:
        raise FrameTooLarge(f"frame of {n} bytes exceeds the limit of {limit}")
    return n.to_bytes(HEADER_LEN, "big") + body


class FrameDecoder:
    """Incremental frame reader: ``feed(data)``, then ``next_frame()`` until it returns None."""

    __slots__ = ("_buf", "limit", "_need")

    def __init__(self, limit: int = MAX_FRAME) -> None:
        self._buf = bytearray()
        self.limit = limit
        self._need = -1  # body length of the frame being read, -1 while reading the header

    def feed(self, data: bytes) -> None:
        self._buf += data

    @property
    def buffered(self) -> int:
        return len(self._buf)

    def next_frame(self) -> bytes | None:
        """Return the next complete frame body, or None if more bytes are needed."""
        buf = self._buf
        if self._need < 0:
            if len(buf) < HEADER_LEN:
                return None
            n = int.from_bytes(buf[:HEADER_LEN], "big")
            if n > self.limit:
                raise FrameTooLarge(f"frame length {n} exceeds the limit of {self.limit}", offset=0)
            self._need = n
        n = self._need
        if len(buf) < HEADER_LEN + n:
            return None
        body = bytes(buf[HEADER_LEN : HEADER_LEN + n])
        del buf[: HEADER_LEN + n]
        self._need = -1
        return body


def read_frame(data: bytes, limit: int = MAX_FRAME) -> tuple[bytes, bytes]:
    """Read one frame from a finished stream holding ``data``: (body, rest).

    Raises :class:`FrameTooLarge` from the header alone, :class:`TruncatedInput`
    if the stream ends first.
    """
    dec = FrameDecoder(limit)
    dec.feed(data)
    body = dec.next_frame()
    if body is None:
        raise TruncatedInput(f"stream of {len(data)} bytes ended inside a frame", offset=len(data))
    return body, bytes(data[HEADER_LEN + len(body) :])


def read_envelope_frame(data: bytes) -> tuple[bytes, bytes]:
    return read_frame(data, MAX_FRAME)


def read_handshake_frame(data: bytes) -> tuple[bytes, bytes]:
    return read_frame(data, MAX_HELLO_FRAME)
