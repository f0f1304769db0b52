"""Describe-file throughput vs one raw single-pass BLAKE3 hash of the same file.

Usage (defaults: a 1 GiB file of random bytes in the temp dir, warm page cache, 7 rounds):

    python benchmarks/hashing_bench.py [--size 1G] [--rounds 7] [--path FILE] [--keep]
                                       [--min-ratio 0.8]

Each round runs every variant once, in a rotating order, on the same file,
which is read once beforehand so every run is served from the page cache.
The table gives best and median MB/s (10^6 bytes/s); the ratio is
describe_file's median rate over the median rate of the *fastest* raw
single-threaded variant. A JSON object per variant follows the table, then
one summary line. ``--min-ratio`` makes the exit status non-zero below it.

Variants:
  raw_update_mmap    blake3(max_threads=1).update_mmap(path)  (Rust mmap, one thread)
  raw_readinto       blake3(max_threads=1) fed by readinto of a reused 1 MiB buffer
  raw_mmap_slices    blake3(max_threads=1) fed 16 MiB slices of a Python mmap
  raw_readinto_overlap  one blake3 pass on a helper thread, reads overlapped on the
                     caller (uses both cores: an upper bound for one hash, not the baseline)
  describe_file      scp2p.content.describe_file (readinto ring, two threads, chunk stealing)
  mmap_two_threads   the earlier recipe: update_mmap on a helper thread while the
                     caller hashes the chunks of a Python mmap
"""

from __future__ import annotations

import argparse
import json
import mmap
import os
import platform
import statistics
import sys
import tempfile
import threading
import time
from pathlib import Path

from blake3 import blake3

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from scp2p.content import CHUNK_SIZE, describe_file  # noqa: E402

RAW = ("raw_update_mmap", "raw_readinto", "raw_mmap_slices")


# --------------------------------------------------------------------------- variants
def raw_update_mmap(path: str) -> bytes:
    h = blake3(max_threads=1)
    h.update_mmap(path)
    return h.digest()


def raw_readinto(path: str, bufsize: int = 1 << 20) -> bytes:
    h = blake3(max_threads=1)
    buf = bytearray(bufsize)
    mv = memoryview(buf)
    with open(path, "rb", buffering=0) as f:
        while n := f.readinto(buf):
            h.update(mv[:n])
    return h.digest()


def raw_mmap_slices(path: str, step: int = 16 << 20) -> bytes:
    h = blake3(max_threads=1)
    with open(path, "rb") as f:
        size = os.fstat(f.fileno()).st_size
        if size == 0:
            return h.digest()
        with mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ) as m:
            mv = memoryview(m)
            try:
                for o in range(0, size, step):
                    h.update(mv[o : o + step])
            finally:
                mv.release()
    return h.digest()


def raw_readinto_overlap(path: str, bufsize: int = 4 << 20) -> bytes:
    """One hash, but the reads overlap it: a helper thread hashes while this one reads.

    Not a single-threaded baseline (it uses the second core for the copies); it shows
    how fast one BLAKE3 pass can go when I/O is hidden, an upper bound for one hash.
    """
    import queue

    h = blake3(max_threads=1)
    bufs = [bytearray(bufsize) for _ in range(3)]
    free: queue.SimpleQueue = queue.SimpleQueue()
    work: queue.SimpleQueue = queue.SimpleQueue()
    for i in range(len(bufs)):
        free.put(i)

    def hasher() -> None:
        while (item := work.get()) is not None:
            i, n = item
            h.update(memoryview(bufs[i])[:n])
            free.put(i)

    t = threading.Thread(target=hasher)
    t.start()
    try:
        with open(path, "rb", buffering=0) as f:
            while True:
                i = free.get()
                n = f.readinto(bufs[i])
                if not n:
                    break
                work.put((i, n))
    finally:
        work.put(None)
        t.join()
    return h.digest()


def describe(path: str) -> bytes:
    return describe_file(path).content_id


def mmap_two_threads(path: str) -> bytes:
    whole = blake3(max_threads=1)
    helper = threading.Thread(target=whole.update_mmap, args=(path,))
    helper.start()
    try:
        with open(path, "rb") as f:
            size = os.fstat(f.fileno()).st_size
            if size:
                with mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ) as m:
                    mv = memoryview(m)
                    try:
                        _ = [blake3(mv[o : o + CHUNK_SIZE]).digest() for o in range(0, size, CHUNK_SIZE)]
                    finally:
                        mv.release()
    finally:
        helper.join()
    return whole.digest()


VARIANTS = {
    "raw_update_mmap": raw_update_mmap,
    "raw_readinto": raw_readinto,
    "raw_mmap_slices": raw_mmap_slices,
    "raw_readinto_overlap": raw_readinto_overlap,
    "describe_file": describe,
    "mmap_two_threads": mmap_two_threads,
}


