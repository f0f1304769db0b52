"""Synchronous fast-path handlers (answered inline by the session) and their fallbacks."""

from __future__ import annotations

import asyncio
import logging

import pytest
from transport_util import RawPeer, endpoint, run

from scp2p.errors import RemoteError
from scp2p.transport import Dispatcher
from scp2p.transport.dispatch import DEFER
from scp2p.transport.urls import parse_url
from scp2p.wire import messages as m

CID = bytes(range(32))


@pytest.fixture(params=["tcp", "tls", "quic"])
def scheme(request):
    return request.param


def _dispatcher(calls: dict) -> Dispatcher:
    """GET_CHUNK: fast for even indices, deferred for odd ones; index 7 refused, 9 a bug."""
    d = Dispatcher()

    def fast(ctx, msg):
        calls["fast"] += 1
        i = msg.chunk_index
        if i == 7:
            raise RemoteError("refused fast")
        if i == 9:
            raise RuntimeError("fast handler bug")
        if i % 2:
            return DEFER
        assert ctx.remote_pubkey and ctx.req_id
        return m.ChunkData(msg.content_id, i, b"fast" * 2000)

    async def slow(ctx, msg):
        calls["slow"] += 1
        await asyncio.sleep(0)
        return m.ChunkData(msg.content_id, msg.chunk_index, b"slow")

    d.register(m.MsgType.GET_CHUNK, slow, fast=fast)
    return d


def test_fast_handler_answers_and_defers(scheme, caplog):
    calls = {"fast": 0, "slow": 0}

    async def go():
        d = _dispatcher(calls)
        async with endpoint(scheme, d) as a, endpoint(None) as b:
            url = a.listen_addrs[0]
            idx = [0, 1, 2, 3, 4, 5, 6, 8, 10, 11]
            res = await asyncio.gather(*(b.pool.request(url, m.GetChunk(CID, i), timeout=10) for i in idx))
            for i, r in zip(idx, res):
                assert r.chunk_index == i and r.bytes == (b"slow" if i % 2 else b"fast" * 2000)
            with pytest.raises(RemoteError, match="refused fast"):
                await b.pool.request(url, m.GetChunk(CID, 7), timeout=10)
            with caplog.at_level(logging.ERROR, logger="scp2p.transport.dispatch"):
                with pytest.raises(RemoteError, match="internal error"):
                    await b.pool.request(url, m.GetChunk(CID, 9), timeout=10)
            assert d.handler_errors == 1
            assert calls == {"fast": 12, "slow": 4}
            assert d.handled[m.MsgType.GET_CHUNK] == 12  # deferred ones are counted once
            d.unregister(m.MsgType.GET_CHUNK)
            assert not d.has_fast(m.MsgType.GET_CHUNK)

    run(go())


def test_inline_and_deferred_answers_keep_request_order_for_a_v01_peer():
    """A one-at-a-time (v0.1-style) peer gets responses in request order even when a deferred
    answer comes after inline ones to later requests."""
    calls = {"fast": 0, "slow": 0}

    async def go():
        async with endpoint("tcp", _dispatcher(calls)) as a:
            p = await RawPeer.connect(parse_url(a.listen_addrs[0]).port)
            for i in range(6):
                p.send(500, 20 + i, m.encode_payload(m.GetChunk(CID, i)))
            got = [await p.recv() for _ in range(6)]
            assert [e.req_id for e in got] == [20, 21, 22, 23, 24, 25]
            assert [m.decode_payload(e.type, e.payload, True).chunk_index for e in got] == list(range(6))
            p.close()

    run(go())
