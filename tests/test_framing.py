"""Frames (PROTOCOL.md section 4.1): limits are checked from the header, input in any split."""

from __future__ import annotations

import pytest

from scp2p import errors
from scp2p.limits import MAX_FRAME, MAX_HELLO_FRAME
from scp2p.wire.framing import FrameDecoder, encode_frame, read_frame


def test_roundtrip_whole_and_byte_by_byte():
    bodies = [b"", b"a", b"hello" * 100, bytes(range(256))]
    stream = b"".join(encode_frame(b) for b in bodies)
    whole = FrameDecoder()
    whole.feed(stream)
    got = []
    while (f := whole.next_frame()) is not None:
        got.append(f)
    assert got == bodies
    dec = FrameDecoder()
    got = []
    for i in range(len(stream)):
        dec.feed(stream[i : i + 1])
        while (f := dec.next_frame()) is not None:
            got.append(f)
    assert got == bodies and dec.buffered == 0


def test_limit_checked_before_body():
    dec = FrameDecoder(limit=MAX_HELLO_FRAME)
    dec.feed((MAX_HELLO_FRAME + 1).to_bytes(4, "big"))  # header only: no body was sent
    with pytest.raises(errors.FrameTooLarge):
        dec.next_frame()
    with pytest.raises(errors.FrameTooLarge):
        read_frame(b"\x00\x20\x00\x01\xa4", MAX_FRAME)
    body, rest = read_frame(encode_frame(b"x" * MAX_HELLO_FRAME) + b"tail", MAX_HELLO_FRAME)
    assert len(body) == MAX_HELLO_FRAME and rest == b"tail"


def test_limit_switches_after_handshake():
    dec = FrameDecoder(limit=MAX_HELLO_FRAME)
    big = b"y" * (MAX_HELLO_FRAME + 10)
    dec.feed(encode_frame(b"hello"))
    assert dec.next_frame() == b"hello"
    dec.limit = MAX_FRAME
    dec.feed(encode_frame(big))
    assert dec.next_frame() == big


def test_truncated_stream_and_oversized_send():
    with pytest.raises(errors.TruncatedInput):
        read_frame(b"\x00\x00\x00\x05abc")
    with pytest.raises(errors.TruncatedInput):
        read_frame(b"\x00\x00")
    with pytest.raises(errors.FrameTooLarge):
        encode_frame(b"z" * 11, limit=10)
