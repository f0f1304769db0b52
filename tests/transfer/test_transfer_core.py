"""Sans-I/O transfer pieces: CHUNK_DATA fast path, scheduler (synthetic clock), part file, server handlers."""

from __future__ import annotations

import asyncio
import os
from types import SimpleNamespace

import pytest
from blake3 import blake3

from scp2p.content.hashing import describe_bytes
from scp2p.errors import ContentMismatch, DecodeError, RemoteError
from scp2p.limits import CHUNK_SIZE
from scp2p.transfer.chunkdata import chunk_data_header, chunk_slice, parse_chunk_data
from scp2p.transfer.progress import Bandwidth, RateMeter
from scp2p.transfer.scheduler import Scheduler, SchedulerConfig, chunk_sizes
from scp2p.transfer.server import BufferPool, ChunkServer
from scp2p.transfer.writer import ChunkWorker, PartFile, part_path
from scp2p.wire import codec
from scp2p.wire.messages import ChunkData, GetChunk, HaveContent, MsgType, decode_payload, encode_payload
from scp2p.wire.records import PeerAddr, Providers


# ----------------------------------------------------------------------------- CHUNK_DATA
@pytest.mark.parametrize("n", [0, 1, 23, 24, 255, 256, 65535, 65536, CHUNK_SIZE])
@pytest.mark.parametrize("idx", [0, 23, 24, 255, 65536, 2**32 - 1])
def test_chunk_data_header_matches_codec(n, idx):
    cid = bytes(range(0, 64, 2))[:16] + bytes(range(200, 216))
    data = os.urandom(n)
    enc = encode_payload(ChunkData(cid, idx, data))
    assert chunk_data_header(cid, idx, n) + data == enc
    c, i, off, ln = parse_chunk_data(memoryview(enc))
    assert (c, i, enc[off : off + ln]) == (cid, idx, data)
    c, i, mv = chunk_slice(enc)
    assert (c, i, bytes(mv)) == (cid, idx, data)
    assert mv.obj is enc  # no copy on the fast path
    for expect in (cid, bytes(32), bytes(range(32))):  # the expected id, and others (still decoded)
        c, i, mv = chunk_slice(enc, expect)
        assert (c, i, bytes(mv)) == (cid, idx, data) and mv.obj is enc


def test_chunk_data_noncanonical_falls_back_to_codec():
    cid = os.urandom(32)
    import cbor2

    # keys in another order, cid as a byte string (decoders MAY accept it)
    odd = cbor2.dumps({"chunk_index": 5, "bytes": b"abc", "content_id": cid})
    assert parse_chunk_data(odd) is None
    c, i, mv = chunk_slice(odd)
    assert (c, i, bytes(mv)) == (cid, 5, b"abc")


@pytest.mark.parametrize("cut", [1, 10, 50, 60])
def test_chunk_data_truncated_is_decode_error(cut):
    enc = encode_payload(ChunkData(os.urandom(32), 3, os.urandom(100)))
    with pytest.raises(DecodeError):
        chunk_slice(enc[:-cut])
    with pytest.raises(DecodeError):
        chunk_slice(enc + b"\x00")
    cid = chunk_slice(enc)[0]
    with pytest.raises(DecodeError):
        chunk_slice(enc[:-cut], cid)  # the encoded-id fast path names nothing itself: same errors
    with pytest.raises(DecodeError):
        chunk_slice(enc + b"\x00", cid)


# ----------------------------------------------------------------------------- meters
def test_rate_meter_and_bandwidth():
    m = RateMeter(window=1.0)
    m.start(0.0)
    m.add(1000, 0.5)
    assert m.rate(0.5) == pytest.approx(2000)
    m.add(1000, 1.0)
    assert m.rate(1.0) == pytest.approx(2000)
    assert m.rate(3.0) == 0.0
    b = Bandwidth(1000.0, 1000.0, now=0.0)
    assert b.take(1000, 0.0)
    assert not b.take(500, 0.0)
    assert b.ready_at(500, 0.0) == pytest.approx(0.5)
    assert b.take(500, 0.5)
    assert Bandwidth(None).take(10**9, 0.0)


# ----------------------------------------------------------------------------- scheduler
def _run(s: Scheduler, now: float, serve):
    """Issue requests and answer them per ``serve(provider, index) -> 'ok'|'bad'|'fail'|None``."""
    reqs = s.poll(now)
    for r in reqs:
        what = serve(r.provider, r.index)
        if what == "ok":
            if s.received(r.provider, r.index, now):
                s.chunk_verified(r.provider, r.index, now)
        elif what == "bad":
            if s.received(r.provider, r.index, now):
                s.chunk_bad(r.provider, r.index, now)
        elif what == "fail":
            s.request_failed(r.provider, r.index, now)
    return reqs


