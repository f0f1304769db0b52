"""The CBOR codec twins: native (``scp2p.wire._codec_c``) against the pure reference.

(a) the native twin is live unless ``SCP2P_NO_EXTENSIONS=1``;
(b) every ``wire`` and ``signatures`` vector goes through both twins;
(c) cross tests: encode with one twin, decode with the other;
(d) malformed inputs: both twins raise the same class, with the same path and offset.
"""

from __future__ import annotations

import gc
import ipaddress
import json
import os
import random
import sys
from pathlib import Path

import pytest

from scp2p import errors
from scp2p.errors import DecodeError, EncodeError, Scp2pError
from scp2p.wire import _codec_py
from scp2p.wire.messages import (
    Ack,
    ChunkData,
    FindValueResult,
    PexOffer,
    RelayRegister,
    RelayStream,
    Store,
    payload_classes,
)
from scp2p.wire.records import (
    Capabilities,
    Envelope,
    Hello,
    ItemV1,
    ManifestV1,
    PeerAddr,
    Providers,
    RelayKind,
    ShareHead,
    Transport,
)

NO_EXTENSIONS = os.environ.get("SCP2P_NO_EXTENSIONS", "").strip().lower() in {"1", "yes", "true", "on"}
NEEDS_NATIVE = pytest.mark.skipif(NO_EXTENSIONS, reason="SCP2P_NO_EXTENSIONS=1: native twin not in use")

if NO_EXTENSIONS:
    _codec_c = None
else:
    from scp2p.wire import _codec_c

VECTORS = json.loads((Path(__file__).resolve().parent.parent / "conformance" / "vectors.json").read_text(encoding="utf-8"))


def twins():
    out = [pytest.param(_codec_py, id="pure")]
    out.append(pytest.param(_codec_c, id="native", marks=NEEDS_NATIVE))
    return out


# --------------------------------------------------------------------------- (a)
def test_native_loaded():
    from scp2p.wire import codec

    if NO_EXTENSIONS:
        assert codec.BACKEND == "pure"
    else:
        assert codec.BACKEND == "native", "the native codec twin did not load (build it: pip install -e .)"
        assert codec.encode is _codec_c.encode


# --------------------------------------------------------------------------- (b)
def _wire_cases():
    for v in VECTORS["wire"]:
        yield pytest.param(v, id=v["name"])


@pytest.mark.parametrize("impl", twins())
@pytest.mark.parametrize("vec", list(_wire_cases()))
def test_wire_vectors(impl, vec):
    data = bytes.fromhex(vec["payload"])
    classes = (PeerAddr,) if vec["type"] is None else payload_classes(vec["type"])
    decoded = []
    for cls in classes:
        if cls is Ack:  # zero bytes on the wire, not a record
            continue
        try:
            obj = impl.decode(cls, data)
        except DecodeError:
            with pytest.raises(DecodeError):
                _codec_py.decode(cls, data)
            continue
        assert obj == _codec_py.decode(cls, data)
        assert type(obj) is cls
        assert impl.encode(obj) == data
        decoded.append(obj)
    assert decoded, f"no payload class of type {vec['type']} decodes {vec['name']}"
    # any bytes-like input
    cls = type(decoded[0])
    assert impl.decode(cls, bytearray(data)) == decoded[0]
    assert impl.decode(cls, memoryview(data)) == decoded[0]


@pytest.mark.parametrize("impl", twins())
@pytest.mark.parametrize("vec", [pytest.param(v, id=v["name"]) for v in VECTORS["signatures"]])
def test_signature_vectors(impl, vec):
    if vec["kind"] == "manifest":
        wire = bytes.fromhex(vec["wire_bytes"])
        m = impl.decode(ManifestV1, wire)
        assert m == _codec_py.decode(ManifestV1, wire)
        assert impl.encode(m) == wire
        assert impl.encode_signing(m, 10, True).hex() == vec["unsigned_bytes"]
        assert impl.encode_signing(m, 11, False).hex() == vec["manifest_id_preimage"]
        assert m.signature.hex() == vec["signature"]
    else:
        wire = bytes.fromhex(vec["dht_value_bytes"])
        h = impl.decode(ShareHead, wire)
        assert h == _codec_py.decode(ShareHead, wire)
        assert impl.encode(h) == wire
        assert impl.encode_signing(h, 4, True).hex() == vec["signable_bytes"]
        assert impl.encode_signing(h, 4, False).hex() == vec["signable_bytes"]
        assert h.sig.hex() == vec["signature"]


