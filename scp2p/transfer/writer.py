"""Writing a download: a preallocated temporary file beside the target, positioned writes,
per-chunk and whole-file verification, atomic rename.

:class:`PartFile` is synchronous and does no networking; the driver hands chunks to a
:class:`ChunkWorker` (a verify thread and a write thread; or calls :meth:`PartFile.verify_chunk`
and :meth:`PartFile.write_chunk` on the event loop with ``write_thread=False``) and runs
:meth:`PartFile.finish` (fsync, the rest of the whole-file hash, rename) in a worker thread.

* The temporary file is ``.<target name>.<content id prefix>.scp2p-part`` in the
  target's directory (same filesystem, so the final ``os.replace`` is atomic). It is
  created with mode 0600, sized with ``posix_fallocate`` where available (else
  ``ftruncate``), and reopened as-is on resume.
* Chunks are written with ``pwrite``/``pwritev`` straight from the caller's buffer (the
  received frame), after :meth:`PartFile.verify_chunk` hashed that same buffer. All positioned
  I/O and file capabilities come from :mod:`scp2p.transport.pio` (chosen once at import: the
  ``os`` builtins on Linux, fallbacks on macOS/Windows).
* The whole-file BLAKE3 (the content id) is computed **incrementally in file order**
  from the same buffers: a chunk that arrives in order is fed at once, a chunk that
  arrives early is held (a reference to its receive buffer, at most ``window``
  chunks), and chunks that were neither (resumed, or beyond the window) are read back
  from the file when the in-order hash reaches them. In a normal download the file
  is therefore never read back.
* :meth:`PartFile.finish` checks the content id, fsyncs, renames and fsyncs the
  directory. On a mismatch :meth:`PartFile.recheck` re-hashes every chunk on disk
  and returns the bad ones, so the driver can fetch them again.
* **Direct I/O** (Linux only): where the filesystem supports ``O_DIRECT`` (ext4, xfs, btrfs; not
  tmpfs) the file is also opened with it, and every chunk whose buffer, length and
  offset are aligned to :data:`DIRECT_ALIGN` (the transport lays CHUNK_DATA bodies so
  that the chunk bytes start on a page boundary) is written with one ``pwrite`` straight
  from the receive buffer to the device: no page-cache copy, no fresh page-cache pages
  (which cost 0.1-2.5 CPU-s/GiB on a VM), and the data is on disk when the call
  returns. Anything else (the short last chunk, an unaligned buffer, a filesystem that
  refuses) goes through the page cache; ``fdatasync`` covers both.
* Durability: :meth:`PartFile.sync` (``fdatasync``) is called before verified chunks
  are recorded in the store's bitmap, so a recorded chunk is on disk.
"""

from __future__ import annotations

import asyncio
import errno
import functools
import logging
import os
import threading
from collections import deque
from typing import Callable, Iterable, Optional, Sequence

from blake3 import blake3

from ..errors import ContentMismatch
from ..limits import CHUNK_SIZE
from ..transport import pio
from ..transport.frames import buffer_address

log = logging.getLogger(__name__)

__all__ = ["ChunkWorker", "PartFile", "part_path"]


#: alignment of buffer address, length and file offset for an ``O_DIRECT`` write
DIRECT_ALIGN = 4096
#: verified chunks the verify thread hands to the write threads at a time (1 MiB)
HANDOVER = 4
#: write threads per download: writes in flight at once. On this VM's virtio disk one
#: ``O_DIRECT`` writer reaches 2.5 GB/s (1 or 4 MiB writes), two 4.7 GB/s
WRITERS = 2
#: chunks a write thread takes at a time (one vectored write, reported when it is on disk)
WRITE_GROUP = 8


def _first(item: tuple):
    return item[0]


def part_path(target: str, content_id: bytes) -> str:
    d, name = os.path.split(os.path.abspath(target))
    return os.path.join(d, f".{name}.{content_id[:8].hex()}.scp2p-part")


