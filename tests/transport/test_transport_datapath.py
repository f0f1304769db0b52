"""The lean data path's internals: pooled receive buffers, vectored writes, per-pass write
coalescing and the one-timer request deadlines (real sockets on 127.0.0.1)."""

from __future__ import annotations

import asyncio
from types import SimpleNamespace

import pytest
from transport_util import endpoint, run

from scp2p.errors import RequestTimeout
from scp2p.transport import Dispatcher
from scp2p.transport.session import TransportConfig
from scp2p.transport.frames import FrameReader, RecvPool, encode_envelope_frame, parse_envelope
from scp2p.transport.tcp import StreamProtocol
from scp2p.wire import messages as m

CID = bytes(range(32))


def test_recv_pool_never_hands_out_a_referenced_buffer():
    pool = RecvPool(keep=4)
    a = pool.get(300_000)
    view = memoryview(a)[10:20]
    del a
    b = pool.get(300_000)
    assert b is not view.obj  # still referenced through the view
    obj = view.obj
    del view, obj, b
    c = pool.get(1000)
    assert pool.reused == 1 and len(c) >= 300_000


def test_recv_pool_keep_zero_allocates_every_time():
    pool = RecvPool(keep=0)
    pool.get(100)
    pool.get(100)
    assert pool.allocated == 2 and pool.reused == 0


def _frames(n: int, size: int) -> list[bytes]:
    return [encode_envelope_frame(m.MsgType.CHUNK_DATA, i + 1, 1, bytes([i & 0xFF]) * size) for i in range(n)]


@pytest.mark.parametrize("step", [1, 4096, 70_000, 1 << 20])
def test_frame_reader_reuses_large_buffers_only_when_released(step):
    r = FrameReader()
    held = []
    wire = b"".join(_frames(12, 100_000))
    for pos in range(0, len(wire), step):
        chunk = wire[pos : pos + step]
        while chunk:
            dst = r.get_buffer()
            k = min(len(dst), len(chunk))
            dst[:k] = chunk[:k]
            r.buffer_updated(k)
            chunk = chunk[k:]
        while r.frames:
            env = parse_envelope(r.frames.popleft())
            if env.req_id % 3 == 0:
                held.append(env)  # keeps its buffer
    # the held payloads were never overwritten by later frames
    for env in held:
        assert bytes(env.payload) == bytes([(env.req_id - 1) & 0xFF]) * 100_000
    assert r.pool.reused > 0


class _FakeSock:
    def __init__(self, accept: int) -> None:
        self.accept = accept
        self.got = b""

    def fileno(self):
        return 7

    def sendmsg(self, parts):
        data = b"".join(bytes(p) for p in parts)[: self.accept]
        self.got += data
        return len(data)


class _FakeTransport:
    def __init__(self) -> None:
        self.written = b""
        self.writes = 0
        self.closed = False

    def is_closing(self):
        return self.closed

    def get_write_buffer_size(self):
        return len(self.written)

    def write(self, data):
        self.writes += 1
        self.written += bytes(data)

    def close(self):
        self.closed = True


class _FakeLoop:
    def __init__(self) -> None:
        self.writers: dict = {}

    def _add_writer(self, fd, cb):
        self.writers[fd] = cb

    def _remove_writer(self, fd):
        self.writers.pop(fd, None)


def _protocol(accept: int, high: int = 1 << 20, low: int = 1 << 10) -> StreamProtocol:
    p = StreamProtocol.__new__(StreamProtocol)
    p.transport = _FakeTransport()
    p._sock = _FakeSock(accept)
    p.session = None
    p.local = SimpleNamespace(config=TransportConfig(write_high_water=high, write_low_water=low))
    p._init_queue(_FakeLoop())
    return p


@pytest.mark.parametrize("accept", [0, 3, 10, 11, 25, 1000])
def test_vectored_write_queues_the_unsent_rest_in_order(accept):
    """What the socket does not take waits in the protocol's own queue (never copied into the
    transport's buffer) and leaves in order, with later writes behind it, when it is writable."""
    p = _protocol(accept)
    parts = [b"0123456789", b"a", memoryview(b"bcdefghijklmnopqrstu"), b"vwxyz"]
    p.write(parts)
    p.write([b"X", b"Y"])
    want = b"".join(bytes(x) for x in parts) + b"XY"
    assert p.transport.writes == 0
    loop = p._loop
    rounds = 0
    while loop.writers:
        p._sock.accept = 4
        loop.writers[7]()
        rounds += 1
        assert rounds < 100
    assert p._sock.got == want and p._qbytes == 0 and not p._q


def test_write_queue_pauses_the_session_and_closes_after_draining():
    p = _protocol(0, high=10, low=4)
    events = []
    p.session = SimpleNamespace(pause_writing=lambda: events.append("pause"),
                                resume_writing=lambda: events.append("resume"))  # fmt: skip
    p.write([b"x" * 8])
    assert events == []
    p.write([b"y" * 8])
    assert events == ["pause"]
    p.close()
    assert not p.transport.closed  # waits for the queue
    p.write([b"late"])  # after close: dropped
    p._sock.accept = 12
    p._loop.writers[7]()
    assert events == ["pause", "resume"] and not p.transport.closed
    p._loop.writers[7]()
    assert p._sock.got == b"x" * 8 + b"y" * 8 and p.transport.closed and not p._loop.writers


