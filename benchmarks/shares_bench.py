"""Shares: update propagation latency and publish time (issue 6, item 8).

    python benchmarks/shares_bench.py [--nodes 10] [--updates 50] [--files 10000]

1. Propagation: ``--nodes`` real nodes on 127.0.0.1 (a bootstrap node, a publisher and
   subscribers); the publisher publishes ``--updates`` updates one after another; for each,
   the time from the start of ``publish`` until each subscriber emitted ``ManifestUpdated``
   for that seq (its index holds it). Background sync every 300 s, so this measures the
   push path (the head STORE to connected peers). Reports p50/p95 per subscriber and for
   "every subscriber updated".
2. Publish time for a folder of ``--files`` small files: first publication (hash everything)
   and re-publication with one file changed. A v0.1 manifest holds at most ~4,800 one-chunk
   items (docs/shares.md), so for 10,000 files the first publication ends in
   ``ManifestTooLarge`` after scanning and hashing; the script reports that time, then
   measures 4,000 files end to end.
Prints a table and JSON lines.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from scp2p.catalog.publish import publish_folder  # noqa: E402
from scp2p.errors import ManifestTooLarge  # noqa: E402
from scp2p.identity import ShareKey  # noqa: E402
from scp2p.node import events as ev  # noqa: E402
from scp2p.node.config import NodeConfig  # noqa: E402
from scp2p.node.node import Node  # noqa: E402
from scp2p.store import Store  # noqa: E402


def pct(values: list[float], p: float) -> float:
    s = sorted(values)
    return s[min(len(s) - 1, int(round(p / 100 * (len(s) - 1))))]


async def propagation(n_nodes: int, updates: int, root: Path) -> dict:
    share = root / "share"
    share.mkdir(parents=True)
    (share / "seed.txt").write_text("0")

    def cfg(name: str, boot: str = "") -> NodeConfig:
        return NodeConfig(data_dir=root / name, listen=("tcp://127.0.0.1:0",), bootstrap=(boot,) if boot else ())

    async with Node(cfg("boot")) as boot:
        seed = f"{boot.listen_urls[0]}#{boot.key.public_key.hex()}"
        pub = Node(cfg("pub", seed))
        subs = [Node(cfg(f"sub{i}", seed)) for i in range(n_nodes - 2)]
        await pub.start()
        for s in subs:
            await s.start()
        try:
            first = await pub.publish(share)
            link = await pub.invite(first.share_id)
            for s in subs:
                await s.subscribe(link)
            streams = [s.events() for s in subs]
            per_sub: list[float] = []
            all_done: list[float] = []
            for u in range(2, updates + 2):
                (share / f"update-{u}.txt").write_text(str(u))
                t0 = time.perf_counter()
                await pub.publish(share)
                times = []
                async with asyncio.timeout(60):
                    for st in streams:
                        async for e in st:
                            if isinstance(e, ev.ManifestUpdated) and e.seq >= u:
                                times.append(time.perf_counter() - t0)
                                break
                per_sub += times
                all_done.append(max(times))
            return {
                "nodes": n_nodes, "updates": updates,
                "per_subscriber_ms": {"p50": pct(per_sub, 50) * 1e3, "p95": pct(per_sub, 95) * 1e3},
                "all_subscribers_ms": {"p50": pct(all_done, 50) * 1e3, "p95": pct(all_done, 95) * 1e3,
                                       "max": max(all_done) * 1e3},
            }  # fmt: skip
        finally:
            for s in subs:
                await s.close()
            await pub.close()


def publish_times(n_files: int, root: Path) -> list[dict]:
    out = []
    for count in ([n_files, 4000] if n_files > 4000 else [n_files]):
        folder = root / f"files-{count}"
        for i in range(count):
            d = folder / f"dir{i // 500:02d}"
            d.mkdir(parents=True, exist_ok=True)
            (d / f"note-{i:05d}.txt").write_bytes(os.urandom(200 + i % 800))
        with Store.open(root / f"db-{count}" / "scp2p.db") as store:
            key = ShareKey.generate()
            t0 = time.perf_counter()
            try:
                res = publish_folder(store, key, folder)
                first, outcome = time.perf_counter() - t0, f"seq {res.seq}, {len(res.wire):,} manifest bytes"
            except ManifestTooLarge as exc:
                out.append({"files": count, "first_s": time.perf_counter() - t0, "outcome": f"ManifestTooLarge: {exc}"})
                continue
            (folder / "dir00" / "note-00000.txt").write_bytes(b"changed")
            t0 = time.perf_counter()
            res2 = publish_folder(store, key, folder)
            again = time.perf_counter() - t0
            out.append({"files": count, "first_s": first, "republish_one_changed_s": again,
                        "rehashed": res2.hashed_files, "outcome": outcome})  # fmt: skip
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--nodes", type=int, default=10)
    ap.add_argument("--updates", type=int, default=50)
    ap.add_argument("--files", type=int, default=10_000)
    args = ap.parse_args()
    with tempfile.TemporaryDirectory(prefix="scp2p-shares-bench-") as tmp:
        prop = asyncio.run(propagation(args.nodes, args.updates, Path(tmp) / "prop"))
        pubs = publish_times(args.files, Path(tmp) / "pub")
    print(f"update propagation, {prop['nodes']} nodes, {prop['updates']} updates (push; sync interval 300 s)")
    print(f"  per subscriber        p50 {prop['per_subscriber_ms']['p50']:8.1f} ms   p95 "
          f"{prop['per_subscriber_ms']['p95']:8.1f} ms")  # fmt: skip
    a = prop["all_subscribers_ms"]
    print(f"  all subscribers done  p50 {a['p50']:8.1f} ms   p95 {a['p95']:8.1f} ms   max {a['max']:8.1f} ms")
    print("publish time")
    for r in pubs:
        if "republish_one_changed_s" in r:
            print(f"  {r['files']:>6} files: first {r['first_s']:.2f} s, re-publish with one file changed "
                  f"{r['republish_one_changed_s']:.2f} s ({r['rehashed']} re-hashed); {r['outcome']}")  # fmt: skip
        else:
            print(f"  {r['files']:>6} files: {r['first_s']:.2f} s until {r['outcome'][:100]}")
    print(json.dumps({"bench": "shares_propagation", **prop}))
    for r in pubs:
        print(json.dumps({"bench": "shares_publish", **r}))


if __name__ == "__main__":
    main()
