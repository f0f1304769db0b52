"""Message registry, payload and envelope helpers (PROTOCOL.md sections 4.4 and 5)."""

from __future__ import annotations

import pytest

from scp2p import errors
from scp2p.wire import messages as m
from scp2p.wire.records import FLAGS_ERROR_RESPONSE, Envelope, PeerAddr


def test_every_type_has_a_request_class_and_known_response():
    for t in m.MsgType:
        assert (t, False) in m.REGISTRY
        assert t in m.RESPONSE_TYPE
        resp = m.RESPONSE_TYPE[t]
        if resp is not None:
            assert (resp, True) in m.REGISTRY


def test_request_response_roundtrip():
    req = m.request_envelope(m.GetChunk(b"\x03" * 32, 1), req_id=7)
    assert req.type == m.MsgType.GET_CHUNK and req.flags == 0
    env, msg = m.decode_typed(m.encode_envelope(req))
    assert msg == m.GetChunk(b"\x03" * 32, 1)
    resp = m.response_envelope(env, m.ChunkData(b"\x03" * 32, 1, b"data"))
    assert (resp.type, resp.req_id, resp.flags) == (m.MsgType.CHUNK_DATA, 7, 1)
    assert m.decode_typed(m.encode_envelope(resp))[1].bytes == b"data"


def test_same_number_response_forms():
    find = m.request_envelope(m.FindNode(b"\x01" * 20), 3)
    resp = m.response_envelope(find, m.FindNodeResult((PeerAddr("127.0.0.1", 1),)))
    assert resp.type == 200 and m.decode_typed(m.encode_envelope(resp))[1].peers[0].port == 1
    store = m.request_envelope(m.Store(b"\x02" * 32, b"v", 60), 4)
    ack = m.response_envelope(store, m.ACK)
    assert ack.payload == b"" and m.decode_typed(m.encode_envelope(ack))[1] is m.ACK
    with pytest.raises(errors.TrailingBytes):
        m.decode_payload(m.MsgType.STORE, b"\xa0", response=True)


def test_error_envelope_and_unknown_type():
    err = m.error_envelope(400, 3, "manifest not found")
    assert err.flags == FLAGS_ERROR_RESPONSE and err.is_error and err.is_response
    assert m.encode_envelope(err).hex() == (
        "a46474797065190190667265715f69640365666c61677303677061796c6f6164526d616e6966657374206e6f7420666f756e64"
    )
    assert m.decode_typed(m.encode_envelope(err))[1] == "manifest not found"
    unknown = m.encode_envelope(Envelope(999, 5, 0, b"\xa0"))
    env = m.decode_envelope(unknown)  # the envelope itself decodes, so the server can answer
    assert env.type == 999
    with pytest.raises(errors.UnknownMessageType) as info:
        m.decode_typed(unknown)
    assert info.value.msg_type == 999
    long_reason = m.error_envelope(400, 1, "é" * 1_000_000)
    assert len(long_reason.payload) <= 1 << 20
    long_reason.payload.decode("utf-8")  # trimmed on a character boundary


def test_fire_and_forget_has_req_id_zero():
    env = m.request_envelope(m.HaveContent(b"\x03" * 32), 0)
    assert env.req_id == 0 and m.RESPONSE_TYPE[env.type] is None
