"""The native decoder's fast paths against the pure twin (same results, same errors).

* FIXED byte arrays: the mask-based path for element heads <= 0x18 (the AVX-512,
  SSSE3 and portable versions) and the checked loop it falls back to, over every element
  form and truncation;
* map keys in schema order, matched as whole encoded keys, and every departure from
  that order (out of order, duplicated, non-shortest key heads, unknown keys);
* the text cache of ``repeats`` fields (mime, tags): equal values, non-ASCII text,
  invalid UTF-8 and slot collisions give what the pure twin gives.
"""

from __future__ import annotations

import random

import pytest

from scp2p import _accel
from scp2p.errors import DecodeError
from scp2p.wire import _codec_py
from scp2p.wire.messages import Store
from scp2p.wire.records import ItemV1, ManifestV1, PeerAddr

pytestmark = pytest.mark.skipif(_accel.NO_EXTENSIONS, reason="SCP2P_NO_EXTENSIONS=1: native twin not in use")

if not _accel.NO_EXTENSIONS:
    from scp2p.wire import _codec_c


_PATHS = {"avx512": 2, "ssse3": 1, "scalar": 0}


@pytest.fixture(params=list(_PATHS))
def fixed_path(request):
    """Run a test with each byte-array path the CPU has: AVX-512, SSSE3, portable."""
    before = _codec_c._fixed_simd()
    want = _PATHS[request.param]
    now = _codec_c._fixed_simd(want)
    if now != want:
        _codec_c._fixed_simd(before)
        pytest.skip(f"no {request.param} byte-array path on this build or CPU")
    yield request.param
    _codec_c._fixed_simd(before)


def _outcome(impl, cls, data):
    try:
        return ("ok", impl.decode(cls, data))
    except DecodeError as exc:
        return (type(exc).__name__, exc.path, exc.offset)


def _same(cls, data):
    p = _outcome(_codec_py, cls, data)
    c = _outcome(_codec_c, cls, data)
    assert c == p, f"{cls.__name__} {bytes(data).hex()}: pure {p}, native {c}"
    return p


def _text(s: bytes) -> bytes:
    assert len(s) < 24
    return bytes([0x60 + len(s)]) + s


def _map(pairs) -> bytes:
    assert len(pairs) < 24
    out = bytes([0xA0 + len(pairs)])
    for k, v in pairs:
        out += (k if isinstance(k, bytes) else _text(k.encode())) + v
    return out


def _element(rng: random.Random) -> bytes:
    """One byte-array element in any form, valid or not."""
    v = rng.randrange(256)
    form = rng.random()
    if form < 0.45:
        return bytes([v]) if v < 24 else bytes([0x18, v])
    if form < 0.6:
        return bytes([0x18, rng.randrange(24)])  # non-shortest, accepted
    if form < 0.7:
        return bytes([rng.randrange(24)])
    if form < 0.75:
        return b"\x19" + rng.choice([v, 256 + v]).to_bytes(2, "big")
    if form < 0.8:
        return b"\x1a" + v.to_bytes(4, "big")
    if form < 0.83:
        return b"\x1b" + v.to_bytes(8, "big")
    return bytes([rng.randrange(0x1C, 0x100)])  # reserved info, other majors, ...


def _array(rng: random.Random, n: int, bad: float) -> bytes:
    head = bytes([0x80 + n]) if n < 24 else bytes([0x98, n])
    out = head
    for _ in range(n):
        if rng.random() < bad:
            out += _element(rng)
        else:
            v = rng.randrange(256)
            out += bytes([v]) if v < 24 else bytes([0x18, v])
    return out


@pytest.mark.parametrize("bad", [0.0, 0.02, 0.3])
def test_fixed_arrays_every_form(bad, fixed_path):
    rng = random.Random(int(bad * 1000) + 1)
    for _ in range(1500):
        key = _array(rng, 32, bad)
        tail = _text(b"value") + b"\x40" + _text(b"ttl_secs") + b"\x00"
        data = b"\xa3" + _text(b"key") + key + tail
        _same(Store, data)
        if rng.random() < 0.2:  # cut anywhere inside the array
            _same(Store, data[: rng.randrange(5, 5 + len(key))])


