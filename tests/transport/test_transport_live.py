"""Real sockets on 127.0.0.1 port 0, per transport: sessions, requests, errors, timers, pool, events."""

from __future__ import annotations

import asyncio
import logging
import os

import pytest
from transport_util import RawPeer, endpoint, quick_config, run

from scp2p.errors import (
    Backpressure,
    ConnectFailed,
    HandshakeError,
    RemoteError,
    RequestTimeout,
    SessionClosed,
)
from scp2p.identity import NodeKey
from scp2p.transport import Dispatcher, Endpoint, PeerConnected, PeerDisconnected
from scp2p.transport.connection import PING_TYPE
from scp2p.transport.handshake import Handshake, Role
from scp2p.transport.urls import parse_url
from scp2p.wire import messages as m
from scp2p.wire.records import Capabilities

TRANSPORTS = ["tcp", "tls", "quic"]
CID = bytes(range(32))


@pytest.fixture(params=TRANSPORTS)
def scheme(request):
    return request.param


def test_handshake_request_and_events(scheme):
    async def go():
        async with endpoint(scheme) as a, endpoint(None) as b:
            a_events = a.events()
            url = a.listen_addrs[0]
            assert url.startswith(f"{scheme}://127.0.0.1:") and parse_url(url).port != 0
            offer = await b.pool.request(url, m.PexRequest(8), timeout=10)
            assert offer == m.PexOffer(())
            s = await b.pool.session(url)
            assert s.remote_pubkey == a.key.public_key and s.remote_node_id == a.key.node_id
            assert s.remote_capabilities == Capabilities.desktop() and s.transport == scheme
            assert s.remote_addr[1] == parse_url(url).port
            ev = await anext(a_events)
            assert isinstance(ev, PeerConnected) and ev.remote_pubkey == b.key.public_key
            assert ev.remote_node_id == b.key.node_id and not ev.initiator
            chunk = await b.pool.request(url, m.GetChunk(CID, 3), timeout=10)
            assert chunk == m.ChunkData(CID, 3, CID * 8)
            await s.close()
            ev = await anext(a_events)
            assert isinstance(ev, PeerDisconnected) and ev.remote_pubkey == b.key.public_key

    run(go())


def test_pipelined_concurrent_requests(scheme):
    n = 1000

    async def go():
        async with endpoint(scheme) as a, endpoint(None) as b:
            url = a.listen_addrs[0]
            res = await asyncio.gather(*(b.pool.request(url, m.GetChunk(CID, i), timeout=20) for i in range(n)))
            assert [r.chunk_index for r in res] == list(range(n))
            s = await b.pool.session(url)
            assert s.pipelining and b.pool.dials == 1

    run(go())


def test_error_responses_keep_the_session(scheme, caplog):
    async def go():
        d = Dispatcher()

        async def boom(ctx, msg):
            raise RuntimeError("handler bug")

        async def refuse(ctx, msg):
            raise RemoteError("no such manifest")

        async def pex(ctx, msg):
            return m.PexOffer(())

        d.register(m.MsgType.STORE, boom)
        d.register(m.MsgType.GET_MANIFEST, refuse)
        d.register(m.MsgType.PEX_REQUEST, pex)
        async with endpoint(scheme, d) as a, endpoint(None) as b:
            url = a.listen_addrs[0]
            with pytest.raises(RemoteError, match="unknown message type 200"):
                await b.pool.request(url, m.FindNode(bytes(20)), timeout=10)
            with caplog.at_level(logging.ERROR, logger="scp2p.transport.dispatch"):
                with pytest.raises(RemoteError, match="internal error") as ei:
                    await b.pool.request(url, m.Store(bytes(32), b"v", 60), timeout=10)
            assert ei.value.msg_type == m.MsgType.STORE
            assert any(r.exc_info and "handler bug" in str(r.exc_info[1]) for r in caplog.records)
            with pytest.raises(RemoteError, match="no such manifest"):
                await b.pool.request(url, m.GetManifest(bytes(32)), timeout=10)
            assert await b.pool.request(url, m.PexRequest(1), timeout=10) == m.PexOffer(())
            assert b.pool.dials == 1 and d.handler_errors == 1

    run(go())


