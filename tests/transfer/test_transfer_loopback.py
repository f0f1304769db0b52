"""Downloads over real loopback sockets: 1 and 4 providers, a corrupting one, one killed
mid-download, a stalling one, cancel + resume, a SIGKILLed downloader resuming, discovery.

Default sizes are 64 MiB; the few-hundred-MiB variants run with ``-m slow``."""

from __future__ import annotations

import asyncio
import os
import sys

import pytest
from transfer_util import (
    BOUND,
    CorruptServer,
    cancelled_download,
    client,
    make_file,
    provider,
    same_file,
    stalling_provider,
)

from scp2p.errors import NoProviders
from scp2p.limits import MIB
from scp2p.store import Store
from scp2p.transfer import SchedulerConfig
from scp2p.transfer.downloader import Downloader, DownloadSpec
from scp2p.transfer.providers import ProviderDiscovery, announce
from scp2p.transfer.writer import part_path

HERE = os.path.dirname(__file__)


def run(coro, timeout: float = BOUND):
    async def bounded():
        async with asyncio.timeout(timeout):
            return await coro

    return asyncio.run(bounded())


@pytest.fixture(scope="module")
def source(tmp_path_factory):
    d = tmp_path_factory.mktemp("src")
    path = str(d / "source.bin")
    return path, make_file(path, 64 * MIB + 12345)


def _spec(src: DownloadSpec, target) -> DownloadSpec:
    return DownloadSpec(src.content_id, src.size, src.chunk_hashes, str(target))


async def _download(spec_src, target, n_providers, store=None, **kw):
    path, src = spec_src
    provs = [await provider(path, src) for _ in range(n_providers)]
    try:
        async with client() as c:
            dl = Downloader(c.pool, _spec(src, target), store=store,
                            providers=[ep.listen_addrs[0] for ep, _ in provs], **kw)  # fmt: skip
            out = await dl.run()
            return dl, out, [srv for _, srv in provs]
    finally:
        for ep, srv in provs:
            await ep.close()
            srv.close()


@pytest.mark.parametrize("n,write_thread", [(1, True), (4, True), (1, False)])
def test_download_from_providers(source, tmp_path, n, write_thread):
    store = Store.open(tmp_path / "db")
    try:
        dl, out, servers = run(_download(source, tmp_path / "out.bin", n, store=store, write_thread=write_thread))
        assert same_file(out, source[0])
        assert store.partials() == []  # the partial record is gone once complete
        assert not os.path.exists(part_path(out, source[1].content_id))
        assert dl.part.read_back < source[1].size // 4  # the whole-file hash ran mostly from memory
        if n == 4:
            assert sum(1 for s in servers if s.chunks_served) >= 2  # the load was spread
        assert sum(s.chunks_served for s in servers) >= dl.sched.n
    finally:
        store.close()


@pytest.mark.slow
@pytest.mark.parametrize("n", [1, 4])
def test_download_few_hundred_mib(tmp_path, n):
    path = str(tmp_path / "big.bin")
    src = make_file(path, 320 * MIB + 7)
    dl, out, _ = run(_download((path, src), tmp_path / "out.bin", n), timeout=300)
    assert same_file(out, path)


def test_corrupting_provider_is_penalised(source, tmp_path):
    path, src = source

    async def main():
        good = [await provider(path, src) for _ in range(2)]
        evil = await provider(path, src, CorruptServer)
        try:
            async with client() as c:
                provs = [evil[0].listen_addrs[0]] + [ep.listen_addrs[0] for ep, _ in good]
                dl = Downloader(c.pool, _spec(src, tmp_path / "o.bin"), providers=provs)
                out = await dl.run()
                return dl, out, evil
        finally:
            for ep, srv in good + [evil]:
                await ep.close()
                srv.close()

    dl, out, evil = run(main())
    assert same_file(out, path)
    banned = dl.sched.banned()
    assert len(banned) == 1 and banned[0] == evil[0].key.public_key
    assert dl.sched.providers[banned[0]].bad >= dl.sched.config.ban_after_bad