def test_requests_of_one_loop_pass_leave_in_one_write():
    async def go():
        async with endpoint("tcp") as a, endpoint(None) as b:
            url = a.listen_addrs[0]
            s = await b.pool.session(url)
            await s.request(m.PexRequest(1), timeout=10)  # FEATURES answered: pipelining
            calls = []
            link = s.link
            orig = link.write

            def counting(parts):
                calls.append(len(parts))
                orig(parts)

            link.write = counting
            res = await asyncio.gather(*(s.request(m.GetChunk(CID, i), timeout=10) for i in range(40)))
            assert [r.chunk_index for r in res] == list(range(40))
            assert len(calls) < 10 and sum(calls) >= 40

    run(go())


def test_many_request_deadlines_share_one_timer():
    async def go():
        d = Dispatcher()
        never = asyncio.Event()

        async def stall(ctx, msg):
            await never.wait()

        async def pex(ctx, msg):
            return m.PexOffer(())

        d.register(m.MsgType.GET_CHUNK, stall)
        d.register(m.MsgType.PEX_REQUEST, pex)
        async with endpoint("tcp", d) as a, endpoint(None) as b:
            url = a.listen_addrs[0]
            s = await b.pool.session(url)
            await s.request(m.PexRequest(1), timeout=10)
            loop = asyncio.get_running_loop()
            t0 = loop.time()
            # out-of-order deadlines: each request times out at its own deadline
            timeouts = [0.6, 0.2, 0.4, 5.0]
            tasks = [asyncio.ensure_future(s.request(m.GetChunk(CID, i), timeout=t)) for i, t in enumerate(timeouts)]
            try:
                done_at = {}
                for i in (1, 2, 0):
                    with pytest.raises(RequestTimeout):
                        await tasks[i]
                    done_at[i] = loop.time() - t0
                assert done_at[1] >= 0.2 and done_at[2] >= 0.4 and done_at[0] >= 0.6
                assert not tasks[3].done()
                assert await s.request(m.PexRequest(1), timeout=10) == m.PexOffer(())
            finally:
                tasks[3].cancel()
                await asyncio.gather(tasks[3], return_exceptions=True)
                never.set()
            # answered and cancelled requests leave no live entries behind
            assert all(e[2].done() for e in s._deadlines)

    run(go())


def test_take_response_only_for_our_requests_in_flight():
    """The session's fast lane takes a response itself only for a request the core holds in
    flight; anything else (late, internal, unknown) stays for next_event."""
    from scp2p.transport.connection import Connection

    c = Connection(initiator=True, now=0.0)  # its FEATURES probe is an internal request
    probe = c._features_probe
    rid = c.send_request(m.MsgType.GET_CHUNK, b"x", 0.0)
    assert c.in_flight == 1 and not c.has_events
    assert not c.take_response(probe) and not c.take_response(rid + 100)
    assert c.take_response(rid) and c.in_flight == 0
    assert not c.take_response(rid)  # a second (late) copy is not ours any more


class _BurstSock(_FakeSock):
    def __init__(self, data: bytes, step: int) -> None:
        super().__init__(0)
        self.data = data
        self.step = step
        self.reads = 0

    def recv_into(self, buf):
        if not self.data:
            raise BlockingIOError
        self.reads += 1
        n = min(len(buf), self.step, len(self.data))
        buf[:n] = self.data[:n]
        self.data = self.data[n:]
        return n


def test_stream_of_large_frames_is_read_in_bursts():
    """After a large frame, buffer_updated reads the socket again itself (up to READ_BURST
    reads per read event) while whole large frames are expected; small frames and a paused
    session are left to the event loop."""
    from scp2p.transport.session import SessionState
    from scp2p.transport.tcp import READ_BURST

    body = b"\x01" * 100_000
    frame = len(body).to_bytes(4, "big") + body
    r = FrameReader()
    r.feed(frame)  # a first large frame: the next read is offered a whole frame
    session = SimpleNamespace(reader=r, state=SessionState.OPEN, get_buffer=r.get_buffer,
                              buffer_updated=r.buffer_updated)  # fmt: skip
    p = _protocol(0)
    p.session = session
    sock = p._sock = _BurstSock(frame * 10, len(frame))

    def read_event():  # what asyncio does on a read event
        p.buffer_updated(sock.recv_into(p.session.get_buffer(-1)))

    read_event()
    assert sock.reads == READ_BURST and len(r.frames) == 1 + READ_BURST
    p._rpaused = True
    read_event()
    assert sock.reads == READ_BURST + 1  # paused: only the event's own read
    p._rpaused = False
    sock.step = 10  # a short read: the frame is not whole, the loop takes over
    read_event()
    assert sock.reads == READ_BURST + 2
