"""Sans-I/O transport cores: handshake transcript, frame reader, envelope fast path, session core."""

from __future__ import annotations

import os
import random

import pytest

from scp2p.errors import (
    ChannelBindingError,
    DecodeError,
    FrameTooLarge,
    HandshakeError,
    ProtocolViolation,
)
from scp2p.identity import NodeKey
from scp2p.transport.connection import (
    FEATURES_TYPE,
    PING_TYPE,
    Connection,
    InFlightLimitChanged,
    MessageReceived,
    RequestReceived,
    ResponseReceived,
)
from scp2p.transport.frames import (
    DIRECT_THRESHOLD,
    FrameReader,
    encode_envelope_frame,
    parse_envelope,
)
from scp2p.transport.handshake import Handshake, HandshakeState, Role, binding_nonce
from scp2p.transport.hello import encode_hello_frame, make_hello
from scp2p.wire import messages as m
from scp2p.wire.framing import encode_frame
from scp2p.wire.records import Capabilities, Envelope


def _hs(vectors):
    return vectors["handshake"][0]


def _pair(t):
    ik = NodeKey(bytes.fromhex(t["initiator_secret_seed"]))
    rk = NodeKey(bytes.fromhex(t["responder_secret_seed"]))
    s = t["steps"]
    ini = Handshake(
        Role.INITIATOR, ik, Capabilities(**s[0]["capabilities"]),
        timestamp=s[0]["timestamp"], nonce=bytes.fromhex(t["initiator_nonce"]),
        expected_pubkey=bytes.fromhex(t["responder_pubkey"]),
    )  # fmt: skip
    resp = Handshake(
        Role.RESPONDER, rk, Capabilities(**s[1]["capabilities"]),
        timestamp=s[1]["timestamp"], nonce=bytes.fromhex(t["responder_nonce"]),
    )  # fmt: skip
    return ini, resp


# --------------------------------------------------------------------------- handshake transcript
@pytest.mark.parametrize("chunk", [None, 1, 7])
def test_transcript_byte_for_byte(vectors, chunk):
    for t in vectors["handshake"]:
        s = t["steps"]
        ini, resp = _pair(t)
        f1 = ini.initiate()
        assert f1.hex() == s[0]["frame"]
        out = b""
        if chunk is None:
            out = resp.receive_data(f1)
        else:
            for i in range(0, len(f1), chunk):
                out += resp.receive_data(f1[i : i + chunk])
        assert out.hex() == s[1]["frame"]
        assert resp.done and resp.result.remote_pubkey.hex() == t["initiator_pubkey"]
        # the responder's hello plus the first envelope frame arrive together
        env_frames = bytes.fromhex(s[2]["frame"]) + bytes.fromhex(s[3]["frame"])
        stream = out + env_frames
        if chunk is None:
            ini.receive_data(stream)
        else:
            for i in range(0, len(stream), chunk):
                ini.receive_data(stream[i : i + chunk])
        assert ini.done and ini.result.remote_pubkey.hex() == t["responder_pubkey"]
        assert ini.leftover() == env_frames
        assert ini.result.local_hello.signature.hex() == s[0]["signature"]
        assert resp.result.local_hello.signature.hex() == s[1]["signature"]


def test_transcript_envelopes_reproduced(vectors):
    s = _hs(vectors)["steps"]
    req = m.PexRequest(64)
    assert encode_envelope_frame(101, 1, 0, m.encode_payload(req)).hex() == s[2]["frame"]
    # the core emits the same bytes for a request
    c = Connection(initiator=True, now=0.0, probe_features=False)
    c.send_request(101, m.encode_payload(req), 0.0)
    assert b"".join(bytes(p) for p in c.data_to_send()).hex() == s[2]["frame"]
    # and parses the response
    c.receive_data(bytes.fromhex(s[3]["frame"]), 0.0)
    ev = c.next_event()
    assert isinstance(ev, ResponseReceived) and ev.envelope.req_id == 1
    offer = m.decode_payload(ev.envelope.type, ev.envelope.payload, True)
    assert isinstance(offer, m.PexOffer) and offer.peers[0].port == 7001


