"""Routing twins (XOR distance, bucket index, closest-K) and the routing table."""

from __future__ import annotations

import importlib
import os
import random

import pytest
from hypothesis import given
from hypothesis import strategies as st

from scp2p import _accel
from scp2p.dht import routing
from scp2p.dht.table import Contact, PingRequest, RoutingTable
from scp2p.wire.records import PeerAddr

TWINS = {"native": "scp2p.dht._routing_c", "pure": "scp2p.dht._routing_py"}
NAMES = (["native"] if not _accel.NO_EXTENSIONS else []) + ["pure"]
ids = st.binary(min_size=20, max_size=20)


@pytest.fixture(params=NAMES, scope="module")
def rt(request):
    return importlib.import_module(TWINS[request.param])


def test_native_routing_is_live_unless_disabled():
    if _accel.NO_EXTENSIONS:
        assert routing.BACKEND == "pure"
    else:
        assert routing.BACKEND == "native"
        assert _accel.loaded["scp2p.dht._routing_c"] == "native"
        assert "scp2p.dht.routing" in _accel.SELECTORS


@given(a=ids, b=ids)
def test_distance_and_bucket_match_reference(a, b):
    ref = int.from_bytes(a, "big") ^ int.from_bytes(b, "big")
    for name in NAMES:
        m = importlib.import_module(TWINS[name])
        assert m.distance(a, b) == ref == m.distance(b, a)
        assert m.bucket_index(a, b) == ref.bit_length() - 1


@given(t=ids, a=ids, b=ids)
def test_closer_matches_reference(t, a, b):
    ti = int.from_bytes(t, "big")
    expect = (int.from_bytes(a, "big") ^ ti) < (int.from_bytes(b, "big") ^ ti)
    for name in NAMES:
        assert importlib.import_module(TWINS[name]).closer(t, a, b) is expect


@given(t=ids, xs=st.lists(ids, max_size=60), k=st.integers(-1, 70))
def test_closest_twins_agree(t, xs, k):
    results = [importlib.import_module(TWINS[n]).closest(t, xs, k) for n in NAMES]
    ti = int.from_bytes(t, "big")
    ref = [x for _, _, x in sorted((int.from_bytes(x, "big") ^ ti, i, x) for i, x in enumerate(xs))][: max(k, 0)]
    for r in results:
        assert r == ref


def test_bucket_edges(rt):
    zero = bytes(20)
    assert rt.bucket_index(zero, zero) == -1
    assert rt.bucket_index(zero, b"\x80" + bytes(19)) == 159
    assert rt.bucket_index(zero, bytes(19) + b"\x01") == 0
    assert rt.bucket_index(zero, bytes(7) + b"\x01" + bytes(12)) == 96
    assert rt.bucket_index(zero, bytes(15) + b"\x01" + bytes(4)) == 32
    assert rt.bucket_index(zero, bytes(16) + b"\x80" + bytes(3)) == 31


@pytest.mark.parametrize("bad", [b"", bytes(19), bytes(21), "x" * 20, None, bytearray(20)])
def test_bad_ids_raise_value_error(rt, bad):
    with pytest.raises(ValueError):
        rt.distance(bad, bytes(20))
    with pytest.raises(ValueError):
        rt.bucket_index(bytes(20), bad)
    with pytest.raises(ValueError):
        rt.closest(bytes(20), [bytes(20), bad], 5)
    with pytest.raises(ValueError):
        rt.closest(bad, [], 5)


def test_closest_accepts_iterables(rt):
    xs = [bytes([i]) * 20 for i in range(10)]
    assert rt.closest(bytes(20), iter(xs), 3) == xs[:3]
    assert rt.closest(bytes(20), tuple(xs), 100) == xs


# ----------------------------------------------------------------------------- table
def contact(nid: bytes, port: int = 1) -> Contact:
    return Contact(nid, PeerAddr("127.0.0.1", port))


def ids_in_bucket(self_id: bytes, index: int, n: int, rng: random.Random) -> list[bytes]:
    t = RoutingTable(self_id)
    return [t.random_id_in_bucket(index, rng.randbytes(20)) for _ in range(n)]