# --------------------------------------------------------------------------- helpers
def parse_size(text: str) -> int:
    text = text.strip().upper().removesuffix("B").removesuffix("I")
    mult = {"K": 1 << 10, "M": 1 << 20, "G": 1 << 30}.get(text[-1:], 1)
    return int(float(text.rstrip("KMG")) * mult)


def make_file(path: str, size: int) -> None:
    block = 16 << 20
    with open(path, "wb") as f:
        left = size
        while left:
            n = min(block, left)
            f.write(os.urandom(n))
            left -= n


def warm(path: str) -> None:
    raw_readinto(path)


def run(path: str, rounds: int, names=None) -> dict[str, list[float]]:
    names = list(names or VARIANTS)
    size = os.path.getsize(path)
    warm(path)
    want = raw_update_mmap(path)
    times: dict[str, list[float]] = {n: [] for n in names}
    for r in range(rounds):
        order = names[r % len(names) :] + names[: r % len(names)]
        for name in order:
            t0 = time.perf_counter()
            got = VARIANTS[name](path)
            times[name].append(time.perf_counter() - t0)
            if got != want:
                raise SystemExit(f"{name}: wrong digest {got.hex()} != {want.hex()}")
    del size
    return times


def summarize(path: str, times: dict[str, list[float]]) -> tuple[list[dict], dict]:
    size = os.path.getsize(path)
    rows = []
    for name, ts in times.items():
        rows.append(
            {
                "bench": "hashing",
                "variant": name,
                "bytes": size,
                "rounds": len(ts),
                "best_mb_s": round(size / min(ts) / 1e6, 1),
                "median_mb_s": round(size / statistics.median(ts) / 1e6, 1),
                "median_s": round(statistics.median(ts), 4),
            }
        )
    by = {r["variant"]: r for r in rows}
    raw = [by[n] for n in RAW if n in by]
    baseline = max(raw, key=lambda r: r["median_mb_s"]) if raw else None
    summary = {"bench": "hashing-summary", "bytes": size, "cpus": os.cpu_count(),
               "python": platform.python_version(), "machine": platform.machine()}
    if baseline and "describe_file" in by:
        d = by["describe_file"]
        summary.update(
            baseline=baseline["variant"],
            baseline_median_mb_s=baseline["median_mb_s"],
            describe_median_mb_s=d["median_mb_s"],
            ratio_median=round(d["median_mb_s"] / baseline["median_mb_s"], 3),
            ratio_best=round(d["best_mb_s"] / max(r["best_mb_s"] for r in raw), 3),
        )
        if "raw_readinto_overlap" in by:
            summary["ratio_vs_overlapped_one_pass"] = round(
                d["median_mb_s"] / by["raw_readinto_overlap"]["median_mb_s"], 3
            )
    return rows, summary


def print_table(rows: list[dict], summary: dict) -> None:
    print(f"file: {summary['bytes']} bytes, {summary['cpus']} CPUs, Python {summary['python']}")
    print(f"{'variant':<22} {'best MB/s':>10} {'median MB/s':>12} {'median s':>9}")
    for r in rows:
        print(f"{r['variant']:<22} {r['best_mb_s']:>10.0f} {r['median_mb_s']:>12.0f} {r['median_s']:>9.3f}")
    if "ratio_median" in summary:
        print(
            f"describe_file / {summary['baseline']} (fastest raw single-thread): "
            f"{summary['ratio_median']:.3f}x median, {summary['ratio_best']:.3f}x best"
        )
    if "ratio_vs_overlapped_one_pass" in summary:
        print(
            "describe_file / raw_readinto_overlap (one pass, reads hidden on the other core): "
            f"{summary['ratio_vs_overlapped_one_pass']:.3f}x median"
        )


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--size", default="1G", help="file size for a generated file (default 1G)")
    ap.add_argument("--path", help="hash this existing file instead of generating one")
    ap.add_argument("--rounds", type=int, default=7)
    ap.add_argument("--keep", action="store_true", help="keep the generated file")
    ap.add_argument("--min-ratio", type=float, default=None)
    ap.add_argument("--variants", help="comma-separated subset of: " + ",".join(VARIANTS))
    args = ap.parse_args(argv)

    made = None
    if args.path:
        path = args.path
    else:
        fd, made = tempfile.mkstemp(prefix="scp2p-hashbench-", suffix=".bin")
        os.close(fd)
        path = made
        make_file(path, parse_size(args.size))
    try:
        names = args.variants.split(",") if args.variants else None
        rows, summary = summarize(path, run(path, args.rounds, names))
    finally:
        if made and not args.keep:
            os.unlink(made)
    print_table(rows, summary)
    for r in rows:
        print(json.dumps(r))
    print(json.dumps(summary))
    if args.min_ratio is not None and summary.get("ratio_median", 0) < args.min_ratio:
        print(f"FAIL: ratio {summary.get('ratio_median')} < {args.min_ratio}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
