"""Sans-I/O relay pieces: frame classification, slots, quotas, health, reachability, addressing, wire."""

from __future__ import annotations

import pytest

from scp2p.errors import (
    ContentRelayDisabled,
    DecodeError,
    EncodeError,
    RelayQuotaExceeded,
    RelayRefused,
    RelaySlotUnknown,
    RelayStreamError,
)
from scp2p.identity import NodeKey
from scp2p.relay import QuotaBook, RelayAddr, RelayLimits, RelayPolicy, SlotTable, parse_relay_url, slot_id_for
from scp2p.relay.client import RelayHealth, pick
from scp2p.relay.frames import FrameTracker, classify_head
from scp2p.relay.messages import (
    ReachabilityProbe,
    ReachabilityResult,
    decode_probe,
    decode_result,
    encode,
)
from scp2p.relay.reachability import Reachability, ReachState
from scp2p.transport.urls import PeerURL
from scp2p.wire.framing import encode_frame
from scp2p.wire.messages import ChunkData, GetChunk, GetManifest, PexRequest, encode_envelope, request_envelope
from scp2p.wire.records import PeerAddr, RelayKind

CONTROL, CONTENT = RelayKind.CONTROL, RelayKind.CONTENT


def _frame(msg, rid=1) -> bytes:
    return encode_frame(encode_envelope(request_envelope(msg, rid)))


def _stream():
    hello = encode_frame(b"h" * 40)
    frames = [_frame(PexRequest(4)), _frame(GetChunk(bytes(32), 3)), _frame(ChunkData(bytes(32), 3, b"z" * 3000)),
              _frame(GetManifest(bytes(32)))]  # fmt: skip
    kinds = [CONTROL, CONTROL, CONTENT, CONTENT, CONTROL]
    return [hello] + frames, kinds


def _total(runs):
    out = []
    for k, n in runs:
        if out and out[-1][0] is k:
            out[-1] = (k, out[-1][1] + n)
        else:
            out.append((k, n))
    return out


def test_tracker_classifies_frames_whole_and_byte_by_byte():
    frames, kinds = _stream()
    expect = _total([(k, len(f)) for k, f in zip(kinds, frames)])
    data = b"".join(frames)
    assert _total(FrameTracker().feed(data)) == expect
    t = FrameTracker()
    runs = []
    for i in range(len(data)):
        runs += t.feed(data[i : i + 1])
    assert _total(runs) == expect and t.undetermined == 0 and t.frames == 5


def test_tracker_checks_labels():
    frames, _ = _stream()
    t = FrameTracker()
    t.check(frames[0] + frames[1], CONTROL)
    t.check(frames[2] + frames[3], CONTENT)
    with pytest.raises(RelayStreamError, match="carries control"):
        t.check(frames[4], CONTENT)  # a GET_MANIFEST frame labelled content
    t2 = FrameTracker()
    with pytest.raises(RelayStreamError, match="carries content"):
        t2.check(frames[0] + frames[2], CONTROL)  # content smuggled in a control segment
    t3 = FrameTracker()
    t3.check(frames[0], CONTROL)
    with pytest.raises(RelayStreamError, match="inside a frame head"):
        t3.check(frames[1][:3], CONTROL)


def test_tracker_limits_and_odd_heads():
    with pytest.raises(RelayStreamError, match="exceeds"):
        FrameTracker(max_frame=100).feed((101).to_bytes(4, "big"))
    assert classify_head(b"") is CONTROL
    assert classify_head(b"\xa4\x64type\x19\x01\xf4") is CONTENT
    assert classify_head(b"\xa4\x64type\x19\x01\xf6") is CONTROL
    assert classify_head(b"\xa4\x64type\x18\x64") is CONTROL
    t = FrameTracker(hello_first=False)
    assert t.feed(encode_frame(b"")) == [(CONTROL, 4)]


def test_slots_register_renew_expire():
    k1, k2 = NodeKey.generate().public_key, NodeKey.generate().public_key
    t = SlotTable(lifetime=600, max_slots=1)
    s = t.register(k1, None, 1000.0, "sess")
    assert s.slot_id == slot_id_for(k1) and s.expires_at == 1600.0
    assert t.get(s.slot_id, 1500).owner == k1
    assert t.register(k1, s.slot_id, 1500.0).expires_at == 2100.0  # renewal
    with pytest.raises(RelayRefused):
        t.register(k2, s.slot_id, 1500.0)  # not k2's slot
    with pytest.raises(RelayQuotaExceeded):
        t.register(k2, None, 1500.0)  # full
    assert t.expire(1700.0) == [] and t.next_deadline() == 2100.0
    assert [x.slot_id for x in t.expire(2100.0)] == [s.slot_id]
    with pytest.raises(RelaySlotUnknown):
        t.get(s.slot_id, 2100.0)
    assert t.next_deadline() is None


def test_slots_detach_keeps_slot_offline():
    k = NodeKey.generate().public_key
    t = SlotTable()
    s = t.register(k, None, 0.0, "sess")
    assert [x.slot_id for x in t.detach("sess")] == [s.slot_id]
    assert t.get(s.slot_id, 1.0).session is None


