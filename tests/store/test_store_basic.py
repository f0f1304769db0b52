"""Round trips and rules of each area of the store."""

from __future__ import annotations

import hashlib
import os
import stat

import pytest

from scp2p.errors import BlobConflict, StoreCorrupt, StoreError, StoreLocked
from scp2p.store import (
    BLOB_CHUNK_SIZE,
    SCHEMA_VERSION,
    BlocklistRole,
    CompletedDownload,
    ManifestCachePolicy,
    ManifestRow,
    OwnedDhtValue,
    PartialDownload,
    PeerRecord,
    PublishedFile,
    PublishedShare,
    Store,
    Subscription,
    TrustLevel,
)
from scp2p.identity import share_id as share_id_of

from storetest_util import ident, seed


#: Windows has no POSIX permission bits (st_mode shows only the read-only attribute; access is by ACL)
POSIX_MODES = os.name == "posix"


def test_fresh_store_is_healthy_and_owner_only(store, db_path):
    assert store.schema_version == SCHEMA_VERSION
    assert store.integrity_check() == ["ok"]
    store.upsert_peer(PeerRecord("10.0.0.1", 1))  # makes SQLite create -wal/-shm
    if POSIX_MODES:
        assert stat.S_IMODE(os.stat(db_path).st_mode) == 0o600
        assert stat.S_IMODE(os.stat(db_path.parent).st_mode) == 0o700
    for suffix in ("-wal", "-shm", ".lock"):
        assert os.path.isfile(f"{db_path}{suffix}"), suffix
        if POSIX_MODES:
            assert stat.S_IMODE(os.stat(f"{db_path}{suffix}").st_mode) == 0o600, suffix


@pytest.mark.skipif(not POSIX_MODES, reason="no POSIX permission bits on Windows (chmod sets only read-only)")
def test_loose_permissions_are_tightened(db_path):
    Store.open(db_path).close()
    os.chmod(db_path, 0o644)
    with Store.open(db_path):
        assert stat.S_IMODE(os.stat(db_path).st_mode) == 0o600


def test_state_survives_reopen(db_path):
    with Store.open(db_path) as s:
        key = s.ensure_node_key()
        s.upsert_peer(PeerRecord("10.0.0.1", 4000, "quic", node_id=ident(1, 20), first_seen=5, last_seen=9))
    with Store.open(db_path) as s:
        assert s.ensure_node_key() == key  # same identity, not a new one
        assert s.peer("10.0.0.1", 4000, "quic").node_id == ident(1, 20)


def test_second_open_is_refused_while_first_is_open(store, db_path):
    with pytest.raises(StoreLocked) as e:
        Store.open(db_path)
    assert str(db_path) in str(e.value)


def test_closed_store_raises_clearly(db_path):
    s = Store.open(db_path)
    s.close()
    s.close()  # idempotent
    with pytest.raises(StoreError, match="closed"):
        s.count_peers()


def test_peers_upsert_merges_times_and_keeps_known_ids(store):
    store.upsert_peer(PeerRecord("::1", 9, "tcp", node_id=ident(7, 20), first_seen=100, last_seen=200, score=1.5))
    store.upsert_peer(PeerRecord("::1", 9, "tcp", node_id=None, first_seen=50, last_seen=150, failures=2, score=0.5))
    p = store.peer("::1", 9, "tcp")
    assert (p.first_seen, p.last_seen, p.failures, p.score, p.node_id) == (50, 200, 2, 0.5, ident(7, 20))
    assert store.peer("::1", 9, "quic") is None
    assert store.peers_by_node_id(ident(7, 20)) == [p]


