"""Child process for test_store_crash.py: writes one kind of multi-row change forever, until SIGKILLed.

Usage: python crash_writer.py DB KIND SEED. Prints "ready", then "begin G" / "done G" around each
transaction. Every kind keeps an invariant that ``check_invariants`` verifies after a kill.
"""

from __future__ import annotations

import hashlib
import random
import sys

from scp2p.errors import WrongPassphrase
from scp2p.store import (
    KdfParams,
    ManifestCachePolicy,
    ManifestRow,
    OwnedDhtValue,
    PartialDownload,
    PeerRecord,
    PublishedFile,
    PublishedShare,
    Store,
    Subscription,
)

KDF = KdfParams(n_log2=4)
PASSPHRASES = ("alpha", "beta")
CACHE = ManifestCachePolicy(max_entries=40, max_bytes=None)
N_PEERS = 400
N_SUBS = 12
N_DHT = 30
SHARE_SEEDS = [bytes([s]) * 32 for s in range(1, 6)]
NODE_SEED = b"\x77" * 32
CHUNKS = 64
KINDS = ("peers", "files", "heads", "manifests", "blob", "keys", "dht_partial")


def h(*parts: object) -> bytes:
    return hashlib.sha256(repr(parts).encode()).digest()


def open_store(path: str) -> Store:
    try:
        return Store.open(path, passphrase=PASSPHRASES[0], kdf=KDF, manifest_cache=CACHE)
    except WrongPassphrase:
        return Store.open(path, passphrase=PASSPHRASES[1], kdf=KDF, manifest_cache=CACHE)


def blob_bytes(g: int) -> bytes:
    n = (g * 7919) % (3 * 1024 * 1024)
    head = g.to_bytes(8, "big")
    return head + (hashlib.sha256(head).digest() * (n // 32 + 1))[:n]


def setup(s: Store) -> None:
    """Rows the writers update; created once in a single transaction."""
    with s.transaction():
        if s.node_key() is None:
            s.set_node_key(NODE_SEED)
        for seed in SHARE_SEEDS:
            s.add_share_key(seed)
        share = s.share_keys()[0].share_id
        if s.published_share(share) is None:
            s.put_published_share(PublishedShare(share, "/srv"))
        for i in range(N_SUBS):
            if s.subscription(h("sub", i)) is None:
                s.put_subscription(Subscription(h("sub", i)))
        if s.partial(h("content"), "/dl/x") is None:
            s.put_partial(PartialDownload(h("content"), "/dl/x", CHUNKS * 262_144, CHUNKS))


def write(s: Store, kind: str, g: int, rng: random.Random) -> None:
    share = s.share_keys()[0].share_id if kind == "files" else b""
    if kind == "peers":
        s.upsert_peers(PeerRecord(f"10.0.{i >> 8}.{i & 255}", 4000, "tcp", h("n", i)[:20], None, 1, g, g % 7, float(g))
                       for i in range(N_PEERS))
    elif kind == "files":
        n = 1 + g % 60
        s.replace_published_files(share, [PublishedFile(f"f{i}", g, g, i, h("c", g, i), (h("k", g, i),) * 3) for i in range(n)])
    elif kind == "heads":
        with s.transaction():
            mid = h("m", g)
            s.put_manifest(ManifestRow(mid, h("share"), g, g, None, mid * 20, f"g{g}", 1), pinned=True)
            for i in range(N_SUBS):
                s.advance_subscription_head(h("sub", i), g, mid)
    elif kind == "manifests":
        for _ in range(5):
            m = rng.randrange(1 << 30)
            s.put_manifest(ManifestRow(h("cache", m), h("share2"), m, 1, None, b"x" * rng.randrange(1, 5000)))
    elif kind == "blob":
        s.put_blob("search/index", blob_bytes(g))
    elif kind == "keys":
        s.change_passphrase(PASSPHRASES[g % 2], kdf=KDF)
    elif kind == "dht_partial":
        with s.transaction():
            s.put_dht_values(OwnedDhtValue(h("dht", i), h("v", g) * 4, 3600, g) for i in range(N_DHT))
            p = s.partial(h("content"), "/dl/x")
            s.put_partial(PartialDownload(p.content_id, p.target_path, p.size, p.chunk_count,
                                          bytes(CHUNKS // 8), None, None))
            s.mark_chunks_done(h("content"), "/dl/x", range(g % (CHUNKS + 1)))
            s.put_blob("dht/last", g.to_bytes(8, "big"))
    else:
        raise ValueError(kind)


def check_invariants(s: Store) -> dict[str, int]:
    """Raise AssertionError if any multi-row write is half applied. Returns a few counters."""
    node = s.node_key()
    if node is None:  # killed before setup() committed: then nothing of it may exist
        assert s.share_keys() == [] and s.subscriptions() == [] and s.partials() == []
        return {"peers": 0, "files": 0, "manifests": 0}
    assert node.seed == NODE_SEED  # every key decrypts under one passphrase (raises otherwise)
    assert sorted(k.key.seed for k in s.share_keys()) == sorted(SHARE_SEEDS)
    peers = s.peers()
    assert len(peers) in (0, N_PEERS), len(peers)
    assert len({(p.last_seen, p.score, p.failures) for p in peers}) <= 1, "peer batch half applied"
    share = s.share_keys()[0].share_id
    files = s.published_files(share)
    if files:
        g = files[0].size
        assert len(files) == 1 + g % 60 and all(f.size == g and f.mtime_ns == g for f in files), "file list half replaced"
    heads = {(x.latest_seq, x.latest_manifest_id) for x in s.subscriptions()}
    assert len(heads) == 1, f"subscription heads half advanced: {len(heads)} distinct"
    seq, mid = heads.pop()
    if seq is not None:
        assert s.manifest(mid, touch=False).seq == seq, "head without its manifest"
    count, size = s.manifest_cache_usage()
    actual = s._all("SELECT count(*), coalesce(sum(size), 0) FROM manifests WHERE pinned = 0")[0]
    assert (count, size) == actual and count <= CACHE.max_entries, (count, size, actual)
    b = s.blob("search/index")  # raises StoreCorrupt if chunks and checksum disagree
    if b is not None:
        assert b.data == blob_bytes(int.from_bytes(b.data[:8], "big")), "blob torn"
    dht = s.dht_values()
    assert len(dht) in (0, N_DHT) and len({(v.value, v.next_republish_at) for v in dht}) <= 1, "dht batch half applied"
    if dht:
        g = dht[0].next_republish_at
        assert s.partial(h("content"), "/dl/x").chunks_done == g % (CHUNKS + 1), "bitmap out of step"
        assert s.blob("dht/last").data == g.to_bytes(8, "big")
    return {"peers": len(peers), "files": len(files), "manifests": count}


def main() -> None:
    path, kind, seed = sys.argv[1], sys.argv[2], int(sys.argv[3])
    rng = random.Random(seed)
    s = open_store(path)
    setup(s)
    print("ready", flush=True)
    g = seed * 1_000_000
    while True:
        g += 1
        print(f"begin {g}", flush=True)
        write(s, kind, g, rng)
        print(f"done {g}", flush=True)


if __name__ == "__main__":
    main()