def test_scheduler_single_provider_in_order_and_depth_grows():
    s = Scheduler(chunk_sizes(100 * CHUNK_SIZE + 5))
    assert s.n == 101
    s.add_provider("a", 0.0)
    first = s.poll(0.0)
    assert [r.index for r in first] == [0, 1, 2, 3]
    assert s.poll(0.0) == []  # depth reached
    now = 0.0
    seen = []
    while not s.complete:
        now += 0.01
        for r in list(first):
            assert s.received("a", r.index, now)
            s.chunk_verified("a", r.index, now)
            seen.append(r.index)
        first = s.poll(now)
    assert sorted(seen) == list(range(101))
    assert s.providers["a"].depth > 4
    p = s.progress(now)
    assert p.complete and p.done_bytes == s.total_bytes and p.eta == 0.0


def test_scheduler_refills_a_busy_pipeline_in_batches():
    s = Scheduler(chunk_sizes(200 * CHUNK_SIZE), SchedulerConfig(initial_depth=32, refill_batch=8))
    s.add_provider("a", 0.0)
    reqs = s.poll(0.0)
    assert len(reqs) == 32
    now = 0.0
    for k, r in enumerate(reqs[:8]):
        now += 0.001
        s.received("a", r.index, now)
        s.chunk_verified("a", r.index, now)
        got = s.poll(now)
        depth = s.providers["a"].depth
        if k < 7:
            assert got == [] or len(got) >= min(8, depth // 4)
    # a whole batch was issued at once, and an idle provider is always filled at once
    assert len(s.providers["a"].inflight) >= 24
    one = Scheduler(chunk_sizes(10 * CHUNK_SIZE), SchedulerConfig(initial_depth=4, refill_batch=8))
    one.add_provider("a", 0.0)
    assert len(one.poll(0.0)) == 4
    r0 = 0
    one.received("a", r0, 0.1)
    one.chunk_verified("a", r0, 0.1)
    assert len(one.poll(0.1)) >= 1  # depth 5 // 4 = 1: refills one at a time


def test_scheduler_received_chunk_frees_its_slot_and_verification_is_bounded():
    s = Scheduler(chunk_sizes(100 * CHUNK_SIZE), SchedulerConfig(initial_depth=4, refill_batch=1, max_verifying=6))
    s.add_provider("a", 0.0)
    reqs = s.poll(0.0)
    assert len(reqs) == 4
    for r in reqs:
        assert s.received("a", r.index, 0.01)
    p = s.providers["a"]
    assert not p.inflight and len(p.verifying) == 4 and s.verifying == 4
    assert p.srtt is not None  # the round trip ended at receive time
    more = s.poll(0.01)  # the pipeline refills while the 4 are being verified
    assert len(more) == 4 and s.poll(0.01) == []
    for r in more[:2]:
        s.received("a", r.index, 0.02)
    assert s.verifying == 6 and s.poll(0.02) == []  # bounded: nothing leaves
    assert s.handle_timer(100.0) != []  # only the 2 still on the wire can time out
    assert s.verifying == 6  # chunks being verified never time out
    s.chunk_verified("a", reqs[0].index, 100.0)
    s.chunk_bad("a", reqs[1].index, 100.0)
    assert s.verifying == 4 and not s.is_done(reqs[1].index)


def test_scheduler_caps_requests_on_the_wire_across_providers():
    cfg = SchedulerConfig(initial_depth=32, max_inflight=40, refill_batch=8)
    s = Scheduler(chunk_sizes(500 * CHUNK_SIZE), cfg)
    for k in "abcd":
        s.add_provider(k, 0.0)
    reqs = s.poll(0.0)
    assert len(reqs) == 40  # not 4 x 32
    assert max(r.index for r in reqs) - min(r.index for r in reqs) < 40  # the spread stays small
    for r in reqs[:5]:
        s.received(r.provider, r.index, 0.01)
    assert s.poll(0.01) == []  # 5 free slots: less than a batch
    for r in reqs[5:8]:
        s.received(r.provider, r.index, 0.01)
    assert len(s.poll(0.01)) == 8


def test_scheduler_refill_ready_matches_poll():
    s = Scheduler(chunk_sizes(200 * CHUNK_SIZE), SchedulerConfig(initial_depth=16, refill_batch=4, max_verifying=8))
    assert not s.refill_ready()  # no provider yet
    s.add_provider("a", 0.0)
    assert s.refill_ready()
    reqs = s.poll(0.0)
    assert len(reqs) == 16 and not s.refill_ready() and s.poll(0.0) == []
    for r in reqs[:3]:
        s.received("a", r.index, 0.01)
    assert not s.refill_ready() and s.poll(0.01) == []  # 3 free slots < a batch of 4
    s.received("a", reqs[3].index, 0.01)
    assert s.refill_ready() and len(s.poll(0.01)) == 4
    for r in reqs[4:8]:
        s.received("a", r.index, 0.02)
    assert s.verifying == 8 and not s.refill_ready() and s.poll(0.02) == []  # verification bound
    s.chunk_verified("a", reqs[0].index, 0.03)
    s.chunk_verified("a", reqs[1].index, 0.03)
    s.chunk_verified("a", reqs[2].index, 0.03)
    s.chunk_verified("a", reqs[3].index, 0.03)
    assert s.refill_ready() == bool(s.poll(0.03))


def test_scheduler_resume_skips_done_chunks():
    s = Scheduler(chunk_sizes(10 * CHUNK_SIZE), done=range(0, 10, 2))
    s.add_provider("a", 0.0)
    s.providers["a"].depth = 10
    assert [r.index for r in s.poll(0.0)] == [1, 3, 5, 7, 9]


def test_scheduler_bad_chunks_penalise_then_ban_and_refetch_elsewhere():
    cfg = SchedulerConfig(ban_after_bad=2, endgame=False)
    s = Scheduler(chunk_sizes(40 * CHUNK_SIZE), cfg)
    s.add_provider("evil", 0.0)
    s.add_provider("good", 0.0)
    now = 0.0
    verdicts = []
    for _ in range(200):
        now += 0.01
        for r in s.poll(now):
            if r.provider == "evil":
                if s.received("evil", r.index, now):
                    verdicts.append(s.chunk_bad("evil", r.index, now))
            else:
                if s.received("good", r.index, now):
                    s.chunk_verified("good", r.index, now)
        if s.complete:
            break
    assert s.complete
    assert s.providers["evil"].banned and s.banned() == ["evil"]
    assert verdicts[-1].banned and verdicts[0].bad_chunks == 1
    # a chunk found bad at "evil" was never asked of it again
    for idx, bad in s._bad_from.items():
        assert bad == {"evil"}


def test_scheduler_timeouts_backoff_and_endgame_beat_a_staller():
    cfg = SchedulerConfig(first_timeout=5.0, min_timeout=1.0, max_timeout=5.0, backoff_base=1.0)
    s = Scheduler(chunk_sizes(20 * CHUNK_SIZE), cfg)
    s.add_provider("stall", 0.0)
    s.add_provider("ok", 0.0)
    now = 0.0
    stalled: set[int] = set()
    for _ in range(1000):
        for r in s.poll(now):
            if r.provider == "stall":
                stalled.add(r.index)
            elif s.received("ok", r.index, now):
                s.chunk_verified("ok", r.index, now)
        if s.complete:
            break
        now += 0.01
        s.handle_timer(now)
    assert s.complete
    assert now < 1.0  # the endgame re-requested the stalled chunks long before their timeout
    assert stalled  # the staller was asked for something
    # what the staller still holds is cancelled when the chunk completes elsewhere
    assert not any(s.providers["stall"].inflight)


def test_scheduler_timeout_penalises_and_requeues():
    cfg = SchedulerConfig(first_timeout=2.0, backoff_base=1.0, endgame=False)
    s = Scheduler(chunk_sizes(8 * CHUNK_SIZE), cfg)
    s.add_provider("a", 0.0)
    reqs = s.poll(0.0)
    assert len(reqs) == 4 and reqs[0].deadline == 2.0
    assert s.deadline(0.0) == 2.0
    assert s.handle_timer(1.9) == []
    cancels = s.handle_timer(2.0)
    assert sorted(c.index for c in cancels) == [0, 1, 2, 3] and all(c.reason == "timeout" for c in cancels)
    p = s.providers["a"]
    assert p.failures == 1 and p.backoff_until == 3.0 and p.depth == 2
    assert s.poll(2.5) == []
    assert s.deadline(2.5) == 3.0
    again = s.poll(3.0)
    assert [r.index for r in again] == [0, 1]  # re-queued chunks first, at the halved depth
    # late answers for cancelled requests are not wanted from that provider
    assert not s.received("a", 3, 3.1)


def test_scheduler_failures_drop_provider_and_stuck():
    cfg = SchedulerConfig(max_failures=2, backoff_base=0.1)
    s = Scheduler(chunk_sizes(4 * CHUNK_SIZE), cfg)
    s.add_provider("a", 0.0)
    now = 0.0
    for _ in range(10):
        for r in s.poll(now):
            s.request_failed("a", r.index, now)
        now += 1.0
    assert s.providers["a"].dropped and s.stuck
    assert s.add_provider("a", now)  # rediscovered: tried again
    assert not s.stuck and s.poll(now)


def test_scheduler_remove_provider_requeues():
    s = Scheduler(chunk_sizes(8 * CHUNK_SIZE), SchedulerConfig(endgame=False))
    s.add_provider("a", 0.0)
    s.add_provider("b", 0.0)
    reqs = s.poll(0.0)
    held_by_a = sorted(r.index for r in reqs if r.provider == "a")
    cancels = s.remove_provider("a", 0.1)
    assert sorted(c.index for c in cancels) == held_by_a
    for r in s.poll(0.2):
        assert r.provider == "b"


def test_scheduler_rate_limit():
    cfg = SchedulerConfig(rate_limit=CHUNK_SIZE * 2, rate_burst=CHUNK_SIZE)
    s = Scheduler(chunk_sizes(10 * CHUNK_SIZE), cfg)
    s.add_provider("a", 0.0)
    assert len(s.poll(0.0)) == 1
    assert s.poll(0.1) == []
    assert s.deadline(0.1) == pytest.approx(0.5)
    assert len(s.poll(0.5)) == 1


def test_scheduler_rarest_first_with_partial_providers():
    cfg = SchedulerConfig(rarest_first=True, initial_depth=1)
    s = Scheduler(chunk_sizes(4 * CHUNK_SIZE), cfg)
    s.add_provider("all", 0.0)
    s.add_provider("some", 0.0, have=[0, 1])
    s.add_provider("more", 0.0, have=[0, 1, 2])
    got = {r.provider: r.index for r in s.poll(0.0)}
    assert got["all"] == 3  # only it has chunk 3


def test_scheduler_partial_provider_without_rarest():
    s = Scheduler(chunk_sizes(4 * CHUNK_SIZE), SchedulerConfig(initial_depth=1, endgame=False))
    s.add_provider("tail", 0.0, have=[3])
    assert [r.index for r in s.poll(0.0)] == [3]


# ----------------------------------------------------------------------------- part file
def _content(n: int, seed: int = 1) -> bytes:
    return bytes((i * 31 + seed) & 0xFF for i in range(n)) if n < 4096 else os.urandom(n)


def test_partfile_out_of_order_verify_and_rename(tmp_path):
    data = os.urandom(10 * CHUNK_SIZE + 123)
    d = describe_bytes(data)
    target = str(tmp_path / "out.bin")
    pf = PartFile(target, len(data), d.content_id, d.chunks, window=3)
    assert os.path.getsize(pf.path) == len(data) and pf.path == part_path(target, d.content_id)
    order = [3, 1, 0, 2, 10, 9, 8, 7, 5, 6, 4]
    for i in order:
        chunk = data[i * CHUNK_SIZE : (i + 1) * CHUNK_SIZE]
        assert pf.verify_chunk(i, chunk)
        assert not pf.verify_chunk(i, chunk[:-1] + b"\x00" if chunk[-1:] != b"\x00" else chunk[:-1] + b"\x01")
        pf.write_chunk(i, chunk)
    assert pf.read_back > 0  # chunks beyond the window were read back
    assert pf.finish() == target
    assert open(target, "rb").read() == data
    assert not os.path.exists(pf.path)


def test_partfile_in_order_never_reads_back(tmp_path):
    data = os.urandom(6 * CHUNK_SIZE)
    d = describe_bytes(data)
    pf = PartFile(str(tmp_path / "f"), len(data), d.content_id, d.chunks)
    for i in range(6):
        pf.write_chunk(i, data[i * CHUNK_SIZE : (i + 1) * CHUNK_SIZE])
    pf.finish()
    assert pf.read_back == 0


def test_partfile_resume_and_recheck(tmp_path):
    data = os.urandom(5 * CHUNK_SIZE)
    d = describe_bytes(data)
    target = str(tmp_path / "f")
    pf = PartFile(target, len(data), d.content_id, d.chunks)
    for i in (0, 1, 2):
        pf.write_chunk(i, data[i * CHUNK_SIZE : (i + 1) * CHUNK_SIZE])
    pf.sync()
    pf.close()
    # a new run: chunks 0-2 known verified; corrupt chunk 1 on disk behind our back
    with open(part_path(target, d.content_id), "r+b") as fh:
        fh.seek(CHUNK_SIZE + 7)
        fh.write(b"\xff\x00\xff")
    pf = PartFile(target, len(data), d.content_id, d.chunks, done=[0, 1, 2])
    for i in (3, 4):
        pf.write_chunk(i, data[i * CHUNK_SIZE : (i + 1) * CHUNK_SIZE])
    with pytest.raises(ContentMismatch):
        pf.finish()
    assert pf.recheck() == [1]
    pf.unmark([1])
    pf.write_chunk(1, data[CHUNK_SIZE : 2 * CHUNK_SIZE])
    pf.finish()
    assert open(target, "rb").read() == data


def test_partfile_empty_file_and_discard(tmp_path):
    d = describe_bytes(b"")
    pf = PartFile(str(tmp_path / "e"), 0, d.content_id, d.chunks)
    assert pf.complete
    pf.finish()
    assert os.path.getsize(tmp_path / "e") == 0
    d2 = describe_bytes(b"x" * 10)
    pf = PartFile(str(tmp_path / "x"), 10, d2.content_id, d2.chunks)
    pf.discard()
    assert not os.path.exists(pf.path)
    with pytest.raises(ValueError):
        PartFile(str(tmp_path / "y"), 10, d2.content_id, [])


# ----------------------------------------------------------------------------- server handlers
def _ctx(pk=b"p" * 32, req_id=1):
    return SimpleNamespace(remote_pubkey=pk, req_id=req_id, remote_addr=("127.0.0.1", 1))


def test_buffer_pool_reuses_only_free_buffers():
    pool = BufferPool(16, keep=4)
    a = pool.get()
    ida = id(a)
    held = memoryview(a)[:4]  # e.g. queued in a transport
    del a
    b = pool.get()
    assert id(b) != ida and pool.reused == 0
    del b  # free now: reused next
    c = pool.get()
    assert id(c) != ida and pool.reused == 1
    del held
    d = pool.get()
    assert pool.reused == 2 and id(d) in (ida, id(c)) and d is not c
    assert pool.allocated == 2


def test_server_serves_chunks_from_store_files(tmp_path):
    data = os.urandom(3 * CHUNK_SIZE + 10)
    d = describe_bytes(data)
    path = tmp_path / "pub.bin"
    path.write_bytes(data)
    st = os.stat(path)
    pf = SimpleNamespace(path=str(path), size=len(data), mtime_ns=st.st_mtime_ns, inode=st.st_ino)
    store = SimpleNamespace(files_with_content=lambda cid: [(b"s" * 32, pf)] if cid == d.content_id else [])
    srv = ChunkServer(store, self_addrs=lambda: [PeerAddr("127.0.0.1", 9, pubkey_hint=b"k" * 32)])

    async def main():
        for i in range(4):
            reply = await srv.handle_get_chunk(_ctx(), GetChunk(d.content_id, i))
            assert reply.type == MsgType.CHUNK_DATA
            msg = decode_payload(MsgType.CHUNK_DATA, bytes(reply.payload), True)
            assert msg.bytes == data[i * CHUNK_SIZE : (i + 1) * CHUNK_SIZE] and msg.chunk_index == i
        with pytest.raises(RemoteError):
            await srv.handle_get_chunk(_ctx(), GetChunk(d.content_id, 4))
        with pytest.raises(RemoteError):
            await srv.handle_get_chunk(_ctx(), GetChunk(b"\x01" * 32, 0))
        # PROVIDERS query: ourselves + announced peers; HAVE_CONTENT recorded
        await srv.handle_have_content(_ctx(b"q" * 32, 0), HaveContent(d.content_id))
        assert srv.book.get(d.content_id)[0][0] == b"q" * 32
        ann = Providers(d.content_id, (PeerAddr("127.0.0.2", 7, pubkey_hint=b"z" * 32),), 1)
        assert await srv.handle_providers(_ctx(req_id=0), ann) is None
        reply = await srv.handle_providers(_ctx(), Providers(d.content_id, (), 0))
        got = decode_payload(MsgType.PROVIDERS, reply.payload, True)
        assert [a.port for a in got.providers] == [9, 7]
        # the file changes under us: refused (after the resolution cache expires)
        srv.close()
        srv._resolved.clear()
        path.write_bytes(data[::-1])
        os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns + 10**9))
        with pytest.raises(RemoteError):
            await srv.handle_get_chunk(_ctx(), GetChunk(d.content_id, 0))
        srv.close()

    asyncio.run(main())