def test_fixed_arrays_at_the_end_of_the_input(fixed_path):
    """Arrays that end right at (or just before) the end of the input, short of a full word."""
    rng = random.Random(7)
    for _ in range(300):
        key = _array(rng, 32, 0.05)
        data = b"\xa1" + _text(b"key") + key  # missing value/ttl: MissingField after a good array
        _same(Store, data)
        for cut in range(len(data) - 12, len(data)):
            _same(Store, data[:cut])


def _item_fields(rng: random.Random, mime: bytes, tags: list[bytes]) -> list[tuple[str, bytes]]:
    tag_arr = bytes([0x80 + len(tags)]) + b"".join(bytes([0x60 + len(t)]) + t for t in tags)
    return [
        ("content_id", _array(rng, 32, 0.0)),
        ("size", b"\x1a" + rng.randrange(1 << 32).to_bytes(4, "big")),
        ("name", _text(b"n%d" % rng.randrange(1000))),
        ("mime", bytes([0x60 + len(mime)]) + mime if mime is not None else b"\xf6"),
        ("tags", tag_arr),
        ("chunks", b"\x82" + _array(rng, 32, 0.0) + _array(rng, 32, 0.0)),
    ]


_MIMES = [b"text/plain", b"image/jpeg", b"audio/mpeg", b"application/zip", b"a", b"", b"x" * 23,
          "t\u00e9xt/\u00e9".encode(), b"\xc3\x28", b"\xed\xa0\x80", b"text/plain\x00", b"text/plaiN", None]  # fmt: skip
_TAGS = [b"music", b"docs", b"work", b"", "f\u00eate".encode(), b"\xff", b"musi", b"musicc", b"2024"]


def test_item_keys_in_any_order_and_repeated_texts(fixed_path):
    rng = random.Random(11)
    for _ in range(3000):
        tags = [rng.choice(_TAGS) for _ in range(rng.randint(0, 3))]
        fields = _item_fields(rng, rng.choice(_MIMES), tags)
        r = rng.random()
        if r < 0.15:
            rng.shuffle(fields)
        elif r < 0.25:
            fields.insert(rng.randrange(len(fields) + 1), rng.choice(fields))  # duplicate key
        elif r < 0.3:
            fields.insert(rng.randrange(len(fields) + 1), ("zz", b"\x00"))  # unknown key
        elif r < 0.35:
            del fields[rng.randrange(len(fields))]  # missing (or absent nullable) key
        elif r < 0.4:  # a key in non-shortest form: same key, generic path
            i = rng.randrange(len(fields))
            k = fields[i][0].encode()
            fields[i] = (b"\x78" + bytes([len(k)]) + k, fields[i][1])
        data = _map(fields)
        out = _same(ItemV1, data)
        if out[0] == "ok" and rng.random() < 0.1:
            for cut in range(0, len(data), 7):
                _same(ItemV1, data[:cut])


def test_repeated_texts_share_one_object_and_equal_the_pure_twin():
    items = tuple(
        ItemV1(content_id=bytes(32), size=i, name=f"f{i}", mime=("text/plain", "audio/mpeg", None, "t\u00e9xt")[i % 4],
               tags=(("music", "docs"), (), ("f\u00eate",))[i % 3])  # fmt: skip
        for i in range(200)
    )
    m = ManifestV1(version=1, share_pubkey=bytes(32), share_id=bytes(32), seq=1, created_at=0, items=items)
    data = _codec_py.encode(m)
    got = _codec_c.decode(ManifestV1, data)
    assert got == _codec_py.decode(ManifestV1, data) == m
    assert got.items[0].mime is got.items[4].mime  # ASCII: cached
    assert got.items[0].tags[0] is got.items[3].tags[0]
    assert got.items[3].mime == got.items[7].mime == "t\u00e9xt"  # non-ASCII: decoded each time, still equal


def test_manifest_roundtrip_with_many_items(fixed_path):
    rng = random.Random(3)
    items = tuple(
        ItemV1(content_id=rng.randbytes(32), size=rng.randrange(1 << 40), name=f"item {i}",
               mime=rng.choice([None, "text/plain", "video/x-matroska", "application/octet-stream"]),
               tags=tuple(rng.sample(["a", "bb", "music", "docs", "\u00e9t\u00e9"], rng.randint(0, 3))),
               chunks=tuple(rng.randbytes(32) for _ in range(rng.randint(0, 7))))  # fmt: skip
        for i in range(2000)
    )
    m = ManifestV1(version=1, share_pubkey=rng.randbytes(32), share_id=rng.randbytes(32), seq=9, created_at=5,
                   items=items, recommended_shares=(rng.randbytes(32),), signature=rng.randbytes(64))  # fmt: skip
    data = _codec_c.encode(m)
    assert data == _codec_py.encode(m)
    assert _codec_c.decode(ManifestV1, data) == m


