"""Value store, rate limiter and the request core, incl. the conformance negative vectors."""

from __future__ import annotations

import json

import pytest
from helpers import VECTORS_PATH

from scp2p.catalog.share_head import encode_share_head, sign_share_head
from scp2p.dht.core import DhtCore
from scp2p.dht.ratelimit import Rate, RateLimiter, TokenBucket
from scp2p.dht.storage import MAX_PROVIDERS, ValueStore
from scp2p.errors import (
    DecodeError,
    IdMismatch,
    LimitExceeded,
    QuotaExceeded,
    RateLimited,
    Scp2pError,
    SignatureInvalid,
    StaleValue,
)
from scp2p.identity import ShareKey, content_prov_key, routing_id, share_head_key
from scp2p.limits import DEFAULT_TTL, MAX_DHT_VALUE, MAX_TTL
from scp2p.wire import codec
from scp2p.wire.messages import ACK, FindNode, FindNodeResult, FindValue, FindValueResult, Store, decode_payload
from scp2p.wire.records import PeerAddr, Providers

SK = ShareKey(bytes(range(32)))
KEY = share_head_key(SK.share_id)


def head(seq: int, mid: bytes = b"\x01" * 32) -> bytes:
    return encode_share_head(sign_share_head(SK, seq, mid, 1000 + seq))


def prov(cid: bytes, *ports: int, at: int = 1) -> bytes:
    return codec.encode(Providers(cid, tuple(PeerAddr("10.0.0.1", p) for p in ports), at))


def test_ttl_default_clamp_and_expiry():
    s = ValueStore()
    s.put(KEY, head(1), DEFAULT_TTL, 0)
    assert s.get(KEY, DEFAULT_TTL - 1).ttl_secs == 1
    assert s.get(KEY, DEFAULT_TTL) is None  # never serve expired
    s.put(KEY, head(1), 10 * MAX_TTL, 0)
    assert s.entry(KEY, 0).expires_at == MAX_TTL
    assert s.next_deadline() == MAX_TTL
    assert s.expire(MAX_TTL - 1) == 0 and s.expire(MAX_TTL) == 1 and len(s) == 0
    assert s.next_deadline() is None
    with pytest.raises(QuotaExceeded):
        s.put(KEY, head(1), 0, 0)


def test_share_head_never_goes_back():
    s = ValueStore()
    s.put(KEY, head(5), 100, 0)
    with pytest.raises(StaleValue):
        s.put(KEY, head(4), 100, 1)
    with pytest.raises(StaleValue):
        s.put(KEY, head(5, b"\x02" * 32), 100, 1)  # same seq, different head
    s.put(KEY, head(5), 200, 1)  # same head: refresh
    assert s.entry(KEY, 1).expires_at == 201
    s.put(KEY, head(6), 100, 2)
    assert codec.decode(type(sign_share_head(SK, 1, bytes(32), 1)), s.get(KEY, 2).value).latest_seq == 6
    # after expiry an older head may be stored again (nothing is held)
    assert s.get(KEY, 1000) is None
    s.put(KEY, head(1), 100, 1000)


def test_share_head_verified_when_key_known():
    other = ShareKey(bytes(32))
    s = ValueStore(share_pubkey=lambda sid: SK.public_key if sid == SK.share_id else None)
    s.put(KEY, head(1), 100, 0)
    forged = sign_share_head(other, 2, bytes(32), 1)
    forged = type(forged)(SK.share_id, 2, bytes(32), 1, forged.sig)
    with pytest.raises(SignatureInvalid):
        s.put(KEY, encode_share_head(forged), 100, 0)


def test_wrong_key_and_oversize_rejected():
    s = ValueStore()
    with pytest.raises(IdMismatch):
        s.put(content_prov_key(bytes(32)), head(1), 100, 0)
    with pytest.raises(LimitExceeded):
        s.put(bytes(32), bytes(MAX_DHT_VALUE + 1), 100, 0)
    s.put(bytes(32), bytes(MAX_DHT_VALUE), 100, 0)  # unknown keyspace within limits


def test_provider_hints_merge():
    cid = b"\x03" * 32
    key = content_prov_key(cid)
    s = ValueStore()
    s.put(key, prov(cid, 1, 2), 100, 0, origin=b"a" * 20)
    s.put(key, prov(cid, 3, 2, at=5), 50, 1, origin=b"b" * 20)
    got = codec.decode(Providers, s.get(key, 2).value)
    assert [p.port for p in got.providers] == [3, 2, 1] and got.updated_at == 5
    assert s.entry(key, 2).expires_at == 100
    for i in range(100):
        s.put(key, prov(cid, 100 + i), 100, 3)
    assert len(codec.decode(Providers, s.get(key, 3).value).providers) == MAX_PROVIDERS


