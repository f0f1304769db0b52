"""Publishing a folder: incremental hashing, seq, size limit, what the store keeps."""

from __future__ import annotations

import os
import sys

import pytest

from scp2p.catalog import decode_manifest, verify_manifest, verify_share_head
from scp2p.catalog.publish import manifest_payload_size, publish_folder, scan_folder
from scp2p.errors import CatalogError, ManifestTooLarge
from scp2p.identity import ShareKey, share_head_key
from scp2p.limits import MAX_PAYLOAD
from scp2p.store import Store
from scp2p.wire import codec
from scp2p.wire.messages import ManifestData


@pytest.fixture
def store(tmp_path):
    s = Store.open(tmp_path / "db" / "scp2p.db")
    yield s
    s.close()


def _tree(root):
    (root / "Music" / "Live").mkdir(parents=True)
    (root / "docs").mkdir()
    (root / "Music" / "Live" / "a.mp3").write_bytes(b"a" * 300_000)
    (root / "docs" / "b.txt").write_text("hello")
    (root / "top.bin").write_bytes(os.urandom(1000))
    (root / ".hidden").write_text("secret")
    try:
        (root / "link").symlink_to(root / "top.bin")
    except OSError:  # Windows: creating symlinks needs admin or Developer Mode
        if sys.platform != "win32":
            raise


def test_publish_and_republish_hashes_only_changes(tmp_path, store):
    root = tmp_path / "share"
    _tree(root)
    key = ShareKey.generate()
    r1 = publish_folder(store, key, root, title="Mine", tags=["x"], now=1000)
    assert r1.seq == 1 and r1.hashed_files == 3
    names = [(i.name, i.tags, i.mime) for i in r1.manifest.items]
    assert names == [("a.mp3", ("music", "live", "x"), "audio/mpeg"), ("b.txt", ("docs", "x"), "text/plain"),
                     ("top.bin", ("x",), "application/octet-stream")]  # fmt: skip
    verify_manifest(decode_manifest(r1.wire))
    verify_share_head(r1.head, key.public_key)
    row = store.manifest(r1.manifest_id)
    assert row.wire == r1.wire and row.seq == 1
    assert store.published_share(key.share_id).latest_manifest_id == r1.manifest_id
    assert store.dht_value(share_head_key(key.share_id)) is not None

    r2 = publish_folder(store, key, root, now=1001)
    assert r2.seq == 2 and r2.hashed_files == 0 and r2.manifest.title == "Mine"
    (root / "docs" / "b.txt").write_text("hello, changed")
    (root / "new.txt").write_text("new")
    r3 = publish_folder(store, key, root, now=1002)
    assert r3.seq == 3 and r3.hashed_files == 2
    assert {i.name for i in r3.manifest.items} == {"a.mp3", "b.txt", "top.bin", "new.txt"}
    os.remove(root / "top.bin")
    r4 = publish_folder(store, key, root, now=1003)
    assert {i.name for i in r4.manifest.items} == {"a.mp3", "b.txt", "new.txt"}
    assert len(store.published_files(key.share_id)) == 3


def test_two_shares_per_node(tmp_path, store):
    for n in range(2):
        d = tmp_path / f"s{n}"
        d.mkdir()
        (d / f"f{n}").write_text(str(n))
        publish_folder(store, ShareKey.generate(), d, now=5)
    assert len(store.published_shares()) == 2 and len(store.share_keys()) == 2


def test_too_large_folder_fails_clearly_and_stores_nothing(tmp_path, store, monkeypatch):
    root = tmp_path / "big"
    root.mkdir()
    for i in range(3):
        (root / f"f{i}").write_text(str(i))
    key = ShareKey.generate()
    monkeypatch.setattr("scp2p.catalog.publish.MAX_PAYLOAD", 500)
    with pytest.raises(ManifestTooLarge) as info:
        publish_folder(store, key, root, now=1)
    assert "1 MiB" in str(info.value) and "3 items" in str(info.value)
    assert store.published_share(key.share_id) is None and store.manifest_ids() == []


def test_payload_size_formula_matches_the_encoder():
    for n in (0, 5, 23, 24, 255, 256, 70_000, MAX_PAYLOAD - 200):
        wire = b"\x01" * n
        assert manifest_payload_size(b"\x09" * 32, wire) == len(codec.encode(ManifestData(b"\x09" * 32, wire)))


def test_scan_rejects_a_file_path(tmp_path):
    f = tmp_path / "file"
    f.write_text("x")
    with pytest.raises(CatalogError):
        scan_folder(f)


def test_inode_comes_from_os_stat_where_dir_entries_lack_it(tmp_path, store, monkeypatch):
    """Windows: DirEntry.stat() reports st_ino 0; the publisher records os.stat's file id (what the
    chunk server's fstat compares), and a re-publish still recognises unchanged files."""
    import scp2p.catalog.publish as publish_mod

    class Entry:  # an os.DirEntry whose stat() has no inode, as on Windows
        def __init__(self, e):
            self.name, self.path, self._e = e.name, e.path, e

        def stat(self, *, follow_symlinks=True):
            st = self._e.stat(follow_symlinks=follow_symlinks)
            times = ("st_atime", "st_mtime", "st_ctime", "st_atime_ns", "st_mtime_ns", "st_ctime_ns")
            extra = {k: getattr(st, k) for k in times}
            return os.stat_result((st.st_mode, 0, *tuple(st)[2:10]), extra)

    real_scandir = os.scandir
    monkeypatch.setattr(publish_mod.os, "scandir", lambda d: [Entry(e) for e in real_scandir(d)])
    root = tmp_path / "share"
    root.mkdir()
    (root / "a.bin").write_bytes(b"a" * 1000)
    key = ShareKey.generate()
    monkeypatch.setattr(publish_mod, "_ENTRY_HAS_INODE", True)  # POSIX behaviour with such entries: inode 0
    publish_folder(store, key, root, now=1)
    assert [f.inode for f in store.published_files(key.share_id)] == [0]
    monkeypatch.setattr(publish_mod, "_ENTRY_HAS_INODE", False)  # the Windows branch
    r = publish_folder(store, key, root, now=2)
    assert r.hashed_files == 1  # the recorded inode changed from unknown to known: hashed once more
    assert [f.inode for f in store.published_files(key.share_id)] == [os.stat(root / "a.bin").st_ino] != [0]
    assert publish_folder(store, key, root, now=3).hashed_files == 0  # unchanged: not hashed again