def test_negative_handshake_vectors(vectors):
    rk_pub = bytes.fromhex(_hs(vectors)["responder_pubkey"])
    key = NodeKey(bytes(range(32)))
    for case in vectors["negative"]:
        if case["action"] != "initiator_verify_hello":
            continue
        exp = case["expected_pubkey"]
        hs = Handshake(
            Role.INITIATOR, key, Capabilities(), timestamp=0,
            nonce=bytes.fromhex(case["initiator_nonce"]), expected_pubkey=bytes.fromhex(exp) if exp else None,
        )  # fmt: skip
        hs.initiate()
        frame = bytes.fromhex(case["frame"])
        if case["expect"] == "accept":
            hs.receive_data(frame)
            assert hs.done and hs.result.remote_pubkey == rk_pub
        else:
            with pytest.raises(HandshakeError):
                hs.receive_data(frame)
            assert hs.state is HandshakeState.FAILED


def _keys():
    return NodeKey(b"\x01" * 32), NodeKey(b"\x02" * 32)


def test_responder_rejects_bad_hellos():
    a, b = _keys()
    good = make_hello(a, Capabilities(), b"\x05" * 32, None, 1)
    # bad signature
    bad = make_hello(a, Capabilities(), b"\x05" * 32, None, 1)
    bad = type(bad)(bad.node_pubkey, bad.capabilities, bad.nonce, None, 2, bad.signature)
    # an initiator hello must not echo
    echo = make_hello(a, Capabilities(), b"\x05" * 32, b"\x06" * 32, 1)
    for hello, err in ((bad, HandshakeError), (echo, HandshakeError)):
        r = Handshake(Role.RESPONDER, b, Capabilities(), timestamp=1, nonce=b"\x07" * 32)
        with pytest.raises(err):
            r.receive_data(encode_hello_frame(hello))
        assert r.state is HandshakeState.FAILED
    # unexpected key, and ourselves
    r = Handshake(Role.RESPONDER, b, Capabilities(), timestamp=1, nonce=b"\x07" * 32, expected_pubkey=b"\x09" * 32)
    with pytest.raises(HandshakeError):
        r.receive_data(encode_hello_frame(good))
    r = Handshake(Role.RESPONDER, a, Capabilities(), timestamp=1, nonce=b"\x07" * 32)
    with pytest.raises(HandshakeError, match="ourselves"):
        r.receive_data(encode_hello_frame(good))


def test_oversize_and_garbage_hello():
    _a, b = _keys()
    r = Handshake(Role.RESPONDER, b, Capabilities(), timestamp=1, nonce=b"\x07" * 32)
    with pytest.raises(FrameTooLarge):
        r.receive_data((64 * 1024 + 1).to_bytes(4, "big") + b"\xa6")  # rejected from the header alone
    assert r.state is HandshakeState.FAILED
    r = Handshake(Role.RESPONDER, b, Capabilities(), timestamp=1, nonce=b"\x07" * 32)
    with pytest.raises(DecodeError):
        r.receive_data(encode_frame(os.urandom(50)))
    r = Handshake(Role.RESPONDER, b, Capabilities(), timestamp=1, nonce=b"\x07" * 32)
    with pytest.raises(DecodeError):  # an envelope where a hello belongs
        r.receive_data(encode_envelope_frame(101, 1, 0, b"\xa0"))


def test_channel_binding_replay_rejected():
    a, b = _keys()
    chan1, chan2 = b"\x11" * 32, b"\x22" * 32
    # honest exchange on channel 1
    i1 = Handshake(Role.INITIATOR, a, Capabilities(), timestamp=5, binding=chan1)
    r1 = Handshake(Role.RESPONDER, b, Capabilities(), timestamp=5, binding=chan1)
    hello_i = i1.initiate()
    hello_r = r1.receive_data(hello_i)
    i1.receive_data(hello_r)
    assert i1.done and r1.done and i1.result.bound
    assert i1.nonce == binding_nonce(chan1, Role.INITIATOR)
    # a relay replays the initiator's hello onto its own channel 2 with the responder
    r2 = Handshake(Role.RESPONDER, b, Capabilities(), timestamp=5, binding=chan2)
    with pytest.raises(ChannelBindingError):
        r2.receive_data(hello_i)
    # ... or replays the responder's hello to an initiator on channel 2
    i2 = Handshake(Role.INITIATOR, a, Capabilities(), timestamp=5, binding=chan2)
    i2.initiate()
    with pytest.raises(HandshakeError):  # neither the echoed nonce nor the binding match
        i2.receive_data(hello_r)
    # an unbound (random-nonce) hello is refused on a bound channel
    r3 = Handshake(Role.RESPONDER, b, Capabilities(), timestamp=5, binding=chan1)
    plain = Handshake(Role.INITIATOR, a, Capabilities(), timestamp=5, nonce=os.urandom(32)).initiate()
    with pytest.raises(ChannelBindingError):
        r3.receive_data(plain)
    # a responder hello with the right echo but a nonce not bound to this channel
    i3 = Handshake(Role.INITIATOR, a, Capabilities(), timestamp=5, binding=chan1)
    i3.initiate()
    forged = make_hello(b, Capabilities(), os.urandom(32), i3.nonce, 5)
    with pytest.raises(ChannelBindingError):
        i3.receive_data(encode_hello_frame(forged))
    with pytest.raises(ValueError):
        Handshake(Role.INITIATOR, a, Capabilities(), timestamp=5, binding=chan1, nonce=b"\x00" * 32)