def test_per_peer_quota_and_totals():
    s = ValueStore(per_peer_values=3, per_peer_bytes=10_000, per_peer_unknown=2, max_values=5)
    a, b = b"a" * 20, b"b" * 20
    s.put(bytes([1]) * 32, b"x", 100, 0, origin=a)
    s.put(bytes([2]) * 32, b"x", 100, 0, origin=a)
    with pytest.raises(QuotaExceeded):
        s.put(bytes([3]) * 32, b"x", 100, 0, origin=a)  # unknown-keyspace quota
    s.put(KEY, head(1), 100, 0, origin=a)
    with pytest.raises(QuotaExceeded):
        s.put(content_prov_key(bytes(32)), prov(bytes(32), 1), 100, 0, origin=a)
    s.put(bytes([2]) * 32, b"y", 100, 0, origin=a)  # replacing its own value is fine
    assert s.usage(a) == (3, len(head(1)) + 2)
    s.put(bytes([4]) * 32, b"x", 100, 0, origin=b)
    s.put(bytes([5]) * 32, b"x", 100, 0, origin=b)
    with pytest.raises(QuotaExceeded):  # the node total
        s.put(bytes([6]) * 32, b"x", 100, 0)
    s.expire(100)
    assert len(s) == 0 and s.usage(a) == (0, 0) and s.total_bytes == 0
    big = ValueStore(per_peer_bytes=100)
    with pytest.raises(QuotaExceeded):
        big.put(bytes(32), bytes(101), 100, 0, origin=a)


def test_token_buckets():
    b = TokenBucket(rate=1.0, burst=2.0, now=0.0)
    assert b.take(0.0) and b.take(0.0) and not b.take(0.0)
    assert b.retry_after() == pytest.approx(1.0)
    assert b.take(1.0) and not b.take(1.5) and b.take(2.0)
    lim = RateLimiter({"request": Rate(1.0, 3.0)}, max_peers=2)
    assert all(lim.allow("p", "request", 0) for _ in range(3))
    assert not lim.allow("p", "request", 0)
    assert lim.allow("q", "request", 0)  # others unaffected
    assert lim.allow("p", "other-kind", 0)  # no limit configured
    lim.allow("r", "request", 0)
    assert len(lim) == 2  # bounded memory


def test_core_answers_and_limits():
    core = DhtCore(b"\x00" * 20, now=0, limiter=RateLimiter({"request": Rate(1.0, 5.0), "store": Rate(0.1, 2.0)}))
    peer = b"\x01" * 20
    assert isinstance(core.handle_request(peer, FindNode(bytes(20)), 0), FindNodeResult)
    assert core.handle_request(peer, Store(KEY, head(1), 60), 0) is ACK
    r = core.handle_request(peer, FindValue(KEY), 0)
    assert isinstance(r, FindValueResult) and r.value.value == head(1) and r.value.ttl_secs == 60
    assert core.handle_request(peer, Store(KEY, head(2), 60), 0) is ACK
    with pytest.raises(RateLimited):  # store bucket (burst 2) used up
        core.handle_request(peer, Store(KEY, head(3), 60), 0)
    for _ in range(3):  # 2 requests so far, burst 5
        core.handle_request(peer, FindValue(KEY), 0)
    with pytest.raises(RateLimited):  # a flood of FIND_VALUE
        core.handle_request(peer, FindValue(KEY), 0)
    # the node keeps serving others
    assert core.handle_request(b"\x02" * 20, FindValue(KEY), 0).value is not None
    assert routing_id(KEY) == KEY[:20]


def _vectors(action):
    with open(VECTORS_PATH, encoding="utf-8") as fh:
        return [v for v in json.load(fh)["negative"] if v["action"] == action]


@pytest.mark.parametrize("vec", _vectors("validate_store"), ids=lambda v: v["name"])
def test_negative_store_vectors_through_the_core(vec):
    """The STORE payload goes the real way: payload decoder, then the core's STORE handler."""
    core = DhtCore(b"\x00" * 20, now=0)
    try:
        msg = decode_payload(202, bytes.fromhex(vec["bytes"]))
        core.handle_request(b"\x01" * 20, msg, 0)
    except (DecodeError, Scp2pError):
        assert vec["expect"] in ("reject", "reject_or_clamp")
        return
    assert vec["expect"] in ("accept", "reject_or_clamp")
    held = core.storage.entry(msg.key, 0)
    assert held is not None and held.expires_at <= MAX_TTL


@pytest.mark.parametrize("vec", _vectors("validate_dht_value"), ids=lambda v: v["name"])
def test_negative_value_vectors_through_the_core(vec):
    core = DhtCore(b"\x00" * 20, now=0)
    msg = Store(bytes.fromhex(vec["key"]), bytes.fromhex(vec["value"]), 60)
    try:
        core.handle_request(b"\x01" * 20, msg, 0)
    except Scp2pError:
        assert vec["expect"] == "reject"
    else:
        assert vec["expect"] == "accept"
        assert core.handle_request(b"\x02" * 20, FindValue(msg.key), 0).value.value == msg.value