# --------------------------------------------------------------------------- (c)
def _rb(rng, n):
    return bytes(rng.randrange(256) for _ in range(n))


def make_manifest(n_items: int, seed: int = 5) -> ManifestV1:
    rng = random.Random(seed)
    items = tuple(
        ItemV1(
            content_id=_rb(rng, 32),
            size=rng.randrange(0, 1 << 40),
            name=f"file-{i:05d}-{'é' if i % 7 == 0 else ''}{rng.choice(['a', 'bb', 'ccc'])}.bin",
            mime=rng.choice([None, "text/plain", "application/octet-stream"]),
            tags=tuple(rng.sample(["x", "y", "music", "ünï", "z" * 30], rng.randint(0, 2))),
            chunks=tuple(_rb(rng, 32) for _ in range(rng.randint(0, 6))),
        )
        for i in range(n_items)
    )
    return ManifestV1(
        version=1,
        share_pubkey=_rb(rng, 32),
        share_id=bytes(range(32)),
        seq=2**64 - 1,
        created_at=1_700_000_000,
        expires_at=None,
        title="t" * 300,
        description=None,
        items=items,
        recommended_shares=(bytes(32), bytes([255] * 32)),
        signature=_rb(rng, 64),
    )


def _peer(i: int) -> PeerAddr:
    if i % 2:
        return PeerAddr(ipaddress.ip_address(f"10.0.{i}.1"), 1000 + i, Transport.QUIC, bytes([i]) * 32)
    return PeerAddr(ipaddress.ip_address(f"2001:db8::{i:x}"), 65535, Transport.TCP, None)


RECORDS = [
    pytest.param(make_manifest(3), id="manifest-3"),
    pytest.param(make_manifest(2000, seed=9), id="manifest-2000"),
    pytest.param(make_manifest(0), id="manifest-0"),
    pytest.param(PexOffer(tuple(_peer(i) for i in range(64))), id="pex-64"),
    pytest.param(Providers(bytes(32), tuple(_peer(i) for i in range(5)), 0), id="providers"),
    pytest.param(FindValueResult(Store(bytes(32), b"v" * 1000, 60), (_peer(1),)), id="find-value-hit"),
    pytest.param(FindValueResult(None, ()), id="find-value-miss"),
    pytest.param(RelayRegister(None), id="relay-register-new"),
    pytest.param(RelayRegister(2**64 - 1), id="relay-register-max"),
    pytest.param(RelayStream(1, 2, RelayKind.CONTENT, bytes(range(256)) * 3), id="relay-stream"),
    pytest.param(ChunkData(bytes(32), 2**32 - 1, b""), id="chunk-empty"),
    pytest.param(Envelope(501, 7, 1, b"\x00" * 70000), id="envelope"),
    pytest.param(
        Hello(bytes(32), Capabilities.desktop(relay=True), bytes([24]) * 32, None, 23, bytes([23, 24, 25]) * 21 + b"\x00"),
        id="hello",
    ),
]


@pytest.mark.parametrize("obj", RECORDS)
@NEEDS_NATIVE
def test_cross(obj):
    cls = type(obj)
    py = _codec_py.encode(obj)
    c = _codec_c.encode(obj)
    assert c == py
    assert _codec_c.decode(cls, py, max_size=sys.maxsize) == obj
    assert _codec_py.decode(cls, c, max_size=sys.maxsize) == obj
    for n in range(len(cls.__wire_fields__) + 1):
        for nested in (False, True):
            assert _codec_c.encode_signing(obj, n, nested) == _codec_py.encode_signing(obj, n, nested)


@NEEDS_NATIVE
def test_cross_byte_string_fixed_and_any_buffer():
    """FIXED fields also decode from byte strings; inputs may be bytearray / memoryview."""
    m = make_manifest(4)
    data = _codec_py.encode(m)
    # rewrite share_id (an array of 32 uints) as a byte string of 32 bytes
    arr = _codec_py.encode_signing(m, 3, True)[1:]
    bs_form = data.replace(b"\x98\x20" + bytes(range(24)) + b"".join(bytes([24, b]) for b in range(24, 32)),
                           b"\x58\x20" + bytes(range(32)))  # fmt: skip
    assert bs_form != data and arr
    for buf in (bs_form, bytearray(bs_form), memoryview(bs_form), memoryview(b"xx" + bs_form)[2:]):
        assert _codec_c.decode(ManifestV1, buf) == m == _codec_py.decode(ManifestV1, buf)