def test_quotas_content_caps_days_and_persistence():
    k = b"k" * 32
    trusted = b"t" * 32
    pol = RelayPolicy(content="trusted", default=RelayLimits(control_bytes_per_day=1000),
                      trusted=lambda pk: pk == trusted)  # fmt: skip
    q = QuotaBook(pol)
    with pytest.raises(ContentRelayDisabled):
        q.check_segment(k, CONTENT, 10, 0.0)
    q.check_segment(trusted, CONTENT, 10, 0.0)  # trust-gated
    q.check_segment(k, CONTROL, 600, 0.0)
    q.charge(k, CONTROL, 600, 0.0)
    with pytest.raises(RelayQuotaExceeded, match="control bytes per day"):
        q.check_segment(k, CONTROL, 500, 10.0)
    with pytest.raises(RelayQuotaExceeded, match="segment"):
        q.check_segment(trusted, CONTENT, 2 << 20, 0.0)
    snap = q.to_json()
    q2 = QuotaBook(pol)
    q2.load_json(snap, 50.0)
    assert q2.usage(k, 50.0) == (600, 0)
    q3 = QuotaBook(pol)
    q3.load_json(snap, 86400.0 + 5)  # the next day starts at zero
    assert q3.usage(k, 86400.0 + 5) == (0, 0)
    q3.load_json(b"garbage", 86400.0 + 5)
    q.check_segment(k, CONTROL, 900, 86400.0)  # day rolled
    assert q.refused == 3
    with pytest.raises(ValueError):
        RelayPolicy(content="sometimes")


def test_health_rotation_and_backoff():
    a = RelayHealth(PeerURL("tcp", "127.0.0.1", 1))
    b = RelayHealth(PeerURL("tcp", "127.0.0.1", 2))
    a.succeeded(0.01, 0.0)
    assert [c.url.port for c in pick([a, b], 1, 0.0, set())] == [1]
    assert a.failed(1.0) == 0.5 and a.failed(1.0) == 1.0
    assert [c.url.port for c in pick([a, b], 2, 1.5, set())] == [2]  # a backs off: rotated out
    assert [c.url.port for c in pick([a, b], 2, 5.0, {("tcp", "127.0.0.1", 2)})] == [1]
    b.failed(0.0)
    b.failed(0.0)
    b.failed(0.0)
    assert [c.url.port for c in pick([a, b], 2, 100.0, set())] == [1, 2]


def test_reachability_verdicts():
    assert Reachability(has_listeners=False).state is ReachState.OUTBOUND_ONLY
    r = Reachability(has_listeners=False)
    r.relay_active = True
    assert r.state is ReachState.RELAYED
    r = Reachability(has_listeners=True)
    r.record(None)
    assert r.state is ReachState.UNKNOWN and not r.decided
    r.record(False)
    assert r.state is ReachState.UNKNOWN
    r.record(False)
    assert r.state is ReachState.OUTBOUND_ONLY and r.decided
    r.record(True)
    assert r.state is ReachState.DIRECT


def test_addressing_forms():
    node = NodeKey.generate().public_key
    relay = NodeKey.generate().public_key
    a = RelayAddr(PeerURL("tcp", "127.0.0.1", 7001, relay), slot_id_for(node), node)
    assert parse_relay_url(str(a)) == a
    pa = a.to_peer_addr()
    assert pa.pubkey_hint == node and pa.port == 7001
    back = RelayAddr.from_peer_addr(pa, relay)
    assert back == a
    assert RelayAddr(PeerURL("tls", "::1", 9), 1, node).to_peer_addr() is None
    assert str(RelayAddr(PeerURL("quic", "::1", 9), 1, node)).startswith("relay+quic://[::1]:9/1?node=")
    for bad in ("tcp://127.0.0.1:1", "relay+tcp://127.0.0.1:1/x?node=00", "relay+tcp://127.0.0.1:1/5",
                f"relay+tcp://127.0.0.1:1/5?node={node.hex()}&evil=1"):  # fmt: skip
        with pytest.raises(ValueError):
            parse_relay_url(bad)


def test_probe_records_roundtrip_and_limits():
    addrs = tuple(PeerAddr("127.0.0.1", 7000 + i) for i in range(4))
    p = ReachabilityProbe(addrs, bytes(range(16)))
    assert decode_probe(encode(p)) == p
    r = ReachabilityResult(bytes(16), PeerAddr("127.0.0.1", 5), addrs[:1])
    assert decode_result(encode(r)) == r
    assert decode_result(encode(ReachabilityResult(bytes(16), None))).observed is None
    with pytest.raises(EncodeError):
        ReachabilityProbe(addrs + (addrs[0],), bytes(16))
    too_many = encode(p).replace(b"\x84", b"\x85", 1)
    with pytest.raises(DecodeError):
        decode_probe(too_many)
    with pytest.raises(DecodeError):
        decode_probe(b"\xa0")
