"""Portability: the positioned-I/O fallbacks of :mod:`scp2p.transport.pio` (macOS without
``preadv``, Windows without ``pread``) and the TCP driver without ``sendmsg``, forced on Linux.

* the fallbacks' results equal the ``os`` builtins' (multi-buffer reads, short reads at the end
  of the file, vectored writes), and the ``"seek"`` one stays correct with many threads on one
  descriptor;
* real loopback downloads (and a cancel + resume) run through each forced fallback and produce
  the right file;
* a child process whose ``os`` lacks every positioned-I/O call, ``posix_fallocate``, ``O_DIRECT``
  and ``fdatasync`` *before* scp2p is imported picks the ``"seek"`` implementation at import and
  downloads correctly.
"""

from __future__ import annotations

import asyncio
import os
import random
import subprocess
import sys
import threading

import pytest
from transfer_util import cancelled_download, client, make_file, provider, same_file

from scp2p.limits import MIB
from scp2p.store import Store
from scp2p.transfer.downloader import Downloader, DownloadSpec
from scp2p.transfer.writer import part_path
from scp2p.transport import _datapath_py, pio, tcp

HERE = os.path.dirname(__file__)
#: the fallbacks, by the ``os`` names a platform offers for them
FALLBACKS = {"pread": {"pread", "pwrite"}, "seek": set()}


def _fallback(kind: str) -> tuple:
    """``(kind, preadv, pwritev, pwrite)`` of a fallback; skips one this platform cannot run (the
    ``"pread"`` one needs ``os.pread``, which Windows lacks)."""
    if not all(hasattr(os, n) for n in FALLBACKS[kind]):
        pytest.skip(f"no os.{'/'.join(sorted(FALLBACKS[kind]))} here")
    return pio._select(FALLBACKS[kind])


def _run(coro, timeout: float = 90.0):
    async def bounded():
        async with asyncio.timeout(timeout):
            return await coro

    return asyncio.run(bounded())


def test_selection_by_available_names():
    assert pio._select({"preadv", "pwritev", "pread", "pwrite"})[0] == "vector"
    assert pio._select({"pread", "pwrite"})[0] == "pread"
    assert pio._select({"preadv", "pread", "pwrite"})[0] == "pread"  # no pwritev: the pread pair
    assert pio._select(set())[0] == "seek"
    if sys.platform.startswith("linux"):  # the hot path is the builtins themselves, no wrapper
        assert pio.KIND == "vector" and pio.preadv is os.preadv and pio.pwritev is os.pwritev
        assert pio.O_DIRECT == os.O_DIRECT and pio.fdatasync is os.fdatasync


@pytest.mark.parametrize("kind", list(FALLBACKS))
def test_fallbacks_match_the_builtins(tmp_path, kind):
    _k, preadv, pwritev, pwrite = _fallback(kind)
    data = os.urandom(100_000)
    path = str(tmp_path / "f.bin")
    fd = os.open(path, os.O_RDWR | os.O_CREAT | pio.OPEN_FLAGS, 0o600)
    try:
        pio.preallocate(fd, len(data))
        # vectored write of three pieces (one a non-byte-format view), then one more at an offset
        pieces = [memoryview(data[:10_000]), bytearray(data[10_000:50_004]), memoryview(data[50_004:90_000]).cast("I")]
        assert pwritev(fd, pieces, 0) == 90_000
        assert pwrite(fd, data[90_000:], 90_000) == 10_000
        with open(path, "rb") as fh:
            assert fh.read() == data
        # multi-buffer read from an offset; short only at the end of the file
        a, b = bytearray(7), bytearray(70_000)
        assert preadv(fd, [a, b], 123) == 70_007
        assert bytes(a + b) == data[123 : 123 + 70_007]
        tail = bytearray(5000)
        assert preadv(fd, [memoryview(tail)[:4000], memoryview(tail)[4000:]], len(data) - 3000) == 3000
        assert bytes(tail[:3000]) == data[-3000:]
        assert preadv(fd, [bytearray(10)], len(data)) == 0
        if hasattr(os, "preadv"):
            c, d = bytearray(7), bytearray(70_000)
            assert os.preadv(fd, [c, d], 123) == 70_007 and (c, d) == (a, b)
    finally:
        os.close(fd)


