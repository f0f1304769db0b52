"""Content hashing (PROTOCOL.md section 1) against the conformance vectors and edge sizes."""

from __future__ import annotations

import json
import os
import threading
from pathlib import Path

import pytest
from blake3 import blake3

from scp2p.content import hashing
from scp2p.content import (
    CHUNK_SIZE,
    FileDescription,
    chunk_count,
    chunk_hash,
    content_id_of,
    describe_bytes,
    describe_file,
    verify_chunk,
    verify_file,
)
from scp2p.errors import HashMismatch, Scp2pError, VerificationError

VECTORS = Path(__file__).resolve().parent.parent / "conformance" / "vectors.json"


def generate(size: int, mul: int = 1, add: int = 0, mod: int = 251) -> bytes:
    """The vectors' generator rule: byte i = (i*mul + add) % mod (vectorised by period)."""
    if size == 0:
        return b""
    period = bytes((i * mul + add) % mod for i in range(min(size, mod)))
    # (i*mul + add) % mod repeats with period mod
    reps = -(-size // len(period))
    return (period * reps)[:size]


def chunking_vectors():
    data = json.loads(VECTORS.read_text(encoding="utf-8"))
    return data["chunking"]


CHUNKING = chunking_vectors()


def vector_id(v):
    g = v["generator"]
    return f"size{g['size']}-mul{g['mul']}-add{g['add']}-mod{g['mod']}"


def write(tmp_path: Path, data: bytes, name: str = "f.bin") -> Path:
    p = tmp_path / name
    p.write_bytes(data)
    return p


def reference(data: bytes) -> FileDescription:
    """The definition, spelled out with nothing clever in it."""
    chunks = tuple(blake3(data[o : o + CHUNK_SIZE]).digest() for o in range(0, len(data), CHUNK_SIZE))
    return FileDescription(blake3(data).digest(), len(data), chunks)


@pytest.fixture
def small_blocks(monkeypatch):
    """Shrink the read block so the threaded path runs on small files."""
    monkeypatch.setattr(hashing, "_BLOCK", 2 * CHUNK_SIZE)
    monkeypatch.setattr(hashing, "_THREAD_MIN", 2 * CHUNK_SIZE)


# --------------------------------------------------------------------------- vectors
def test_generator_rule():
    assert generate(5, 7, 3, 256) == bytes((i * 7 + 3) % 256 for i in range(5))
    assert generate(600, 1, 0, 251) == bytes(i % 251 for i in range(600))


def test_vectors_cover_the_edges():
    sizes = {v["generator"]["size"] for v in CHUNKING}
    assert {0, 1, CHUNK_SIZE}.issubset(sizes)
    assert any(s > CHUNK_SIZE for s in sizes)


@pytest.mark.parametrize("vec", CHUNKING, ids=vector_id)
def test_vectors_describe_bytes(vec):
    g = vec["generator"]
    data = generate(g["size"], g["mul"], g["add"], g["mod"])
    d = describe_bytes(data)
    assert d.content_id.hex() == vec["content_id"]
    assert [c.hex() for c in d.chunks] == vec["chunks"]
    assert d.size == g["size"]
    assert content_id_of(data).hex() == vec["content_id"]


@pytest.mark.parametrize("vec", CHUNKING, ids=vector_id)
@pytest.mark.parametrize("threaded", [False, True], ids=["oneThread", "twoThreads"])
def test_vectors_describe_file(vec, threaded, tmp_path, request):
    if threaded:
        request.getfixturevalue("small_blocks")
    g = vec["generator"]
    data = generate(g["size"], g["mul"], g["add"], g["mod"])
    p = write(tmp_path, data)
    d = describe_file(p)
    assert d.content_id.hex() == vec["content_id"]
    assert [c.hex() for c in d.chunks] == vec["chunks"]
    assert d.size == g["size"]
    verify_file(p, bytes.fromhex(vec["content_id"]), [bytes.fromhex(c) for c in vec["chunks"]])
    verify_file(str(p), bytes.fromhex(vec["content_id"]))
    for c, h in zip(range(0, len(data), CHUNK_SIZE), vec["chunks"]):
        assert chunk_hash(data[c : c + CHUNK_SIZE]).hex() == h
        verify_chunk(data[c : c + CHUNK_SIZE], bytes.fromhex(h))


# --------------------------------------------------------------------------- sizes
def test_chunk_count():
    assert chunk_count(0) == 0
    assert chunk_count(1) == 1
    assert chunk_count(CHUNK_SIZE - 1) == 1
    assert chunk_count(CHUNK_SIZE) == 1
    assert chunk_count(CHUNK_SIZE + 1) == 2
    assert chunk_count(10 * CHUNK_SIZE) == 10
    assert chunk_count(1 << 40) == (1 << 40) // CHUNK_SIZE
    with pytest.raises(ValueError):
        chunk_count(-1)


SIZES = [0, 1, CHUNK_SIZE - 1, CHUNK_SIZE, CHUNK_SIZE + 1, 2 * CHUNK_SIZE, 3 * CHUNK_SIZE + 17]


@pytest.mark.parametrize("size", SIZES)
@pytest.mark.parametrize("threaded", [False, True], ids=["oneThread", "twoThreads"])
def test_edge_sizes(size, threaded, tmp_path, request):
    if threaded:
        request.getfixturevalue("small_blocks")
    data = os.urandom(size)
    want = reference(data)
    assert describe_bytes(data) == want
    assert describe_bytes(memoryview(data)) == want
    assert describe_bytes(bytearray(data)) == want
    assert describe_file(write(tmp_path, data)) == want
    assert len(want.chunks) == chunk_count(size)
    if size:
        assert len(want.chunks[-1]) == 32
        # the last chunk is the short remainder
        last = data[(chunk_count(size) - 1) * CHUNK_SIZE :]
        assert want.chunks[-1] == blake3(last).digest()


def test_empty_file(tmp_path):
    d = describe_file(write(tmp_path, b""))
    assert d == FileDescription(blake3(b"").digest(), 0, ())
    assert d.content_id.hex() == "af1349b9f5f9a1a6a0404dea36dcc9499bcb25c9adc112b7cc9a93cae41f3262"


def test_multi_mib_file_matches_describe_bytes(tmp_path):
    # default blocks: threaded path with several full blocks, a partial block and a short last chunk
    size = 2 * hashing._BLOCK + 5 * CHUNK_SIZE + 12345
    assert size >= hashing._THREAD_MIN
    data = os.urandom(size)
    p = write(tmp_path, data)
    d = describe_file(p)
    assert d == describe_bytes(data) == reference(data)
    assert d.size == size and len(d.chunks) == chunk_count(size)


def test_multi_block_exact_boundary(tmp_path, small_blocks):
    for nblocks in (2, 3, 7):
        data = os.urandom(nblocks * hashing._BLOCK)
        assert describe_file(write(tmp_path, data, f"b{nblocks}")) == reference(data)


def test_describe_bytes_large_uses_both_threads_correctly():
    data = os.urandom(hashing._THREAD_MIN + 3 * CHUNK_SIZE + 1)
    assert describe_bytes(data) == reference(data)


def test_describe_file_accepts_pathlike_and_str(tmp_path):
    data = os.urandom(1000)
    p = write(tmp_path, data)
    assert describe_file(p) == describe_file(str(p)) == describe_file(os.fsencode(str(p)))


def test_description_is_frozen_and_checked():
    d = describe_bytes(b"abc")
    with pytest.raises(AttributeError):
        d.size = 4  # type: ignore[misc]
    assert not hasattr(d, "__dict__")
    with pytest.raises(ValueError):
        FileDescription(b"\0" * 31, 0, ())
    with pytest.raises(ValueError):
        FileDescription(b"\0" * 32, 1, ())  # one byte needs one chunk
    with pytest.raises(ValueError):
        FileDescription(b"\0" * 32, 1, (b"\0" * 31,))


# --------------------------------------------------------------------------- progress
@pytest.mark.parametrize("threaded", [False, True], ids=["oneThread", "twoThreads"])
@pytest.mark.parametrize("size", [0, 1, CHUNK_SIZE, 5 * CHUNK_SIZE + 3, 9 * CHUNK_SIZE])
def test_progress_monotonic_and_ends_at_total(size, threaded, tmp_path, request):
    if threaded:
        request.getfixturevalue("small_blocks")
    p = write(tmp_path, os.urandom(size))
    calls: list[tuple[int, int]] = []
    threads: set[int] = set()

    def progress(done: int, total: int) -> None:
        calls.append((done, total))
        threads.add(threading.get_ident())

    describe_file(p, progress=progress)
    assert calls, "progress never called"
    assert calls[-1] == (size, size)
    assert all(0 <= d <= t for d, t in calls)
    assert all(a[0] <= b[0] for a, b in zip(calls, calls[1:]))
    assert all(t == size for _, t in calls)
    assert threads == {threading.get_ident()}  # always on the calling thread
    if size > 2 * hashing._BLOCK:
        assert len(calls) >= 3  # periodic, not just at the end


def test_progress_exception_propagates_and_stops_helper(tmp_path, small_blocks):
    p = write(tmp_path, os.urandom(8 * CHUNK_SIZE))
    before = threading.active_count()

    class Stop(Exception):
        pass

    def progress(done, total):
        raise Stop

    with pytest.raises(Stop):
        describe_file(p, progress=progress)
    assert threading.active_count() == before


# --------------------------------------------------------------------------- verification
def test_verify_chunk_negative():
    data = os.urandom(CHUNK_SIZE)
    good = chunk_hash(data)
    verify_chunk(data, good)
    verify_chunk(memoryview(data), good)
    with pytest.raises(HashMismatch) as ei:
        verify_chunk(data[:-1] + bytes([data[-1] ^ 1]), good)
    assert isinstance(ei.value, VerificationError) and isinstance(ei.value, Scp2pError)
    assert good.hex() in str(ei.value)
    with pytest.raises(HashMismatch):
        verify_chunk(data, good[:-1])  # wrong length never matches
    with pytest.raises(HashMismatch):
        verify_chunk(b"", good)


def test_verify_file_negative(tmp_path, small_blocks):
    data = bytearray(os.urandom(5 * CHUNK_SIZE + 100))
    p = write(tmp_path, bytes(data))
    d = describe_file(p)
    verify_file(p, d.content_id, d.chunks)
    verify_file(p, d.content_id, list(d.chunks))
    verify_file(p, d.content_id)

    # a flipped byte in chunk 3
    data[3 * CHUNK_SIZE + 7] ^= 0xFF
    bad = write(tmp_path, bytes(data), "bad.bin")
    with pytest.raises(HashMismatch, match=r"chunk 3\b") as ei:
        verify_file(bad, d.content_id, d.chunks)
    assert ei.value.chunk_index == 3
    with pytest.raises(HashMismatch, match="content id"):
        verify_file(bad, d.content_id)

    # right chunks, wrong content id
    wrong_id = bytes(32)
    with pytest.raises(HashMismatch, match="content id") as ei:
        verify_file(p, wrong_id, d.chunks)
    assert ei.value.chunk_index is None
    with pytest.raises(HashMismatch):
        verify_file(p, wrong_id)


def test_verify_file_size_mismatch(tmp_path):
    data = os.urandom(3 * CHUNK_SIZE + 1)
    p = write(tmp_path, data)
    d = describe_file(p)
    # one chunk hash too many / too few: a mismatch even though the prefix agrees
    with pytest.raises(HashMismatch, match="chunks") as ei:
        verify_file(p, d.content_id, d.chunks + (d.chunks[0],))
    assert ei.value.chunk_index == len(d.chunks)
    with pytest.raises(HashMismatch) as ei:
        verify_file(p, d.content_id, d.chunks[:-1])
    assert ei.value.chunk_index == len(d.chunks) - 1
    # truncated file against the full description
    short = write(tmp_path, data[: 2 * CHUNK_SIZE + 5], "short.bin")
    with pytest.raises(HashMismatch) as ei:
        verify_file(short, d.content_id, d.chunks)
    assert ei.value.chunk_index == 2
    # empty file against a one-chunk description
    empty = write(tmp_path, b"", "empty.bin")
    one = describe_bytes(b"x")
    with pytest.raises(HashMismatch):
        verify_file(empty, one.content_id, one.chunks)
    verify_file(empty, describe_bytes(b"").content_id, [])


def test_missing_or_unreadable_file_is_oserror(tmp_path):
    with pytest.raises(FileNotFoundError):
        describe_file(tmp_path / "nope")
    with pytest.raises(FileNotFoundError):
        verify_file(tmp_path / "nope", bytes(32))
    with pytest.raises(FileNotFoundError):
        verify_file(tmp_path / "nope", bytes(32), [])
    with pytest.raises(OSError):
        describe_file(tmp_path)  # a directory


def test_no_helper_thread_left_behind(tmp_path, small_blocks):
    p = write(tmp_path, os.urandom(6 * CHUNK_SIZE))
    before = threading.active_count()
    for _ in range(5):
        describe_file(p)
    assert threading.active_count() == before


class _ShortReads:
    """A raw file whose readinto returns odd-sized pieces (as a pipe or network FS may)."""

    def __init__(self, data: bytes, step: int) -> None:
        self.data, self.pos, self.step = data, 0, step

    def readinto(self, buf) -> int:
        mv = memoryview(buf)
        n = min(len(mv), self.step, len(self.data) - self.pos)
        mv[:n] = self.data[self.pos : self.pos + n]
        self.pos += n
        return n


@pytest.mark.parametrize("step", [1000, CHUNK_SIZE - 1, CHUNK_SIZE + 3])
def test_short_reads(step, small_blocks):
    data = os.urandom(5 * CHUNK_SIZE + 77)
    want = reference(data)
    assert hashing._describe_threaded(_ShortReads(data, step), len(data), None) == want
    assert hashing._describe_small(_ShortReads(data, step), len(data), None) == want