def test_request_timeout_then_session_still_works(scheme):
    async def go():
        d = Dispatcher()
        never = asyncio.Event()

        async def stall(ctx, msg):
            await never.wait()

        async def pex(ctx, msg):
            return m.PexOffer(())

        d.register(m.MsgType.GET_CHUNK, stall)
        d.register(m.MsgType.PEX_REQUEST, pex)
        async with endpoint(scheme, d) as a, endpoint(None) as b:
            url = a.listen_addrs[0]
            with pytest.raises(RequestTimeout):
                await b.pool.request(url, m.GetChunk(CID, 0), timeout=0.3)
            assert await b.pool.request(url, m.PexRequest(1), timeout=10) == m.PexOffer(())
            never.set()

    run(go())


def test_idle_timeout_closes_and_pool_redials(scheme):
    async def go():
        async with endpoint(scheme) as a, endpoint(None, idle_timeout=0.3, keepalive_interval=None) as b:
            url = a.listen_addrs[0]
            events = b.events()
            await b.pool.request(url, m.PexRequest(1), timeout=10)
            s1 = await b.pool.session(url)
            assert isinstance(await anext(events), PeerConnected)
            ev = await anext(events)  # nothing else happens: the idle timer closes the session
            assert isinstance(ev, PeerDisconnected) and ev.reason == "idle timeout" and ev.session is s1
            await b.pool.request(url, m.PexRequest(1), timeout=10)
            s2 = await b.pool.session(url)
            assert s2 is not s1 and s2.is_open and b.pool.dials == 2

    run(go())


def test_keepalive_keeps_a_quiet_session_alive(scheme):
    async def go():
        async with endpoint(scheme, idle_timeout=None) as a, endpoint(
            None, keepalive_interval=0.05, keepalive_timeout=2.0, idle_timeout=None
        ) as b:
            url = a.listen_addrs[0]
            await b.pool.request(url, m.PexRequest(1), timeout=10)
            s = await b.pool.session(url)
            pongs = 0
            three = asyncio.Event()
            orig = s.conn._internal_response

            def counting(msg_type, env):
                nonlocal pongs
                orig(msg_type, env)
                if msg_type == PING_TYPE:
                    pongs += 1
                    if pongs >= 3:
                        three.set()

            s.conn._internal_response = counting
            await three.wait()  # three keepalive round trips on an otherwise quiet session
            assert s.is_open

    run(go())


def test_keepalive_detects_a_silent_peer():
    """A peer that completes the handshake and then never sends a byte is dropped by keepalive."""

    async def go():
        silent_key = NodeKey.generate()
        conns = []

        async def handle(r, w):
            hs = Handshake(Role.RESPONDER, silent_key, Capabilities(), timestamp=1, nonce=os.urandom(32))
            while not hs.done:
                w.write(hs.receive_data(await r.read(65536)))
            conns.append(w)
            while await r.read(65536):  # read, never answer
                pass

        server = await asyncio.start_server(handle, "127.0.0.1", 0)
        port = server.sockets[0].getsockname()[1]
        async with endpoint(None, keepalive_interval=0.1, keepalive_timeout=0.2, probe_features=False) as b:
            events = b.events()
            s = await b.pool.session(f"tcp://127.0.0.1:{port}")
            assert isinstance(await anext(events), PeerConnected)
            ev = await anext(events)
            assert isinstance(ev, PeerDisconnected) and ev.session is s and "keepalive" in ev.reason
        for w in conns:
            w.close()
        server.close()
        await server.wait_closed()

    run(go())