def test_server_per_peer_cap_and_upload_bucket(tmp_path):
    data = os.urandom(2 * CHUNK_SIZE)
    d = describe_bytes(data)
    p = tmp_path / "f"
    p.write_bytes(data)
    t = [0.0]

    def clock():  # a synthetic clock: 10 ms per reading
        t[0] += 0.01
        return t[0]

    srv = ChunkServer(max_per_peer=1, max_queued_per_peer=1, upload_rate=CHUNK_SIZE * 10.0,
                      upload_burst=CHUNK_SIZE, clock=clock)  # fmt: skip
    srv.add_file(d.content_id, str(p), len(data))

    async def main():
        gate_hold = asyncio.Event()
        orig = srv._throttle

        async def slow(n):
            await gate_hold.wait()
            await orig(n)

        srv._throttle = slow
        a = asyncio.create_task(srv.handle_get_chunk(_ctx(), GetChunk(d.content_id, 0)))
        b = asyncio.create_task(srv.handle_get_chunk(_ctx(), GetChunk(d.content_id, 1)))
        await asyncio.sleep(0)
        await asyncio.sleep(0)
        with pytest.raises(RemoteError, match="busy"):
            await srv.handle_get_chunk(_ctx(), GetChunk(d.content_id, 1))
        # another peer is not affected by the first one's cap
        c = asyncio.create_task(srv.handle_get_chunk(_ctx(b"o" * 32), GetChunk(d.content_id, 1)))
        gate_hold.set()
        for task in (a, b, c):
            reply = await asyncio.wait_for(task, 5)
            assert reply.type == MsgType.CHUNK_DATA
        assert srv.chunks_served == 3 and srv.refused == 1
        assert t[0] >= 0.2  # the bucket (one chunk burst, 10 chunks/s) made the later chunks wait
        srv.close()

    asyncio.run(main())


