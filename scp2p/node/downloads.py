"""Downloads through the node: find the item, fetch it verified, serve and announce it after.

``Node.download`` returns a :class:`DownloadHandle`: ``await handle`` gives the final path,
``handle.cancel()`` stops it (the partial file and its verified chunks are kept, so the next
``download`` of the same content to the same path resumes), ``handle.progress`` is the latest
progress. Events: ``DownloadProgress`` while it runs, then exactly one ``DownloadCompleted``
or ``DownloadFailed``.
"""

from __future__ import annotations

import asyncio
import os
import time
from pathlib import Path
from typing import Any, Callable, Optional

from ..catalog.manifest import decode_manifest
from ..errors import NodeError, Scp2pError
from ..limits import U64_MAX
from ..store import CompletedDownload
from ..transfer.downloader import Downloader, DownloadSpec
from ..transfer.progress import Progress
from ..transfer.providers import ProviderDiscovery, announce
from ..wire.records import ItemV1
from . import events as ev


def find_item(store: Any, content_id: bytes, share_id: Optional[bytes] = None) -> Optional[tuple[bytes, bytes, ItemV1]]:
    """(share id, manifest id, item) for ``content_id`` in the latest manifests we hold (sync Store)."""
    shares = [share_id] if share_id is not None else (
        [s.share_id for s in store.subscriptions()] + [p.share_id for p in store.published_shares()])  # fmt: skip
    for sid in shares:
        row = store.latest_manifest(sid)
        if row is None:
            continue
        for item in decode_manifest(row.wire).items:
            if item.content_id == content_id:
                return sid, row.manifest_id, item
    return None


#: the longest name :func:`safe_name` gives, in UTF-8 bytes: 255 (ext4, NTFS, APFS) less the
#: 29 the part file adds (``.<name>.<16 hex>.scp2p-part``)
MAX_NAME_BYTES = 226
#: names Windows reserves for devices in every folder, with or without an extension
_RESERVED = frozenset(["CON", "PRN", "AUX", "NUL", "CONIN$", "CONOUT$"]
                      + [f"{p}{d}" for p in ("COM", "LPT") for d in "123456789\u00b9\u00b2\u00b3"])


def file_id(st: os.stat_result) -> int:
    """``st_ino`` as the store records it: 0 (unknown) when it does not fit 64 bits (a 128-bit
    ReFS file id, Python >= 3.12 on Windows)."""
    return st.st_ino if st.st_ino <= U64_MAX else 0


def safe_name(name: str) -> str:
    """A manifest item name usable as a file name on every platform: its last path component
    (``/`` and ``\\`` both separate: a name from the network must not climb out of the download
    folder on Windows), no parent references, no characters Windows refuses (``<>:"|?*``, control
    characters - also no drive letters), no trailing dots or spaces (Windows drops them), not a
    Windows device name (``CON``, ``nul.txt``, ``COM1``...: prefixed with ``_``), at most
    :data:`MAX_NAME_BYTES` bytes of UTF-8 (the stem is cut, a short extension kept), so that the
    part file's name beside it stays within the 255-byte limit of common filesystems. Never empty."""
    base = name.replace("\\", "/").rsplit("/", 1)[-1]
    base = "".join(c if c.isprintable() and c not in '<>:"|?*' else "_" for c in base)
    base = base.strip().rstrip(". ")
    if base.split(".", 1)[0].rstrip(" ").upper() in _RESERVED:
        base = "_" + base
    if len(base.encode()) > MAX_NAME_BYTES:
        stem, dot, ext = base.rpartition(".")
        if not dot or len(ext.encode()) > 16:
            stem, ext = base, ""
        keep = MAX_NAME_BYTES - (len(ext.encode()) + 1 if ext else 0)
        stem = stem.encode()[:keep].decode(errors="ignore").rstrip(". ")
        base = f"{stem}.{ext}" if ext else stem
    return base or "download"


