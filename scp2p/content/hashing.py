"""Content addressing (PROTOCOL.md section 1): ContentId and chunk hashes.

* ``ContentId`` = BLAKE3(whole file bytes), 32 bytes.
* chunk hash = BLAKE3(chunk bytes); chunks are ``CHUNK_SIZE`` (262,144) bytes,
  the last one shorter; an empty file has no chunks.

The two hashes cannot share work: BLAKE3 mixes the position of every 1 KiB
leaf into its hash, so a chunk hashed on its own and the same bytes hashed as
part of the file are different computations. :func:`describe_file` therefore
hashes every byte twice, on two threads (the ``blake3`` package releases the
GIL on large buffers):

* the calling thread reads the file with ``readinto`` into a small ring of
  reused buffers (``_BLOCK`` bytes each, so memory stays bounded for any file
  size), hands each block to a helper thread, then hashes the block's chunks;
* the helper feeds the block to the whole-file hasher, then *steals* the
  block's remaining chunks from the other end, so the two threads finish
  together (the reads are extra work on the calling thread only).

Both hashes are taken from the same buffer, so the ContentId and the chunk
list always describe the same bytes even if the file changes underneath us
(the description is then of what was read). No ``mmap`` is used: a file
truncated while mapped would kill the process with SIGBUS. On the 2-core
benchmark machine a warm 1 GiB file is described at about 1.05x the rate of
one raw single-threaded BLAKE3 pass (``update_mmap`` or ``readinto`` fed,
within 2% of each other) and about 0.9x the rate of one pass whose reads are
hidden on the other core (see ``benchmarks/hashing_bench.py``).

Memory: the read ring is ``_NBUF * _BLOCK`` bytes (6 MiB) for any file
size; the result itself holds 32 bytes per chunk (~128 KiB per GiB).

This module is plain Python over the ``blake3`` extension (Rust); it has no
Cython twin because a twin cannot call into that extension any faster: the
time is spent inside BLAKE3, not in the Python loop.

Errors: hash checks raise :class:`scp2p.errors.HashMismatch`. A missing or
unreadable file raises the usual :class:`OSError` (``FileNotFoundError``,
``PermissionError``, ``IsADirectoryError``...), which is not wrapped.
"""

from __future__ import annotations

import collections
import os
import queue
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from blake3 import blake3

from scp2p.errors import HashMismatch
from scp2p.limits import CHUNK_SIZE

__all__ = [
    "CHUNK_SIZE",
    "HASH_LEN",
    "FileDescription",
    "chunk_count",
    "chunk_hash",
    "content_id_of",
    "describe_bytes",
    "describe_file",
    "verify_chunk",
    "verify_file",
]

#: length of a ContentId and of a chunk hash
HASH_LEN = 32

#: bytes read per block; a multiple of CHUNK_SIZE. Small enough that the ring stays
#: in cache while both threads read it: 2 MiB measured best (1-4 MiB within noise,
#: 8 MiB -20%, 16 MiB -30% on the benchmark machine)
_BLOCK = 8 * CHUNK_SIZE
#: buffers in the read ring (one being read, one whole-hashed, one chunk-hashed)
_NBUF = 3
#: below this size one thread does everything (a thread costs more than it saves)
_THREAD_MIN = 2 * _BLOCK

ProgressFn = Callable[[int, int], None]


@dataclass(frozen=True, slots=True)
class FileDescription:
    """What a file is on the network: its ContentId, size and chunk hashes."""

    content_id: bytes
    size: int
    chunks: tuple[bytes, ...]

    def __post_init__(self) -> None:
        if len(self.content_id) != HASH_LEN:
            raise ValueError(f"content_id must be {HASH_LEN} bytes, got {len(self.content_id)}")
        if self.size < 0:
            raise ValueError(f"size must be >= 0, got {self.size}")
        if len(self.chunks) != chunk_count(self.size):
            raise ValueError(
                f"{len(self.chunks)} chunk hashes for {self.size} bytes "
                f"(expected {chunk_count(self.size)})"
            )
        for i, c in enumerate(self.chunks):
            if len(c) != HASH_LEN:
                raise ValueError(f"chunk hash {i} must be {HASH_LEN} bytes, got {len(c)}")