# --------------------------------------------------------------------------- frame reader
def _frames(sizes):
    return [os.urandom(n) for n in sizes]


@pytest.mark.parametrize("mode", ["feed", "buffered"])
def test_frame_reader_random_splits(mode):
    rnd = random.Random(4)
    bodies = _frames([0, 1, 3, 100, DIRECT_THRESHOLD - 1, DIRECT_THRESHOLD, 70_000, 262_300, 5, 2 * 1024 * 1024])
    stream = b"".join(encode_frame(b) for b in bodies)
    r = FrameReader()
    got = []
    i = 0
    while i < len(stream):
        n = rnd.choice([1, 2, 5, 100, 4096, 65536, 300_000])
        if mode == "feed":
            r.feed(stream[i : i + n])
            i += n
        else:
            buf = r.get_buffer()
            k = min(len(buf), n, len(stream) - i)
            buf[:k] = stream[i : i + k]
            r.buffer_updated(k)
            i += k
        while r.frames:
            got.append(bytes(r.frames.popleft()))
    assert got == bodies
    assert r.buffered == 0


def test_frame_reader_byte_by_byte_and_limit_before_allocation():
    bodies = _frames([10, 20_000, 0])
    stream = b"".join(encode_frame(b) for b in bodies)
    r = FrameReader()
    for i in range(len(stream)):
        r.feed(stream[i : i + 1])
    assert [bytes(f) for f in r.frames] == bodies
    r = FrameReader(limit=1000)
    with pytest.raises(FrameTooLarge):
        r.feed((2**32 - 1).to_bytes(4, "big"))  # 4 GiB announced: rejected, nothing allocated
    assert r._big is None
    r = FrameReader(limit=2 * 1024 * 1024)
    with pytest.raises(FrameTooLarge):
        r.feed(bytes.fromhex("00200001a4"))  # the vectors' frame-too-large


def test_frame_reader_single_mode():
    r = FrameReader(limit=100, single=True)
    r.feed(encode_frame(b"x" * 10) + encode_frame(b"y" * 500))
    assert [bytes(f) for f in r.frames] == [b"x" * 10]
    r.frames.clear()
    r.limit, r.single = 1000, False
    r.resume()
    assert [bytes(f) for f in r.frames] == [b"y" * 500]


# --------------------------------------------------------------------------- envelope fast path
@pytest.mark.parametrize(
    "t,rid,fl,n",
    [(0, 0, 0, 0), (23, 24, 1, 23), (255, 256, 3, 24), (501, 65535, 1, 255), (65535, 65536, 65535, 256),
     (100, 2**32 - 1, 2, 65536), (501, 7, 1, 262_200)],
)  # fmt: skip
def test_envelope_fast_path_matches_codec(t, rid, fl, n):
    payload = os.urandom(n)
    frame = encode_envelope_frame(t, rid, fl, payload)
    assert frame == encode_frame(m.encode_envelope(Envelope(t, rid, fl, payload)))
    env = parse_envelope(frame[4:])
    assert (env.type, env.req_id, env.flags, bytes(env.payload)) == (t, rid, fl, payload)


