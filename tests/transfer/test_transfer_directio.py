"""Direct I/O write path: aligned chunks go to disk with O_DIRECT in vectored runs, the rest
through the page cache; receive buffers place a frame's tail on a page boundary."""

from __future__ import annotations

import os

import pytest
from blake3 import blake3

from scp2p.transfer.writer import DIRECT_ALIGN, PartFile, buffer_address
from scp2p.transport.frames import FRAME_ALIGN, FrameReader, RecvPool, encode_envelope_frame, parse_envelope
from scp2p.wire.messages import MsgType

CS = 64 * 1024  # small chunks keep the test fast (a multiple of the alignment)


def _aligned_copy(data: bytes) -> memoryview:
    """A writable view of ``data`` starting on a DIRECT_ALIGN boundary."""
    buf = bytearray(len(data) + DIRECT_ALIGN)
    o = -buffer_address(buf) % DIRECT_ALIGN
    mv = memoryview(buf)[o : o + len(data)]
    mv[:] = data
    return mv


def _part(tmp_path, data: bytes, **kw) -> tuple[PartFile, list]:
    chunks = [data[i : i + CS] for i in range(0, len(data), CS)]
    cid = blake3(data).digest()
    return PartFile(str(tmp_path / "t.bin"), len(data), cid, [blake3(c).digest() for c in chunks], chunk_size=CS, **kw), chunks


def test_direct_runs_and_cached_fallbacks(tmp_path):
    data = os.urandom(CS * 7 + 1000)  # 7 full chunks + a short last one
    part, chunks = _part(tmp_path, data)
    if part.dfd is None:
        part.discard()
        pytest.skip("filesystem without O_DIRECT")
    # 0,1,2 aligned (one run), 3 read-only bytes (cached), 4,6 aligned (two runs: 5 missing), 5 unaligned, 7 short
    items = [(i, _aligned_copy(chunks[i])) for i in (0, 1, 2)] + [(3, chunks[3])]
    items += [(4, _aligned_copy(chunks[4])), (6, _aligned_copy(chunks[6]))]
    unaligned = memoryview(bytearray(CS + 1))[1:]
    unaligned[:] = chunks[5]
    items += [(5, unaligned), (7, _aligned_copy(chunks[7]))]
    for i, d in items:
        assert part.verify_chunk(i, d)
    part.write_chunks(items)
    assert part.direct_writes == 5 and part.cached_writes == 3
    assert part.read_back == 0  # the whole-file hash ran from memory
    out = part.finish()
    with open(out, "rb") as fh:
        assert fh.read() == data


def test_direct_disabled_and_resume_reads_back(tmp_path):
    data = os.urandom(CS * 3)
    part, chunks = _part(tmp_path, data, direct=False)
    assert part.dfd is None
    part.write_chunk(0, _aligned_copy(chunks[0]))
    part.sync()
    part.close()
    part2, _ = _part(tmp_path, data, done=[0])
    part2.write_chunks([(1, _aligned_copy(chunks[1])), (2, _aligned_copy(chunks[2]))])
    assert part.direct_writes == 0 and part.cached_writes == 1
    with open(part2.finish(), "rb") as fh:
        assert fh.read() == data
    assert part2.read_back == CS  # chunk 0 came from disk for the whole-file hash


@pytest.mark.parametrize("n", [16 * 1024, 262_144 + 57, 300_001])
def test_recv_pool_view_ends_on_a_page_boundary(n):
    pool = RecvPool(keep=2)
    v = pool.view(n)
    assert len(v) == n and (buffer_address(v) + n) % FRAME_ALIGN == 0


def test_frame_reader_chunk_tail_is_page_aligned():
    payload = os.urandom(57) + os.urandom(262_144)
    wire = encode_envelope_frame(MsgType.CHUNK_DATA, 7, 1, payload)
    r = FrameReader()
    r.feed(wire)
    env = parse_envelope(r.frames.popleft())
    tail = env.payload[-262_144:]
    assert bytes(env.payload) == payload and buffer_address(tail) % FRAME_ALIGN == 0


def test_frame_reader_reads_the_next_chunk_whole_after_a_large_frame():
    """After a large frame the reader offers one buffer for the header and a body as long as the
    last one, so the next chunk is read in one call straight into its own (aligned) buffer; a
    frame of another length (a small one, several, a short header) goes the ordinary way."""
    from scp2p.transport.frames import FRAME_ALIGN, SCRATCH_SIZE

    big = [encode_envelope_frame(MsgType.CHUNK_DATA, i + 1, 1, bytes([i]) * 262_144) for i in range(4)]
    small = encode_envelope_frame(MsgType.HAVE_CONTENT, 9, 1, b"x" * 10)
    wire = memoryview(big[0] + big[1] + small + big[2] + big[3])
    r = FrameReader()
    sizes = []
    pos = 0
    while pos < len(wire):  # a socket that always has everything ready
        dst = r.get_buffer()
        sizes.append(len(dst))
        k = min(len(dst), len(wire) - pos)
        dst[:k] = wire[pos : pos + k]
        r.buffer_updated(k)
        pos += k
    got = [parse_envelope(f) for f in r.frames]
    assert [e.req_id for e in got] == [1, 2, 9, 3, 4]
    for e, i in zip([got[0], got[1], got[3], got[4]], range(4)):
        assert bytes(e.payload) == bytes([i]) * 262_144
    assert sizes[0] == SCRATCH_SIZE  # a full first read
    assert sizes.count(len(big[1])) >= 2  # after a large frame: the next one whole
    assert r.speculated >= 2 and r.mispredicted == 1  # big[1], big[3] read whole; the small frame copied
    f = r.frames[1]
    assert isinstance(f, memoryview) and len(f) == len(big[1]) - 4
    # the frame (and so the chunk bytes at its tail) ends on an alignment boundary
    assert (_address(f) + len(f)) % FRAME_ALIGN == 0


def _address(view: memoryview) -> int:
    import ctypes

    return ctypes.addressof(ctypes.c_char.from_buffer(view))


def test_frame_reader_speculative_read_survives_trickles_and_short_headers():
    big = [encode_envelope_frame(MsgType.CHUNK_DATA, i + 1, 1, bytes([i]) * 40_000) for i in range(3)]
    wire = memoryview(b"".join(big))
    for step in (1, 3, 4, 5, 1000, 39_999):  # every read short of the offer
        r = FrameReader()
        pos = 0
        while pos < len(wire):
            dst = r.get_buffer()
            k = min(len(dst), len(wire) - pos, step if pos >= len(big[0]) else len(dst))
            dst[:k] = wire[pos : pos + k]
            r.buffer_updated(k)
            pos += k
        got = [parse_envelope(f) for f in r.frames]
        assert [bytes(e.payload) for e in got] == [bytes([i]) * 40_000 for i in range(3)], step
        assert r.buffered == 0
