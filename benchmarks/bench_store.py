"""pytest-benchmark: store write paths at a size that runs quickly.

    pytest benchmarks/bench_store.py --benchmark-enable

The full-size figures (1,000,000 peers, 100,000 manifests, db size, loop stall) come from
``python benchmarks/store_bench.py``, which this file reuses.
"""

from __future__ import annotations

import itertools

import pytest

import store_bench as sb
from scp2p.store import ManifestCachePolicy, Store

PEERS = 10_000
MANIFESTS = 2_000


@pytest.fixture
def store(tmp_path):
    s = Store.open(tmp_path / "bench.db", manifest_cache=ManifestCachePolicy(max_entries=None, max_bytes=None))
    yield s
    s.close()


def test_upsert_peers(benchmark, store):
    rows = sb.peer_batch(0, PEERS, 0)
    benchmark(store.upsert_peers, rows)
    assert store.count_peers() == PEERS


def test_put_manifests(benchmark, store):
    rounds = itertools.count()
    rows = sb.manifest_batch(0, MANIFESTS, 1024, 0)

    def put() -> None:
        next(rounds)
        with store.transaction():
            for r in rows:
                store.put_manifest(r)

    benchmark(put)
    assert store.manifest_cache_usage()[0] == MANIFESTS


def test_blob_round_trip(benchmark, store):
    data = bytes(range(256)) * 16_384  # 4 MiB, like a persisted search index

    def cycle() -> bytes:
        store.put_blob("search/index", data)
        return store.blob("search/index").data

    assert benchmark(cycle) == data