def _served_file(tmp_path):
    """A 2-chunk-and-a-bit file served by a ChunkServer (1 slot per peer) on a Dispatcher."""
    from scp2p.transport.dispatch import Dispatcher

    data = os.urandom(2 * CHUNK_SIZE + 5)
    d = describe_bytes(data)
    p = tmp_path / "f"
    p.write_bytes(data)
    srv = ChunkServer(max_per_peer=1)
    srv.add_file(d.content_id, str(p), len(data))
    disp = Dispatcher()
    srv.register(disp)
    return data, d, p, srv, disp


def test_server_fast_path_serves_resolved_content_inline_and_defers_otherwise(tmp_path):
    from scp2p.transport.dispatch import DEFER

    data, d, p, srv, disp = _served_file(tmp_path)
    assert disp.has_fast(MsgType.GET_CHUNK)

    async def main():
        # not resolved yet: the async handler resolves (and may ask the store)
        assert srv.get_chunk_now(_ctx(), GetChunk(d.content_id, 0)) is DEFER
        await srv.handle_get_chunk(_ctx(), GetChunk(d.content_id, 0))
        for i in range(3):
            reply = srv.get_chunk_now(_ctx(), GetChunk(d.content_id, i))
            msg = decode_payload(MsgType.CHUNK_DATA, bytes(reply.payload), True)
            assert msg.bytes == data[i * CHUNK_SIZE : (i + 1) * CHUNK_SIZE] and msg.chunk_index == i
        assert srv.chunks_served == 4 and srv.bytes_served == CHUNK_SIZE + len(data)
        with pytest.raises(RemoteError, match="out of range"):
            srv.get_chunk_now(_ctx(), GetChunk(d.content_id, 3))
        # the peer's slots are taken (requests suspended in the async handler): later ones
        # queue behind them instead of overtaking inline; another peer is not affected
        from scp2p.transfer.server import _PeerGate

        gate = srv._gates[b"p" * 32] = _PeerGate(1)
        gate.active = 1
        assert srv.get_chunk_now(_ctx(), GetChunk(d.content_id, 1)) is DEFER
        assert srv.get_chunk_now(_ctx(b"o" * 32), GetChunk(d.content_id, 1)) is not DEFER
        del srv._gates[b"p" * 32]
        # an upload cap: every request takes the async (throttled) path
        capped = ChunkServer(upload_rate=1e9)
        capped.add_file(d.content_id, str(p), len(data))
        await capped.has(d.content_id)
        assert capped.get_chunk_now(_ctx(), GetChunk(d.content_id, 0)) is DEFER
        capped.close()
        # unknown content, once resolved as absent, is refused inline
        await asyncio.gather(srv.has(b"\x01" * 32))
        with pytest.raises(RemoteError, match="not available"):
            srv.get_chunk_now(_ctx(), GetChunk(b"\x01" * 32, 0))
        srv.close()

    asyncio.run(main())


