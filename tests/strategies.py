"""Hypothesis strategies derived from the wire schemas, so every record is covered by construction."""

from __future__ import annotations

from hypothesis import strategies as st

from scp2p.wire import messages
from scp2p.wire.records import (
    Capabilities,
    Envelope,
    Hello,
    ItemV1,
    ManifestLocation,
    ManifestV1,
    PeerAddr,
    Providers,
    ShareHead,
)
from scp2p.wire.schema import BOOL, BYTES, ENUM, FIXED, IP, LIST, RECORD, TEXT, UINT, Field, fields_of

#: every record class with a wire schema
RECORD_CLASSES: list[type] = sorted(
    {PeerAddr, Capabilities, ItemV1, ManifestV1, ShareHead, Providers, ManifestLocation, Envelope, Hello}
    | {cls for cls in messages.REGISTRY.values() if hasattr(cls, "__wire_fields__")},
    key=lambda c: c.__name__,
)

_uint_edges = [0, 23, 24, 255, 256, 65535, 65536, 2**32 - 1, 2**32, 2**64 - 1]


def _uint(maximum: int):
    edges = [e for e in _uint_edges if e <= maximum]
    return st.one_of(st.sampled_from(edges), st.integers(0, maximum))


def value_strategy(f: Field):
    k = f.kind
    if k == UINT:
        s = _uint(f.size)
    elif k == BOOL:
        s = st.booleans()
    elif k == TEXT:
        s = st.text(max_size=24)
    elif k == FIXED:
        s = st.binary(min_size=f.size, max_size=f.size)
    elif k == BYTES:
        s = st.binary(max_size=min(f.size, 300))
    elif k == LIST:
        s = st.lists(value_strategy(f.elem), max_size=min(f.size or 4, 4)).map(tuple)
    elif k == RECORD:
        s = record_strategy(f.record)
    elif k == ENUM:
        s = st.sampled_from(list(f.enum))
    elif k == IP:
        s = st.one_of(st.ip_addresses(v=4), st.ip_addresses(v=6))
    else:  # pragma: no cover
        raise TypeError(k)
    return st.one_of(st.none(), s) if f.nullable else s


def record_strategy(cls: type):
    return st.builds(cls, **{f.name: value_strategy(f) for f in fields_of(cls)})


def any_record():
    return st.one_of([record_strategy(c) for c in RECORD_CLASSES])


@st.composite
def mutated(draw, data: bytes):
    """Damage an encoding: flip, overwrite, insert, delete or truncate."""
    buf = bytearray(data)
    for _ in range(draw(st.integers(1, 4))):
        op = draw(st.sampled_from(["flip", "set", "insert", "delete", "truncate"]))
        if op == "insert" or not buf:
            pos = draw(st.integers(0, len(buf)))
            buf[pos:pos] = draw(st.binary(min_size=1, max_size=9))
            continue
        pos = draw(st.integers(0, len(buf) - 1))
        if op == "flip":
            buf[pos] ^= 1 << draw(st.integers(0, 7))
        elif op == "set":
            buf[pos] = draw(st.sampled_from([0x00, 0x17, 0x18, 0x19, 0x1B, 0x1C, 0x1F, 0x3F, 0x5F, 0x7F,
                                             0x9F, 0xBF, 0xDF, 0xF4, 0xF6, 0xF7, 0xFF, 0x98, 0xA1, 0x60]))  # fmt: skip
        elif op == "delete":
            del buf[pos : pos + draw(st.integers(1, 8))]
        else:
            del buf[pos:]
    return bytes(buf)


# ----------------------------------------------------------------------------- seeded (non-hypothesis) fuzzing
def random_value(f: Field, rng):
    """A random valid value for a field, from a ``random.Random`` (fast, for large seeded loops)."""
    if f.nullable and rng.random() < 0.2:
        return None
    k = f.kind
    if k == UINT:
        return rng.choice([e for e in _uint_edges if e <= f.size] + [rng.randint(0, f.size)])
    if k == BOOL:
        return rng.random() < 0.5
    if k == TEXT:
        return "".join(rng.choice("abcXYZ09 ._-éü漢🙂") for _ in range(rng.randint(0, 12)))
    if k == FIXED:
        return rng.randbytes(f.size)
    if k == BYTES:
        return rng.randbytes(rng.randint(0, 40))
    if k == LIST:
        return tuple(random_value(f.elem, rng) for _ in range(rng.randint(0, min(f.size or 3, 3))))
    if k == RECORD:
        return random_record(f.record, rng)
    if k == ENUM:
        return rng.choice(list(f.enum))
    if k == IP:
        import ipaddress

        return ipaddress.ip_address(rng.randbytes(4) if rng.random() < 0.5 else rng.randbytes(16))
    raise TypeError(k)  # pragma: no cover


def random_record(cls: type, rng):
    return cls(**{f.name: random_value(f, rng) for f in fields_of(cls)})


_MUTATION_BYTES = bytes([0x00, 0x17, 0x18, 0x19, 0x1B, 0x1C, 0x1F, 0x3F, 0x5F, 0x7F,
                         0x9F, 0xBF, 0xDF, 0xF4, 0xF6, 0xF7, 0xFF, 0x98, 0xA1, 0x60])  # fmt: skip


def random_mutation(data: bytes, rng) -> bytes:
    buf = bytearray(data)
    for _ in range(rng.randint(1, 4)):
        op = rng.randrange(5)
        if op == 0 or not buf:
            pos = rng.randint(0, len(buf))
            buf[pos:pos] = rng.randbytes(rng.randint(1, 9))
            continue
        pos = rng.randrange(len(buf))
        if op == 1:
            buf[pos] ^= 1 << rng.randrange(8)
        elif op == 2:
            buf[pos] = rng.choice(_MUTATION_BYTES)
        elif op == 3:
            del buf[pos : pos + rng.randint(1, 8)]
        else:
            del buf[pos:]
    return bytes(buf)