def test_table_insert_and_closest():
    rng = random.Random(1)
    me = rng.randbytes(20)
    t = RoutingTable(me, k=4)
    cs = [contact(rng.randbytes(20), i) for i in range(200)]
    for c in cs:
        t.observe(c, 1.0)
    assert me not in t
    assert t.observe(contact(me), 1.0) is None and me not in t
    for i in range(160):
        assert len(t.bucket(i)) <= 4
    target = rng.randbytes(20)
    got = t.closest(target, 5)
    everyone = sorted(t.contacts(), key=lambda c: routing.distance(c.node_id, target))
    assert got == everyone[:5]


def test_ping_then_evict_least_recently_seen():
    rng = random.Random(2)
    me = bytes(20)
    t = RoutingTable(me, k=3)
    a, b, c, d, e = (contact(x) for x in ids_in_bucket(me, 159, 5, rng))
    for x, when in ((a, 1), (b, 2), (c, 3)):
        assert t.observe(x, when) is None
    t.observe(a, 4)  # a is now the most recently seen; b the least
    ping = t.observe(d, 5)
    assert ping == PingRequest(b, d)
    # only one ping in flight per bucket; e waits in the replacement cache too
    assert t.observe(e, 6) is None
    assert t.replacements(159) == [d, e]
    # alive: b stays (moved to the tail), nobody evicted
    t.ping_result(b.node_id, True, 7)
    assert t.bucket(159) == [c, a, b]
    # next newcomer triggers a ping of c; c is dead -> evicted, the newest replacement takes its place
    f = contact(ids_in_bucket(me, 159, 1, random.Random(3))[0])
    ping = t.observe(f, 8)
    assert ping is not None and ping.contact == c
    t.ping_result(c.node_id, False, 9)
    assert c.node_id not in t and f.node_id in t
    assert t.bucket(159) == [a, b, f]


def test_failures_evict_after_max_or_when_replacement_waits():
    rng = random.Random(4)
    me = bytes(20)
    t = RoutingTable(me, k=2, max_failures=2)
    a, b, c = (contact(x) for x in ids_in_bucket(me, 150, 3, rng))
    t.observe(a, 1)
    assert not t.failed(a.node_id, 2)
    assert t.failed(a.node_id, 3) and a.node_id not in t
    t.observe(a, 4)
    t.observe(b, 4)
    t.observe(c, 5)  # bucket full: c waits
    assert t.failed(a.node_id, 6)  # first failure, but a replacement waits
    assert c.node_id in t


def test_seen_again_resets_failures_and_updates_address():
    me = bytes(20)
    t = RoutingTable(me, max_failures=2)
    nid = b"\x01" * 20
    t.observe(contact(nid, 1), 1)
    t.failed(nid, 2)
    t.observe(contact(nid, 2), 3)
    assert not t.failed(nid, 4)
    assert t.get(nid).addr.port == 2


def test_refresh_deadlines_and_random_ids():
    rng = random.Random(5)
    me = rng.randbytes(20)
    t = RoutingTable(me, now=0.0, refresh_interval=100.0)
    for idx in (159, 158, 150):
        for nid in ids_in_bucket(me, idx, 2, rng):
            t.observe(contact(nid), 10.0)
    assert t.buckets_due(50.0) == []
    assert t.next_deadline() == 100.0  # untouched buckets between 150 and 159 date from creation
    due = t.buckets_due(100.0)
    assert set(due) == set(range(150, 160)) - {150, 158, 159}
    for i in due:
        t.touch_bucket(i, 100.0)
    assert t.next_deadline() == 110.0
    assert set(t.buckets_due(110.0)) == {150, 158, 159}
    for idx in (0, 5, 100, 159):
        for _ in range(20):
            assert routing.bucket_index(me, t.random_id_in_bucket(idx, os.urandom(20))) == idx
    with pytest.raises(ValueError):
        t.random_id_in_bucket(160, bytes(20))