class DownloadHandle:
    def __init__(self, content_id: bytes, target: Path) -> None:
        self.content_id = content_id
        self.target = target
        self.progress: Optional[Progress] = None
        self.task: Optional[asyncio.Task] = None
        self._downloader: Optional[Downloader] = None

    def cancel(self) -> None:
        if self._downloader is not None:
            self._downloader.cancel()
        elif self.task is not None:
            self.task.cancel()

    def __await__(self):
        return self.task.__await__()

    async def follow(self, report: Callable[[dict], None], interval: float = 0.25) -> str:
        """Wait for the download, calling ``report({"done", "total", "rate", "eta"})`` every
        ``interval`` seconds while it runs; returns the final path."""
        while not self.task.done():
            await asyncio.wait([self.task], timeout=interval)
            p = self.progress
            if p is not None:
                report({"done": p.done_bytes, "total": p.total_bytes, "rate": p.rate, "eta": p.eta})
        return await self.task

    @property
    def done(self) -> bool:
        return self.task is not None and self.task.done()


async def run_download(node: Any, handle: DownloadHandle, spec: DownloadSpec) -> str:
    """The body of a node download task."""
    bus = node.bus

    def on_progress(p: Progress) -> None:
        handle.progress = p
        bus.emit(ev.DownloadProgress(spec.content_id, p.done_bytes, p.total_bytes, p.rate))

    disc = ProviderDiscovery(node.endpoint.pool, spec.content_id, book=node.chunks.book, dht=node.dht,
                             self_pubkey=node.key.public_key)  # fmt: skip
    dl = Downloader(node.endpoint.pool, spec, store=node.store, discovery=disc, on_progress=on_progress,
                    config=node.transfer_config)  # fmt: skip
    handle._downloader = dl
    try:
        path = await dl.run()
    except (Scp2pError, OSError) as exc:
        bus.emit(ev.DownloadFailed(spec.content_id, f"{type(exc).__name__}: {exc}"))
        raise
    except asyncio.CancelledError:
        bus.emit(ev.DownloadFailed(spec.content_id, "cancelled"))
        raise
    st = os.stat(path)
    done = CompletedDownload(spec.content_id, str(path), st.st_size, st.st_mtime_ns, file_id(st), int(time.time()))
    await node.store.run(lambda s: s.put_completed_download(done))
    node.chunks.add_file(spec.content_id, str(path), spec.size)
    node.counters.downloads += 1
    bus.emit(ev.DownloadCompleted(spec.content_id, str(path)))
    try:
        await announce(node.endpoint.pool, spec.content_id, node.reachable_addrs(), dht=node.dht)
    except (Scp2pError, OSError):
        pass  # serving still works; the hint is republished with the next announce
    return str(path)


async def start_download(node: Any, content_id: bytes, target: Optional[str | Path], share_id: Optional[bytes]) -> DownloadHandle:
    found = await node.store.run(lambda s: find_item(s, content_id, share_id))
    if found is None:
        raise NodeError(f"content {content_id.hex()} is in no catalog this node holds (subscribe and sync first)")
    sid, mid, item = found
    bl = await node._current_blocklist()
    if bl is not None and (sid in bl.share_ids or content_id in bl.content_ids):
        raise NodeError(f"content {content_id.hex()} is blocked by a blocklist you honour")
    if target is None:
        target = node.config.data_dir / "downloads" / safe_name(item.name)
    target = Path(target).expanduser().absolute()
    if target.is_dir():
        target = target / safe_name(item.name)
    target.parent.mkdir(parents=True, exist_ok=True)
    key = (content_id, str(target))
    running = node._downloads.get(key)
    if running is not None and not running.done:
        return running
    handle = DownloadHandle(content_id, target)
    spec = DownloadSpec(content_id, item.size, item.chunks, str(target), manifest_id=mid, share_id=sid)
    handle.task = asyncio.create_task(run_download(node, handle, spec), name=f"download-{content_id.hex()[:8]}")
    node._downloads[key] = handle
    node._tasks.add(handle.task)
    handle.task.add_done_callback(node._tasks.discard)
    return handle


async def restore_completed(node: Any) -> int:
    """Serve completed downloads whose files are unchanged since; forget the others."""
    rows = await node.store.run(lambda s: s.completed_downloads())
    served = 0
    for d in rows:
        try:
            st = os.stat(d.path)
        except OSError:
            st = None
        if st is not None and d.matches_stat(st.st_size, st.st_mtime_ns, file_id(st)):
            node.chunks.add_file(d.content_id, d.path, d.size)
            served += 1
        else:
            await node.store.run(lambda s, d=d: s.delete_completed_download(d.content_id, d.path))
    return served
