"""Codec behaviour, run against each twin: strict decoding, errors with paths, encoding checks."""

from __future__ import annotations

import ipaddress

import cbor2
import pytest

from scp2p import errors
from scp2p.limits import MAX_NESTING, MAX_PAYLOAD
from scp2p.wire.messages import ChunkData, FindNode, GetChunk, PexOffer, PexRequest, Store
from scp2p.wire.records import (
    Capabilities,
    Envelope,
    ItemV1,
    ManifestV1,
    PeerAddr,
    RelayKind,
    Transport,
)


def _item(i: int = 0, chunks: int = 2) -> ItemV1:
    return ItemV1(
        content_id=bytes([i % 256]) * 32,
        size=1000 + i,
        name=f"file-{i}.txt",
        mime="text/plain",
        tags=("a", "b"),
        chunks=tuple(bytes([(i + c) % 256]) * 32 for c in range(chunks)),
    )


def _manifest(n: int = 3) -> ManifestV1:
    return ManifestV1(
        version=1,
        share_pubkey=bytes(range(32)),
        share_id=bytes(range(32, 64)),
        seq=5,
        created_at=1_700_000_000,
        expires_at=None,
        title="t",
        description=None,
        items=tuple(_item(i) for i in range(n)),
        recommended_shares=(b"\x07" * 32,),
        signature=b"\x01" * 64,
    )


def test_roundtrip_manifest(codec):
    m = _manifest(5)
    data = codec.encode(m)
    assert codec.decode(ManifestV1, data) == m


def test_fixed_values_are_uint_arrays_and_shortest_ints(codec):
    data = codec.encode(FindNode(bytes([0, 23, 24, 255] + [9] * 16)))
    # map(1) "target_node_id" array(20) 0x00 0x17 0x18 0x18 0x18 0xff ...
    assert data.startswith(b"\xa1\x6etarget_node_id\x94\x00\x17\x18\x18\x18\xff\x09")
    assert codec.encode(PexRequest(23)) == b"\xa1\x69max_peers\x17"
    assert codec.encode(PexRequest(24)) == b"\xa1\x69max_peers\x18\x18"


def test_keys_in_any_order_and_unknown_keys_ignored(codec):
    raw = cbor2.dumps({"chunk_index": 3, "zzz": [1, {"x": [2.5, None, b"q"]}], "content_id": list(b"\x05" * 32)})
    assert codec.decode(GetChunk, raw) == GetChunk(b"\x05" * 32, 3)


def test_byte_string_accepted_for_fixed_value(codec):
    raw = cbor2.dumps({"content_id": b"\x05" * 32, "chunk_index": 1})
    assert codec.decode(GetChunk, raw) == GetChunk(b"\x05" * 32, 1)


def test_non_shortest_integers_accepted(codec):
    raw = b"\xa1\x69max_peers\x19\x00\x10"
    assert codec.decode(PexRequest, raw) == PexRequest(16)


def test_absent_nullable_reads_as_none(codec):
    raw = cbor2.dumps({"ip": {"V4": [10, 0, 0, 1]}, "port": 1, "transport": "quic"})
    p = codec.decode(PeerAddr, raw)
    assert p.pubkey_hint is None and p.transport is Transport.QUIC
    assert p.ip == ipaddress.IPv4Address("10.0.0.1")