def test_provider_killed_mid_download(source, tmp_path):
    path, src = source

    async def main():
        # a small burst: the caps really pace the download (a burst of a second's worth would
        # let it finish before the kill under load), so the victim always has requests in flight
        provs = [await provider(path, src, upload_rate=40 * MIB, upload_burst=2 * MIB) for _ in range(3)]
        victim = provs[0][0]
        halfway = asyncio.Event()

        def on_progress(p):
            if p.fraction > 0.3:
                halfway.set()

        try:
            async with client() as c:
                dl = Downloader(c.pool, _spec(src, tmp_path / "o.bin"),
                                providers=[ep.listen_addrs[0] for ep, _ in provs],
                                on_progress=on_progress, progress_interval=0.05)  # fmt: skip
                task = asyncio.create_task(dl.run())
                await halfway.wait()
                assert not task.done()
                for s in victim.sessions:
                    s.abort("killed")
                await victim.close()
                out = await task
                return dl, out, victim
        finally:
            for ep, srv in provs:
                await ep.close()
                srv.close()

    dl, out, victim = run(main())
    assert same_file(out, path)
    assert dl.sched.providers[victim.key.public_key].dropped


def test_stalling_provider_does_not_stall(source, tmp_path):
    path, src = source

    async def main():
        good = await provider(path, src)
        stall = await stalling_provider()
        cfg = SchedulerConfig(first_timeout=3.0, max_timeout=3.0)
        try:
            async with client() as c:
                dl = Downloader(c.pool, _spec(src, tmp_path / "o.bin"), config=cfg,
                                providers=[stall.listen_addrs[0], good[0].listen_addrs[0]])  # fmt: skip
                out = await dl.run()
                return dl, out, stall
        finally:
            await good[0].close()
            good[1].close()
            await stall.close()

    dl, out, stall = run(main())
    assert same_file(out, path)
    st = dl.sched.providers[stall.key.public_key]
    # the staller got requests (it is listed first) but delivered nothing; the endgame or the
    # timeouts moved its chunks to the good provider
    assert st.bytes == 0 and not st.inflight
    assert sum(p.bytes for p in dl.sched.providers.values()) == src.size


def test_cancel_then_resume(source, tmp_path):
    path, src = source
    store = Store.open(tmp_path / "db")
    target = tmp_path / "o.bin"

    try:
        dl1 = run(cancelled_download(path, src, target, store, 0.25, upload_rate=40 * MIB))
        (p,) = store.partials()
        kept = sum(bin(b).count("1") for b in p.bitmap)
        assert kept == dl1.sched.done_count > 0
        assert os.path.exists(part_path(str(target), src.content_id)) and not target.exists()
        dl2, out, _ = run(_download(source, target, 1, store=store))
        assert dl2.resumed_chunks == kept
        assert dl2.sched.fetched_bytes <= src.size - kept * (256 * 1024) + 256 * 1024
        assert same_file(out, path)
        assert store.partials() == []
    finally:
        store.close()


def test_no_providers_times_out(source, tmp_path):
    path, src = source

    async def main():
        async with client() as c:
            dl = Downloader(c.pool, _spec(src, tmp_path / "o.bin"), providers=["tcp://127.0.0.1:9"],
                            provider_wait=0.5)  # fmt: skip
            with pytest.raises(NoProviders):
                await dl.run()

    run(main())


