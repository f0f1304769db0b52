"""The chunk server: GET_CHUNK from published files and completed downloads, HAVE_CONTENT, PROVIDERS.

``ChunkServer.register(dispatcher)`` installs three handlers on a transport
:class:`~scp2p.transport.Dispatcher`:

* **GET_CHUNK** -> CHUNK_DATA. The content id is resolved to a local file: files
  added with :meth:`ChunkServer.add_file` (completed downloads) or, through the store,
  ``files_with_content`` (published shares; the file's size, mtime and inode - where
  known: 0 is not - must still match what was hashed, else it is not served). Resolutions are cached for
  ``resolve_ttl`` seconds and file descriptors are kept open (LRU). Each response is
  one buffer: the CHUNK_DATA header is laid in place and the chunk is read right
  behind it with ``preadv`` (:mod:`scp2p.transport.pio`; one copy: page cache -> buffer; the file is never
  read whole). Buffers come from a small pool and are reused once the transport no
  longer references them (CPython reference counts tell; asyncio 3.12+ transports
  keep written buffers queued, so a buffer is never reused while still queued).
* **per-peer caps**: at most ``max_per_peer`` GET_CHUNK handled at once per remote
  key (further ones wait; beyond ``max_queued_per_peer`` waiting they are refused
  with an error response "busy"); an **upload cap**: a byte token bucket shared by
  all peers (``upload_rate`` bytes/s).
* **HAVE_CONTENT** (announce): the sender is recorded as a provider of the content
  in :attr:`ChunkServer.book`; **PROVIDERS**: as a request (req_id != 0, our
  extension of v0.1, see docs/transfer.md) it is answered with the providers we know
  for the content id - ourselves first when we can serve it; as an announcement
  (req_id 0) its providers are merged into the book.
"""

from __future__ import annotations

import asyncio
import logging
import os
import time
from collections import OrderedDict, deque
from dataclasses import dataclass
from typing import Any, Callable, Iterable, Optional

from ..errors import RemoteError
from ..limits import CHUNK_SIZE, MAX_PEX_PEERS
from ..wire.messages import MsgType, encode_payload
from ..wire.records import FLAG_RESPONSE, PeerAddr, Providers
from ..transport import pio
from ..transport.datapath import chunk_frame, get_chunk_fields
from ..transport.dispatch import DEFER, Reply
from ..transport.frames import RecvPool
from .chunkdata import _cid_prefix, chunk_data_header
from .progress import Bandwidth

log = logging.getLogger(__name__)

__all__ = ["BufferPool", "ChunkServer", "LocalContent", "ProviderBook"]

#: CHUNK_DATA header: at most 14 + 64 + 12 + 5 + 6 + 5 = 106 bytes; a whole frame laid out by
#: ``serve_raw`` adds the frame length and the Envelope map (at most 4 + 41)
_HDR_MAX = 160
#: response buffers the server keeps: a downloader keeps up to 64 requests on the wire and the
#: answers wait in the transport's write queue until the socket takes them, so fewer than that
#: meant a fresh (zeroed, page-faulted) 256 KiB buffer for about one response in five
POOL_KEEP = 80


@dataclass(frozen=True, slots=True)
class LocalContent:
    """A local file that holds a content id. ``stat`` (size, mtime_ns, inode) must still match, if given."""

    path: str
    size: int
    stat: Optional[tuple[int, int, int]] = None


class BufferPool(RecvPool):
    """Reusable response buffers of ``size`` bytes: the transport's receive-buffer pool
    (:class:`~scp2p.transport.frames.RecvPool`) - a buffer goes back to the pool only when
    nothing else refers to it - handing out whole buffers of one size."""

    __slots__ = ("size",)

    def __init__(self, size: int, keep: int = 16) -> None:
        super().__init__(keep, min_size=size)
        self.size = size

    def get(self) -> bytearray:  # type: ignore[override]
        # the lowest free buffer: a response usually leaves (is copied into the socket) before
        # the next one is read, so the same few buffers - hot in the cache - serve the stream
        self._next = 0
        return super().get(self.size)