@pytest.mark.parametrize(
    "raw, exc, path",
    [
        (cbor2.dumps({"max_peers": 256}), errors.IntOutOfRange, "PexRequest.max_peers"),
        (cbor2.dumps({"max_peers": -1}), errors.IntOutOfRange, "PexRequest.max_peers"),
        (cbor2.dumps({"max_peers": "x"}), errors.WrongType, "PexRequest.max_peers"),
        (cbor2.dumps({"max_peers": 1.0}), errors.WrongType, "PexRequest.max_peers"),
        (cbor2.dumps([1]), errors.WrongType, "PexRequest"),
        (cbor2.dumps({}), errors.MissingField, "PexRequest"),
        (b"\xa2\x69max_peers\x01\x69max_peers\x02", errors.DuplicateKey, "PexRequest"),
        (b"\xa3\x69max_peers\x01\x61z\x01\x61z\x02", errors.DuplicateKey, "PexRequest"),
        (b"\xa1\x01\x01", errors.WrongType, "PexRequest"),
        (b"\xa1\x69max_peers", errors.TruncatedInput, "PexRequest.max_peers"),
        (b"\xa1\x69max_peers\x18", errors.TruncatedInput, "PexRequest.max_peers"),
        (b"\xa1\x69max_peers\x01\x00", errors.TrailingBytes, "PexRequest"),
        (b"\xbf\x69max_peers\x01\xff", errors.MalformedCbor, "PexRequest"),
        (b"\xa1\x69max_peers\x1c", errors.MalformedCbor, "PexRequest.max_peers"),
        (b"", errors.TruncatedInput, "PexRequest"),
    ],
)
def test_decode_errors_are_specific(codec, raw, exc, path):
    with pytest.raises(exc) as info:
        codec.decode(PexRequest, raw)
    assert info.value.path == path
    assert isinstance(info.value, errors.Scp2pError)


def test_error_path_names_nested_field(codec):
    m = cbor2.loads(codec.encode(_manifest(3)))
    m["items"][2]["chunks"][1] = list(range(31))
    with pytest.raises(errors.WrongLength) as info:
        codec.decode(ManifestV1, cbor2.dumps(m))
    assert info.value.path == "ManifestV1.items[2].chunks[1]"
    assert "items[2].chunks[1]" in str(info.value)
    assert info.value.offset is not None


def test_invalid_utf8_rejected(codec):
    raw = codec.encode(_item()).replace(b"file-0.txt", b"file-\xff.txt")
    with pytest.raises(errors.MalformedCbor):
        codec.decode(ItemV1, raw)


def test_enum_and_ip_validation(codec):
    good = cbor2.loads(codec.encode(PeerAddr("::1", 9, Transport.QUIC)))
    bad_enum = dict(good, transport="udp")
    with pytest.raises(errors.InvalidValue):
        codec.decode(PeerAddr, cbor2.dumps(bad_enum))
    for ip in ({"V5": [1, 2, 3, 4]}, {"V4": [1, 2, 3, 4], "V6": [0] * 16}, {}):
        with pytest.raises(errors.InvalidValue):
            codec.decode(PeerAddr, cbor2.dumps(dict(good, ip=ip)))
    with pytest.raises(errors.WrongLength):
        codec.decode(PeerAddr, cbor2.dumps(dict(good, ip={"V4": [1, 2, 3]})))
    with pytest.raises(errors.IntOutOfRange):
        codec.decode(PeerAddr, cbor2.dumps(dict(good, ip={"V4": [1, 2, 3, 256]})))


def test_limits_checked_before_allocation(codec):
    # a byte string that claims 4 GiB in a 20-byte input: rejected by the limit, not by memory
    raw = b"\xa3\x6acontent_id\x58\x20" + b"\x00" * 32 + b"\x6bchunk_index\x01\x65bytes\x5a\xff\xff\xff\xff"
    with pytest.raises(errors.LimitExceeded) as info:
        codec.decode(ChunkData, raw)
    assert info.value.path == "ChunkData.bytes"
    # an array claiming 2**32 entries
    raw = b"\xa1\x65peers\x9a\xff\xff\xff\xff"
    with pytest.raises(errors.LimitExceeded):
        codec.decode(PexOffer, raw)  # above the 64-peer PEX limit
    with pytest.raises(errors.TruncatedInput):
        codec.decode(ManifestV1, b"\xa1\x65items\x9a\xff\xff\xff\xff")
    # the whole input above the record's limit
    big = b"\x00" * (MAX_PAYLOAD + 1)
    with pytest.raises(errors.LimitExceeded):
        codec.decode(ChunkData, big)
    with pytest.raises(errors.LimitExceeded):
        codec.decode(ChunkData, b"\x00" * 100, 10)