class PartFile:
    """The temporary file of one download."""

    def __init__(
        self,
        target: str,
        size: int,
        content_id: bytes,
        chunk_hashes: Sequence[bytes],
        *,
        done: Iterable[int] = (),
        window: int = 64,
        catchup: int = 16,
        chunk_size: int = CHUNK_SIZE,
        direct: bool = True,
    ) -> None:
        self.target = os.path.abspath(target)
        #: chunks written with O_DIRECT / through the page cache
        self.direct_writes = 0
        self.cached_writes = 0
        self._direct = direct
        self.size = size
        self.content_id = content_id
        self.hashes = list(chunk_hashes)
        self.chunk_size = chunk_size
        self.n = len(self.hashes)
        if (size + chunk_size - 1) // chunk_size != self.n:
            raise ValueError(f"{self.n} chunk hashes for a {size}-byte file")
        self.path = part_path(self.target, content_id)
        self.window = window
        self.catchup = catchup
        self.written = bytearray(self.n)
        for i in done:
            self.written[i] = 1
        self._hasher = blake3()
        self._next = 0  # next chunk index to feed the whole-file hasher
        self._held: dict[int, object] = {}
        self._scratch: Optional[bytearray] = None
        self.read_back = 0  # bytes re-read from disk for the whole-file hash
        self.fd: Optional[int] = None
        self.dfd: Optional[int] = None  # the O_DIRECT descriptor, when the filesystem allows it
        #: the filesystem refused an O_DIRECT write (EINVAL): the page cache from then on (the
        #: descriptor stays open until close: another write thread may be using it)
        self.direct_refused = False
        self._stats = threading.Lock()  # the counters, from several write threads
        self._open()

    # ------------------------------------------------------------------ file
    def _open(self) -> None:
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT | pio.OPEN_FLAGS, 0o600)
        try:
            pio.preallocate(fd, self.size)
        except BaseException:
            os.close(fd)
            raise
        self.fd = fd
        if self._direct and pio.O_DIRECT and self.chunk_size % DIRECT_ALIGN == 0:
            try:
                self.dfd = os.open(self.path, os.O_WRONLY | pio.O_DIRECT | pio.OPEN_FLAGS)
            except OSError as exc:  # e.g. tmpfs: EINVAL
                log.debug("no O_DIRECT for %s: %s", self.path, exc)

    def chunk_len(self, index: int) -> int:
        return min(self.chunk_size, self.size - index * self.chunk_size)

    # ------------------------------------------------------------------ chunks
    def verify_chunk(self, index: int, data) -> bool:
        """True if ``data`` is chunk ``index`` (length and BLAKE3 against the manifest)."""
        if not 0 <= index < self.n or len(data) != self.chunk_len(index):
            return False
        return blake3(data).digest() == self.hashes[index]

    def write_chunk(self, index: int, data) -> None:
        """Write a verified chunk at its offset. ``data`` must not change afterwards (it may be
        held for the in-order hash until the chunks before it arrive)."""
        self.write_chunks(((index, data),))

    def write_chunks(self, chunks: Iterable[tuple]) -> None:
        """Feed verified ``(index, data)`` chunks to the whole-file hash (:meth:`hash_chunk`),
        then write them (:meth:`store_chunks`)."""
        chunks = [(i, memoryview(d)) for i, d in chunks]
        for index, mv in chunks:
            self.hash_chunk(index, mv)
        self.store_chunks(chunks)

    def store_chunks(self, chunks: Iterable[tuple]) -> list:
        """Put verified ``(index, data)`` chunks on disk and mark them written: runs of
        consecutive direct-I/O-able chunks leave in one ``pwritev`` (up to :attr:`max_run`
        chunks), the rest through the page cache. Returns the chunks as ``(index, memoryview)``."""
        chunks = [(i, memoryview(d)) for i, d in chunks]
        run: list = []
        for index, mv in sorted(chunks, key=_first):  # in file order: longer runs
            if self.dfd is not None and not self.direct_refused and self._alignable(mv):
                if run and (run[-1][0] + 1 != index or len(run) >= self.max_run):
                    self._write_run(run)
                    run = []
                run.append((index, mv))
            else:
                self._write_cached(index * self.chunk_size, mv)
        if run:
            self._write_run(run)
        written = self.written
        for index, _ in chunks:
            written[index] = 1
        return chunks

    #: chunks per vectored O_DIRECT write (4 MiB)
    max_run = 16

    @staticmethod
    def _alignable(mv: memoryview) -> bool:
        if len(mv) % DIRECT_ALIGN:
            return False
        addr = buffer_address(mv)
        return addr is not None and not addr % DIRECT_ALIGN

    def _write_cached(self, off: int, mv: memoryview) -> None:
        with self._stats:
            self.cached_writes += 1
        pos, n = 0, len(mv)
        while pos < n:
            pos += pio.pwrite(self.fd, mv[pos:], off + pos)

    def _write_run(self, run: list) -> None:
        """One O_DIRECT ``pwritev`` of consecutive aligned chunks (chunk offsets are aligned);
        what it does not take (a short write, a filesystem that refuses) goes through the page cache."""
        off = run[0][0] * self.chunk_size
        bufs = [mv for _, mv in run]
        done = 0
        dfd = self.dfd
        if dfd is not None and not self.direct_refused:
            try:
                done = pio.pwritev(dfd, bufs, off)
            except OSError as exc:
                if exc.errno != errno.EINVAL:
                    raise
                log.debug("O_DIRECT write refused (%s); using the page cache", exc)
                self.direct_refused = True
            done -= done % DIRECT_ALIGN
        direct = 0
        for mv in bufs:
            n = len(mv)
            if done >= n:
                direct += 1
            else:
                self._write_cached(off + done, mv[done:])
            done = max(0, done - n)
            off += n
        if direct:
            with self._stats:
                self.direct_writes += direct

    def hash_chunk(self, index: int, mv: memoryview) -> None:
        """Feed a verified chunk to the in-order whole-file hash: at once when it is next,
        held (a reference) when it is at most ``window`` ahead. It need not be on disk yet
        (the :class:`ChunkWorker` hashes while another thread writes); chunks neither fed nor
        held are read back from disk once written."""
        if index == self._next:
            self._hasher.update(mv)
            self._next += 1
            self._advance(self.catchup)
        elif index > self._next and index < self._next + self.window:
            self._held[index] = mv
        elif self._held and self._next in self._held:
            self._advance(self.catchup)

    def unmark(self, indices: Iterable[int]) -> None:
        """Forget chunks (found bad on disk); the whole-file hash restarts from the first of them."""
        first = self.n
        for i in indices:
            self.written[i] = 0
            first = min(first, i)
        if first < self._next:
            self._hasher = blake3()
            self._next = 0
            self._held.clear()

    def _advance(self, budget: int) -> None:
        """Feed the whole-file hasher with consecutive chunks (held ones, or written ones read back)."""
        h = self._hasher
        held, written = self._held, self.written
        while self._next < self.n and (self._next in held or written[self._next]):
            i = self._next
            buf = self._held.pop(i, None)
            if buf is None:
                if budget <= 0:
                    return
                budget -= 1
                buf = self._read(i)
            h.update(buf)
            self._next = i + 1
        # drop held buffers the hash has passed (chunks written twice)
        if self._held:
            for k in [k for k in self._held if k < self._next]:
                del self._held[k]

    def _read(self, index: int) -> memoryview:
        if self._scratch is None:
            self._scratch = bytearray(self.chunk_size)
        n = self.chunk_len(index)
        mv = memoryview(self._scratch)[:n]
        got = pio.preadv(self.fd, [mv], index * self.chunk_size)
        if got != n:
            raise OSError(f"short read of chunk {index} from {self.path}")
        self.read_back += n
        return mv

    @property
    def complete(self) -> bool:
        return all(self.written)

    def sync(self) -> None:
        """Make written chunks durable (before recording them as verified)."""
        if self.fd is not None:
            pio.fdatasync(self.fd)

    # ------------------------------------------------------------------ the end
    def recheck(self) -> list[int]:
        """Re-hash every chunk on disk; the indices that do not match the manifest."""
        bad = []
        for i in range(self.n):
            if not self.written[i] or blake3(self._read(i)).digest() != self.hashes[i]:
                bad.append(i)
        return bad

    def finish(self) -> str:
        """Check the content id, fsync, rename onto the target. Returns the target path.

        Raises :class:`ContentMismatch` if the bytes do not hash to the content id (the
        file stays in place; call :meth:`recheck`)."""
        if not self.complete:
            raise ValueError("not every chunk is written")
        self._advance(self.n)
        if self._next != self.n:  # pragma: no cover - complete implies the hash ran through
            raise ValueError("whole-file hash did not reach the end")
        got = self._hasher.digest()
        if got != self.content_id:
            raise ContentMismatch(f"file hashes to {got.hex()}, expected content id {self.content_id.hex()}")
        os.fsync(self.fd)
        self._close_fds()
        os.replace(self.path, self.target)
        _fsync_dir(os.path.dirname(self.target))
        return self.target

    def close(self) -> None:
        """Close the file and keep it (a later run resumes)."""
        self._held.clear()
        self._close_fds()

    def _close_fds(self) -> None:
        for name in ("dfd", "fd"):
            fd = getattr(self, name)
            if fd is not None:
                setattr(self, name, None)
                os.close(fd)

    def discard(self) -> None:
        """Close and delete the temporary file."""
        self.close()
        try:
            os.unlink(self.path)
        except FileNotFoundError:
            pass

    def __enter__(self) -> "PartFile":
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def _fsync_dir(path: str) -> None:
    try:
        fd = os.open(path or ".", os.O_RDONLY)
    except OSError:  # pragma: no cover - e.g. Windows
        return
    try:
        os.fsync(fd)
    except OSError:  # pragma: no cover
        pass
    finally:
        os.close(fd)