def test_seek_fallback_is_safe_across_threads(tmp_path):
    """Many threads write and read distinct blocks of one descriptor at once; with the descriptor's
    lock around each seek + transfer no block lands at another's offset."""
    _k, preadv, pwritev, pwrite = pio._select(set())
    blk, nblk, nthreads = 4096, 256, 8
    expect = [bytes([i % 251]) * blk for i in range(nblk)]
    path = str(tmp_path / "t.bin")
    fd = os.open(path, os.O_RDWR | os.O_CREAT | pio.OPEN_FLAGS, 0o600)
    errors: list = []
    try:
        pio.preallocate(fd, blk * nblk)
        half = nblk // 2
        for i in range(half):  # the first half is read while the second is written
            pwrite(fd, expect[i], i * blk)
        order = list(range(half, nblk))
        random.Random(7).shuffle(order)
        start = threading.Barrier(2 * nthreads)

        def writer(mine):
            start.wait()
            for i in mine:
                pwritev(fd, [expect[i][:1000], expect[i][1000:]], i * blk)

        def reader(seed):
            rnd = random.Random(seed)
            start.wait()
            buf = bytearray(blk)
            for _ in range(200):
                i = rnd.randrange(half)
                if preadv(fd, [buf], i * blk) != blk or buf != expect[i]:
                    errors.append(i)

        threads = [threading.Thread(target=writer, args=(order[t::nthreads],)) for t in range(nthreads)]
        threads += [threading.Thread(target=reader, args=(t,)) for t in range(nthreads)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(60)
        assert not errors
        with open(path, "rb") as fh:
            assert fh.read() == b"".join(expect)
    finally:
        os.close(fd)


def test_preallocate_without_fallocate(tmp_path, monkeypatch):
    monkeypatch.setattr(pio, "_fallocate", None)
    fd = os.open(str(tmp_path / "p.bin"), os.O_RDWR | os.O_CREAT | pio.OPEN_FLAGS, 0o600)
    try:
        for size in (0, 5 * MIB + 3, 1000, 1000):
            pio.preallocate(fd, size)
            assert os.fstat(fd).st_size == size
    finally:
        os.close(fd)


@pytest.mark.parametrize("kind", list(FALLBACKS))
def test_pure_chunk_frame_through_fallbacks(tmp_path, monkeypatch, kind):
    from scp2p.transport.datapath import chunk_frame

    data = os.urandom(300_000)
    path = tmp_path / "c.bin"
    path.write_bytes(data)
    fd = os.open(str(path), os.O_RDONLY | pio.OPEN_FLAGS)
    try:
        want = bytearray(300_200)
        n = chunk_frame(want, 5, 9, b"\xa3prefix", 1, fd, 262_144, 300_000 - 262_144)
        monkeypatch.setattr(pio, "preadv", _fallback(kind)[1])
        got = bytearray(300_200)
        assert _datapath_py.chunk_frame(got, 5, 9, b"\xa3prefix", 1, fd, 262_144, 300_000 - 262_144) == n
        assert got[:n] == want[:n]
        assert _datapath_py.chunk_frame(got, 5, 9, b"\xa3prefix", 1, fd, 262_144, 300_000) == -1  # short: file changed
    finally:
        os.close(fd)


# ----------------------------------------------------------------------------- real transfers
@pytest.fixture(scope="module")
def source(tmp_path_factory):
    path = str(tmp_path_factory.mktemp("src") / "source.bin")
    return path, make_file(path, 16 * MIB + 4321)


@pytest.fixture(params=list(FALLBACKS))
def forced(request, monkeypatch):
    """The data path on a forced fallback, counting its calls. ``"seek"`` is Windows: also no
    ``O_DIRECT``, no ``posix_fallocate``, no ``fdatasync`` and no ``sendmsg`` in the TCP driver."""
    kind = request.param
    _k, preadv, pwritev, pwrite = _fallback(kind)
    calls = {"preadv": 0, "pwritev": 0, "pwrite": 0}

    def counted(name, fn):
        def call(*a):
            calls[name] += 1
            return fn(*a)

        return call

    monkeypatch.setattr(pio, "KIND", kind)
    monkeypatch.setattr(pio, "preadv", counted("preadv", preadv))
    monkeypatch.setattr(pio, "pwritev", counted("pwritev", pwritev))
    monkeypatch.setattr(pio, "pwrite", counted("pwrite", pwrite))
    if kind == "seek":
        monkeypatch.setattr(pio, "O_DIRECT", 0)
        monkeypatch.setattr(pio, "_fallocate", None)
        monkeypatch.setattr(pio, "fdatasync", os.fsync)
        monkeypatch.setattr(tcp, "VECTORED_SEND", False)
    return kind, calls


def _spec(src: DownloadSpec, target) -> DownloadSpec:
    return DownloadSpec(src.content_id, src.size, src.chunk_hashes, str(target))


@pytest.mark.parametrize("write_thread", [True, False])
def test_download_through_fallback(source, tmp_path, forced, write_thread):
    path, src = source
    kind, calls = forced

    async def main():
        ep, srv = await provider(path, src)
        try:
            async with client() as c:
                dl = Downloader(c.pool, _spec(src, tmp_path / "o.bin"), providers=[ep.listen_addrs[0]],
                                write_thread=write_thread)  # fmt: skip
                return dl, await dl.run(), srv
        finally:
            await ep.close()
            srv.close()

    dl, out, srv = _run(main())
    assert same_file(out, path)
    assert srv.chunks_served >= dl.sched.n
    assert calls["preadv"] >= 1  # the server's first reads (and every read with the pure twin)
    assert calls["pwrite"] + calls["pwritev"] >= 1
    if kind == "seek":
        assert dl.part.direct_writes == 0 and dl.part.cached_writes >= dl.sched.n


def test_cancel_then_resume_through_fallback(source, tmp_path, forced):
    path, src = source
    kind, calls = forced
    store = Store.open(tmp_path / "db")
    target = tmp_path / "r.bin"

    async def second():
        ep, srv = await provider(path, src)
        try:
            async with client() as c:
                dl = Downloader(c.pool, _spec(src, target), store=store, providers=[ep.listen_addrs[0]])
                return dl, await dl.run()
        finally:
            await ep.close()
            srv.close()

    try:
        dl1 = _run(cancelled_download(path, src, target, store, 0.3, upload_rate=16 * MIB, upload_burst=MIB))
        (p,) = store.partials()
        kept = sum(bin(b).count("1") for b in p.bitmap)
        assert kept == dl1.sched.done_count > 0
        assert os.path.exists(part_path(str(target), src.content_id)) and not target.exists()
        reads = calls["preadv"]
        dl2, out = _run(second())
        assert dl2.resumed_chunks == kept
        assert dl2.part.read_back > 0 and calls["preadv"] > reads  # resumed chunks read back through the fallback
        assert same_file(out, path)
        assert store.partials() == []
    finally:
        store.close()


def test_import_time_detection_without_posix_calls(tmp_path):
    """A child whose ``os`` has none of the calls Windows lacks picks the fallbacks at import."""
    src = str(tmp_path / "s.bin")
    proc = subprocess.run([sys.executable, os.path.join(HERE, "portable_child.py"), src, str(tmp_path / "o.bin")],
                          capture_output=True, text=True, timeout=120)  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.split() == ["kind", "seek", "direct", "0", "ok"]


def test_server_takes_an_unknown_inode(tmp_path):
    """Windows' folder walk (``DirEntry.stat()``) records inode 0: such a file is still served while
    its size and mtime match; a known inode that differs (the file was replaced) is refused."""
    from scp2p.content.hashing import describe_bytes
    from scp2p.errors import RemoteError
    from scp2p.transfer import ChunkServer
    from scp2p.transfer.server import LocalContent

    data = os.urandom(300_000)
    d = describe_bytes(data)
    path = tmp_path / "pub.bin"
    path.write_bytes(data)
    st = os.stat(path)
    srv = ChunkServer(None)
    try:
        mv = srv.read_chunk(d.content_id, LocalContent(str(path), len(data), (len(data), st.st_mtime_ns, 0)), 1)
        assert bytes(mv[-(len(data) - 262_144) :]) == data[262_144:]
        srv.close()
        with pytest.raises(RemoteError, match="changed"):
            srv.read_chunk(d.content_id, LocalContent(str(path), len(data), (len(data), st.st_mtime_ns, st.st_ino + 1)), 0)
        with pytest.raises(RemoteError, match="changed"):
            srv.read_chunk(d.content_id, LocalContent(str(path), len(data), (len(data), st.st_mtime_ns + 1, 0)), 0)
    finally:
        srv.close()


@pytest.mark.slow
def test_transfer_and_transport_suites_without_posix_calls():
    """tests/transfer and tests/transport in a child without the calls Windows lacks (~20 s)."""
    root = os.path.dirname(os.path.dirname(HERE))
    proc = subprocess.run([sys.executable, os.path.join(HERE, "nonposix_suite.py"), "tests/transfer", "tests/transport"],
                          cwd=root, capture_output=True, text=True, timeout=600)  # fmt: skip
    assert proc.returncode == 0, proc.stdout[-4000:] + proc.stderr[-2000:]
