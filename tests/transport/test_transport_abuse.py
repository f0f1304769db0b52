"""Hostile and heavy peers against a live plain-TCP server: bad handshakes, negative vectors,
stalled handshakes, 200 concurrent sessions, a peer that stops reading (write backpressure)."""

from __future__ import annotations

import asyncio
import os

import pytest
from transport_util import RawPeer, endpoint, run

from scp2p.errors import Backpressure, ConnectFailed, HandshakeError
from scp2p.identity import NodeKey
from scp2p.transport.frames import encode_envelope_frame
from scp2p.transport.handshake import Handshake, Role
from scp2p.transport.hello import encode_hello_frame, make_hello
from scp2p.transport.session import LocalNode
from scp2p.transport.tcp import dial_stream
from scp2p.transport.urls import parse_url
from scp2p.wire import messages as m
from scp2p.wire.records import Capabilities


async def _still_serving(url: str) -> None:
    async with endpoint(None) as c:
        assert await c.pool.request(url, m.PexRequest(1), timeout=10) == m.PexOffer(())


# --------------------------------------------------------------------------- a hostile responder
async def _hostile_server(make_reply):
    """A TCP server whose 'Hello' answer is make_reply(initiator_hello_frame) (raw bytes)."""

    async def handle(r, w):
        data = await r.read(65536)
        w.write(make_reply(data))
        await w.drain()
        try:
            await r.read(65536)
        finally:
            w.close()

    server = await asyncio.start_server(handle, "127.0.0.1", 0)
    return server, server.sockets[0].getsockname()[1]


def _initiator_nonce(frame: bytes) -> bytes:
    from scp2p.transport.hello import decode_hello

    return decode_hello(frame[4:]).nonce


RKEY = NodeKey(b"\x42" * 32)


def _bad_sig(frame):
    h = make_hello(RKEY, Capabilities(), os.urandom(32), _initiator_nonce(frame), 7)
    h = type(h)(h.node_pubkey, h.capabilities, h.nonce, h.echoed_nonce, 8, h.signature)
    return encode_hello_frame(h)


def _wrong_echo(frame):
    return encode_hello_frame(make_hello(RKEY, Capabilities(), os.urandom(32), os.urandom(32), 7))


def _oversize(frame):
    return (64 * 1024 + 1).to_bytes(4, "big") + b"\xa6" * 100


def _garbage(frame):
    return b"\x00\x00\x00\x10" + os.urandom(16)


@pytest.mark.parametrize(
    "reply,err",
    [(_bad_sig, "signature"), (_wrong_echo, "echo"), (_oversize, "exceeds"), (_garbage, "bad hello")],
)
def test_initiator_rejects_bad_responder_hellos(reply, err):
    async def go():
        server, port = await _hostile_server(reply)
        async with endpoint(None) as b:
            with pytest.raises(HandshakeError, match=err):
                await dial_stream(b.local, "127.0.0.1", port, scheme="tcp")
            with pytest.raises(ConnectFailed):
                await b.pool.request(f"tcp://127.0.0.1:{port}", m.PexRequest(1), timeout=10)
        server.close()
        await server.wait_closed()

    run(go())


# --------------------------------------------------------------------------- hostile initiators
@pytest.mark.parametrize(
    "kind", ["bad-signature", "echoing-initiator", "oversize", "garbage", "envelope-instead-of-hello"]
)
def test_server_drops_bad_initiators_and_keeps_serving(kind):
    async def go():
        async with endpoint("tcp") as a:
            url = a.listen_addrs[0]
            port = parse_url(url).port
            p = await RawPeer.connect(port, handshake=False)
            k = NodeKey.generate()
            if kind == "bad-signature":
                h = make_hello(k, Capabilities(), os.urandom(32), None, 1)
                p.send_raw(encode_hello_frame(type(h)(h.node_pubkey, h.capabilities, h.nonce, None, 2, h.signature)))
            elif kind == "echoing-initiator":
                p.send_raw(encode_hello_frame(make_hello(k, Capabilities(), os.urandom(32), os.urandom(32), 1)))
            elif kind == "oversize":
                p.send_raw((64 * 1024 + 1).to_bytes(4, "big"))
            elif kind == "garbage":
                p.send_raw(os.urandom(64))
            else:
                p.send_raw(encode_envelope_frame(101, 1, 0, b"\xa1"))
            assert await p.closed()
            p.close()
            await _still_serving(url)

    run(go())


def test_stalled_handshake_times_out_and_server_keeps_serving():
    async def go():
        async with endpoint("tcp", handshake_timeout=0.3) as a:
            url = a.listen_addrs[0]
            port = parse_url(url).port
            silent = await RawPeer.connect(port, handshake=False)  # connects, never says hello
            half = await RawPeer.connect(port, handshake=False)
            half.send_raw(encode_hello_frame(make_hello(NodeKey.generate(), Capabilities(), os.urandom(32), None, 1))[:30])
            await _still_serving(url)  # served while those two hang
            assert await silent.closed() and await half.closed()  # dropped by the handshake timer
            silent.close()
            half.close()

    run(go())