@NEEDS_NATIVE
def test_decoded_tree_gc():
    """Decoded records holding only atomic values are left untracked; others tracked."""
    m = _codec_c.decode(ManifestV1, _codec_py.encode(make_manifest(3)))
    assert not gc.is_tracked(m.items[0])
    p = _codec_c.decode(PexOffer, _codec_py.encode(PexOffer((_peer(1),))))
    assert gc.is_tracked(p) and gc.is_tracked(p.peers) and gc.is_tracked(p.peers[0])
    gc.collect()
    assert p.peers[0].ip == ipaddress.ip_address("10.0.1.1")


def _bad(obj, **changes):
    """A record with invalid values, built without validation."""
    new = object.__new__(type(obj))
    for f in type(obj).__wire_fields__:
        object.__setattr__(new, f.name, changes.get(f.name, getattr(obj, f.name)))
    return new


BAD_RECORDS = [
    _bad(_CD := ChunkData(bytes(32), 1, b""), content_id=bytes(31)),
    _bad(_CD, content_id="x" * 32),
    _bad(_CD, content_id=None),
    _bad(_CD, chunk_index=-1),
    _bad(_CD, chunk_index=2**32),
    _bad(_CD, chunk_index=True),
    _bad(_CD, chunk_index=1.0),
    _bad(_CD, bytes="abc"),
    _bad(_CD, bytes=b"x" * (1024 * 1024 + 1)),
    _bad(make_manifest(3), items=(make_manifest(1).items[0], _bad(make_manifest(1).items[0], name=b"x"))),
    _bad(make_manifest(3), items=(make_manifest(1).items[0], _bad(make_manifest(1).items[0], chunks=(bytes(32), 5)))),
    _bad(make_manifest(3), items="abc"),
    _bad(make_manifest(3), items=(1,)),
    _bad(make_manifest(3), title="\udc80"),
    _bad(make_manifest(3), seq=2**64),
    _bad(PeerAddr(ipaddress.ip_address("1.2.3.4"), 1), ip="1.2.3.4"),
    _bad(PeerAddr(ipaddress.ip_address("1.2.3.4"), 1), transport="udp"),
    _bad(Capabilities(), relay=1),
    _bad(PexOffer(tuple(_peer(i) for i in range(3))), peers=tuple(_peer(i) for i in range(65))),
]


@pytest.mark.parametrize("obj", BAD_RECORDS)
@NEEDS_NATIVE
def test_encode_errors_match(obj):
    for fn in (lambda m: m.encode(obj), lambda m: m.encode_signing(obj, len(type(obj).__wire_fields__), True)):
        with pytest.raises(EncodeError) as ep:
            fn(_codec_py)
        with pytest.raises(EncodeError) as ec:
            fn(_codec_c)
        assert type(ec.value) is type(ep.value)
        assert ec.value.path == ep.value.path
        assert str(ec.value) == str(ep.value)


@NEEDS_NATIVE
def test_encode_misc_errors_match():
    for impl in (_codec_py, _codec_c):
        with pytest.raises(EncodeError, match="is not a wire record"):
            impl.encode(object())
        with pytest.raises(EncodeError) as e:
            impl.encode_signing(Capabilities(), 6, True)
        assert e.value.path == "Capabilities"
        with pytest.raises(TypeError):
            impl.decode(object, b"\xa0")


# --------------------------------------------------------------------------- (d)
def _outcome(impl, cls, data, max_size=None):
    try:
        return ("ok", impl.decode(cls, data, max_size=max_size))
    except DecodeError as exc:
        return (type(exc), exc.path, exc.offset)


def _same(cls, data, max_size=None):
    p = _outcome(_codec_py, cls, data, max_size)
    c = _outcome(_codec_c, cls, data, max_size)
    assert c == p, f"{cls.__name__} {data.hex()}: pure {p}, native {c}"
    return p


