"""The data-path twins (``scp2p.transport._datapath_c`` / ``_datapath_py``): same results and
errors on canonical, damaged and random input, checked against the generic codec."""

from __future__ import annotations

import importlib
import random

import pytest
from helpers import twin_names

from scp2p import _accel
from scp2p.errors import FrameTooLarge, LimitExceeded
from scp2p.limits import MAX_PAYLOAD
from scp2p.transfer.chunkdata import _cid_prefix
from scp2p.transport import datapath
from scp2p.wire.framing import encode_frame
from scp2p.wire.messages import ChunkData, encode_envelope, encode_payload
from scp2p.wire.records import Envelope

TWINS = {"native": "scp2p.transport._datapath_c", "pure": "scp2p.transport._datapath_py"}


@pytest.fixture(params=twin_names(), scope="module")
def dp(request):
    return importlib.import_module(TWINS[request.param])


def test_selector_matches_environment():
    if _accel.NO_EXTENSIONS:
        assert datapath.BACKEND == "pure"
    else:
        assert datapath.BACKEND == "native"
        assert _accel.loaded["scp2p.transport._datapath_c"] == "native"


VALUES = [0, 1, 23, 24, 255, 256, 65535, 65536, 2**32 - 1]


def test_envelope_header_and_fields_match_codec(dp):
    for t in (0, 23, 24, 300, 65535):
        for rid in VALUES:
            for flags in (0, 1, 3, 24, 65535):
                for n in (0, 5, 23, 24, 255, 256, 70000, MAX_PAYLOAD):
                    payload = b"\x07" * n
                    frame = encode_frame(encode_envelope(Envelope(t, rid, flags, payload)))
                    head = dp.envelope_header(t, rid, flags, n)
                    assert head + payload == frame
                    f = dp.envelope_fields(memoryview(frame)[4:])
                    if len(frame) - 4 >= 30:
                        assert f == (t, rid, flags, len(head) - 4)
                    else:
                        assert f is None  # short bodies: the generic codec
    for bad in ((-1, 0, 0, 0), (65536, 0, 0, 0), (0, 2**32, 0, 0), (0, 0, 65536, 0), (0, 0, 0, -1)):
        with pytest.raises(ValueError):
            dp.envelope_header(*bad)
    with pytest.raises(FrameTooLarge):
        dp.envelope_header(1, 1, 0, MAX_PAYLOAD + 1)


def test_uint(dp):
    import cbor2

    for v in VALUES + [2**32, 2**64 - 1]:
        assert dp.uint(v) == cbor2.dumps(v)
    for v in (-1, 2**64):
        with pytest.raises(ValueError):
            dp.uint(v)


def test_chunk_fields_match_codec(dp):
    cid = bytes(range(0, 64, 2))
    for idx in VALUES:
        for n in (0, 1, 24, 4096, 262144):
            payload = encode_payload(ChunkData(cid, idx, b"\x01" * n))
            r = dp.chunk_fields(memoryview(payload), _cid_prefix(cid))
            assert r == (idx, len(payload) - n, n)
            assert dp.chunk_tail(payload, len(_cid_prefix(cid))) == r
            assert dp.chunk_fields(payload, _cid_prefix(bytes(32))) is None
            assert dp.chunk_fields(payload[:-1] if n else payload + b"\x00", _cid_prefix(cid)) is None
    big = _cid_prefix(cid) + b"\x6bchunk_index\x00\x65bytes\x5a" + (MAX_PAYLOAD + 1).to_bytes(4, "big")
    with pytest.raises(LimitExceeded):
        dp.chunk_fields(big, _cid_prefix(cid))


def test_twins_agree_on_damaged_input():
    """Random damage to canonical frames and payloads: both twins give the same answer."""
    twins = [importlib.import_module(TWINS[n]) for n in twin_names()]
    rng = random.Random(8)
    cid = bytes(rng.randrange(256) for _ in range(32))
    prefix = _cid_prefix(cid)
    samples = []
    for _ in range(300):
        payload = encode_payload(ChunkData(cid, rng.choice(VALUES), bytes(rng.randrange(0, 600))))
        samples.append(payload)
        samples.append(encode_envelope(Envelope(rng.randrange(65536), rng.choice(VALUES), rng.randrange(4), payload)))
    for s in samples:
        for _ in range(8):
            b = bytearray(s)
            for _ in range(rng.randrange(1, 4)):
                op = rng.randrange(3)
                if op == 0 and b:
                    b[rng.randrange(min(len(b), 80))] = rng.randrange(256)
                elif op == 1 and b:
                    del b[rng.randrange(len(b)) :]
                else:
                    b += bytes(rng.randrange(1, 4))
            results = []
            for dp in twins:
                out = []
                for fn, args in ((dp.envelope_fields, (bytes(b),)), (dp.chunk_fields, (b, prefix)),
                                 (dp.chunk_tail, (memoryview(b), len(prefix)))):  # fmt: skip
                    try:
                        out.append(fn(*args))
                    except LimitExceeded as exc:
                        out.append(("LimitExceeded", exc.offset))
                results.append(out)
            assert all(r == results[0] for r in results)


