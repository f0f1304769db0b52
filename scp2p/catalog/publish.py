"""Publishing a folder as a share: scan, hash only what changed, build, sign, keep.

The network side (putting the head and provider hints into the DHT, telling
peers) is the node's job; :func:`publish_folder` does everything that needs
only the disk and the store, in one store transaction, and returns what the
node must announce.
"""

from __future__ import annotations

import logging
import os
import stat
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterable, Optional

from ..content.hashing import describe_file
from ..errors import CatalogError, ManifestTooLarge
from ..identity import ShareKey, share_head_key
from ..limits import DEFAULT_TTL, MAX_PAYLOAD, U64_MAX
from ..store import ManifestRow, OwnedDhtValue, PublishedFile, PublishedShare, Store
from ..wire import codec
from ..wire.messages import ManifestData
from ..wire.records import ItemV1, ManifestV1, ShareHead
from .manifest import build_manifest, decode_manifest, encode_manifest, guess_mime, manifest_id
from .share_head import encode_share_head, sign_share_head

log = logging.getLogger(__name__)

#: progress(files_done, files_total, bytes_hashed)
Progress = Callable[[int, int, int], None]


@dataclass(frozen=True, slots=True)
class ScannedFile:
    rel_path: str
    record: PublishedFile
    item: ItemV1
    rehashed: bool


@dataclass(frozen=True, slots=True)
class PublishResult:
    manifest: ManifestV1
    manifest_id: bytes
    wire: bytes
    head: ShareHead
    files: tuple[ScannedFile, ...]
    hashed_files: int
    hashed_bytes: int

    @property
    def share_id(self) -> bytes:
        return self.manifest.share_id

    @property
    def seq(self) -> int:
        return self.manifest.seq


#: ``os.scandir``'s ``DirEntry.stat()`` leaves ``st_ino`` 0 on Windows (the file id needs the
#: file opened); ``os.stat`` gets it there
_ENTRY_HAS_INODE = sys.platform != "win32"


def _inode(e: os.DirEntry, st: os.stat_result) -> int:
    """The file's inode (Windows: file id); 0 = unknown (the chunk server then checks size and mtime)."""
    ino = st.st_ino
    if ino == 0 and not _ENTRY_HAS_INODE:
        try:
            ino = os.stat(e.path, follow_symlinks=False).st_ino
        except OSError:  # vanished since the walk: hashing it will skip it
            ino = 0
    return ino if ino <= U64_MAX else 0  # a 128-bit ReFS file id (Python >= 3.12) does not fit the store


def _walk(root: Path) -> list[tuple[str, os.stat_result, int]]:
    """Regular files under ``root`` with their inodes, sorted by relative path.

    Hidden entries (names starting with ``.``) and symbolic links are skipped: a share
    publishes what is inside its folder, never what a link points to elsewhere.
    """
    out: list[tuple[str, os.stat_result, int]] = []
    stack = [root]
    while stack:
        d = stack.pop()
        try:
            entries = list(os.scandir(d))
        except OSError as exc:
            log.warning("cannot read folder %s: %s (skipped)", d, exc)
            continue
        for e in entries:
            if e.name.startswith("."):
                continue
            try:
                st = e.stat(follow_symlinks=False)
            except OSError as exc:
                log.warning("cannot stat %s: %s (skipped)", e.path, exc)
                continue
            if stat.S_ISDIR(st.st_mode):
                stack.append(Path(e.path))
            elif stat.S_ISREG(st.st_mode):
                out.append((Path(e.path).relative_to(root).as_posix(), st, _inode(e, st)))
    out.sort(key=lambda t: t[0])
    return out


def scan_folder(
    root: str | os.PathLike,
    *,
    known: Callable[[str, int, int, int], Optional[PublishedFile]] = lambda *a: None,
    tags: Iterable[str] = (),
    progress: Optional[Progress] = None,
) -> list[ScannedFile]:
    """Describe every regular file under ``root``; ``known(path, size, mtime_ns, inode)`` returns a
    stored description to reuse when the file is unchanged (no re-hash). Stored records carry the
    absolute path (what the chunk server opens)."""
    root = Path(root).absolute()
    if not root.is_dir():
        raise CatalogError(f"{root} is not a folder")
    user_tags = [t for t in tags if t]
    files = _walk(root)
    out: list[ScannedFile] = []
    hashed = 0
    for n, (rel, st, inode) in enumerate(files):
        folder_tags = [p.lower() for p in rel.split("/")[:-1]]
        item_tags = tuple(dict.fromkeys([*folder_tags, *user_tags]))
        path = str(root / rel)
        prev = known(path, st.st_size, st.st_mtime_ns, inode)
        name = rel.rsplit("/", 1)[-1]
        if prev is not None:
            rec, rehashed = prev, False
        else:
            try:
                desc = describe_file(root / rel)
            except OSError as exc:  # vanished or unreadable since the walk
                log.warning("cannot hash %s: %s (skipped)", root / rel, exc)
                continue
            rec = PublishedFile(path, desc.size, st.st_mtime_ns, inode, desc.content_id, desc.chunks)
            hashed += desc.size
            rehashed = True
        item = ItemV1(rec.content_id, rec.size, name, guess_mime(name), item_tags, rec.chunk_hashes)
        out.append(ScannedFile(rel, rec, item, rehashed))
        if progress is not None:
            progress(n + 1, len(files), hashed)
    return out