def _vector_inputs():
    out = []
    for v in VECTORS["wire"]:
        cls = PeerAddr if v["type"] is None else payload_classes(v["type"])[-1]
        if cls is Ack:
            cls = payload_classes(v["type"])[0]
        out.append((v["name"], cls, bytes.fromhex(v["payload"])))
    for v in VECTORS["signatures"]:
        if v["kind"] == "manifest":
            out.append((v["name"], ManifestV1, bytes.fromhex(v["wire_bytes"])))
        else:
            out.append((v["name"], ShareHead, bytes.fromhex(v["dht_value_bytes"])))
    return out


VECTOR_INPUTS = _vector_inputs()


@NEEDS_NATIVE
@pytest.mark.parametrize("name,cls,data", [pytest.param(*x, id=x[0]) for x in VECTOR_INPUTS])
def test_truncations_and_flips(name, cls, data):
    for n in range(len(data)):
        r = _same(cls, data[:n])
        assert r[0] != "ok"
    _same(cls, data + b"\x00")
    for i in range(len(data)):
        for flip in (0x01, 0x20, 0x80, 0xFF):
            mutated = bytearray(data)
            mutated[i] ^= flip
            _same(cls, bytes(mutated))
        for val in (0x18, 0x1C, 0x1F, 0x5F, 0x9F, 0xBF, 0xF6, 0xF5, 0x00, 0x7F, 0xFB):
            mutated = bytearray(data)
            mutated[i] = val
            _same(cls, bytes(mutated))


@NEEDS_NATIVE
def test_random_mutations():
    rng = random.Random(1234)
    for _ in range(3000):
        name, cls, data = rng.choice(VECTOR_INPUTS)
        buf = bytearray(data)
        for _ in range(rng.randint(1, 4)):
            op = rng.randrange(4)
            if op == 0 and buf:
                buf[rng.randrange(len(buf))] = rng.randrange(256)
            elif op == 1:
                buf.insert(rng.randrange(len(buf) + 1), rng.randrange(256))
            elif op == 2 and buf:
                del buf[rng.randrange(len(buf))]
            else:
                i = rng.randrange(len(buf) + 1)
                buf[i:i] = bytes(rng.randrange(256) for _ in range(rng.randint(1, 9)))
        _same(cls, bytes(buf))
    for _ in range(2000):  # pure noise
        _same(rng.choice([ManifestV1, PeerAddr, Hello, Envelope, PexOffer]), _rb(rng, rng.randint(0, 40)))


def _cbor_map(*pairs) -> bytes:
    out = bytes([0xA0 + len(pairs)]) if len(pairs) < 24 else bytes([0xB8, len(pairs)])
    for k, v in pairs:
        out += bytes([0x60 + len(k)]) + k.encode() + v
    return out


_ID = b"\x98\x20" + bytes(32)
_CAPS = _cbor_map(*[(k, b"\xf4") for k in ("dht", "store", "relay", "content_seed", "mobile_light")])
_DEEP = b"\x81" * 40 + b"\x00"