# --------------------------------------------------------------------------- primitives
def chunk_hash(data) -> bytes:
    """BLAKE3 of one chunk (any bytes-like object)."""
    return blake3(data).digest()


def content_id_of(data) -> bytes:
    """ContentId of in-memory file bytes: BLAKE3 of the whole of ``data``."""
    return blake3(data).digest()


def chunk_count(size: int) -> int:
    """Number of chunks of a file of ``size`` bytes: 0 for an empty file, else ceil(size / CHUNK_SIZE)."""
    if size < 0:
        raise ValueError(f"size must be >= 0, got {size}")
    return -(-size // CHUNK_SIZE)


def verify_chunk(data, expected_hash: bytes) -> None:
    """Raise :class:`HashMismatch` unless BLAKE3(``data``) equals ``expected_hash``."""
    got = blake3(data).digest()
    if got != expected_hash:
        raise HashMismatch(
            f"chunk hash mismatch: expected {bytes(expected_hash).hex()}, got {got.hex()} "
            f"({memoryview(data).nbytes} bytes)"
        )


def _byte_view(data) -> memoryview:
    mv = memoryview(data)
    if mv.ndim != 1 or mv.format not in ("B", "b", "c"):
        mv = mv.cast("B")
    return mv


# --------------------------------------------------------------------------- describing
def describe_bytes(data: bytes | memoryview) -> FileDescription:
    """Describe in-memory file bytes (ContentId, size, chunk hashes)."""
    mv = _byte_view(data)
    n = mv.nbytes
    if n < _THREAD_MIN:
        chunks = tuple(blake3(mv[o : o + CHUNK_SIZE]).digest() for o in range(0, n, CHUNK_SIZE))
        return FileDescription(blake3(mv).digest(), n, chunks)
    # whole-file hash on a helper thread while this one hashes the chunks
    whole = blake3(max_threads=1)
    helper = threading.Thread(target=whole.update, args=(mv,), name="scp2p-hash", daemon=True)
    helper.start()
    try:
        chunks = tuple(blake3(mv[o : o + CHUNK_SIZE]).digest() for o in range(0, n, CHUNK_SIZE))
    finally:
        helper.join()
    return FileDescription(whole.digest(), n, chunks)


class _Block:
    """One filled read buffer shared by the two threads until both are done with it."""

    __slots__ = ("slot", "view", "first", "pending", "refs", "lock")

    def __init__(self, slot: int, view: memoryview, first: int, nchunks: int) -> None:
        self.slot = slot
        self.view = view  # the filled part of the buffer
        self.first = first  # global index of the block's first chunk
        self.pending = collections.deque(range(nchunks))  # chunk indices still to hash
        self.refs = 2  # the reader's chunk pass + the helper's whole pass
        self.lock = threading.Lock()

    def release(self) -> bool:
        """Drop one reference; True when the buffer may be refilled."""
        with self.lock:
            self.refs -= 1
            return self.refs == 0


def _drain(block: _Block, chunks: list, take) -> None:
    """Hash chunks of ``block`` until none remain (``take`` pops from one end of the deque)."""
    view, first = block.view, block.first
    while True:
        try:
            j = take()
        except IndexError:
            return
        o = j * CHUNK_SIZE
        chunks[first + j] = blake3(view[o : o + CHUNK_SIZE]).digest()


def describe_file(
    path: str | os.PathLike,
    *,
    progress: ProgressFn | None = None,
) -> FileDescription:
    """Describe the file at ``path`` (ContentId, size, chunk hashes) in bounded memory.

    Memory use is ``_NBUF * _BLOCK`` bytes (6 MiB) whatever the file size.
    ``progress(done_bytes, total_bytes)``, if given, is called on the calling
    thread after each block and once at the end with ``done == total``;
    ``done`` never decreases. ``total`` is the size at open time (if the file
    grows while it is read, ``total`` grows with ``done``).

    Raises ``OSError`` if the file cannot be opened or read; an exception
    raised by ``progress`` aborts the description and propagates.
    """
    with open(path, "rb", buffering=0) as f:
        total = os.fstat(f.fileno()).st_size
        try:  # a hint only; never required
            os.posix_fadvise(f.fileno(), 0, 0, os.POSIX_FADV_SEQUENTIAL)
        except (AttributeError, OSError):
            pass
        report = _Progress(progress, total) if progress is not None else None
        if total < _THREAD_MIN:
            return _describe_small(f, total, report)
        return _describe_threaded(f, total, report)


class _Progress:
    """Calls ``fn(done, total)`` with ``done`` never decreasing and a final ``done == total``."""

    __slots__ = ("fn", "total", "last")

    def __init__(self, fn: ProgressFn, total: int) -> None:
        self.fn = fn
        self.total = total
        self.last: tuple[int, int] | None = None

    def step(self, done: int) -> None:
        self.total = max(self.total, done)  # the file grew while we read it
        self.last = (done, self.total)
        self.fn(done, self.total)

    def end(self, done: int) -> None:
        if self.last != (done, done):  # also covers an empty file and a file that shrank
            self.total = done
            self.last = (done, done)
            self.fn(done, done)


def _describe_small(f, total: int, progress: _Progress | None) -> FileDescription:
    buf = bytearray(_BLOCK)
    mv = memoryview(buf)
    whole = blake3(max_threads=1)
    chunks: list[bytes] = []
    done = 0
    while True:
        n = f.readinto(buf)
        if not n:
            break
        # a short read is allowed to end mid-chunk: top the block up to a chunk boundary
        while n % CHUNK_SIZE and n < _BLOCK:
            m = f.readinto(mv[n:])
            if not m:
                break
            n += m
        view = mv[:n]
        whole.update(view)
        chunks.extend(blake3(view[o : o + CHUNK_SIZE]).digest() for o in range(0, n, CHUNK_SIZE))
        done += n
        if progress is not None:
            progress.step(done)
        if n % CHUNK_SIZE:
            break  # EOF inside the last chunk
    if progress is not None:
        progress.end(done)
    return FileDescription(whole.digest(), done, tuple(chunks))


def _describe_threaded(f, total: int, progress: _Progress | None) -> FileDescription:
    bufs = [bytearray(_BLOCK) for _ in range(_NBUF)]
    views = [memoryview(b) for b in bufs]
    free: queue.SimpleQueue[int] = queue.SimpleQueue()
    for i in range(_NBUF):
        free.put(i)
    work: queue.SimpleQueue[_Block | None] = queue.SimpleQueue()
    whole = blake3(max_threads=1)
    chunks: list[bytes | None] = []
    failure: list[BaseException] = []

    def helper() -> None:
        # whole-file hash, in order; then help with the block's chunks; never blocks the reader
        while (block := work.get()) is not None:
            try:
                if not failure:
                    whole.update(block.view)
                    _drain(block, chunks, block.pending.pop)
            except BaseException as exc:  # noqa: BLE001 - handed to the calling thread
                failure.append(exc)
            if block.release():
                free.put(block.slot)

    thread = threading.Thread(target=helper, name="scp2p-hash", daemon=True)
    thread.start()
    done = 0
    prev: _Block | None = None
    try:
        while not failure:
            slot = free.get()
            buf, mv = bufs[slot], views[slot]
            n = f.readinto(buf)
            while n and n % CHUNK_SIZE and n < _BLOCK:  # short read: top up to a chunk boundary
                m = f.readinto(mv[n:])
                if not m:
                    break
                n += m
            if not n:
                free.put(slot)
                break
            block = _Block(slot, mv[:n], len(chunks), chunk_count(n))
            chunks.extend([None] * chunk_count(n))
            work.put(block)
            # read-ahead: hash the previous block's chunks while the helper works on this one
            if prev is not None:
                done += _finish(prev, chunks, free, progress, done)
            prev = block
            if n % CHUNK_SIZE:
                break  # EOF inside the last chunk
        if prev is not None:
            done += _finish(prev, chunks, free, progress, done)
    finally:
        work.put(None)
        thread.join()
    if failure:
        raise failure[0]
    if progress is not None:
        progress.end(done)
    return FileDescription(whole.digest(), done, tuple(chunks))  # type: ignore[arg-type]


def _finish(block: _Block, chunks: list, free, progress: _Progress | None, done: int) -> int:
    _drain(block, chunks, block.pending.popleft)
    n = block.view.nbytes
    # the helper may still be hashing a chunk it stole from this block; the slot is
    # refilled only once both threads released it, and the caller joins the helper
    # before reading the chunk list
    if block.release():
        free.put(block.slot)
    if progress is not None:
        progress.step(done + n)
    return n


# --------------------------------------------------------------------------- verifying
def verify_file(
    path: str | os.PathLike,
    content_id: bytes,
    chunks: Sequence[bytes] | None = None,
) -> None:
    """Raise :class:`HashMismatch` unless the file at ``path`` has this ContentId (and chunks).

    With ``chunks``, every chunk hash is checked too; the error names the first
    bad chunk index (also stored as ``exc.chunk_index``), and a file whose size
    does not give ``len(chunks)`` chunks is a mismatch as well
    (``exc.chunk_index`` is then the first index past the shorter list, or the
    first differing index within it). Raises ``OSError`` if the file cannot be
    read.
    """
    expected_id = bytes(content_id)
    if chunks is None:
        got_id = _hash_file(path)
        if got_id != expected_id:
            raise HashMismatch(f"content id mismatch for {os.fspath(path)!r}: expected {expected_id.hex()}, got {got_id.hex()}")
        return
    desc = describe_file(path)
    expected = [bytes(c) for c in chunks]
    common = min(len(expected), len(desc.chunks))
    bad = next((i for i in range(common) if desc.chunks[i] != expected[i]), None)
    if len(expected) != len(desc.chunks):
        index = common if bad is None else bad
        exc = HashMismatch(
            f"{os.fspath(path)!r} has {desc.size} bytes = {len(desc.chunks)} chunks, expected "
            f"{len(expected)} chunks; first bad chunk index {index}"
        )
        exc.chunk_index = index  # type: ignore[attr-defined]
        raise exc
    if bad is not None:
        exc = HashMismatch(
            f"chunk {bad} of {os.fspath(path)!r} does not match: expected {expected[bad].hex()}, "
            f"got {desc.chunks[bad].hex()}"
        )
        exc.chunk_index = bad  # type: ignore[attr-defined]
        raise exc
    if desc.content_id != expected_id:
        exc = HashMismatch(
            f"content id mismatch for {os.fspath(path)!r}: expected {expected_id.hex()}, "
            f"got {desc.content_id.hex()} (all {len(expected)} chunks match)"
        )
        exc.chunk_index = None  # type: ignore[attr-defined]
        raise exc


def _hash_file(path: str | os.PathLike) -> bytes:
    """BLAKE3 of a whole file in one pass, in bounded memory (no chunk hashes)."""
    h = blake3(max_threads=1)
    buf = bytearray(4 * CHUNK_SIZE)
    mv = memoryview(buf)
    with open(path, "rb", buffering=0) as f:
        while n := f.readinto(buf):
            h.update(mv[:n])
    return h.digest()