def manifest_payload_size(manifest_id_: bytes, wire: bytes) -> int:
    """Bytes of the MANIFEST_DATA payload that carries ``wire`` (what must fit in 1 MiB)."""
    # map(2) + "manifest_id" key + 32-byte array + "bytes" key + byte string head + wire
    head = 1 if len(wire) < 24 else 2 if len(wire) < 256 else 3 if len(wire) < 65536 else 5
    return len(codec.encode(ManifestData(manifest_id_, b""))) - 1 + head + len(wire)


def check_manifest_fits(m: ManifestV1, wire: bytes, mid: bytes) -> None:
    size = manifest_payload_size(mid, wire)
    if size > MAX_PAYLOAD:
        raise ManifestTooLarge(
            f"the manifest for {len(m.items)} items is {size:,} bytes in a MANIFEST_DATA payload; "
            f"v0.1 allows at most {MAX_PAYLOAD:,} bytes (1 MiB, PROTOCOL.md section 9). "
            "Split the folder into several shares."
        )


def publish_folder(
    store: Store,
    key: ShareKey,
    root: str | os.PathLike,
    *,
    title: Optional[str] = None,
    description: Optional[str] = None,
    tags: Iterable[str] = (),
    now: Optional[int] = None,
    head_ttl: int = DEFAULT_TTL,
    progress: Optional[Progress] = None,
    recommended: Optional[Iterable[bytes]] = None,
) -> PublishResult:
    """Publish (or re-publish) ``root`` as the share of ``key``: seq + 1, signed, kept in the store.

    ``recommended`` share ids go into the manifest's ``recommended_shares`` (None: keep the
    previous publication's).

    Only new or changed files (size, mtime, inode) are hashed. Fails with
    :class:`ManifestTooLarge` (nothing stored) when the manifest would not fit 1 MiB.
    """
    now = int(time.time()) if now is None else now
    sid = key.share_id
    root = Path(root).resolve()
    prev = store.published_share(sid)
    if title is None and prev is not None:
        title = prev.title
    if description is None and prev is not None:
        description = prev.description

    def known(path: str, size: int, mtime_ns: int, inode: int) -> Optional[PublishedFile]:
        return store.unchanged_file(sid, path, size, mtime_ns, inode)

    if recommended is None:
        row = store.manifest(prev.latest_manifest_id, touch=False) if prev and prev.latest_manifest_id else None
        recommended = decode_manifest(row.wire).recommended_shares if row is not None else ()
    recommended = tuple(dict.fromkeys(bytes(r) for r in recommended if bytes(r) != key.share_id))
    files = scan_folder(root, known=known, tags=tags, progress=progress)
    seq = (prev.latest_seq if prev is not None else 0) + 1
    m = build_manifest(key, seq, [f.item for f in files], title=title, description=description, created_at=now,
                       recommended_shares=recommended)  # fmt: skip
    wire = encode_manifest(m)
    mid = manifest_id(m)
    check_manifest_fits(m, wire, mid)
    head = sign_share_head(key, seq, mid, now)
    with store.transaction():
        if store.share_key(sid) is None:
            store.add_share_key(key)
        store.put_published_share(PublishedShare(sid, str(root), title, description, seq, mid))
        store.replace_published_files(sid, [f.record for f in files])
        store.put_manifest(
            ManifestRow(mid, sid, seq, m.created_at, m.expires_at, wire, title, len(m.items)), pinned=True
        )
        store.put_dht_value(
            OwnedDhtValue(share_head_key(sid), encode_share_head(head), head_ttl, now + head_ttl // 2)
        )
    hashed = [f for f in files if f.rehashed]
    log.info("published share %s seq %d: %d items (%d hashed)", sid.hex()[:16], seq, len(files), len(hashed))
    return PublishResult(m, mid, wire, head, tuple(files), len(hashed), sum(f.record.size for f in hashed))