class ProviderBook:
    """Who announced which content (bounded): content id -> {node pubkey: PeerAddr or None}."""

    def __init__(self, max_contents: int = 4096, max_per_content: int = MAX_PEX_PEERS) -> None:
        self.max_contents = max_contents
        self.max_per_content = max_per_content
        self._book: "OrderedDict[bytes, OrderedDict[bytes, Optional[PeerAddr]]]" = OrderedDict()
        self._waiters: list[tuple[bytes, asyncio.Event]] = []

    def add(self, content_id: bytes, pubkey: Optional[bytes], addr: Optional[PeerAddr] = None) -> None:
        key = pubkey if pubkey is not None else (addr.pubkey_hint if addr is not None else None)
        if key is None:
            if addr is None:
                return
            key = b"addr:" + f"{addr.ip}:{addr.port}:{addr.transport.value}".encode()
        entry = self._book.get(content_id)
        if entry is None:
            entry = self._book[content_id] = OrderedDict()
            while len(self._book) > self.max_contents:
                self._book.popitem(last=False)
        else:
            self._book.move_to_end(content_id)
        if addr is None and entry.get(key) is not None:
            addr = entry[key]
        entry[key] = addr
        entry.move_to_end(key, last=False)
        while len(entry) > self.max_per_content:
            entry.popitem()
        for cid, ev in self._waiters:
            if cid == content_id:
                ev.set()

    def get(self, content_id: bytes) -> list[tuple[bytes, Optional[PeerAddr]]]:
        return list(self._book.get(content_id, {}).items())

    def forget(self, content_id: bytes, pubkey: bytes) -> None:
        entry = self._book.get(content_id)
        if entry is not None:
            entry.pop(pubkey, None)

    def watch(self, content_id: bytes) -> asyncio.Event:
        """An event set whenever a provider of ``content_id`` is added (call :meth:`unwatch`)."""
        ev = asyncio.Event()
        self._waiters.append((content_id, ev))
        return ev

    def unwatch(self, ev: asyncio.Event) -> None:
        self._waiters = [(c, e) for c, e in self._waiters if e is not ev]


class _PeerGate:
    """At most ``n`` requests of one peer at once; the rest wait in arrival order. A request
    that finds a free slot takes it without suspending (no semaphore coroutine per chunk)."""

    __slots__ = ("n", "active", "waiters")

    def __init__(self, n: int) -> None:
        self.n = n
        self.active = 0
        self.waiters: deque = deque()

    @property
    def waiting(self) -> int:
        return len(self.waiters)

    @property
    def full(self) -> bool:
        return self.active >= self.n

    async def acquire(self) -> None:
        if self.active < self.n and not self.waiters:
            self.active += 1
            return
        fut = asyncio.get_running_loop().create_future()
        self.waiters.append(fut)
        try:
            await fut  # resolved by release(), which hands its slot over
        except BaseException:
            if fut.done() and not fut.cancelled():
                self.release()  # the slot was handed to us: pass it on
            else:
                self.waiters.remove(fut)
            raise

    def release(self) -> None:
        while self.waiters:
            fut = self.waiters.popleft()
            if not fut.done():
                fut.set_result(None)  # the slot goes to the first waiter
                return
        self.active -= 1