def test_negative_vectors_replayed_against_a_live_server(vectors):
    """Every negative vector about frames, envelopes and handshakes, sent by a raw peer after (or
    instead of) the handshake; the server answers or drops that peer and keeps serving others."""
    frame_actions = {"read_envelope_frame", "read_handshake_frame", "decode_envelope", "decode_typed",
                     "decode_payload", "initiator_verify_hello"}  # fmt: skip
    cases = [c for c in vectors["negative"] if c["action"] in frame_actions]
    assert cases

    async def one(port: int, case: dict) -> str:
        action = case["action"]
        if action == "read_handshake_frame":
            p = await RawPeer.connect(port, handshake=False)
            p.send_raw(bytes.fromhex(case["bytes"]))
            await p.closed()
            p.close()
            return "dropped"
        if action == "initiator_verify_hello":
            # a responder's Hello sent by an initiator: it echoes a nonce, so the server refuses it
            p = await RawPeer.connect(port, handshake=False)
            p.send_raw(bytes.fromhex(case["frame"]))
            await p.closed()
            p.close()
            return "dropped"
        p = await RawPeer.connect(port)
        if action == "read_envelope_frame":
            p.send_raw(bytes.fromhex(case["bytes"]))
        elif action == "decode_payload":
            p.send(case["type"], 77, bytes.fromhex(case["bytes"]))
        elif case.get("bytes"):
            body = bytes.fromhex(case["bytes"])
            p.send_raw(len(body).to_bytes(4, "big") + body)
        else:  # generator: an envelope with a 1 MiB + 1 payload
            p.send_raw(encode_envelope_frame(501, 1, 1, b"")[:0] + _oversized_envelope_frame())
        try:
            env = await p.recv()
        except ConnectionError:
            p.close()
            return "dropped"
        p.close()
        assert env.req_id in (77, 5) and env.is_error or (case["expect"] == "accept" and not env.is_error)
        return "answered"

    async def go():
        async with endpoint("tcp") as a:
            url = a.listen_addrs[0]
            port = parse_url(url).port
            outcomes = {}
            for case in cases:
                outcomes[case["name"]] = await one(port, case)
                await _still_serving(url)
            assert outcomes["unknown-type"] == "answered"  # error response, session kept
            assert outcomes["unknown-key-ignored"] == "answered"
            assert outcomes["missing-key"] == "answered"
            assert outcomes["frame-too-large"] == "dropped"

    run(go())


def _oversized_envelope_frame() -> bytes:
    import cbor2

    body = cbor2.dumps({"type": 501, "req_id": 1, "flags": 1, "payload": bytes(1024 * 1024 + 1)})
    return len(body).to_bytes(4, "big") + body


def test_two_hundred_concurrent_sessions():
    async def go():
        async with endpoint("tcp") as a:
            u = parse_url(a.listen_addrs[0])
            locals_ = [
                LocalNode(NodeKey.generate(), Capabilities(), a.dispatcher, a.config) for _ in range(200)
            ]
            sessions = await asyncio.gather(*(dial_stream(loc, u.host, u.port, scheme="tcp") for loc in locals_))
            res = await asyncio.gather(*(s.request(m.PexRequest(1), timeout=20) for s in sessions))
            assert res == [m.PexOffer(())] * 200
            assert len(a.sessions) == 200
            await asyncio.gather(*(s.close() for s in sessions))

    run(go(), timeout=60)


def test_write_backpressure_when_the_peer_stops_reading():
    """A peer that never reads: fire-and-forget sends fill the write buffer up to the high water
    mark, then send() waits for the drain and raises Backpressure when it does not come."""

    async def go():
        key = NodeKey.generate()
        gate = asyncio.Event()
        conns = []

        async def handle(r, w):
            hs = Handshake(Role.RESPONDER, key, Capabilities(), timestamp=1, nonce=os.urandom(32))
            while not hs.done:
                w.write(hs.receive_data(await r.read(65536)))
            conns.append(w)
            await gate.wait()  # never reads again

        server = await asyncio.start_server(handle, "127.0.0.1", 0)
        port = server.sockets[0].getsockname()[1]
        async with endpoint(None, write_high_water=256 * 1024, write_low_water=64 * 1024, probe_features=False) as b:
            s = await b.pool.session(f"tcp://127.0.0.1:{port}")
            chunk = m.ChunkData(bytes(32), 0, bytes(512 * 1024))
            sent = 0
            with pytest.raises(Backpressure):
                for _ in range(10_000):  # kernel buffers fill, then ours, then send() gives up
                    await s.send(chunk, timeout=0.2)
                    sent += 1
            assert 0 < sent < 10_000 and s.is_open
        gate.set()
        for w in conns:
            w.close()
        server.close()
        await server.wait_closed()

    run(go())
