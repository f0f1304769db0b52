"""The asyncio download driver: the :class:`Scheduler` over the transport's sessions.

::

    spec = DownloadSpec(item.content_id, item.size, item.chunks, "/data/film.mkv")
    dl = Downloader(endpoint.pool, spec, store=astore, providers=[addr1, addr2],
                    discovery=ProviderDiscovery(endpoint.pool, spec.content_id, book=server.book, dht=dht),
                    on_progress=print)
    path = await dl.run()          # or dl.cancel(); DownloadCancelled, NoProviders, ContentMismatch

One task runs the loop (timers, polling the scheduler, persistence, progress); each
outstanding GET_CHUNK is a task in a held set. The data path per chunk: the transport
reads the CHUNK_DATA frame straight into one buffer, :func:`chunk_slice` finds the chunk
inside it (no copy), and the :class:`ChunkWorker` threads hash it (chunk and whole-file
BLAKE3) and write it (``O_DIRECT`` where aligned) from that same buffer (see writer.py). A
chunk leaves its provider's pipeline when it arrives (the scheduler's ``received``), so the
next requests go out while it is verified and written. Verified chunks are recorded in the
store's bitmap after an ``fdatasync`` every ``persist_chunks`` chunks or
``persist_interval`` seconds, so a restart (even after SIGKILL) re-fetches at most
that batch. Cancellation keeps the part file and the bitmap for a later resume.
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass
from typing import Any, Callable, Iterable, Optional, Sequence

from ..errors import (
    ContentMismatch,
    DecodeError,
    DownloadCancelled,
    NoProviders,
    RequestTimeout,
    SessionClosed,
    TransportError,
)
from ..limits import ID_LEN
from ..store.records import PartialDownload
from ..transport.datapath import chunk_fields, uint
from ..wire.messages import GetChunk, MsgType, encode_payload
from .chunkdata import _cid_prefix, chunk_slice
from .progress import Progress
from .providers import ProviderDiscovery, provider_key
from .scheduler import Scheduler, SchedulerConfig, chunk_sizes
from .writer import ChunkWorker, PartFile

log = logging.getLogger(__name__)

__all__ = ["DownloadSpec", "Downloader", "bitmap_indices"]


@dataclass(frozen=True, slots=True)
class DownloadSpec:
    """What to fetch (from a manifest item) and where to put it."""

    content_id: bytes
    size: int
    chunk_hashes: tuple
    target: str
    manifest_id: Optional[bytes] = None
    share_id: Optional[bytes] = None

    def __post_init__(self) -> None:
        if len(self.content_id) != ID_LEN:
            raise ValueError("content_id must be 32 bytes")
        object.__setattr__(self, "chunk_hashes", tuple(self.chunk_hashes))
        if len(self.chunk_hashes) != len(chunk_sizes(self.size)):
            raise ValueError(f"{len(self.chunk_hashes)} chunk hashes for {self.size} bytes")


def bitmap_indices(p: PartialDownload) -> list[int]:
    return [i for i in range(p.chunk_count) if p.bitmap[i >> 3] & (0x80 >> (i & 7))]


class _StoreAdapter:
    """``Store`` or ``AsyncStore`` behind one awaitable call."""

    def __init__(self, store: Any) -> None:
        self.store = store

    async def __call__(self, fn: Callable[[Any], Any]) -> Any:
        if self.store is None:
            return None
        run = getattr(self.store, "run", None)
        if run is not None:
            return await run(fn)
        return fn(self.store)


class Downloader:
    """Downloads one file from a swarm of providers, verified and resumable."""

    def __init__(
        self,
        pool: Any,
        spec: DownloadSpec,
        *,
        store: Any = None,
        providers: Iterable[Any] = (),
        discovery: Optional[ProviderDiscovery] = None,
        config: Optional[SchedulerConfig] = None,
        on_progress: Optional[Callable[[Progress], None]] = None,
        progress_interval: float = 0.5,
        on_persist: Optional[Callable[[int], None]] = None,
        persist_chunks: int = 64,
        persist_interval: float = 1.0,
        provider_wait: float = 30.0,
        window: int = 192,
        write_thread: bool = True,
    ) -> None:
        self.pool = pool
        self.spec = spec
        #: provider -> the last reason it failed (named in NoProviders)
        self._last_error: dict[Any, str] = {}
        self._store = _StoreAdapter(store)
        self.discovery = discovery
        self.config = config if config is not None else SchedulerConfig()
        self.on_progress = on_progress
        self.progress_interval = progress_interval
        self.on_persist = on_persist
        self.persist_chunks = persist_chunks
        self.persist_interval = persist_interval
        self.provider_wait = provider_wait
        self.window = window
        self.write_thread = write_thread
        self._worker: Optional[ChunkWorker] = None
        self._get_head: Optional[bytes] = None
        self._cid_prefix = _cid_prefix(spec.content_id)
        self._specs: dict[Any, Any] = {}
        self._sessions: dict[Any, Any] = {}
        self._initial = list(providers)
        self._tasks: dict[tuple, asyncio.Task] = {}
        self._wake = asyncio.Event()
        self._cancelled = False
        #: a local error that ends the download (writing the part file failed)
        self._fatal: Optional[BaseException] = None
        self._unpersisted: list[int] = []
        self._persist_task: Optional[asyncio.Task] = None
        self.sched: Optional[Scheduler] = None
        self.part: Optional[PartFile] = None
        self.resumed_chunks = 0
        self.persisted_chunks = 0

    # ------------------------------------------------------------------ control
    def cancel(self) -> None:
        """Stop the download (``run`` raises :class:`DownloadCancelled`; progress is kept)."""
        self._cancelled = True
        self._wake.set()

    def add_provider(self, spec: Any) -> None:
        key = provider_key(spec)
        self._specs[key] = spec
        if self.sched is not None:
            loop = asyncio.get_running_loop()
            if self.sched.add_provider(key, loop.time()):
                self._wake.set()

    def progress(self) -> Optional[Progress]:
        return None if self.sched is None else self.sched.progress(asyncio.get_running_loop().time())

    # ------------------------------------------------------------------ the run
    async def run(self) -> str:
        loop = asyncio.get_running_loop()
        spec = self.spec
        done = await self._load_partial()
        self.resumed_chunks = len(done)
        self.part = PartFile(spec.target, spec.size, spec.content_id, spec.chunk_hashes, done=done, window=self.window)
        self.sched = Scheduler(chunk_sizes(spec.size), self.config, done=done, content_id=spec.content_id, now=loop.time())
        if self.write_thread:
            self._worker = ChunkWorker(self.part, loop)
        for p in self._initial:
            self.add_provider(p)
        disc_task = None
        if self.discovery is not None:
            disc_task = loop.create_task(self.discovery.run(self.add_provider))
        rechecked = False
        try:
            while True:
                await self._loop()
                if self._worker is not None:
                    await self._worker.drain()  # duplicate (endgame) copies still queued
                await self._persist(force=True)
                try:
                    path = await asyncio.to_thread(self.part.finish)
                    break
                except ContentMismatch:
                    if rechecked:
                        raise
                    rechecked = True
                    bad = await asyncio.to_thread(self.part.recheck)
                    if not bad:
                        raise
                    log.warning("%d chunks on disk did not verify; fetching them again", len(bad))
                    self.part.unmark(bad)
                    self.sched.reopen(bad)
                    await self._store(lambda s: s.put_partial(self._partial_record()))
        except BaseException:
            await self._stop_tasks()
            try:
                await asyncio.shield(self._persist(force=True))
            except Exception:  # noqa: BLE001 - the original error matters more
                log.exception("could not persist download state")
            finally:
                await self._stop_worker()
                if self.part is not None:
                    self.part.close()
            raise
        finally:
            await self._stop_worker()
            if disc_task is not None:
                disc_task.cancel()
                await asyncio.gather(disc_task, return_exceptions=True)
        await self._store(lambda s: s.delete_partial(spec.content_id, spec.target))
        self._emit_progress(force=True)
        return path

    async def _stop_worker(self) -> None:
        w, self._worker = self._worker, None
        if w is not None:
            await asyncio.shield(w.stop())

    async def _load_partial(self) -> list[int]:
        spec = self.spec
        p = await self._store(lambda s: s.partial(spec.content_id, spec.target))
        n = len(spec.chunk_hashes)
        if p is not None and p.size == spec.size and p.chunk_count == n:
            import os

            from .writer import part_path

            if os.path.exists(part_path(spec.target, spec.content_id)):
                return bitmap_indices(p)
        await self._store(lambda s: s.put_partial(self._partial_record(empty=True)))
        return []

    def _partial_record(self, empty: bool = False) -> PartialDownload:
        spec = self.spec
        n = len(spec.chunk_hashes)
        bitmap = bytearray((n + 7) // 8)
        if not empty and self.part is not None:
            for i, w in enumerate(self.part.written):
                if w:
                    bitmap[i >> 3] |= 0x80 >> (i & 7)
        return PartialDownload(spec.content_id, spec.target, spec.size, n, bytes(bitmap), spec.manifest_id, spec.share_id)

    async def _loop(self) -> None:
        loop = asyncio.get_running_loop()
        s = self.sched
        last_progress = 0.0
        last_persist = loop.time()
        stuck_since: Optional[float] = None
        while not s.complete:
            if self._cancelled:
                raise DownloadCancelled(f"download of {self.spec.content_id.hex()} cancelled")
            if self._fatal is not None:
                raise self._fatal
            now = loop.time()
            for c in s.handle_timer(now):
                self._cancel_task(c.provider, c.index)
            for r in s.poll(now):
                self._start(r.provider, r.index, r.deadline)
            if s.stuck or not s.providers:
                stuck_since = now if stuck_since is None else stuck_since
                if now - stuck_since >= self.provider_wait:
                    why = "; ".join(f"{k}: {e}" for k, e in list(self._last_error.items())[-3:])
                    raise NoProviders(f"no usable provider for {self.spec.content_id.hex()} "
                                      f"({len(s.banned())} banned, {len(s.providers)} known)"
                                      + (f"; last errors: {why}" if why else ""))  # fmt: skip
            else:
                stuck_since = None
            if self._unpersisted and (len(self._unpersisted) >= self.persist_chunks or now - last_persist >= self.persist_interval):
                last_persist = now
                self._start_persist()
            if self.on_progress is not None and now - last_progress >= self.progress_interval:
                last_progress = now
                self._emit_progress()
            wake = s.deadline(now)
            timeout = [self.persist_interval, self.progress_interval if self.on_progress else 3600.0]
            if wake is not None:
                timeout.append(max(0.0, wake - now))
            if stuck_since is not None:
                timeout.append(max(0.0, stuck_since + self.provider_wait - now))
            self._wake.clear()
            if s.complete:
                break
            try:
                async with asyncio.timeout(min(timeout)):
                    await self._wake.wait()
            except TimeoutError:
                pass

    def _emit_progress(self, force: bool = False) -> None:
        if self.on_progress is not None and self.sched is not None:
            try:
                self.on_progress(self.sched.progress(asyncio.get_running_loop().time()))
            except Exception:  # noqa: BLE001 - a progress callback must not break the download
                log.exception("progress callback failed")

    # ------------------------------------------------------------------ requests
    def _start(self, key: Any, index: int, deadline: float) -> None:
        loop = asyncio.get_running_loop()
        k = (key, index)
        session = self._sessions.get(key)
        if session is not None and session.is_open:
            # the common case: the request leaves now and its answer comes back as a callback
            # (no task, no future per chunk); otherwise a task connects / waits for a slot
            a = _Answer(self, k)
            h = session.request_cb(MsgType.GET_CHUNK, self._payload(index), a, timeout=max(0.0, deadline - loop.time()))
            if h is not None:
                a.h = h
                self._tasks[k] = h
                return
        task = loop.create_task(self._fetch(key, index, deadline))
        self._tasks[k] = task
        task.add_done_callback(lambda t, k=k: self._task_done(k, t))

    def _answered(self, a: "_Answer", env: Any, exc: Optional[BaseException]) -> None:
        """The transport's callback for a request sent by ``_start`` (on the loop)."""
        k = a.k
        if self._tasks.get(k) is not a.h:
            return  # (cancelled handles are never called back; defensive)
        if self._outcome(k[0], k[1], env, exc):
            return  # handed to the chunk worker
        if self._tasks.get(k) is a.h:
            del self._tasks[k]
        self._after(k)

    def _task_done(self, k: tuple, task: asyncio.Task) -> None:
        if self._tasks.get(k) is task:
            del self._tasks[k]
        if not task.cancelled():
            if task.exception() is not None:
                log.error("chunk task failed", exc_info=task.exception())
            elif task.result():
                return  # handed to the chunk worker: its callback (_verified) takes it from here
        self._after(k)

    def _after(self, k: tuple) -> None:
        """A request ended without handing a chunk to the worker."""
        s = self.sched
        # the loop runs when there is something to do: a failure (or a cancelled duplicate),
        # room to refill, the endgame or the last chunk, or a batch to persist (progress and
        # time-based persistence run on the loop's timeout)
        if not s.is_done(k[1]) or s.refill_ready() or len(self._unpersisted) >= self.persist_chunks:
            self._wake.set()

    def _cancel_task(self, key: Any, index: int) -> None:
        t = self._tasks.pop((key, index), None)
        if t is not None and not isinstance(t, _Verify):  # a chunk being verified: its result is ignored
            t.cancel()

    async def _stop_tasks(self) -> None:
        handles = [t for t in self._tasks.values() if not isinstance(t, _Verify)]
        self._tasks.clear()  # results of chunks still being verified are ignored
        for t in handles:
            t.cancel()  # a task, or a request waiting with a callback (never called back now)
        tasks = [t for t in handles if isinstance(t, asyncio.Task)]
        if self._persist_task is not None:
            tasks.append(self._persist_task)
        if tasks:
            await asyncio.gather(*tasks, return_exceptions=True)

    async def _session(self, key: Any, deadline: float) -> Any:
        s = self._sessions.get(key)
        if s is not None and s.is_open:
            return s
        spec = self._specs[key]
        if hasattr(spec, "request_raw"):  # a Session we already hold
            if not spec.is_open:
                raise SessionClosed("provider session closed")
            s = spec
        else:
            async with asyncio.timeout_at(deadline):
                s = await self.pool.session(spec)
        self._sessions[key] = s
        return s

    def _payload(self, index: int) -> bytes:
        # the GET_CHUNK payload is the encoded content id part (built once) + the index
        head = self._get_head
        if head is None:
            head = self._get_head = encode_payload(GetChunk(self.spec.content_id, 0))[:-1]
        return head + uint(index)

    async def _fetch(self, key: Any, index: int, deadline: float) -> bool:
        """Request one chunk in a task (connecting first, or waiting for a free slot); True when
        it was handed to the chunk worker (``_verified`` ends it)."""
        loop = asyncio.get_running_loop()
        try:
            session = self._sessions.get(key)
            if session is None or not session.is_open:
                session = await self._session(key, deadline)
            env = await session.request_raw(MsgType.GET_CHUNK, self._payload(index), timeout=max(0.0, deadline - loop.time()))
        except (TimeoutError, SessionClosed, TransportError, OSError) as exc:
            return self._outcome(key, index, None, exc)
        return self._outcome(key, index, env, None)

    def _outcome(self, key: Any, index: int, env: Any, exc: Optional[BaseException]) -> bool:
        """A request's answer (``env``) or failure (``exc``); True when the chunk was handed to
        the chunk worker."""
        loop = asyncio.get_running_loop()
        s = self.sched
        if exc is not None:
            if isinstance(exc, TimeoutError):  # RequestTimeout included
                s.request_failed(key, index, loop.time(), "timeout")
                self._last_error[key] = "timeout"
                return False
            log.debug("provider %r: %s", key, exc)
            self._last_error[key] = str(exc) or type(exc).__name__
            for c in s.remove_provider(key, loop.time(), "connection"):
                if c.index != index:
                    self._cancel_task(c.provider, c.index)
            if self.discovery is not None:
                self.discovery.forget(self._specs[key])
            return False
        now = loop.time()
        if env.flags & 2 or env.type != MsgType.CHUNK_DATA:
            s.request_failed(key, index, now, "error response")
            self._last_error[key] = bytes(env.payload[:200]).decode("utf-8", "replace") if env.is_error else "bad reply"
            return False
        payload = env.payload
        try:
            # the canonical layout with our content id (one call); anything else: chunk_slice
            f = chunk_fields(payload, self._cid_prefix)
            if f is not None:
                idx, start, n = f
                data = (payload if type(payload) is memoryview else memoryview(payload))[start : start + n]
            else:
                cid, idx, data = chunk_slice(payload, self.spec.content_id)
                if cid != self.spec.content_id:
                    idx = -1
        except DecodeError:
            self._bad(key, index, now)
            return False
        if idx != index:
            self._bad(key, index, now)
            return False
        if not s.received(key, index, now):
            return False
        if not self._wake.is_set() and s.refill_ready():  # its slot is free: the loop refills while this chunk is verified
            self._wake.set()
        if self._worker is not None:
            # the task ends here; the worker calls back on the loop when the chunk is verified
            # and written (no future, no task resumption per chunk)
            k = (key, index)
            v = _Verify(self, k)
            self._worker.submit_cb(index, data, v)
            if self._tasks.get(k) is not None:
                self._tasks[k] = v  # cancelling it now only drops the result
            return True
        part = self.part
        try:
            ok = part.verify_chunk(index, data)
            if ok:
                part.write_chunk(index, data)
        except OSError as exc:  # the part file cannot be written (disk full, I/O error): give up
            self._fail(exc)
            return False
        if not ok:
            self._bad(key, index, now)
            return False
        self._done(key, index, now)
        return False

    def _fail(self, exc: BaseException) -> None:
        if self._fatal is None:
            self._fatal = exc
        self._wake.set()

    def _done(self, key: Any, index: int, now: float) -> None:
        for c in self.sched.chunk_verified(key, index, now):
            self._cancel_task(c.provider, c.index)
        self._unpersisted.append(index)

    def _verified(self, v: "_Verify", ok: Optional[bool], exc: Optional[BaseException]) -> None:
        """The chunk worker's answer for a chunk handed over by ``_fetch`` (on the loop)."""
        k = v.k
        if self._tasks.get(k) is not v:
            return  # cancelled (a duplicate that another provider delivered first, or the run ended)
        del self._tasks[k]
        key, index = k
        if exc is not None:  # the part file cannot be written (disk full, I/O error): give up
            self._fail(exc)
            return
        s = self.sched
        now = asyncio.get_running_loop().time()
        if not ok:
            self._bad(key, index, now)
            self._wake.set()
            return
        self._done(key, index, now)
        if not self._wake.is_set() and (len(self._unpersisted) >= self.persist_chunks or s.refill_ready()):
            self._wake.set()

    def _bad(self, key: Any, index: int, now: float) -> None:
        v = self.sched.chunk_bad(key, index, now)
        log.warning("provider %r sent a bad chunk %d (%d bad so far%s)", key, index, v.bad_chunks,
                    ", banned" if v.banned else "")  # fmt: skip
        for c in v.cancels:
            self._cancel_task(c.provider, c.index)

    # ------------------------------------------------------------------ persistence
    def _start_persist(self) -> None:
        if self._persist_task is not None and not self._persist_task.done():
            return
        self._persist_task = asyncio.get_running_loop().create_task(self._persist())

    async def _persist(self, force: bool = False) -> None:
        if force and self._persist_task is not None and not self._persist_task.done():
            await asyncio.gather(self._persist_task, return_exceptions=True)
        batch, self._unpersisted = self._unpersisted, []
        if not batch or self._store.store is None:
            return
        part = self.part
        try:
            if part is not None and part.fd is not None:
                await asyncio.to_thread(part.sync)
            spec = self.spec
            await self._store(lambda st: st.mark_chunks_done(spec.content_id, spec.target, batch))
        except BaseException:
            self._unpersisted[:0] = batch
            raise
        self.persisted_chunks += len(batch)
        if self.on_persist is not None:
            self.on_persist(self.resumed_chunks + self.persisted_chunks)


class _Answer:
    """The transport callback of one GET_CHUNK sent with ``Session.request_cb``; ``h`` is the
    request's handle, which stands for the request in ``Downloader._tasks`` (``cancel()``)."""

    __slots__ = ("dl", "k", "h")

    def __init__(self, dl: Downloader, k: tuple) -> None:
        self.dl = dl
        self.k = k
        self.h = None

    def __call__(self, env: Any, exc: Optional[BaseException]) -> None:
        self.dl._answered(self, env, exc)


class _Verify:
    """A chunk handed to the chunk worker: the worker's callback, and the entry that stands in
    for the finished request task in ``Downloader._tasks`` (cancelling drops the result)."""

    __slots__ = ("dl", "k")

    def __init__(self, dl: Downloader, k: tuple) -> None:
        self.dl = dl
        self.k = k

    def __call__(self, ok: Optional[bool], exc: Optional[BaseException]) -> None:
        self.dl._verified(self, ok, exc)