def test_envelope_generic_fallback_and_errors(vectors):
    # keys in another order: the generic decoder accepts it
    import cbor2

    body = cbor2.dumps({"payload": b"\xa0", "flags": 0, "req_id": 3, "type": 101})
    env = parse_envelope(body)
    assert (env.type, env.req_id, bytes(env.payload)) == (101, 3, b"\xa0")
    for case in vectors["negative"]:
        if case["action"] == "decode_envelope" and case.get("bytes"):
            with pytest.raises(DecodeError):
                parse_envelope(bytes.fromhex(case["bytes"]))
    big = encode_envelope_header_for_oversize()
    with pytest.raises(DecodeError):
        parse_envelope(big)


def encode_envelope_header_for_oversize() -> bytes:
    import cbor2

    return cbor2.dumps({"type": 501, "req_id": 1, "flags": 1, "payload": bytes(1024 * 1024 + 1)})


# --------------------------------------------------------------------------- session core
def _wire(a: Connection, b: Connection, now: float = 0.0) -> list:
    """Move a's output into b and collect b's events."""
    for p in a.data_to_send():
        b.receive_data(bytes(p), now)
    out = []
    while (ev := b.next_event()) is not None:
        out.append(ev)
    return out


def test_features_probe_between_our_nodes():
    a = Connection(initiator=True, now=0.0, max_in_flight=8)
    b = Connection(initiator=False, now=0.0, max_in_flight=16)
    assert not a.can_send_request  # the probe is out, one at a time until answered
    assert _wire(a, b) == [InFlightLimitChanged(8)]
    assert b.peer_pipelines and b.remote_max_in_flight == 8
    assert _wire(b, a) == [InFlightLimitChanged(8)]
    assert a.remote_max_in_flight == 8 and a.can_send_request


def test_v01_peer_gets_one_request_at_a_time_and_in_order_answers():
    a = Connection(initiator=True, now=0.0)
    # a v0.1 peer answers the FEATURES probe with an error response
    probe = parse_envelope(b"".join(bytes(p) for p in a.data_to_send())[4:])
    assert probe.type == FEATURES_TYPE
    a.receive_data(encode_envelope_frame(FEATURES_TYPE, probe.req_id, 3, b"unknown message type"), 0.0)
    assert a.next_event() == InFlightLimitChanged(1)
    assert a.remote_max_in_flight == 1 and a.can_send_request
    a.send_request(101, b"\xa0", 0.0)
    assert not a.can_send_request

    # as a responder to a v0.1 peer: responses leave in request order
    srv = Connection(initiator=False, now=0.0)
    for rid in (5, 6, 7):
        srv.receive_data(encode_envelope_frame(101, rid, 0, b"\xa1"), 0.0)
    evs = [srv.next_event() for _ in range(3)]
    assert all(isinstance(e, RequestReceived) for e in evs)
    srv.send_response(evs[2].seq, 100, 7, 1, b"c", 0.0)
    srv.send_response(evs[1].seq, 100, 6, 1, b"b", 0.0)
    assert srv.data_to_send() == []  # held until the first is answered
    srv.send_response(evs[0].seq, 100, 5, 1, b"a", 0.0)
    out = b"".join(bytes(p) for p in srv.data_to_send())
    r = FrameReader()
    r.feed(out)
    assert [parse_envelope(f).req_id for f in r.frames] == [5, 6, 7]


def test_pipelining_peer_answered_out_of_order():
    srv = Connection(initiator=False, now=0.0)
    cli = Connection(initiator=True, now=0.0)
    _wire(cli, srv)
    _wire(srv, cli)
    for _ in range(3):
        cli.send_request(500, b"\xa0", 0.0)
    evs = _wire(cli, srv)
    srv.send_response(evs[2].seq, 501, evs[2].envelope.req_id, 1, b"z", 0.0)
    got = _wire(srv, cli)
    assert [e.envelope.req_id for e in got] == [evs[2].envelope.req_id]
    assert srv.unanswered == 2


def test_req_ids_wrap_skip_in_flight_and_late_responses_dropped():
    c = Connection(initiator=True, now=0.0, probe_features=False)
    c._next_req = 2**32 - 2
    ids = [c.send_request(101, b"", 0.0) for _ in range(3)]
    assert ids == [2**32 - 2, 2**32 - 1, 1]
    c._next_req = 2**32 - 1
    assert c.send_request(101, b"", 0.0) == 2  # 2**32-1 and 1 still in flight
    c.forget_request(1)
    c.receive_data(encode_envelope_frame(100, 1, 1, b"\xa1"), 0.0)
    assert c.next_event() is None and c.late_responses == 1
    c.receive_data(encode_envelope_frame(7, 0, 0, b""), 0.0)
    assert isinstance(c.next_event(), MessageReceived)


