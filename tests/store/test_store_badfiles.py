"""Bad files give a clear error naming the file and the problem, and are never overwritten or deleted."""

from __future__ import annotations

import os
import pickle
import shutil
import sys
import tempfile
from pathlib import Path

import apsw
import pytest

from scp2p.errors import NotADatabase, NotAStore, SchemaTooNew, Scp2pError, StoreCorrupt, StoreError, StoreReadOnly
from scp2p.store import PeerRecord, Store

from storetest_util import file_snapshot

NOBODY = 65534
_ROOT = hasattr(os, "geteuid") and os.geteuid() == 0  # Windows: no euid, no fork
#: a directory's read-only attribute on Windows does not stop creating or deleting files in it
POSIX_DIR_MODES = pytest.mark.skipif(sys.platform == "win32",
                                     reason="Windows ignores a directory's read-only attribute")  # fmt: skip


def _populated(path: Path, peers: int = 3000) -> None:
    with Store.open(path) as s:
        s.upsert_peers(PeerRecord(f"10.{i >> 16}.{(i >> 8) & 255}.{i & 255}", 1000 + i % 1000, last_seen=i) for i in range(peers))
        s.checkpoint(truncate=True)


def _expect(path: Path, exc_type: type[StoreError], words: str) -> StoreError:
    before = file_snapshot(path)
    with pytest.raises(exc_type) as e:
        Store.open(path)
    assert str(path) in str(e.value), str(e.value)
    assert words in str(e.value), str(e.value)
    assert file_snapshot(path) == before  # neither overwritten nor deleted
    assert isinstance(e.value, Scp2pError)
    return e.value


def test_not_sqlite_file(tmp_path):
    path = tmp_path / "scp2p.db"
    path.write_bytes(b"my holiday notes\n" * 500)
    _expect(path, NotADatabase, "is not an SQLite database")


def test_short_garbage_file(tmp_path):
    path = tmp_path / "scp2p.db"
    path.write_bytes(b"\x00\x01garbage")
    _expect(path, NotADatabase, "not an SQLite database")


def test_directory_in_place_of_the_file(tmp_path):
    (tmp_path / "scp2p.db").mkdir()
    with pytest.raises(NotADatabase, match="not a regular file"):
        Store.open(tmp_path / "scp2p.db")
    assert (tmp_path / "scp2p.db").is_dir()


def test_other_applications_database(tmp_path):
    path = tmp_path / "scp2p.db"
    conn = apsw.Connection(str(path))
    conn.execute("CREATE TABLE invoices(id, amount); INSERT INTO invoices VALUES (1, 99)")
    conn.close()
    _expect(path, NotAStore, "another application")


def test_newer_schema(tmp_path):
    path = tmp_path / "scp2p.db"
    _populated(path, 10)
    conn = apsw.Connection(str(path))
    conn.execute("PRAGMA user_version = 99")
    conn.close()
    err = _expect(path, SchemaTooNew, "schema version 99 is newer")
    assert pickle.loads(pickle.dumps(err)).found == 99


def test_corrupt_schema_page(tmp_path):
    path = tmp_path / "scp2p.db"
    _populated(path)
    with open(path, "r+b") as f:  # keep the 100-byte header, smash the rest of page 1 (the schema)
        f.seek(100)
        f.write(b"\xa5" * 3000)
    _expect(path, StoreCorrupt, "corrupt")


def test_corrupt_data_page_found_on_use_and_by_integrity_check(tmp_path):
    path = tmp_path / "scp2p.db"
    _populated(path)
    page = 4096
    size = path.stat().st_size
    with open(path, "r+b") as f:  # smash the second half (peer rows); the header and schema pages stay valid
        for off in range(size // 2 // page * page, size, page):
            f.seek(off)
            f.write(b"\xff" * 64)
    before = file_snapshot(path)
    s = Store.open(path)  # opening reads only the header and the schema
    try:
        with pytest.raises(StoreCorrupt) as e:
            s.peers()
        assert str(path) in str(e.value) and "corrupt" in str(e.value)
        assert s.integrity_check() != ["ok"]
    finally:
        s.close()
    assert file_snapshot(path) == before


# ---------------------------------------------------------------- read-only locations
def _as_unprivileged(fn) -> tuple[str, str] | None:
    """Run ``fn()`` in a forked child as an unprivileged user when we are root (root ignores file modes).

    Returns (exception class name, message) or None if ``fn`` returned normally.
    """
    if not _ROOT:
        try:
            fn()
        except Exception as exc:  # noqa: BLE001 - reported to the caller
            return type(exc).__name__, str(exc)
        return None
    r, w = os.pipe()
    pid = os.fork()
    if pid == 0:  # child
        code = 0
        try:
            os.close(r)
            os.setgroups([])
            os.setgid(NOBODY)
            os.setuid(NOBODY)
            try:
                fn()
                out = b""
            except Exception as exc:  # noqa: BLE001
                out = pickle.dumps((type(exc).__name__, str(exc)))
            os.write(w, out)
        except BaseException:
            code = 1
        finally:
            os._exit(code)
    os.close(w)
    chunks = []
    while chunk := os.read(r, 65536):
        chunks.append(chunk)
    os.close(r)
    _, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == 0
    data = b"".join(chunks)
    return pickle.loads(data) if data else None


@pytest.fixture
def shared_dir():
    """A directory an unprivileged user can traverse (pytest's tmp_path is root-only under root)."""
    base = Path(tempfile.mkdtemp(prefix="scp2p-store-ro-"))
    base.chmod(0o755)
    yield base
    for p in (base, *base.rglob("*")):
        p.chmod(0o755 if p.is_dir() else 0o644)  # Windows: rmtree cannot delete a read-only file
    shutil.rmtree(base)


def _give_away(path: Path) -> None:
    if _ROOT:
        os.chown(path, NOBODY, NOBODY)


@POSIX_DIR_MODES
def test_read_only_directory_new_database(shared_dir):
    d = shared_dir / "ro"
    d.mkdir()
    d.chmod(0o555)
    res = _as_unprivileged(lambda: Store.open(d / "scp2p.db").close())
    assert res is not None and res[0] == "StoreReadOnly", res
    assert str(d / "scp2p.db") in res[1] and "writable" in res[1]
    assert list(d.iterdir()) == []


@POSIX_DIR_MODES
@pytest.mark.parametrize("with_lock_file", [False, True])
def test_read_only_directory_existing_database(shared_dir, with_lock_file):
    d = shared_dir / "ro"
    d.mkdir()
    path = d / "scp2p.db"
    _populated(path, 50)
    for p in d.iterdir():
        _give_away(p)
    if not with_lock_file:
        (d / "scp2p.db.lock").unlink()
    before = file_snapshot(path)
    d.chmod(0o555)
    res = _as_unprivileged(lambda: Store.open(path).close())
    assert res is not None and res[0] == "StoreReadOnly", res
    assert str(path) in res[1] and "writable" in res[1]
    assert file_snapshot(path) == before


def test_read_only_database_file(shared_dir):
    d = shared_dir / "rw"
    d.mkdir()
    path = d / "scp2p.db"
    _populated(path, 50)
    for p in (d, *d.iterdir()):
        _give_away(p)
    path.chmod(0o400)
    before = file_snapshot(path)
    res = _as_unprivileged(lambda: Store.open(path).close())
    assert res is not None and res[0] == StoreReadOnly.__name__, res
    assert str(path) in res[1] and "not writable" in res[1]
    assert file_snapshot(path) == before