def test_peers_ordering_bump_and_prune(store):
    store.upsert_peers(PeerRecord(f"10.0.0.{i}", 1, last_seen=i, score=float(i % 3)) for i in range(1, 11))
    assert store.count_peers() == 10
    best = store.peers(limit=3)
    assert [p.score for p in best] == [2.0, 2.0, 2.0] and best[0].last_seen == 8
    assert [p.last_seen for p in store.peers(by="last_seen", limit=2)] == [10, 9]
    assert len(store.peers(seen_since=6)) == 5
    assert store.bump_peer("10.0.0.1", 1, failures_delta=3, score_delta=-1)
    assert store.peer("10.0.0.1", 1).failures == 3
    assert store.bump_peer("10.0.0.1", 1, failures_delta=-10, seen_at=50)
    assert store.peer("10.0.0.1", 1).failures == 0 and store.peer("10.0.0.1", 1).last_seen == 50
    assert not store.bump_peer("10.9.9.9", 1)
    assert store.prune_peers(seen_before=4) == 2  # last_seen 2 and 3 (peer 1 now seen at 50)
    assert store.delete_peer("10.0.0.10", 1) and not store.delete_peer("10.0.0.10", 1)
    assert store.count_peers() == 7


def test_subscription_head_never_moves_backwards(store):
    sid = share_id_of(b"\x01" * 32)
    store.put_subscription(Subscription(sid, b"\x01" * 32, TrustLevel.TRUSTED, 2.0))
    assert store.advance_subscription_head(sid, 5, ident(5))
    assert not store.advance_subscription_head(sid, 5, ident(6))  # equal is not newer
    assert not store.advance_subscription_head(sid, 4, ident(4))
    # a put with an older head does not regress it, but updates the rest
    store.put_subscription(Subscription(sid, None, "untrusted", 0.5, 3, ident(3), BlocklistRole.HONOURED))
    s = store.subscription(sid)
    assert (s.latest_seq, s.latest_manifest_id, s.trust, s.weight, s.blocklist) == (5, ident(5), TrustLevel.UNTRUSTED, 0.5, BlocklistRole.HONOURED)
    assert s.share_pubkey == b"\x01" * 32
    # the full u64 range orders correctly
    assert store.advance_subscription_head(sid, 2**64 - 1, ident(9))
    assert not store.advance_subscription_head(sid, 2**63, ident(8))
    assert store.subscription(sid).latest_seq == 2**64 - 1
    store.put_subscription(Subscription(ident(2), trust="normal"))
    assert [x.share_id for x in store.subscriptions(trust=[TrustLevel.NORMAL])] == [ident(2)]
    assert store.delete_subscription(sid) and store.subscription(sid) is None


def _manifest(n: int, size: int = 100, share: int = 1, seq: int | None = None) -> ManifestRow:
    return ManifestRow(ident(n), ident(share), n if seq is None else seq, 1000 + n, None, bytes([n % 256]) * size, f"t{n}", 1)


def test_manifest_cache_evicts_least_recently_used(db_path):
    with Store.open(db_path, manifest_cache=ManifestCachePolicy(max_entries=3, max_bytes=None)) as s:
        for n in (1, 2, 3):
            assert s.put_manifest(_manifest(n))
        assert s.manifest(ident(1)).title == "t1"  # touch 1
        s.put_manifest(_manifest(4))
        assert sorted(s.manifest_ids()) == sorted([ident(1), ident(3), ident(4)])  # 2 was LRU
        s.put_manifest(_manifest(99, seq=99), pinned=True)
        s.put_manifest(_manifest(5))  # evicts 3; the pinned one does not count
        assert sorted(s.manifest_ids()) == sorted([ident(1), ident(4), ident(5), ident(99)])
        assert s.manifest_cache_usage() == (3, 300)
        assert s.latest_manifest(ident(1)).seq == 99
    # the LRU order survives a restart
    with Store.open(db_path, manifest_cache=ManifestCachePolicy(max_entries=3, max_bytes=None)) as s:
        s.manifest(ident(1))
        s.put_manifest(_manifest(6))  # 4 is now least recently used
        assert sorted(s.manifest_ids()) == sorted([ident(1), ident(5), ident(6), ident(99)])