def test_discovery_via_connected_peer_and_announce(source, tmp_path):
    """The downloader only knows a peer that does not hold the file but was told who does;
    after completion the downloader announces itself to its connected peers."""
    path, src = source

    async def main():
        seed_ep, seed_srv = await provider(path, src)
        # a "tracker" peer without the content that heard a HAVE_CONTENT from the seed
        tr_ep, tr_srv = await provider(path, src)
        tr_srv.remove_file(src.content_id)
        try:
            await seed_ep.pool.session(tr_ep.listen_addrs[0])
            assert await announce(seed_ep.pool, src.content_id, seed_ep.peer_addrs()) == 1
            async with asyncio.timeout(5):
                while not tr_srv.book.get(src.content_id):
                    await asyncio.sleep(0.01)
            # the tracker learned the seed's key; give it the seed's address through a PROVIDERS announcement
            from scp2p.wire.records import Providers

            tr_sess = seed_ep.pool.find(tr_ep.key.public_key)
            await tr_sess.send(Providers(src.content_id, tuple(seed_ep.peer_addrs()), 1))
            async with asyncio.timeout(5):
                while not any(a is not None for _, a in tr_srv.book.get(src.content_id)):
                    await asyncio.sleep(0.01)
            async with client() as c:
                await c.pool.session(tr_ep.listen_addrs[0])
                disc = ProviderDiscovery(c.pool, src.content_id, refresh=0.2)
                dl = Downloader(c.pool, _spec(src, tmp_path / "o.bin"), discovery=disc)
                out = await dl.run()
                assert same_file(out, path)
                assert seed_srv.chunks_served >= dl.sched.n and tr_srv.chunks_served == 0
                told = await announce(c.pool, src.content_id, [])
                assert told >= 1
                async with asyncio.timeout(5):
                    while len(tr_srv.book.get(src.content_id)) < 2:
                        await asyncio.sleep(0.01)
        finally:
            for ep, srv in ((seed_ep, seed_srv), (tr_ep, tr_srv)):
                await ep.close()
                srv.close()

    run(main())


def test_sigkilled_downloader_resumes(source, tmp_path):
    path, src = source
    db = str(tmp_path / "db")
    target = str(tmp_path / "o.bin")

    async def main():
        ep, srv = await provider(path, src)
        try:
            args = [sys.executable, os.path.join(HERE, "resume_child.py"), ep.listen_addrs[0], db, target,
                    src.content_id.hex(), str(src.size), path, str(30 * MIB)]  # fmt: skip
            proc = await asyncio.create_subprocess_exec(*args, stdout=asyncio.subprocess.PIPE)
            persisted = 0
            try:
                while True:
                    line = (await proc.stdout.readline()).decode()
                    assert line, "child ended early"
                    if line.startswith("persisted"):
                        persisted = int(line.split()[1])
                        if persisted > 0.3 * len(src.chunk_hashes):
                            break
                proc.kill()  # SIGKILL on POSIX, TerminateProcess on Windows
            finally:
                if proc.returncode is None:
                    proc.kill()
                await proc.wait()
            store = Store.open(db)
            try:
                (p,) = store.partials()
                recorded = sum(bin(b).count("1") for b in p.bitmap)
                assert recorded >= persisted
                async with client() as c:
                    dl = Downloader(c.pool, _spec(src, target), store=store, providers=[ep.listen_addrs[0]])
                    out = await dl.run()
                refetched = dl.sched.fetched_bytes - (src.size - recorded * 256 * 1024)
                assert dl.resumed_chunks == recorded
                assert refetched < 0.1 * src.size
                assert same_file(out, path)
            finally:
                store.close()
        finally:
            await ep.close()
            srv.close()

    run(main())


@pytest.mark.parametrize("write_thread", [True, False])
def test_write_error_ends_the_download(source, tmp_path, monkeypatch, write_thread):
    """A part file that cannot be written (disk full) fails the download with that error at once."""
    import errno

    from scp2p.transfer import writer

    def full(self, chunks):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(writer.PartFile, "store_chunks", full)
    with pytest.raises(OSError) as ei:
        run(_download(source, tmp_path / "o.bin", 1, write_thread=write_thread), timeout=20)
    assert ei.value.errno == errno.ENOSPC