def test_server_raw_lane_lays_the_frame_the_regular_path_sends_and_declines_the_rest(tmp_path):
    from scp2p.transport.dispatch import Dispatcher
    from scp2p.transport.frames import encode_envelope_header
    from scp2p.transfer.server import _PeerGate

    data, d, p, srv, disp = _served_file(tmp_path)
    assert disp.raw[MsgType.GET_CHUNK] == srv.serve_raw
    sess = SimpleNamespace(remote_pubkey=b"p" * 32)

    def raw(i, cid=d.content_id, rid=7, session=sess):
        return srv.serve_raw(session, rid, memoryview(encode_payload(GetChunk(cid, i))))

    async def main():
        assert raw(0) is None  # not resolved yet: the async handler resolves
        await srv.has(d.content_id)
        for i in range(3):
            parts = raw(i, rid=70000 + i)
            reply = srv.get_chunk_now(_ctx(), GetChunk(d.content_id, i))
            want = encode_envelope_header(reply.type, 70000 + i, reply.flags, len(reply.payload)) + bytes(reply.payload)
            assert len(parts) == 1 and bytes(parts[0]) == want
        assert srv.chunks_served == 6 and srv.bytes_served == 2 * len(data)
        assert raw(3) is None  # out of range: the regular path sends the error response
        # a non-canonical payload (the index in a wider form than needed) goes the regular way
        odd = encode_payload(GetChunk(d.content_id, 1))[:-1] + b"\x18\x01"
        assert srv.serve_raw(sess, 1, memoryview(odd)) is None
        gate = srv._gates[b"p" * 32] = _PeerGate(1)
        gate.active = 1
        assert raw(1) is None  # behind the requests waiting for this peer's slots
        assert raw(1, session=SimpleNamespace(remote_pubkey=b"o" * 32)) is not None
        del srv._gates[b"p" * 32]
        await srv.has(b"\x01" * 32)
        assert raw(0, cid=b"\x01" * 32) is None  # known to be absent: the regular path refuses it
        # the file shrank under us: the read comes back short, the regular path reports it
        os.truncate(p, CHUNK_SIZE)
        assert raw(1) is None
        with pytest.raises(RemoteError):
            srv.get_chunk_now(_ctx(), GetChunk(d.content_id, 1))
        srv.close()
        # an upload cap, or a server that reads chunks its own way: no raw lane
        capped = ChunkServer(upload_rate=1e9)
        capped.add_file(d.content_id, str(p), CHUNK_SIZE)
        await capped.has(d.content_id)
        assert capped.serve_raw(sess, 1, memoryview(encode_payload(GetChunk(d.content_id, 0)))) is None
        capped.close()

        class Own(ChunkServer):
            def read_chunk(self, content_id, src, index):
                return super().read_chunk(content_id, src, index)

        disp2 = Dispatcher()
        Own().register(disp2)
        assert MsgType.GET_CHUNK not in disp2.raw and disp2.has_fast(MsgType.GET_CHUNK)

    asyncio.run(main())