def test_manifest_cache_byte_cap_and_unpin(db_path):
    with Store.open(db_path, manifest_cache=ManifestCachePolicy(max_entries=None, max_bytes=1000)) as s:
        for n in range(1, 6):
            s.put_manifest(_manifest(n, size=300))
        assert s.manifest_cache_usage() == (3, 900)
        assert not s.put_manifest(_manifest(50, size=2000))  # larger than the whole cache
        s.put_manifest(_manifest(60, size=600), pinned=True)
        assert s.manifest_cache_usage() == (3, 900)
        s.set_manifest_pinned(ident(60), False)
        assert s.manifest_cache_usage()[1] <= 1000 and ident(60) in s.manifest_ids()
        s.set_manifest_cache_policy(ManifestCachePolicy.light())
        assert s.delete_manifest(ident(60)) and s.manifest(ident(60)) is None


def test_manifest_u64_fields_round_trip(store):
    row = ManifestRow(ident(1), ident(2), 2**64 - 1, 2**64 - 1, None, b"x")
    store.put_manifest(row)
    got = store.manifest(ident(1))
    assert got.seq == 2**64 - 1 and got.created_at == 2**63 - 1  # times saturate, seq is exact


def test_owned_dht_values_republish_schedule(store):
    store.put_dht_values([OwnedDhtValue(ident(i), b"v%d" % i, 3600, 100 * i) for i in range(1, 5)])
    assert [v.key for v in store.dht_values_due(250)] == [ident(1), ident(2)]
    assert store.mark_republished(ident(1), 1000)
    assert [v.key for v in store.dht_values_due(250)] == [ident(2)]
    store.put_dht_value(OwnedDhtValue(ident(2), b"new", 60, 5000))
    assert store.dht_value(ident(2)).value == b"new" and store.dht_values_due(250) == []
    assert store.delete_dht_value(ident(3)) and len(store.dht_values()) == 3


def test_published_files_avoid_rehash_and_cascade(store):
    key = store.add_share_key(seed(3), "music")
    sid = key.share_id
    with pytest.raises(StoreError, match="add_share_key"):
        store.put_published_share(PublishedShare(ident(99)))
    store.put_published_share(PublishedShare(sid, "/srv/music", "Music", None, 2, ident(2)))
    f1 = PublishedFile("a.flac", 300_000, 1_700_000_000_123_456_789, 2**64 - 5, ident(10), (ident(11), ident(12)))
    f2 = PublishedFile("b.txt", 0, 1, 2, ident(20))
    store.replace_published_files(sid, [f1, f2])
    assert store.published_files(sid) == [f1, f2]
    assert store.unchanged_file(sid, "a.flac", 300_000, 1_700_000_000_123_456_789, 2**64 - 5) == f1
    assert store.unchanged_file(sid, "a.flac", 300_000, 1_700_000_000_123_456_790, 2**64 - 5) is None
    assert store.files_with_content(ident(10)) == [(sid, f1)]
    store.replace_published_files(sid, [f2])
    assert store.published_files(sid) == [f2]
    store.put_published_files(sid, [f1])
    assert store.published_file(sid, "a.flac") == f1 and store.delete_published_file(sid, "a.flac")
    assert store.published_share(sid).latest_seq == 2 and store.published_shares()[0].title == "Music"
    assert store.delete_share_key(sid)
    assert store.published_share(sid) is None and store.published_files(sid) == []


def test_partial_download_bitmap(store):
    p = PartialDownload(ident(1), "/tmp/x.bin", 10 * 262_144, 10)
    store.put_partial(p)
    q = store.mark_chunks_done(ident(1), "/tmp/x.bin", [0, 9, 3])
    assert [q.has_chunk(i) for i in range(10)] == [True, False, False, True] + [False] * 5 + [True]
    assert store.partial(ident(1), "/tmp/x.bin") == q and q.chunks_done == 3
    q = store.mark_chunks_done(ident(1), "/tmp/x.bin", range(10))
    assert q.complete
    with pytest.raises(IndexError):
        store.mark_chunks_done(ident(1), "/tmp/x.bin", [10])
    with pytest.raises(StoreError, match="no partial"):
        store.mark_chunks_done(ident(2), "/tmp/x.bin", [0])
    assert store.partials() == [q] and store.delete_partial(ident(1), "/tmp/x.bin") and store.partials() == []