def test_free_buffer(dp):
    bufs = [bytearray(10), bytearray(20), bytearray(30)]
    assert dp.free_buffer([], 0, 1) == -1
    assert dp.free_buffer(bufs, 0, 5) == 0
    assert dp.free_buffer(bufs, 2, 5) == 2
    assert dp.free_buffer(bufs, 7, 5) == 0  # out of range: from the start
    assert dp.free_buffer(bufs, 0, 25) == 2  # too short ones skipped
    held = memoryview(bufs[2])
    assert dp.free_buffer(bufs, 0, 25) == -1  # referenced elsewhere
    held.release()
    x = bufs[0]  # noqa: F841 - a reference keeps it busy
    assert dp.free_buffer(bufs, 0, 5) == 1
    assert dp.free_buffer(bufs, 0, 31) == -1


# ---------------------------------------------------------------- the provider's GET_CHUNK lane
def test_get_chunk_fields_match_codec(dp):
    from scp2p.wire.messages import GetChunk

    for cid in (bytes(32), bytes(range(0, 64, 2)), b"\xff" * 32, bytes(range(10, 42))):
        for idx in VALUES:
            payload = encode_payload(GetChunk(cid, idx))
            assert dp.get_chunk_fields(payload) == (cid, idx)
            assert dp.content_id_at(payload, 14) == (cid, len(payload) - 12 - len(dp.uint(idx)))
            assert dp.get_chunk_fields(memoryview(payload)) == (cid, idx)
            assert dp.get_chunk_fields(payload[:-1]) is None  # truncated
            assert dp.get_chunk_fields(payload + b"\x00") is None  # trailing bytes
    # not canonical: a byte item in a wider form than needed, an index in a wider form, keys swapped
    ok = encode_payload(GetChunk(bytes(32), 5))
    assert dp.get_chunk_fields(ok.replace(b"\x98\x20\x00", b"\x98\x20\x18\x00", 1)) is None
    assert dp.get_chunk_fields(ok[:-1] + b"\x18\x05") is None
    assert dp.get_chunk_fields(ok[:-1] + b"\x1b" + (5).to_bytes(8, "big")) is None  # wider than u32
    assert dp.get_chunk_fields(b"\xa2" + ok[-13:-1] + b"\x05" + ok[1:-13]) is None


def _frame_file(tmp_path, size):
    import os

    data = random.Random(3).randbytes(size)
    path = tmp_path / "src.bin"
    path.write_bytes(data)
    return os.open(path, os.O_RDONLY), data


def test_chunk_frame_matches_codec(dp, tmp_path):
    import os

    from scp2p.wire.messages import MsgType

    fd, data = _frame_file(tmp_path, 300_000)
    try:
        cid = bytes(range(0, 64, 2))
        for rid in VALUES[1:]:
            for idx, off, n in ((0, 0, 262144), (1, 262144, 300_000 - 262144), (70000, 5, 0), (2**32 - 1, 17, 4096)):
                buf = bytearray(262144 + 300)
                total = dp.chunk_frame(buf, MsgType.CHUNK_DATA, rid, _cid_prefix(cid), idx, fd, off, n)
                want = encode_frame(encode_envelope(Envelope(MsgType.CHUNK_DATA, rid, 1,
                                                             encode_payload(ChunkData(cid, idx, data[off : off + n])))))  # fmt: skip
                assert total == len(want) and bytes(buf[:total]) == want
        # a read past the end of the file comes back short: -1
        assert dp.chunk_frame(bytearray(270_000), 501, 1, _cid_prefix(cid), 1, fd, 290_000, 262144) == -1
        with pytest.raises(ValueError):  # the buffer cannot hold the frame
            dp.chunk_frame(bytearray(1000), 501, 1, _cid_prefix(cid), 0, fd, 0, 4096)
        for bad in ((70000, 1, 0, 0, 1), (501, 2**32, 0, 0, 1), (501, 1, -1, 0, 1), (501, 1, 2**32, 0, 1),
                    (501, 1, 0, -1, 1), (501, 1, 0, 0, -1), (501, 1, 0, 0, MAX_PAYLOAD + 1)):  # fmt: skip
            t, rid, idx, off, n = bad
            with pytest.raises(ValueError):
                dp.chunk_frame(bytearray(1000), t, rid, _cid_prefix(cid), idx, fd, off, n)
        with pytest.raises(FrameTooLarge):  # the chunk fits, the payload around it does not
            dp.chunk_frame(bytearray(10), 501, 1, _cid_prefix(cid), 0, fd, 0, MAX_PAYLOAD - 10)
        with pytest.raises(BufferError):  # read-only
            dp.chunk_frame(bytes(1000), 501, 1, _cid_prefix(cid), 0, fd, 0, 10)
    finally:
        os.close(fd)
    with pytest.raises(OSError):  # a closed descriptor
        dp.chunk_frame(bytearray(1000), 501, 1, _cid_prefix(cid), 0, fd, 0, 10)


def test_twins_agree_on_damaged_get_chunk():
    from scp2p.wire.messages import GetChunk

    twins = [importlib.import_module(TWINS[n]) for n in twin_names()]
    rng = random.Random(9)
    for _ in range(400):
        s = encode_payload(GetChunk(bytes(rng.randrange(256) for _ in range(32)), rng.choice(VALUES)))
        for _ in range(6):
            b = bytearray(s)
            for _ in range(rng.randrange(1, 4)):
                op = rng.randrange(3)
                if op == 0 and b:
                    b[rng.randrange(len(b))] = rng.randrange(256)
                elif op == 1 and b:
                    del b[rng.randrange(len(b)) :]
                else:
                    b += bytes(rng.randrange(1, 4))
            i = rng.choice((14, 14, 0, 13, 15, -1, len(b)))
            results = [(dp.get_chunk_fields(bytes(b)), dp.content_id_at(b, i)) for dp in twins]
            assert all(r == results[0] for r in results)