def test_chunk_worker_verifies_and_writes_in_order_then_drains(tmp_path):
    data = os.urandom(5 * CHUNK_SIZE + 77)
    d = describe_bytes(data)
    target = str(tmp_path / "w.bin")

    async def main():
        part = PartFile(target, len(data), d.content_id, d.chunks)
        w = ChunkWorker(part, asyncio.get_running_loop())
        try:
            bad = bytearray(data[CHUNK_SIZE : 2 * CHUNK_SIZE])
            bad[0] ^= 1
            futs = [w.submit(1, bad)]
            futs += [w.submit(i, memoryview(data)[i * CHUNK_SIZE : (i + 1) * CHUNK_SIZE]) for i in range(6)]
            res = await asyncio.gather(*futs)
            await w.drain()
        finally:
            await w.stop()
        assert res == [False] + [True] * 6
        assert part.complete
        return part.finish()

    out = asyncio.run(main())
    with open(out, "rb") as fh:
        assert fh.read() == data


def test_chunk_worker_drain_waits_for_every_write_thread(tmp_path, monkeypatch):
    """With several write threads, a drain resolves only once every chunk submitted before it
    is on disk, even when another thread's write is slow; the threads all stop."""
    import threading

    from scp2p.transfer import writer as wmod

    n = 24
    data = os.urandom(n * CHUNK_SIZE)
    d = describe_bytes(data)
    release = threading.Event()
    orig = PartFile.store_chunks

    def store(self, chunks):
        chunks = list(chunks)
        if any(i == 0 for i, _ in chunks):
            release.wait(10)  # the first group's write lags behind the others
        return orig(self, chunks)

    monkeypatch.setattr(PartFile, "store_chunks", store)

    async def main():
        part = PartFile(str(tmp_path / "m.bin"), len(data), d.content_id, d.chunks)
        w = ChunkWorker(part, asyncio.get_running_loop(), writers=3)
        assert len(w._writers) == 3
        try:
            futs = [w.submit(i, memoryview(data)[i * CHUNK_SIZE : (i + 1) * CHUNK_SIZE]) for i in range(n)]
            drain = asyncio.create_task(w.drain())
            done_before, _ = await asyncio.wait(futs, timeout=0.5)
            assert not drain.done() and not part.written[0]
            assert futs[0] not in done_before
            release.set()
            await asyncio.wait_for(drain, 10)
            assert all(part.written) and all(f.done() and f.result() for f in futs)
        finally:
            release.set()
            await w.stop()
        assert not any(t.is_alive() for t in w._writers)
        assert wmod.WRITERS >= 1
        return part.finish()

    with open(asyncio.run(main()), "rb") as fh:
        assert fh.read() == data