class ChunkServer:
    """Serves chunks of local content. ``store`` is a ``Store`` or ``AsyncStore`` (or None)."""

    def __init__(
        self,
        store: Any = None,
        *,
        max_per_peer: int = 16,
        max_queued_per_peer: int = 256,
        upload_rate: Optional[float] = None,
        upload_burst: Optional[float] = None,
        resolve_ttl: float = 10.0,
        max_open_files: int = 64,
        self_addrs: Callable[[], Iterable[PeerAddr]] = lambda: (),
        clock: Callable[[], float] = time.monotonic,
        wall_clock: Callable[[], float] = time.time,
    ) -> None:
        self.store = store
        self.max_per_peer = max_per_peer
        self.max_queued_per_peer = max_queued_per_peer
        self.clock = clock
        self.wall_clock = wall_clock
        self.bucket = Bandwidth(upload_rate, upload_burst, clock())
        self.resolve_ttl = resolve_ttl
        self.max_open_files = max_open_files
        self.self_addrs = self_addrs
        self.book = ProviderBook()
        self._local: dict[bytes, LocalContent] = {}
        self._resolved: dict[bytes, tuple[float, Optional[LocalContent]]] = {}
        self._fds: "OrderedDict[str, int]" = OrderedDict()
        self._gates: dict[bytes, _PeerGate] = {}
        self._pool = BufferPool(_HDR_MAX + CHUNK_SIZE, keep=POOL_KEEP)
        self.chunks_served = 0
        self.bytes_served = 0
        self.refused = 0

    # ------------------------------------------------------------------ content
    def add_file(self, content_id: bytes, path: str, size: int) -> None:
        """Serve a completed download (or any verified local file) under ``content_id``."""
        st = os.stat(path)
        if st.st_size != size:
            raise ValueError(f"{path} has {st.st_size} bytes, expected {size}")
        self._local[bytes(content_id)] = LocalContent(os.path.abspath(path), size, (size, st.st_mtime_ns, st.st_ino))
        self._resolved.pop(bytes(content_id), None)

    def remove_file(self, content_id: bytes) -> None:
        self._local.pop(bytes(content_id), None)
        self._resolved.pop(bytes(content_id), None)

    async def has(self, content_id: bytes) -> bool:
        return await self._resolve(bytes(content_id)) is not None

    async def _resolve(self, cid: bytes) -> Optional[LocalContent]:
        now = self.clock()
        hit = self._resolved.get(cid)
        if hit is not None and hit[0] > now:
            return hit[1]
        found = self._local.get(cid)
        if found is None and self.store is not None:
            rows = await self._files_with_content(cid)
            for _share, f in rows:
                if os.path.exists(f.path):
                    found = LocalContent(f.path, f.size, (f.size, f.mtime_ns, f.inode))
                    break
        if len(self._resolved) > 4096:
            self._resolved.clear()
        self._resolved[cid] = (now + self.resolve_ttl, found)
        return found

    async def _files_with_content(self, cid: bytes) -> list:
        run = getattr(self.store, "run", None)
        if run is not None:
            return await run(lambda s: s.files_with_content(cid))
        return self.store.files_with_content(cid)

    def _fd(self, src: LocalContent) -> int:
        fd = self._fds.get(src.path)
        if fd is not None:
            self._fds.move_to_end(src.path)
            return fd
        fd = os.open(src.path, os.O_RDONLY | pio.OPEN_FLAGS)
        try:
            st = os.fstat(fd)
            # an inode of 0 is unknown: on Windows os.scandir's DirEntry.stat() (the publisher's
            # folder walk) reports st_ino 0, while fstat reports the file id
            if src.stat is not None and (
                (st.st_size, st.st_mtime_ns) != src.stat[:2] or (src.stat[2] and st.st_ino != src.stat[2])
            ):
                raise RemoteError("file changed since it was hashed", MsgType.GET_CHUNK)
            if st.st_size != src.size:
                raise RemoteError("file size changed", MsgType.GET_CHUNK)
        except BaseException:
            os.close(fd)
            raise
        self._fds[src.path] = fd
        while len(self._fds) > self.max_open_files:
            _p, old = self._fds.popitem(last=False)
            os.close(old)
        return fd

    def read_chunk(self, content_id: bytes, src: LocalContent, index: int) -> memoryview:
        """The CHUNK_DATA payload for chunk ``index`` of ``src`` (a view of a pooled buffer)."""
        off = index * CHUNK_SIZE
        if index < 0 or off >= src.size:
            raise RemoteError(f"chunk {index} out of range", MsgType.GET_CHUNK)
        n = min(CHUNK_SIZE, src.size - off)
        hdr = chunk_data_header(content_id, index, n)
        buf = self._pool.get()
        h = len(hdr)
        buf[:h] = hdr
        mv = memoryview(buf)
        fd = self._fd(src)
        got = pio.preadv(fd, [mv[h : h + n]], off)
        if got != n:
            self._close_fd(src.path)
            self._resolved.pop(bytes(content_id), None)
            raise RemoteError("short read (file changed)", MsgType.GET_CHUNK)
        return mv[: h + n]

    def _close_fd(self, path: str) -> None:
        fd = self._fds.pop(path, None)
        if fd is not None:
            os.close(fd)

    # ------------------------------------------------------------------ handlers
    def register(self, dispatcher: Any) -> None:
        # the raw lane only where chunks are read the standard way (a subclass may change them)
        raw = self.serve_raw if type(self).read_chunk is ChunkServer.read_chunk else None
        dispatcher.register(MsgType.GET_CHUNK, self.handle_get_chunk, fast=self.get_chunk_now, raw=raw)
        dispatcher.register(MsgType.HAVE_CONTENT, self.handle_have_content)
        dispatcher.register(MsgType.PROVIDERS, self.handle_providers)

    def get_chunk_now(self, ctx: Any, msg: Any) -> Any:
        """GET_CHUNK without suspending (the dispatcher's fast path, run inline by the session):
        the reply, or ``DEFER`` when the request must wait (content not resolved recently, the
        peer's slots taken or others queued, an upload cap) - then :meth:`handle_get_chunk` runs.
        An inline request holds no slot: it is served before anything else runs."""
        if not self.bucket.unlimited:
            return DEFER
        cid = bytes(msg.content_id)
        hit = self._resolved.get(cid)
        if hit is None or hit[0] <= self.clock():
            return DEFER
        src = hit[1]
        if src is None:
            self.refused += 1
            raise RemoteError("content not available", MsgType.GET_CHUNK)
        gate = self._gates.get(ctx.remote_pubkey)
        if gate is not None and (gate.full or gate.waiters):
            return DEFER  # behind the requests already waiting for this peer's slots
        return self._serve_chunk(cid, src, msg.chunk_index)

    def serve_raw(self, session: Any, req_id: int, payload: memoryview) -> Optional[list]:
        """GET_CHUNK in its steady state (the dispatcher's raw lane, run by the session on the
        undecoded request): one native call parses nothing more than the payload's content id and
        index, and :func:`~scp2p.transport.datapath.chunk_frame` lays the whole CHUNK_DATA frame -
        frame length, Envelope, payload header - into a pooled buffer and ``pread``s the chunk
        right behind it; the frame leaves in one ``send``. None - the request then takes the
        paths above, which answer it the same way or report the error - for anything but the
        common case: a non-canonical payload, content not resolved in the last ``resolve_ttl``,
        an index out of range, a peer with requests waiting for its slots, an upload cap, a read
        that fails or comes back short."""
        f = get_chunk_fields(payload)
        if f is None or not self.bucket.unlimited:
            return None
        cid, index = f
        hit = self._resolved.get(cid)
        if hit is None or hit[1] is None or hit[0] <= self.clock():
            return None
        src = hit[1]
        if self._gates:
            gate = self._gates.get(session.remote_pubkey)
            if gate is not None and (gate.full or gate.waiters):
                return None
        off = index * CHUNK_SIZE
        if off >= src.size:
            return None
        n = min(CHUNK_SIZE, src.size - off)
        try:
            fd = self._fd(src)
            buf = self._pool.get()
            total = chunk_frame(buf, MsgType.CHUNK_DATA, req_id, _cid_prefix(cid), index, fd, off, n)
        except (OSError, RemoteError):
            return None
        if total < 0:
            return None
        self.chunks_served += 1
        self.bytes_served += n
        return [memoryview(buf)[:total]]

    async def handle_get_chunk(self, ctx: Any, msg: Any) -> Any:
        cid = bytes(msg.content_id)
        hit = self._resolved.get(cid)
        src = hit[1] if hit is not None and hit[0] > self.clock() else await self._resolve(cid)
        if src is None:
            self.refused += 1
            raise RemoteError("content not available", MsgType.GET_CHUNK)
        peer = ctx.remote_pubkey
        gate = self._gates.get(peer)
        if gate is None:
            gate = self._gates[peer] = _PeerGate(self.max_per_peer)
        if gate.full and len(gate.waiters) >= self.max_queued_per_peer:
            self.refused += 1
            raise RemoteError("busy", MsgType.GET_CHUNK)
        await gate.acquire()
        try:
            if not self.bucket.unlimited:
                await self._throttle(min(CHUNK_SIZE, max(0, src.size - msg.chunk_index * CHUNK_SIZE)))
            return self._serve_chunk(cid, src, msg.chunk_index)
        finally:
            gate.release()
            if gate.active == 0:
                self._gates.pop(peer, None)

    def _serve_chunk(self, cid: bytes, src: LocalContent, index: int) -> Reply:
        try:
            payload = self.read_chunk(cid, src, index)
        except OSError as exc:
            self._close_fd(src.path)
            self._resolved.pop(cid, None)
            raise RemoteError(f"cannot read: {exc.strerror or exc}", MsgType.GET_CHUNK) from None
        self.chunks_served += 1
        self.bytes_served += min(CHUNK_SIZE, src.size - index * CHUNK_SIZE)
        return Reply(MsgType.CHUNK_DATA, FLAG_RESPONSE, payload)

    async def _throttle(self, n: int) -> None:
        b = self.bucket
        if b.unlimited:
            return
        while True:
            now = self.clock()
            if b.take(n, now):
                return
            await asyncio.sleep(max(0.0, b.ready_at(n, now) - now))

    async def handle_have_content(self, ctx: Any, msg: Any) -> None:
        self.book.add(bytes(msg.content_id), ctx.remote_pubkey, None)
        return None

    async def handle_providers(self, ctx: Any, msg: Any) -> Any:
        cid = bytes(msg.content_id)
        if ctx.req_id == 0:  # an announcement: merge
            for a in msg.providers[:MAX_PEX_PEERS]:
                self.book.add(cid, a.pubkey_hint, a)
            return None
        addrs: list[PeerAddr] = []
        if await self.has(cid):
            addrs.extend(self.self_addrs())
        for _pk, a in self.book.get(cid):
            if a is not None and a not in addrs:
                addrs.append(a)
        out = Providers(cid, tuple(addrs[:MAX_PEX_PEERS]), int(self.wall_clock()))
        return Reply(MsgType.PROVIDERS, FLAG_RESPONSE, encode_payload(out))

    def close(self) -> None:
        for fd in self._fds.values():
            os.close(fd)
        self._fds.clear()