MALFORMED = [
    ("empty", Capabilities, b""),
    ("not-a-map", Capabilities, b"\x80"),
    ("indefinite-map", Capabilities, b"\xbf\xff"),
    ("reserved-info", Capabilities, b"\xbc"),
    ("huge-count", Capabilities, b"\xbb\xff\xff\xff\xff\xff\xff\xff\xff"),
    ("non-text-key", Capabilities, b"\xa1\x01\xf4"),
    ("key-past-end", Capabilities, b"\xa1\x78\x30abc"),
    ("dup-known", Capabilities, _cbor_map(("dht", b"\xf4"), ("dht", b"\xf4"))),
    ("dup-unknown", Capabilities, _CAPS[:1].replace(b"\xa5", b"\xa7") + _CAPS[1:] + b"\x61x\x00\x61x\x00"),
    ("missing", Capabilities, _cbor_map(("dht", b"\xf4"))),
    ("unknown-ok", Capabilities, b"\xa6" + _CAPS[1:] + b"\x61q" + b"\x81" * 30 + b"\x00"),
    ("unknown-deep", Capabilities, b"\xa6" + _CAPS[1:] + b"\x61q" + _DEEP),
    ("unknown-deep-first", Capabilities, b"\xa6\x61q" + _DEEP + _CAPS[1:]),
    ("unknown-deep-map", Capabilities, b"\xa6\x61q" + b"\xa1\x00" * 40 + b"\x00" + _CAPS[1:]),
    ("unknown-deep-tag", Capabilities, b"\xa6\x61q" + b"\xc1" * 40 + b"\x00" + _CAPS[1:]),
    ("unknown-31", Capabilities, b"\xa6\x61q" + b"\x81" * 31 + b"\x00" + _CAPS[1:]),
    ("unknown-32", Capabilities, b"\xa6\x61q" + b"\x81" * 32 + b"\x00" + _CAPS[1:]),
    ("unknown-33", Capabilities, b"\xa6\x61q" + b"\x81" * 33 + b"\x00" + _CAPS[1:]),
    ("unknown-array-too-long", Capabilities, b"\xa6\x61q\x9a\xff\xff\xff\xff" + _CAPS[1:]),
    ("unknown-bytes-too-long", Capabilities, b"\xa6\x61q\x5a\xff\xff\xff\xff" + _CAPS[1:]),
    ("unknown-map-too-long", Capabilities, b"\xa6\x61q\xba\xff\xff\xff\xff" + _CAPS[1:]),
    ("unknown-float", Capabilities, b"\xa6\x61q\xfb" + bytes(8) + _CAPS[1:]),
    ("bool-wrong", Capabilities, _CAPS.replace(b"\xf4", b"\x01", 1)),
    ("trailing", Capabilities, _CAPS + b"\x00"),
    ("uint-negative", RelayRegister, _cbor_map(("relay_slot_id", b"\x20"))),
    ("uint-text", RelayRegister, _cbor_map(("relay_slot_id", b"\x61a"))),
    ("uint-null-ok", RelayRegister, _cbor_map(("relay_slot_id", b"\xf6"))),
    ("uint-absent-ok", RelayRegister, b"\xa0"),
    ("uint-max-nonshortest", RelayRegister, _cbor_map(("relay_slot_id", b"\x1b" + b"\xff" * 8))),
    ("u8-over", payload_classes(101)[0], _cbor_map(("max_peers", b"\x19\x01\x00"))),
    ("u8-nonshortest", payload_classes(101)[0], _cbor_map(("max_peers", b"\x1a\x00\x00\x00\xff"))),
    ("fixed-short", Store, _cbor_map(("key", b"\x98\x1f" + bytes(31)), ("value", b"\x40"), ("ttl_secs", b"\x00"))),
    ("fixed-bytes-short", Store, _cbor_map(("key", b"\x58\x1f" + bytes(31)), ("value", b"\x40"), ("ttl_secs", b"\x00"))),
    ("fixed-bytes-past-end", Store, _cbor_map(("key", b"\x58\x20" + bytes(3)))),
    ("fixed-elem-256", Store, _cbor_map(("key", b"\x98\x20\x19\x01\x00" + bytes(31)), ("value", b"\x40"), ("ttl_secs", b"\x00"))),
    ("fixed-elem-neg", Store, _cbor_map(("key", b"\x98\x20" + bytes(31) + b"\x20"), ("value", b"\x40"), ("ttl_secs", b"\x00"))),
    ("fixed-elem-text", Store, _cbor_map(("key", b"\x98\x20" + bytes(5) + b"\x60" + bytes(26)), ("value", b"\x40"), ("ttl_secs", b"\x00"))),
    ("fixed-elem-nonshortest", Store, _cbor_map(("key", b"\x98\x20" + b"\x19\x00\xff" * 32), ("value", b"\x40"), ("ttl_secs", b"\x00"))),
    ("fixed-elem-24-at-end", Store, _cbor_map(("key", b"\x98\x20" + bytes(31) + b"\x18"))),
    ("fixed-truncated", Store, _cbor_map(("key", b"\x98\x20" + bytes(10)))),
    ("fixed-wrong-type", Store, _cbor_map(("key", b"\xa0"))),
    ("bytes-too-long", Store, _cbor_map(("key", _ID), ("value", b"\x5a\x00\x01\x00\x01" + bytes(65537)), ("ttl_secs", b"\x00"))),
    ("bytes-past-end", Store, _cbor_map(("key", _ID), ("value", b"\x59\x01\x00" + bytes(10)))),
    ("bytes-wrong-type", Store, _cbor_map(("key", _ID), ("value", b"\x60"))),
    ("list-wrong-type", PexOffer, _cbor_map(("peers", b"\xa0"))),
    ("list-over-limit", PexOffer, _cbor_map(("peers", b"\x98\x41" + b"\x00" * 65))),
    ("list-cannot-fit", PexOffer, _cbor_map(("peers", b"\x98\x30"))),
    ("list-elem-bad", PexOffer, _cbor_map(("peers", b"\x82\xa0\x01"))),
    ("ip-wrong-type", PeerAddr, _cbor_map(("ip", b"\x80"))),
    ("ip-two-entries", PeerAddr, _cbor_map(("ip", b"\xa2"))),
    ("ip-bad-key", PeerAddr, _cbor_map(("ip", b"\xa1\x62V5\x84\x00\x00\x00\x00"))),
    ("ip-int-key", PeerAddr, _cbor_map(("ip", b"\xa1\x01\x84\x00\x00\x00\x00"))),
    ("ip-v6-short", PeerAddr, _cbor_map(("ip", b"\xa1\x62V6\x84\x00\x00\x00\x00"))),
    ("ip-v4-bytes", PeerAddr, _cbor_map(("ip", b"\xa1\x62V4\x44\x7f\x00\x00\x01"), ("port", b"\x01"))),
    ("enum-unknown", PeerAddr, _cbor_map(("ip", b"\xa1\x62V4\x84\x00\x00\x00\x00"), ("port", b"\x01"), ("transport", b"\x63udp"))),
    ("enum-bad-utf8", PeerAddr, _cbor_map(("ip", b"\xa1\x62V4\x84\x00\x00\x00\x00"), ("port", b"\x01"), ("transport", b"\x62\xc3\x28"))),
    ("text-bad-utf8", ItemV1, _cbor_map(("name", b"\x63\xed\xa0\x80"))),
    ("text-past-end", ItemV1, _cbor_map(("name", b"\x6a" + b"ab"))),
    ("text-wrong-type", ItemV1, _cbor_map(("name", b"\x41a"))),
    ("nested-record-bad", FindValueResult, _cbor_map(("value", _cbor_map(("key", b"\x01"))))),
    ("nested-record-wrong", FindValueResult, _cbor_map(("value", b"\x80"))),
    ("nested-caps-bad", Hello, _cbor_map(("node_pubkey", _ID), ("capabilities", _CAPS.replace(b"\xf4", b"\xf6", 2)))),
    ("tag-value", Capabilities, _cbor_map(("dht", b"\xc1\xf4"))),
    ("break", Capabilities, b"\xff"),
    ("value-missing-at-end", Capabilities, b"\xa1\x63dht"),
]


