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


def _raw_dispatcher(calls: dict) -> Dispatcher:
    """The GET_CHUNK dispatcher above plus a raw lane that answers indices divisible by 4 itself
    (the whole response frame) and declines the others (they take the fast/async paths)."""
    from scp2p.transport.frames import encode_envelope_frame

    d = _dispatcher(calls)

    def raw(session, req_id, payload):
        calls["raw_seen"] += 1
        msg = m.decode_payload(m.MsgType.GET_CHUNK, payload, False)
        if msg.chunk_index % 4:
            return None
        calls["raw"] += 1
        out = m.encode_payload(m.ChunkData(msg.content_id, msg.chunk_index, b"raw" * 3000))
        return [encode_envelope_frame(m.MsgType.CHUNK_DATA, req_id, 1, out)]

    d.register(m.MsgType.GET_CHUNK, d._handlers[m.MsgType.GET_CHUNK], fast=d._fast[m.MsgType.GET_CHUNK], raw=raw,
               replace=True)  # fmt: skip
    return d


def test_raw_lane_answers_declines_and_keeps_order(scheme):
    calls = {"fast": 0, "slow": 0, "raw": 0, "raw_seen": 0}

    async def go():
        d = _raw_dispatcher(calls)
        async with endpoint(scheme, d) as a, endpoint(None) as b:
            url = a.listen_addrs[0]
            idx = list(range(13))
            idx.remove(7)
            idx.remove(9)
            res = await asyncio.gather(*(b.pool.request(url, m.GetChunk(CID, i), timeout=10) for i in idx))
            for i, r in zip(idx, res):
                want = b"raw" * 3000 if i % 4 == 0 else b"slow" if i % 2 else b"fast" * 2000
                assert r.chunk_index == i and r.bytes == want
            with pytest.raises(RemoteError, match="refused fast"):  # declined by the lane: the fast path
                await b.pool.request(url, m.GetChunk(CID, 7), timeout=10)
            assert calls["raw"] == 4 and calls["raw_seen"] == 12
            assert d.handled[m.MsgType.GET_CHUNK] == 12
            d.unregister(m.MsgType.GET_CHUNK)
            assert m.MsgType.GET_CHUNK not in d.raw

    run(go())


def test_raw_lane_keeps_request_order_for_a_v01_peer():
    calls = {"fast": 0, "slow": 0, "raw": 0, "raw_seen": 0}

    async def go():
        async with endpoint("tcp", _raw_dispatcher(calls)) as a:
            p = await RawPeer.connect(parse_url(a.listen_addrs[0]).port)
            idx = [0, 1, 2, 3, 4, 5, 6, 8, 11, 12]  # raw (0, 4, 8, 12), inline (2, 6), deferred (odd)
            for n, i in enumerate(idx):
                p.send(500, 40 + n, m.encode_payload(m.GetChunk(CID, i)))
            got = [await p.recv() for _ in idx]
            assert [e.req_id for e in got] == list(range(40, 40 + len(idx)))
            assert [m.decode_payload(e.type, e.payload, True).chunk_index for e in got] == idx
            p.close()
        assert calls["raw"] == 4

    run(go())


# ----------------------------------------------------------------------------- request_cb
def _gated_dispatcher(gates: dict) -> Dispatcher:
    d = Dispatcher()

    async def chunk(ctx, msg):
        ev = gates.get(msg.chunk_index)
        if ev is not None:
            await ev.wait()
        return m.ChunkData(msg.content_id, msg.chunk_index, b"x" * msg.chunk_index)

    d.register(m.MsgType.GET_CHUNK, chunk)
    return d


def test_request_cb_answers_times_out_cancels_and_closes(scheme):
    from scp2p.errors import RequestTimeout, SessionClosed

    async def go():
        gates = {5: asyncio.Event(), 6: asyncio.Event(), 7: asyncio.Event()}
        async with endpoint(scheme, _gated_dispatcher(gates)) as a, endpoint(None) as b:
            s = await b.pool.session(a.listen_addrs[0])
            await s.request(m.GetChunk(CID, 0), timeout=10)  # FEATURES settled: pipelining
            got: dict = {}
            first = asyncio.Event()

            def cb_for(i):
                def cb(env, exc):
                    got[i] = (env, exc)
                    if all(k in got for k in (1, 2, 3, 5)):
                        first.set()

                return cb

            handles = {i: s.request_cb(m.MsgType.GET_CHUNK, m.encode_payload(m.GetChunk(CID, i)), cb_for(i), timeout=10)
                       for i in (1, 2, 3, 6, 7)}  # fmt: skip
            assert all(h is not None for h in handles.values())
            slow = s.request_cb(m.MsgType.GET_CHUNK, m.encode_payload(m.GetChunk(CID, 5)), cb_for(5), timeout=0.2)
            assert handles[6].cancel() and not handles[6].cancel()  # cancelled: never called back
            gates[6].set()  # its late response is dropped
            async with asyncio.timeout(10):
                await first.wait()
            for i in (1, 2, 3):
                env, exc = got[i]
                assert exc is None and m.decode_payload(env.type, env.payload, True).bytes == b"x" * i
            assert got[5][0] is None and isinstance(got[5][1], RequestTimeout) and slow.done()
            assert 6 not in got and 7 not in got
            # a graceful close waits for the request still answered by callback, then ends it
            closing = asyncio.create_task(s.close(timeout=0.5))
            await asyncio.sleep(0.05)
            assert 7 not in got and not closing.done()
            assert s.request_cb(m.MsgType.GET_CHUNK, b"", cb_for(8)) is None  # not open: nothing sent
            await closing
            assert isinstance(got[7][1], SessionClosed) and got[7][0] is None
            gates[5].set()
            gates[7].set()

    run(go())


def test_request_cb_waits_for_no_slot_and_graceful_close_lets_it_finish():
    """request_cb never queues: with the in-flight limit reached it returns None; a graceful
    close waits for callback requests in flight and lets them complete."""

    async def go():
        gates = {1: asyncio.Event()}
        async with endpoint("tcp", _gated_dispatcher(gates), max_in_flight=2) as a, endpoint(None, max_in_flight=2) as b:
            s = await b.pool.session(a.listen_addrs[0])
            await s.request(m.GetChunk(CID, 0), timeout=10)
            got = []
            h1 = s.request_cb(m.MsgType.GET_CHUNK, m.encode_payload(m.GetChunk(CID, 1)), lambda e, x: got.append((1, e, x)))
            h2 = s.request_cb(m.MsgType.GET_CHUNK, m.encode_payload(m.GetChunk(CID, 1)), lambda e, x: got.append((2, e, x)))
            assert h1 is not None and h2 is not None
            assert s.request_cb(m.MsgType.GET_CHUNK, b"", lambda e, x: got.append(3)) is None  # limit 2 reached
            closing = asyncio.create_task(s.close(timeout=10))
            await asyncio.sleep(0.05)
            assert not closing.done() and not got
            gates[1].set()
            await closing
            assert sorted(i for i, _, _ in got) == [1, 2] and all(x is None for _, _, x in got)

    run(go())