def test_blobs_chunked_generations_and_cas(store):
    big = os.urandom(BLOB_CHUNK_SIZE * 2 + 123)
    g1 = store.put_blob("search/index", big)
    got = store.blob("search/index")
    assert got.data == big and got.generation == g1
    g2 = store.put_blob("search/index", [big[:10], big[10:]], expected_generation=g1)
    assert g2 > g1 and store.blob("search/index").data == big
    with pytest.raises(BlobConflict):
        store.put_blob("search/index", b"stale", expected_generation=g1)
    assert store.blob("search/index").data == big  # unchanged after the conflict
    with pytest.raises(BlobConflict):
        store.put_blob("search/index", b"", expected_generation=0)
    g3 = store.put_blob("search/empty", b"", expected_generation=0)
    assert store.blob("search/empty").data == b"" and g3 > g2
    assert store.blob_names("search/") == [("search/empty", g3, 0), ("search/index", g2, len(big))]
    assert store.delete_blob("search/empty") and store.blob("search/empty") is None
    g4 = store.put_blob("search/empty", b"again")
    assert g4 > g3  # generations are never reused, even after delete
    assert store.blob_generation("search/empty") == g4 and store.blob("nope") is None


def test_damaged_blob_is_reported_not_returned(store):
    store.put_blob("x", b"hello world")
    with store.transaction():  # simulate bit rot through the package-private connection
        store._exec("UPDATE blob_chunks SET data = ? WHERE name = 'x'", (b"hello w0rld",))
    with pytest.raises(StoreCorrupt, match="checksum"):
        store.blob("x")


def test_transaction_is_all_or_nothing(store):
    class Boom(Exception):
        pass

    with pytest.raises(Boom):
        with store.transaction():
            store.upsert_peer(PeerRecord("1.1.1.1", 1))
            with store.transaction():  # nested = savepoint
                store.put_blob("b", b"data")
            raise Boom
    assert store.count_peers() == 0 and store.blob("b") is None
    with store.transaction():
        store.upsert_peer(PeerRecord("1.1.1.1", 1))
        store.put_blob("b", b"data")
    assert store.count_peers() == 1 and store.blob("b").data == b"data"


def test_records_validate():
    with pytest.raises(ValueError):
        PeerRecord("h", 70000)
    with pytest.raises(ValueError):
        PeerRecord("h", 1, "udp")
    with pytest.raises(ValueError):
        Subscription(ident(1), share_pubkey=b"\x02" * 32)  # key does not hash to the id
    with pytest.raises(ValueError):
        Subscription(ident(1), latest_seq=1)
    with pytest.raises(ValueError):
        OwnedDhtValue(ident(1), b"x" * 65537, 60, 0)
    with pytest.raises(ValueError):
        PartialDownload(ident(1), "p", 1, 9, b"\x00")
    assert hashlib.sha256(b"\x01" * 32).digest() == share_id_of(b"\x01" * 32)


def test_completed_downloads(store):
    a = CompletedDownload(b"\x01" * 32, "/tmp/a.bin", 2**63 + 5, 2**64 - 1, 12, 1000)
    b = CompletedDownload(b"\x01" * 32, "/tmp/b.bin", 7, 8, 9, 1001)
    store.put_completed_download(a)
    store.put_completed_download(b)
    store.put_completed_download(a)  # idempotent
    assert store.completed_downloads() == [a, b]
    assert store.completed_downloads(b"\x02" * 32) == []
    assert store.delete_completed_download(a.content_id, a.path)
    assert store.completed_downloads(a.content_id) == [b]
    assert a.matches_stat(2**63 + 5, 2**64 - 1, 12) and not b.matches_stat(7, 8, 10)