def test_text_cache_collisions_between_prefixes():
    """Thousands of distinct texts, many the prefix of another: cache slots collide often."""
    rng = random.Random(5)
    bases = ["".join(rng.choice("abcdefghij/-.") for _ in range(70)) for _ in range(12)]
    texts = [b[:n].encode() for b in bases for n in range(0, 71)]
    item = _item_fields(rng, b"text/plain", [])
    for _ in range(4000):
        tags = [rng.choice(texts) for _ in range(3)]
        tag_arr = b"\x83" + b"".join((bytes([0x60 + len(t)]) if len(t) < 24 else bytes([0x78, len(t)])) + t for t in tags)
        data = _map(item[:4] + [("tags", tag_arr)] + item[5:])
        out = _same(ItemV1, data)
        assert out[0] == "ok" and out[1].tags == tuple(t.decode() for t in tags)


@pytest.mark.parametrize("n", [4, 16, 32, 64])
def test_fixed_array_sizes(n, fixed_path):
    """Every FIXED size the schema uses (IPv4, IPv6, ids, signatures), whole and cut short."""
    rng = random.Random(n)
    unsigned = _codec_py.encode(ManifestV1(version=1, share_pubkey=bytes(32), share_id=bytes(32), seq=1, created_at=0))
    assert unsigned.endswith(_text(b"signature") + b"\xf6")
    oks = 0
    for _ in range(800):
        arr = _array(rng, n, rng.choice([0.0, 0.05, 0.5]))
        if n == 32:
            cls = Store
            data = b"\xa3" + _text(b"key") + arr + _text(b"value") + b"\x40" + _text(b"ttl_secs") + b"\x00"
        elif n in (4, 16):
            cls = PeerAddr
            ip = b"\xa1" + _text(b"V4" if n == 4 else b"V6") + arr
            data = _map([("ip", ip), ("port", b"\x01"), ("transport", _text(b"tcp"))])
        else:
            cls = ManifestV1
            data = unsigned[:-1] + arr  # the signature (the last field) as an array
        oks += _same(cls, data)[0] == "ok"
        for cut in range(max(0, len(data) - 70), len(data)):
            _same(cls, data[:cut])
    assert oks > 300


def test_tag_list_cache():
    """Tag lists repeat as a whole: many distinct lists sharing long prefixes, in random order,
    whole and cut short, decode as the pure twin decodes them."""
    rng = random.Random(9)
    words = [b"music", b"musical", b"docs", b"d", b"", b"2024", "f\u00eate".encode(), b"\xff\xfe", b"x" * 30]
    lists = [[rng.choice(words) for _ in range(rng.randint(0, 4))] for _ in range(600)]
    lists += [[b"music"] * k for k in range(6)] + [[b"music", b"docs", w] for w in words]
    item = _item_fields(rng, b"text/plain", [])
    for _ in range(6000):
        tags = rng.choice(lists)
        tag_arr = bytes([0x80 + len(tags)]) + b"".join(
            (bytes([0x60 + len(t)]) if len(t) < 24 else bytes([0x78, len(t)])) + t for t in tags
        )
        data = _map(item[:4] + [("tags", tag_arr)] + item[5:])
        if rng.random() < 0.05:
            data = data[: rng.randrange(len(data))]
        _same(ItemV1, data)


def test_all_atomic_manifest_stays_untracked():
    """A decoded manifest holds only bytes, str, int, None and such records and tuples: none of it
    can be part of a reference cycle, so the cyclic GC never has to walk it."""
    import gc

    m = _codec_c.decode(ManifestV1, _codec_py.encode(ManifestV1(
        version=1, share_pubkey=bytes(32), share_id=bytes(32), seq=1, created_at=0,
        items=(ItemV1(content_id=bytes(32), size=1, name="n\u00e9", mime="text/plain", tags=("a",), chunks=(bytes(32),)),),
    )))  # fmt: skip
    assert not gc.is_tracked(m) and not gc.is_tracked(m.items) and not gc.is_tracked(m.items[0])
    assert m.items[0].name == "n\u00e9" and m.items[0].tags == ("a",)