def test_pool_reuse_and_redial_after_broken_session(scheme):
    async def go():
        async with endpoint(scheme) as a, endpoint(None) as b:
            url = a.listen_addrs[0]
            s1 = await b.pool.session(url)
            assert await b.pool.session(url) is s1
            # the same peer found by its key, whatever address form is used
            assert await b.pool.session(a.listen_addrs[0]) is s1
            # break it from the server side
            srv = next(iter(a.sessions))
            srv.abort("test breaks the session")
            await asyncio.wait_for(asyncio.shield(s1.closed), 10)
            assert await b.pool.request(url, m.PexRequest(1), timeout=10) == m.PexOffer(())
            assert (await b.pool.session(url)) is not s1 and b.pool.dials == 2

    run(go())


def test_per_peer_concurrency_cap_and_bounded_queue(scheme):
    async def go():
        d = Dispatcher()
        active = 0
        peak = 0
        release = asyncio.Event()
        three_running = asyncio.Event()

        async def slow(ctx, msg):
            nonlocal active, peak
            active += 1
            peak = max(peak, active)
            if active == 3:
                three_running.set()
            await release.wait()
            active -= 1
            return m.ChunkData(msg.content_id, msg.chunk_index, b"")

        d.register(m.MsgType.GET_CHUNK, slow)
        async with endpoint(scheme, d) as a, endpoint(None, max_requests_per_peer=3, max_queued_per_peer=5) as b:
            url = a.listen_addrs[0]
            await b.pool.session(url)
            tasks = [asyncio.create_task(b.pool.request(url, m.GetChunk(CID, i), timeout=20)) for i in range(8)]
            await three_running.wait()
            # 3 running, 5 queued: the next one is refused at once
            with pytest.raises(Backpressure):
                await b.pool.request(url, m.GetChunk(CID, 99), timeout=20)
            release.set()
            res = await asyncio.gather(*tasks)
            assert len(res) == 8 and peak == 3

    run(go())


def test_graceful_close_finishes_in_flight_requests(scheme):
    async def go():
        d = Dispatcher()
        started = asyncio.Event()
        go_on = asyncio.Event()

        async def slow(ctx, msg):
            started.set()
            await go_on.wait()
            return m.PexOffer(())

        d.register(m.MsgType.PEX_REQUEST, slow)
        async with endpoint(scheme, d) as a, endpoint(None) as b:
            url = a.listen_addrs[0]
            s = await b.pool.session(url)
            req = asyncio.create_task(s.request(m.PexRequest(1), timeout=10))
            await started.wait()
            closing = asyncio.create_task(s.close(timeout=10))
            await asyncio.sleep(0)
            with pytest.raises(SessionClosed):
                await s.request(m.PexRequest(1), timeout=10)
            go_on.set()
            assert await req == m.PexOffer(())
            await closing
            assert not s.is_open

    run(go())


def test_unexpected_pubkey_rejected(scheme):
    async def go():
        async with endpoint(scheme) as a, endpoint(None) as b:
            u = parse_url(a.listen_addrs[0]).with_pubkey(NodeKey.generate().public_key)
            with pytest.raises(ConnectFailed, match="expected"):
                await b.pool.request(str(u), m.PexRequest(1), timeout=10)
            assert await b.pool.request(a.listen_addrs[0], m.PexRequest(1), timeout=10) == m.PexOffer(())

    run(go())


def test_dial_policy_prefers_quic_then_tls_then_tcp():
    async def go():
        key = NodeKey.generate()
        listen = ["tcp://127.0.0.1:0", "tls://127.0.0.1:0", "quic://127.0.0.1:0"]
        d = endpoint("tcp").dispatcher
        async with Endpoint(key, Capabilities.desktop(), listen, d, quick_config()) as a, endpoint(None) as b:
            urls = a.listen_addrs
            assert [parse_url(u).scheme for u in urls] == ["tcp", "tls", "quic"]
            assert [str(p.transport) for p in a.peer_addrs()] == ["tcp", "quic"]  # tls never in a v0.1 PeerAddr
            s = await b.pool.session(urls)
            assert s.transport == "quic"
            # QUIC gone: the next candidate is TLS; then TCP
            dead_quic = str(parse_url(urls[2]).with_port(1))
            await s.close()
            s = await b.pool.session([urls[0], dead_quic, urls[1]])
            assert s.transport == "tls"
            await s.close()
            s = await b.pool.session([urls[0], dead_quic])
            assert s.transport == "tcp"

    run(go())