class ChunkWorker:
    """Verifies and writes chunks of one :class:`PartFile` in dedicated threads.

    The *verify* thread checks each chunk's BLAKE3 against the manifest and feeds the
    in-order whole-file hash (submission order), handing verified chunks over every
    :data:`HANDOVER`; ``writers`` *write* threads (:data:`WRITERS`) each take up to
    :data:`WRITE_GROUP` of them at a time, put them on disk (vectored ``O_DIRECT`` runs, see
    :meth:`PartFile.store_chunks`), mark them written and report them - two writes in flight
    nearly double what this VM's disk takes. BLAKE3 and ``pwritev`` release the GIL, so chunk
    *n+1* is hashed while chunk *n* is on its way to the device and the event loop reads chunk
    *n+2* from the socket. Results come back to the loop in batches (one
    ``call_soon_threadsafe`` per write). A chunk is reported verified (future or callback)
    only once it is on disk (or in the page cache, made durable by :meth:`PartFile.sync`).
    Only these threads touch the part file's chunk state while they run; :meth:`drain` waits
    until everything submitted so far is written (before ``finish``, ``recheck`` or ``close``).
    """

    def __init__(self, part: PartFile, loop: asyncio.AbstractEventLoop, *, writers: int = WRITERS) -> None:
        self.part = part
        self.loop = loop
        self._q: deque = deque()
        self._cv = threading.Condition()
        self._wq: deque = deque()
        self._wcv = threading.Condition()
        self._writing = 0  # write threads in the middle of a write (under _wcv)
        self._stop = False
        #: the verify thread waits for input (under _cv): only then does a submit notify it
        self._idle = False
        #: a notification of the verify thread is scheduled on the loop (under _cv)
        self._wake_pending = False
        #: results waiting for the loop, and whether a delivery is already scheduled (under
        #: _rlock): results posted while one is pending ride along (one loop wake-up for them)
        self._results: list = []
        self._posted = False
        self._rlock = threading.Lock()
        self._thread = threading.Thread(target=self._verify, name="scp2p-chunk-verify", daemon=True)
        self._writers = [
            threading.Thread(target=self._write, name=f"scp2p-chunk-writer-{i}", daemon=True) for i in range(max(1, writers))
        ]
        self._thread.start()
        for w in self._writers:
            w.start()

    def submit(self, index: int, data) -> asyncio.Future:
        """A future: True (verified and written), False (bad chunk), or the I/O error."""
        fut = self.loop.create_future()
        self.submit_cb(index, data, functools.partial(_resolve, fut))
        return fut

    def submit_cb(self, index: int, data, callback: Callable[[Optional[bool], Optional[BaseException]], None]) -> None:
        """Like :meth:`submit`, but ``callback(ok, exc)`` runs on the loop instead (no future):
        ``ok`` True (verified and written) or False (bad chunk), or ``exc`` the I/O error."""
        with self._cv:
            if self._stop:
                raise RuntimeError("chunk worker stopped")
            self._q.append((index, data, callback))
            if self._idle and not self._wake_pending:
                # a waiting verify thread is woken once per event-loop pass, after everything
                # the pass received (read bursts bring ~2 chunks a pass): one futex wake and GIL
                # hand-over for them; a busy one takes everything queued on its next round
                self._wake_pending = True
                self.loop.call_soon(self._wake)

    def _wake(self) -> None:
        with self._cv:
            self._wake_pending = False
            if self._idle:
                self._cv.notify()

    async def drain(self) -> None:
        """Wait until every chunk submitted so far is verified and written."""
        with self._cv:
            if self._stop and not self._thread.is_alive():
                return
        await asyncio.shield(self.submit(-1, None))

    async def stop(self) -> None:
        """Drain, then end both threads."""
        if self._thread.is_alive():
            await self.drain()
        with self._cv:
            self._stop = True
            self._cv.notify()
        await asyncio.to_thread(self._thread.join)  # the verify thread stops the writers on its way out
        for w in self._writers:
            await asyncio.to_thread(w.join)

    def _hand_over(self, good: list) -> None:
        with self._wcv:
            self._wq.extend(good)
            # a second write starts only when a group's worth waits behind the one in
            # progress (the disk lags); else the busy thread takes them next (fewer, larger
            # writes and fewer thread wake-ups)
            if not self._writing or len(self._wq) >= WRITE_GROUP:
                self._wcv.notify()

    def _post(self, results: list) -> bool:
        with self._rlock:
            self._results.extend(results)
            if self._posted:
                return True
            self._posted = True
        try:
            self.loop.call_soon_threadsafe(self._deliver)
            return True
        except RuntimeError:  # the loop is closed: nobody waits any more
            return False

    def _deliver(self) -> None:
        with self._rlock:
            results, self._results = self._results, []
            self._posted = False
        _deliver(results)

    def _verify(self) -> None:
        part = self.part
        try:
            while True:
                with self._cv:
                    while not self._q and not self._stop:
                        self._idle = True
                        self._cv.wait()
                        self._idle = False
                    if not self._q:
                        return
                    items = list(self._q)
                    self._q.clear()
                bad = []
                good = []
                for index, data, cb in items:
                    if data is None:  # a drain marker: resolved by the writer after what precedes it
                        good.append((index, None, cb))
                        continue
                    try:
                        if part.verify_chunk(index, data):
                            mv = memoryview(data)
                            part.hash_chunk(index, mv)
                            good.append((index, mv, cb))
                        else:
                            bad.append((cb, False, None))
                    except BaseException as exc:  # noqa: BLE001 - handed to the waiting task
                        bad.append((cb, None, exc))
                    if len(good) >= HANDOVER:  # the writer starts on these while the rest is hashed
                        self._hand_over(good)
                        good = []
                del items, data
                if good:
                    self._hand_over(good)
                del good
                if bad and not self._post(bad):
                    return
        finally:
            with self._wcv:
                self._wq.append(None)  # end of input for the write threads
                self._wcv.notify_all()

    def _take(self) -> Optional[list]:
        """The next group for a write thread (None: end of input). A drain marker is taken
        alone, once no other write is in progress: everything before it is then on disk."""
        wq = self._wq
        with self._wcv:
            while True:
                if wq:
                    head = wq[0]
                    if head is None:
                        return None  # left in place: every write thread sees the end
                    if head[1] is not None:
                        group = []
                        while wq and len(group) < WRITE_GROUP and wq[0] is not None and wq[0][1] is not None:
                            group.append(wq.popleft())
                        self._writing += 1
                        return group
                    if not self._writing:  # a drain marker
                        return [wq.popleft()]
                self._wcv.wait()

    def _write(self) -> None:
        part = self.part
        while True:
            group = self._take()
            if group is None:
                return
            if group[0][1] is None:  # a drain marker: what preceded it is written
                if not self._post([(group[0][2], True, None)]):
                    return
                continue
            chunks = [(index, mv) for index, mv, _ in group]
            try:
                part.store_chunks(chunks)
                results = [(cb, True, None) for _, _, cb in group]
            except BaseException as exc:  # noqa: BLE001 - handed to the waiting tasks
                results = [(cb, None, exc) for _, _, cb in group]
            del group, chunks
            with self._wcv:
                self._writing -= 1
                self._wcv.notify_all()  # a drain marker may wait for this write
            if not self._post(results):
                return


def _deliver(results: list) -> None:
    for callback, ok, exc in results:
        try:
            callback(ok, exc)
        except Exception:  # noqa: BLE001 - one failing callback must not strand the others
            log.exception("chunk callback failed")


def _resolve(fut: asyncio.Future, ok: Optional[bool], exc: Optional[BaseException]) -> None:
    if fut.done():
        return
    if exc is not None:
        fut.set_exception(exc)
    else:
        fut.set_result(ok)