@NEEDS_NATIVE
@pytest.mark.parametrize("name,cls,data", [pytest.param(*x, id=x[0]) for x in MALFORMED])
def test_malformed_table(name, cls, data):
    _same(cls, data)
    for n in range(len(data)):
        _same(cls, data[:n])


@NEEDS_NATIVE
def test_limits_match():
    data = bytes.fromhex(VECTORS["signatures"][0]["wire_bytes"])
    assert _same(ManifestV1, data, max_size=len(data))[0] == "ok"
    r = _same(ManifestV1, data, max_size=len(data) - 1)
    assert r[:2] == (errors.LimitExceeded, "ManifestV1")
    big = _codec_py.encode(make_manifest(4000, seed=3))
    assert len(big) > 1024 * 1024
    assert _same(ManifestV1, big)[0] is errors.LimitExceeded
    assert _same(ManifestV1, big, max_size=len(big))[0] == "ok"


@NEEDS_NATIVE
def test_error_paths_deep():
    """A bad chunk deep inside a big manifest: same path and offset in both twins."""
    m = make_manifest(50, seed=11)
    data = bytearray(_codec_py.encode(m))
    chunk = m.items[37].chunks[0] if m.items[37].chunks else None
    assert chunk is not None
    arr = b"\x98\x20" + b"".join(bytes([b]) if b < 24 else bytes([24, b]) for b in chunk)
    i = data.index(arr)
    data[i + 2 : i + 3] = b"\x39"  # a negative head inside the byte array
    r = _same(ManifestV1, bytes(data), max_size=sys.maxsize)
    assert r[0] in (errors.IntOutOfRange, errors.TruncatedInput, errors.WrongType)
    assert r[1].startswith("ManifestV1.items[37].chunks[0]")


def test_errors_are_scp2p_errors():
    assert issubclass(DecodeError, Scp2pError) and issubclass(EncodeError, Scp2pError)