def test_direct_write_refused_falls_back_to_the_page_cache(tmp_path, monkeypatch):
    import errno as _errno

    from scp2p.transfer.writer import buffer_address

    data = os.urandom(3 * CHUNK_SIZE)
    d = describe_bytes(data)
    part = PartFile(str(tmp_path / "r.bin"), len(data), d.content_id, d.chunks)
    if part.dfd is None:
        part.discard()
        pytest.skip("filesystem without O_DIRECT")
    from scp2p.transport import pio

    real = pio.pwritev

    def refuse(fd, bufs, off):
        if fd == part.dfd:
            raise OSError(_errno.EINVAL, "refused")
        return real(fd, bufs, off)

    monkeypatch.setattr(pio, "pwritev", refuse)
    bufs = []
    for i in range(3):
        b = bytearray(CHUNK_SIZE + 4096)
        mv = memoryview(b)[-buffer_address(b) % 4096 :][:CHUNK_SIZE]  # page-aligned
        mv[:] = data[i * CHUNK_SIZE : (i + 1) * CHUNK_SIZE]
        bufs.append((i, mv))
    part.write_chunks(bufs)
    assert part.direct_refused and part.direct_writes == 0 and part.cached_writes == 3
    with open(part.finish(), "rb") as fh:
        assert fh.read() == data