def test_pex_offer_limit(codec):
    peers = [PeerAddr("127.0.0.1", 1000 + i) for i in range(65)]
    raw = cbor2.dumps({"peers": [cbor2.loads(codec.encode(p)) for p in peers]})
    with pytest.raises(errors.LimitExceeded):
        codec.decode(PexOffer, raw)
    with pytest.raises(errors.EncodeError):
        PexOffer(peers)  # construction validates
    unchecked = object.__new__(PexOffer)
    object.__setattr__(unchecked, "peers", tuple(peers))
    with pytest.raises(errors.EncodeError) as info:
        codec.encode(unchecked)  # and so does the encoder
    assert info.value.path == "PexOffer.peers"


def test_nesting_limit_on_unknown_values(codec):
    deep = b"\x81" * (MAX_NESTING + 5) + b"\x00"
    raw = b"\xa2\x69max_peers\x01\x61z" + deep
    with pytest.raises(errors.LimitExceeded):
        codec.decode(PexRequest, raw)
    shallow = b"\x81" * (MAX_NESTING - 2) + b"\x00"
    assert codec.decode(PexRequest, b"\xa2\x69max_peers\x01\x61z" + shallow) == PexRequest(1)


def test_decode_accepts_any_buffer(codec):
    data = codec.encode(_manifest(2))
    assert codec.decode(ManifestV1, bytearray(data)) == codec.decode(ManifestV1, memoryview(data))


def test_envelope_payload_limit(codec):
    ok = Envelope(501, 1, 1, b"\0" * MAX_PAYLOAD)
    assert codec.decode(Envelope, codec.encode(ok)) == ok
    raw = cbor2.dumps({"type": 501, "req_id": 1, "flags": 1, "payload": b"\0" * (MAX_PAYLOAD + 1)})
    with pytest.raises(errors.LimitExceeded):
        codec.decode(Envelope, raw)


def test_signing_forms(codec):
    m = _manifest(1)
    arr = cbor2.loads(codec.encode_signing(m, 10, True))
    assert len(arr) == 10 and arr[0] == 1 and arr[8][0][2] == "file-0.txt"  # item as positional array
    pre = cbor2.loads(codec.encode_signing(m, 11, False))
    assert pre[8][0]["name"] == "file-0.txt" and pre[10] == [1] * 64  # item as map, signature last
    with pytest.raises(errors.EncodeError):
        codec.encode_signing(m, 12, False)


def test_encode_rejects_bad_values(codec):
    good = GetChunk(b"\x01" * 32, 0)
    for field, value in [("content_id", b"\x01" * 31), ("chunk_index", -1), ("chunk_index", 2**32),
                         ("chunk_index", True), ("content_id", "x" * 32)]:  # fmt: skip
        bad = object.__new__(GetChunk)
        object.__setattr__(bad, "content_id", good.content_id)
        object.__setattr__(bad, "chunk_index", good.chunk_index)
        object.__setattr__(bad, field, value)
        with pytest.raises(errors.EncodeError) as info:
            codec.encode(bad)
        assert info.value.path == f"GetChunk.{field}"
    with pytest.raises(errors.EncodeError):
        codec.encode(object())


def test_encode_error_path_inside_list(codec):
    m = _manifest(3)
    broken = object.__new__(ItemV1)
    for f in ("content_id", "size", "name", "mime", "tags", "chunks"):
        object.__setattr__(broken, f, getattr(m.items[1], f))
    object.__setattr__(broken, "tags", ("ok", 5))
    bad = object.__new__(ManifestV1)
    for f in ManifestV1.__dataclass_fields__:
        object.__setattr__(bad, f, getattr(m, f))
    object.__setattr__(bad, "items", (m.items[0], broken))
    with pytest.raises(errors.EncodeError) as info:
        codec.encode(bad)
    assert info.value.path == "ManifestV1.items[1].tags[1]"


def test_bools_and_relay_kinds(codec):
    caps = Capabilities.desktop(relay=True)
    assert codec.decode(Capabilities, codec.encode(caps)) == caps
    with pytest.raises(errors.WrongType):
        codec.decode(Capabilities, cbor2.dumps(dict(cbor2.loads(codec.encode(caps)), dht=1)))
    s = Store(b"\x02" * 32, b"v", 60)
    assert codec.decode(Store, codec.encode(s)) == s
    assert RelayKind("content") is RelayKind.CONTENT