def test_keepalive_and_idle_on_a_synthetic_clock():
    c = Connection(initiator=True, now=0.0, probe_features=False, keepalive_interval=10, keepalive_timeout=5,
                   idle_timeout=100)  # fmt: skip
    assert c.deadline() == 10
    assert c.handle_timer(10.0) is None
    ping = parse_envelope(b"".join(bytes(p) for p in c.data_to_send())[4:])
    assert ping.type == PING_TYPE
    assert c.deadline() == 15
    # a v0.1 peer answers the unknown type with an error: still proof of life
    c.receive_data(encode_envelope_frame(PING_TYPE, ping.req_id, 3, b"unknown"), 12.0)
    assert c.next_event() is None
    assert c.deadline() == 22
    assert c.handle_timer(22.0) is None
    c.data_to_send()
    assert c.handle_timer(27.0) == "keepalive timeout: peer silent"
    # idle
    d = Connection(initiator=False, now=0.0, idle_timeout=30)
    assert d.deadline() == 30
    d.receive_data(encode_envelope_frame(101, 1, 0, b"\xa0"), 20.0)
    ev = d.next_event()
    assert d.deadline() is None  # a request is being served
    d.send_response(ev.seq, 100, 1, 1, b"\xa0", 25.0)
    assert d.deadline() == 55
    assert d.handle_timer(55.0) == "idle timeout"


def test_ping_answered_and_bad_envelopes_are_protocol_violations():
    c = Connection(initiator=False, now=0.0)
    c.receive_data(encode_envelope_frame(PING_TYPE, 9, 0, b""), 0.0)
    assert c.next_event() is None
    env = parse_envelope(b"".join(bytes(p) for p in c.data_to_send())[4:])
    assert (env.type, env.req_id, env.flags) == (PING_TYPE, 9, 1)
    c.receive_data(encode_frame(b"\xa4\x64type"), 0.0)
    with pytest.raises(ProtocolViolation):
        c.next_event()
    c2 = Connection(initiator=False, now=0.0)
    with pytest.raises(ProtocolViolation):
        c2.receive_data(bytes.fromhex("00200001a4"), 0.0)


@pytest.mark.parametrize("n", [0, 100, 4096, 70_000, 262_144, 1_048_000])
def test_chunk_data_zero_copy_parts_match_the_codec(n):
    from scp2p.transport.dispatch import encode_payload_parts

    c = m.ChunkData(os.urandom(32), 5 + n, os.urandom(n))
    parts = encode_payload_parts(c)
    joined = b"".join(parts) if isinstance(parts, tuple) else parts
    assert joined == m.encode_payload(c)
    if n >= 4096:
        assert parts[1] is c.bytes  # the data itself is not copied
    conn = Connection(initiator=False, now=0.0)
    conn.receive_data(encode_envelope_frame(500, 3, 0, m.encode_payload(m.GetChunk(c.content_id, 1))), 0.0)
    ev = conn.next_event()
    conn.send_response(ev.seq, 501, 3, 1, parts, 0.0)
    out = b"".join(bytes(p) for p in conn.data_to_send())
    assert out == encode_frame(m.encode_envelope(Envelope(501, 3, 1, m.encode_payload(c))))


# --------------------------------------------------------------------------- fuzz: only the peer's error
from hypothesis import given  # noqa: E402
from hypothesis import strategies as st  # noqa: E402


@given(st.lists(st.binary(max_size=300), max_size=8))
def test_fuzz_connection_only_protocol_violation(chunks):
    c = Connection(initiator=False, now=0.0)
    try:
        for ch in chunks:
            c.receive_data(ch, 0.0)
            while c.next_event() is not None:
                pass
    except ProtocolViolation:
        pass


@given(st.binary(max_size=600), st.sampled_from([Role.INITIATOR, Role.RESPONDER]))
def test_fuzz_handshake_only_handshake_or_decode_errors(data, role):
    key = NodeKey(b"\x03" * 32)
    hs = Handshake(role, key, Capabilities(), timestamp=1, nonce=b"\x04" * 32)
    if role is Role.INITIATOR:
        hs.initiate()
    try:
        hs.receive_data(len(data).to_bytes(4, "big") + data)
    except (HandshakeError, DecodeError):
        assert hs.state is HandshakeState.FAILED