def test_chunk_worker_reports_io_errors(tmp_path):
    data = os.urandom(2 * CHUNK_SIZE)
    d = describe_bytes(data)

    async def main():
        part = PartFile(str(tmp_path / "e.bin"), len(data), d.content_id, d.chunks)
        os.close(part.fd)  # writes now fail with EBADF
        w = ChunkWorker(part, asyncio.get_running_loop())
        try:
            with pytest.raises(OSError):
                await w.submit(0, data[:CHUNK_SIZE])
        finally:
            await w.stop()
            part.fd = None

    asyncio.run(main())


def test_peer_gate_caps_hands_slots_over_in_order_and_survives_cancelled_waiters():
    from scp2p.transfer.server import _PeerGate

    async def main():
        g = _PeerGate(2)
        await g.acquire()
        await g.acquire()  # both slots taken without waiting
        assert g.full and g.active == 2
        order = []

        async def waiter(name):
            await g.acquire()
            order.append(name)

        a = asyncio.create_task(waiter("a"))
        b = asyncio.create_task(waiter("b"))
        c = asyncio.create_task(waiter("c"))
        await asyncio.sleep(0)
        assert g.waiting == 3
        b.cancel()  # a cancelled waiter gives up its place
        await asyncio.gather(b, return_exceptions=True)
        assert g.waiting == 2
        g.release()  # the slot goes to a, not back to the pool
        await asyncio.wait_for(a, 5)
        assert order == ["a"] and g.active == 2
        g.release()
        c.cancel()  # handed the slot but cancelled before it ran: the slot is passed on (freed)
        await asyncio.gather(c, return_exceptions=True)
        assert g.active == 1 and g.waiting == 0
        g.release()
        assert g.active == 0 and not g.full

    asyncio.run(main())
