"""Store throughput (issue 3, item 7): insert/update 1,000,000 peer rows and 100,000 manifest rows.

Usage (defaults shown):

    python benchmarks/store_bench.py [--peers 1000000] [--manifests 100000] [--manifest-size 1024]
                                     [--batch 10000] [--dir DIR]

Rows are written through the public ``Store`` methods (``upsert_peers`` per batch; ``put_manifest``
per row, ``--batch`` rows per transaction), so the figures include validation, u64 mapping and the
LRU bookkeeping, not just raw SQLite. Record construction happens outside the timed region.
"update" re-writes the same keys (the ON CONFLICT paths). Sizes are the database file plus its
-wal after a final checkpoint. A last row measures the worst event-loop stall while an
``AsyncStore`` writes peers. Prints a table, then one JSON object per line.
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import hashlib
import json
import os
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from scp2p.store import AsyncStore, ManifestCachePolicy, ManifestRow, PeerRecord, Store  # noqa: E402


def peer_batch(start: int, n: int, round_: int) -> list[PeerRecord]:
    return [PeerRecord(f"10.{(i >> 16) & 255}.{(i >> 8) & 255}.{i & 255}", 4000 + (i >> 24), "tcp",
                       hashlib.sha1(i.to_bytes(8, "big")).digest(), None, 1_700_000_000, 1_700_000_000 + round_,
                       round_, float(i % 100)) for i in range(start, start + n)]


def manifest_batch(start: int, n: int, size: int, round_: int) -> list[ManifestRow]:
    out = []
    for i in range(start, start + n):
        mid = hashlib.sha256(i.to_bytes(8, "big")).digest()
        out.append(ManifestRow(mid, hashlib.sha256(b"s" + (i % 500).to_bytes(4, "big")).digest(), i + round_,
                               1_700_000_000, None, (mid * (size // 32 + 1))[:size], f"manifest {i}", 10))
    return out


def db_size(path: Path) -> int:
    return sum(p.stat().st_size for p in (path, Path(f"{path}-wal")) if p.exists())


def run_peers(store: Store, total: int, batch: int, round_: int) -> float:
    elapsed = 0.0
    for start in range(0, total, batch):
        rows = peer_batch(start, min(batch, total - start), round_)
        t0 = time.perf_counter()
        store.upsert_peers(rows)
        elapsed += time.perf_counter() - t0
    return elapsed


def run_manifests(store: Store, total: int, batch: int, size: int, round_: int) -> float:
    elapsed = 0.0
    for start in range(0, total, batch):
        rows = manifest_batch(start, min(batch, total - start), size, round_)
        t0 = time.perf_counter()
        with store.transaction():
            for r in rows:
                store.put_manifest(r)
        elapsed += time.perf_counter() - t0
    return elapsed


def loop_stall(path: Path, total: int = 200_000, batch: int = 5_000) -> float:
    async def main() -> float:
        batches = [peer_batch(s, batch, 0) for s in range(0, total, batch)]
        gc.collect()
        gc.freeze()
        lags: list[float] = []
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()

        async def probe() -> None:
            while not stop.is_set():
                t0 = loop.time()
                await asyncio.sleep(0.001)
                lags.append(loop.time() - t0 - 0.001)

        async with await AsyncStore.open(path) as astore:
            task = asyncio.create_task(probe())
            for rows in batches:
                await astore.run(Store.upsert_peers, rows)
            stop.set()
            await task
        gc.unfreeze()
        return max(lags)

    return asyncio.run(main())


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--peers", type=int, default=1_000_000)
    ap.add_argument("--manifests", type=int, default=100_000)
    ap.add_argument("--manifest-size", type=int, default=1024)
    ap.add_argument("--batch", type=int, default=10_000)
    ap.add_argument("--dir", default=None, help="where to put the database (default: a temp dir, removed)")
    args = ap.parse_args()

    tmp = tempfile.TemporaryDirectory(prefix="scp2p-store-bench-", dir=args.dir)
    path = Path(tmp.name) / "bench.db"
    results = []
    store = Store.open(path, manifest_cache=ManifestCachePolicy(max_entries=None, max_bytes=None))
    try:
        for op, round_ in (("insert", 0), ("update", 1)):
            secs = run_peers(store, args.peers, args.batch, round_)
            store.checkpoint(truncate=True)
            results.append({"table": "peers", "op": op, "rows": args.peers, "seconds": secs,
                            "rows_per_s": args.peers / secs, "db_bytes": db_size(path)})
        for op, round_ in (("insert", 0), ("update", 1)):
            secs = run_manifests(store, args.manifests, max(1, args.batch // 10), args.manifest_size, round_)
            store.checkpoint(truncate=True)
            results.append({"table": "manifests", "op": op, "rows": args.manifests, "seconds": secs,
                            "rows_per_s": args.manifests / secs, "db_bytes": db_size(path),
                            "manifest_bytes": args.manifest_size})
        assert store.count_peers() == args.peers and store.manifest_cache_usage()[0] == args.manifests
    finally:
        store.close()
    stall = loop_stall(Path(tmp.name) / "stall.db")
    tmp.cleanup()

    print(f"{'table':<10} {'op':<7} {'rows':>10} {'seconds':>9} {'rows/s':>10} {'db MiB':>9}")
    for r in results:
        print(f"{r['table']:<10} {r['op']:<7} {r['rows']:>10,} {r['seconds']:>9.2f} {r['rows_per_s']:>10,.0f} "
              f"{r['db_bytes'] / 2**20:>9.1f}")
    print(f"worst event-loop stall, AsyncStore writing 200,000 peers in 5,000-row transactions: {stall * 1000:.1f} ms")
    print(f"(manifest wire size {args.manifest_size} B; SQLite {__import__('apsw').sqlitelibversion()}, "
          f"Python {sys.version.split()[0]}, {os.cpu_count()} CPUs)")
    for r in results:
        print(json.dumps(r))
    print(json.dumps({"loop_stall_ms": round(stall * 1000, 2)}))


if __name__ == "__main__":
    main()