def test_connect_refused_is_connect_failed():
    async def go():
        async with endpoint(None) as b:
            with pytest.raises(ConnectFailed):
                await b.pool.request("tcp://127.0.0.1:1", m.PexRequest(1), timeout=10)

    run(go())


def test_handshake_error_type_on_direct_dial():
    async def go():
        from scp2p.transport.tcp import dial_stream

        async with endpoint("tcp") as a, endpoint(None) as b:
            u = parse_url(a.listen_addrs[0])
            with pytest.raises(HandshakeError):
                await dial_stream(b.local, u.host, u.port, scheme="tcp", expected_pubkey=b"\x01" * 32)

    run(go())


def test_v01_style_peer_is_answered_in_order_and_never_pipelined():
    """A raw one-at-a-time peer: FEATURES-less, gets responses in request order; our requests to it
    are one at a time (it answers the FEATURES probe with an error)."""

    async def go():
        d = Dispatcher()
        gates = {i: asyncio.Event() for i in range(3)}

        async def chunk(ctx, msg):
            await gates[msg.chunk_index].wait()
            return m.ChunkData(msg.content_id, msg.chunk_index, b"")

        d.register(m.MsgType.GET_CHUNK, chunk)
        async with endpoint("tcp", d) as a:
            port = parse_url(a.listen_addrs[0]).port
            p = await RawPeer.connect(port)
            for i in range(3):  # (a v0.1 peer would not pipeline; this checks the ordering rule)
                p.send(500, 10 + i, m.encode_payload(m.GetChunk(CID, i)))
            gates[2].set()
            gates[1].set()
            gates[0].set()
            got = [await p.recv() for _ in range(3)]
            assert [e.req_id for e in got] == [10, 11, 12]
            p.close()

    run(go())


def test_tls_hello_replayed_onto_another_channel_is_rejected():
    """A relay records the initiator's bound Hello on TLS channel 1 and replays it on channel 2."""

    async def go():
        from scp2p.transport.binding import tls_binding
        from scp2p.transport.tls import client_context

        async with endpoint("tls") as a:
            u = parse_url(a.listen_addrs[0])
            key = NodeKey.generate()
            ctx = client_context()
            r1, w1 = await asyncio.open_connection(u.host, u.port, ssl=ctx)
            b1 = tls_binding(w1.get_extra_info("ssl_object"))
            hs1 = Handshake(Role.INITIATOR, key, Capabilities(), timestamp=1, binding=b1)
            hello1 = hs1.initiate()
            r2, w2 = await asyncio.open_connection(u.host, u.port, ssl=ctx)
            assert tls_binding(w2.get_extra_info("ssl_object")) != b1
            w2.write(hello1)  # the replay
            assert await r2.read(65536) == b""  # the server drops the channel without a Hello
            w1.write(hello1)  # on its own channel the same Hello works
            data = await r1.read(65536)
            hs1.receive_data(data)
            assert hs1.done and hs1.result.remote_pubkey == a.key.public_key
            w1.close()
            w2.close()
            # a plain (unbound) Hello is refused on TLS too
            r3, w3 = await asyncio.open_connection(u.host, u.port, ssl=ctx)
            w3.write(Handshake(Role.INITIATOR, key, Capabilities(), timestamp=1, nonce=os.urandom(32)).initiate())
            assert await r3.read(65536) == b""
            w3.close()
            # the server keeps serving
            async with endpoint(None) as b:
                assert await b.pool.request(a.listen_addrs[0], m.PexRequest(1), timeout=10) == m.PexOffer(())

    run(go())
