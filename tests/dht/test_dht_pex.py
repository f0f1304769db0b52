"""PEX selection and filtering (address policy), and the peer database freshness rules."""

from __future__ import annotations

import random

import pytest

from scp2p.dht import peerdb
from scp2p.dht.pex import Scope, filter_offer, may_share, scope, select_offer
from scp2p.identity import node_id
from scp2p.limits import MAX_PEX_PEERS, PEX_MAX_AGE
from scp2p.store import Store
from scp2p.wire.records import PeerAddr

NOW = 1_700_000_000


@pytest.mark.parametrize(
    "ip,expect",
    [
        ("127.0.0.1", Scope.LOOPBACK), ("127.9.9.9", Scope.LOOPBACK), ("::1", Scope.LOOPBACK),
        ("10.1.2.3", Scope.PRIVATE), ("192.168.1.1", Scope.PRIVATE), ("172.16.0.1", Scope.PRIVATE),
        ("100.64.0.1", Scope.PRIVATE), ("169.254.1.1", Scope.PRIVATE), ("fe80::1", Scope.PRIVATE),
        ("fd12::1", Scope.PRIVATE), ("8.8.8.8", Scope.PUBLIC), ("2606:4700::1", Scope.PUBLIC),
        ("0.0.0.0", Scope.INVALID), ("::", Scope.INVALID), ("224.0.0.1", Scope.INVALID),
        ("255.255.255.255", Scope.INVALID), ("192.0.2.1", Scope.INVALID), ("2001:db8::1", Scope.INVALID),
        ("240.0.0.1", Scope.INVALID), ("::ffff:10.0.0.1", Scope.PRIVATE), ("not an ip", Scope.INVALID),
    ],
)  # fmt: skip
def test_scopes(ip, expect):
    assert scope(ip) is expect


def test_policy_matrix():
    L, P, G, X = Scope.LOOPBACK, Scope.PRIVATE, Scope.PUBLIC, Scope.INVALID
    assert may_share(G, G) and may_share(G, P) and may_share(G, L)
    assert may_share(P, P) and may_share(P, L) and not may_share(P, G)
    assert may_share(L, L) and not may_share(L, P) and not may_share(L, G)
    assert not any(may_share(X, s) or may_share(s, X) for s in Scope)


def addr(ip: str, port: int = 4000, key: bytes | None = None) -> PeerAddr:
    return PeerAddr(ip, port, pubkey_hint=key)


def test_select_offer_limits_age_sample_and_scope():
    rng = random.Random(1)
    cands = [(addr(f"8.8.{i // 250}.{i % 250 + 1}"), NOW - 10) for i in range(300)]
    cands += [(addr("8.9.9.9"), NOW - PEX_MAX_AGE - 1)]  # too old
    cands += [(addr("8.9.9.8"), 0)]  # hearsay, never reached
    cands += [(addr("10.0.0.5"), NOW), (addr("127.0.0.1"), NOW)]
    offer = select_offer(cands, requester_ip="9.9.9.9", now=NOW, rng=rng)
    assert len(offer) == MAX_PEX_PEERS and len(set(offer)) == MAX_PEX_PEERS
    assert all(scope(a.ip) is Scope.PUBLIC and str(a.ip) not in ("8.9.9.9", "8.9.9.8") for a in offer)
    again = select_offer(cands, requester_ip="9.9.9.9", now=NOW, rng=random.Random(2))
    assert set(again) != set(offer)  # a random sample, not always the same peers
    assert len(select_offer(cands, requester_ip="9.9.9.9", now=NOW, max_peers=5)) == 5
    assert select_offer(cands, requester_ip="9.9.9.9", now=NOW, max_peers=0) == ()
    lan = select_offer(cands[-2:], requester_ip="10.0.0.9", now=NOW)
    assert [str(a.ip) for a in lan] == ["10.0.0.5"]
    local = select_offer(cands[-2:], requester_ip="127.0.0.1", now=NOW)
    assert {str(a.ip) for a in local} == {"10.0.0.5", "127.0.0.1"}
    me = b"\x07" * 32
    assert select_offer([(addr("8.8.8.8", key=me), NOW)], requester_ip="1.1.1.1", now=NOW, requester_pubkey=me) == ()


def test_filter_offer_drops_bad_and_foreign_scope_addresses():
    me = b"\x01" * 32
    offered = [addr("127.0.0.1"), addr("10.0.0.1"), addr("8.8.8.8"), addr("8.8.8.8"), addr("8.8.4.4", 0),
               addr("224.0.0.1"), addr("1.1.1.1", key=me), addr("9.9.9.9")]  # fmt: skip
    from_public = filter_offer(offered, offerer_ip="5.5.5.5", self_pubkey=me, self_addrs=[addr("9.9.9.9")])
    assert [str(a.ip) for a in from_public] == ["8.8.8.8"]
    from_local = filter_offer(offered, offerer_ip="127.0.0.1", self_pubkey=me)
    assert [str(a.ip) for a in from_local] == ["127.0.0.1", "10.0.0.1", "8.8.8.8", "9.9.9.9"]
    many = [addr(f"8.8.{i // 250}.{i % 250 + 1}") for i in range(1000)]
    assert len(filter_offer(many, offerer_ip="1.2.3.4")) == MAX_PEX_PEERS


def test_peerdb_freshness_rules(tmp_path):
    key = b"\x05" * 32
    with Store.open(tmp_path / "db") as st:
        a = addr("127.0.0.1", 5000, key)
        peerdb.record_contact(st, a, NOW)
        rec = st.peer("127.0.0.1", 5000)
        assert rec.node_id == node_id(key) and rec.last_seen == NOW and rec.score == 1.0
        peerdb.record_failure(st, a, NOW + 1)
        assert st.peer("127.0.0.1", 5000).failures == 1
        # hearsay never overrides a known address (not its key, times, failures or score)
        liar = addr("127.0.0.1", 5000, b"\x06" * 32)
        assert peerdb.merge_hearsay(st, [liar, addr("127.0.0.2", 1)], NOW + 2) == 1
        rec = st.peer("127.0.0.1", 5000)
        assert rec.pubkey_hint == key and rec.failures == 1 and rec.last_seen == NOW
        new = st.peer("127.0.0.2", 1)
        assert new.last_seen == 0 and new.first_seen == NOW + 2 and new.score < 0
        # hearsay is not offered on; verified peers are
        offers = peerdb.offer_candidates(st, NOW + 3)
        assert [(str(x.ip), t) for x, t in offers] == [("127.0.0.1", NOW)]
        # contact resets failures; bootstrap candidates put peers with a known key first
        peerdb.record_contact(st, a, NOW + 4)
        assert st.peer("127.0.0.1", 5000).failures == 0
        assert [x.port for x in peerdb.bootstrap_candidates(st)] == [5000, 1]
        for _ in range(peerdb.MAX_FAILURES):
            peerdb.record_failure(st, addr("127.0.0.2", 1), NOW)
        assert peerdb.prune(st, NOW + 5) == 1 and st.peer("127.0.0.2", 1) is None
        peerdb.merge_hearsay(st, [addr("127.0.0.3", 1)], NOW)
        assert peerdb.prune(st, NOW + peerdb.HEARSAY_MAX_AGE + 1) == 1
        assert st.count_peers() == 1
