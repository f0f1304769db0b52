"""Helpers for the loopback transfer tests (and the resume subprocess)."""

from __future__ import annotations

import asyncio
import os

from blake3 import blake3

from scp2p.identity import NodeKey
from scp2p.limits import CHUNK_SIZE
from scp2p.transfer import ChunkServer
from scp2p.transfer.downloader import DownloadSpec
from scp2p.transport import Dispatcher, Endpoint, TransportConfig
from scp2p.wire.messages import MsgType
from scp2p.wire.records import Capabilities

BOUND = 90.0


def config() -> TransportConfig:
    return TransportConfig(connect_timeout=5.0, handshake_timeout=5.0, request_timeout=10.0, close_timeout=2.0)


def make_file(path: str, size: int) -> DownloadSpec:
    """Write ``size`` pseudo-random bytes (fast: a 1 MiB random block, varied per MiB) and describe them."""
    base = os.urandom(1 << 20)
    whole = blake3()
    chunks = []
    with open(path, "wb") as fh:
        done = 0
        mib = 0
        pending = bytearray()
        while done < size:
            n = min(1 << 20, size - done)
            block = (mib.to_bytes(8, "big") + base[8:])[:n]
            fh.write(block)
            whole.update(block)
            pending += block
            while len(pending) >= CHUNK_SIZE:
                chunks.append(blake3(pending[:CHUNK_SIZE]).digest())
                del pending[:CHUNK_SIZE]
            done += n
            mib += 1
        if pending:
            chunks.append(blake3(pending).digest())
    return DownloadSpec(whole.digest(), size, tuple(chunks), path)


class CorruptServer(ChunkServer):
    """Flips a byte in every chunk it serves."""

    def read_chunk(self, content_id, src, index):
        mv = super().read_chunk(content_id, src, index)
        mv[-1] ^= 0xFF
        return mv


async def provider(path: str, spec: DownloadSpec, server_cls=ChunkServer, **kw) -> tuple[Endpoint, ChunkServer]:
    d = Dispatcher()
    srv = server_cls(**kw)
    srv.add_file(spec.content_id, path, spec.size)
    srv.register(d)
    ep = Endpoint(NodeKey.generate(), Capabilities.desktop(), ["tcp://127.0.0.1:0"], d, config())
    await ep.start()
    srv.self_addrs = ep.peer_addrs
    return ep, srv


async def stalling_provider() -> Endpoint:
    """A provider that accepts GET_CHUNK and never answers."""
    d = Dispatcher()
    never = asyncio.Event()

    async def stall(ctx, msg):
        await never.wait()

    d.register(MsgType.GET_CHUNK, stall)
    ep = Endpoint(NodeKey.generate(), Capabilities.desktop(), ["tcp://127.0.0.1:0"], d, config())
    await ep.start()
    return ep


async def cancelled_download(path: str, src: DownloadSpec, target, store, fraction: float, **provider_kw):
    """Start a download of ``src`` (served from ``path`` by one provider made with ``provider_kw``)
    into ``target``, cancel it once ``fraction`` of it is done; the cancelled Downloader."""
    from scp2p.errors import DownloadCancelled
    from scp2p.transfer.downloader import Downloader

    ep, srv = await provider(path, src, **provider_kw)
    some = asyncio.Event()
    try:
        async with client() as c:
            spec = DownloadSpec(src.content_id, src.size, src.chunk_hashes, str(target))
            dl = Downloader(c.pool, spec, store=store, providers=[ep.listen_addrs[0]],
                            on_progress=lambda p: p.fraction > fraction and some.set(), progress_interval=0.05)  # fmt: skip
            task = asyncio.create_task(dl.run())
            await some.wait()
            dl.cancel()
            try:
                await task
            except DownloadCancelled:
                return dl
            raise AssertionError("the download was not cancelled")
    finally:
        await ep.close()
        srv.close()


def client() -> Endpoint:
    return Endpoint(NodeKey.generate(), Capabilities.desktop(), [], Dispatcher(), config())


def same_file(a: str, b: str) -> bool:
    with open(a, "rb") as fa, open(b, "rb") as fb:
        while True:
            x, y = fa.read(1 << 20), fb.read(1 << 20)
            if x != y:
                return False
            if not x:
                return True
