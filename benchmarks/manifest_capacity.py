"""How many items fit in a v0.1 manifest (1 MiB MANIFEST_DATA payload)?

    python benchmarks/manifest_capacity.py

For typical names (``IMG_20240512_183045.jpg``-like, ~24 characters), a mime type and two
folder tags, finds by bisection the largest item count whose signed manifest fits, for
several file sizes (the chunk-hash list grows by one 32-byte hash per 256 KiB). Prints a
table and JSON lines.
"""

from __future__ import annotations

import json
import random
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from scp2p.catalog import build_manifest, encode_manifest, manifest_id  # noqa: E402
from scp2p.catalog.publish import manifest_payload_size  # noqa: E402
from scp2p.identity import ShareKey  # noqa: E402
from scp2p.limits import CHUNK_SIZE, MAX_PAYLOAD  # noqa: E402
from scp2p.wire.records import ItemV1  # noqa: E402

KEY = ShareKey(bytes(32))
SIZES = [("100 KiB", 100 * 1024), ("1 MiB", 1 << 20), ("4 MiB", 4 << 20), ("10 MiB", 10 << 20),
         ("100 MiB", 100 << 20), ("1 GiB", 1 << 30)]  # fmt: skip


def items(n: int, size: int, rng: random.Random) -> list[ItemV1]:
    nchunks = -(-size // CHUNK_SIZE)
    return [
        ItemV1(rng.randbytes(32), size, f"IMG_2024{rng.randrange(10**4):04d}_{rng.randrange(10**6):06d}.jpg",
               "image/jpeg", ("photos", "2024"), tuple(rng.randbytes(32) for _ in range(nchunks)))
        for _ in range(n)
    ]  # fmt: skip


def fits(n: int, size: int) -> tuple[bool, int]:
    m = build_manifest(KEY, 1, items(n, size, random.Random(n)), title="My photos", created_at=1_700_000_000)
    wire = encode_manifest(m)
    payload = manifest_payload_size(manifest_id(m), wire)
    return payload <= MAX_PAYLOAD, payload


def capacity(size: int) -> tuple[int, int]:
    lo, hi = 0, 1
    while fits(hi, size)[0]:
        lo, hi = hi, hi * 2
    while hi - lo > 1:
        mid = (lo + hi) // 2
        lo, hi = (mid, hi) if fits(mid, size)[0] else (lo, mid)
    return lo, fits(lo, size)[1]


def main() -> None:
    print(f"{'file size':>10} {'chunks/item':>12} {'max items':>10} {'payload bytes':>14} {'bytes/item':>11}")
    rows = []
    for label, size in SIZES:
        n, payload = capacity(size)
        per = payload / n if n else float("nan")
        print(f"{label:>10} {-(-size // CHUNK_SIZE):>12} {n:>10} {payload:>14,} {per:>11.0f}")
        rows.append({"bench": "manifest_capacity", "file_size": size, "max_items": n, "payload_bytes": payload})
    for r in rows:
        print(json.dumps(r))


if __name__ == "__main__":
    main()
