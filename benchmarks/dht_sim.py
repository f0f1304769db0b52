"""DHT simulation (issue 5, item 7): the sans-I/O core on a simulated network in one process.

Usage (defaults shown):

    python benchmarks/dht_sim.py [--nodes 1000 10000] [--values 200] [--lookups 1000]
                                 [--churn 0 0.1 0.3] [--seed 1] [--refresh 0]

For each network size: ``n`` nodes join one after another (each through a random
recent node, with an own-id lookup - the same ``Lookup``/``DhtCore``/``RoutingTable``
code the asyncio service runs); ``--values`` values are STOREd from random nodes at
the K=20 closest; then, for each churn level (cumulative: the fraction of all nodes
that is down, silently - their entries stay in everybody's tables and time out),
``--lookups`` FIND_VALUE lookups from random live nodes for random stored keys.
Virtual time: 10-150 ms per reply, 2 s request timeout; alpha = 3.

Prints a table, then one JSON object per line. Hops = sequential request rounds
until the reply carrying the value; messages = requests the lookup sent.
"""

from __future__ import annotations

import argparse
import collections
import hashlib
import json
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from scp2p.dht import routing  # noqa: E402
from scp2p.dht.simnet import SimNetwork  # noqa: E402


def pct(xs: list[float], p: float) -> float:
    xs = sorted(xs)
    return xs[min(len(xs) - 1, int(p * len(xs)))] if xs else 0.0


def run(n: int, values: int, lookups: int, churns: list[float], seed: int, refresh: int) -> list[dict]:
    net = SimNetwork(seed=seed)
    t0 = time.perf_counter()
    net.add_nodes(n, refresh_buckets=refresh)
    join_s = time.perf_counter() - t0
    join_msgs = net.messages
    keys = [hashlib.sha256(b"sim-value-%d" % i).digest() for i in range(values)]
    stored = [net.store(net.rng.choice(net.nodes), k, b"v%d" % i) for i, k in enumerate(keys)]
    rows = []
    down = 0.0
    for churn in sorted(churns):
        if churn > down:
            alive = len(net.live_nodes())
            want_dead = int(round(churn * n)) - (n - alive)
            net.kill(want_dead / alive)
            down = churn
        live = net.live_nodes()
        t1 = time.perf_counter()
        outs = [net.find_value(net.rng.choice(live), net.rng.choice(keys)) for _ in range(lookups)]
        wall = time.perf_counter() - t1
        hops = [o.hops for o in outs if o.found]
        msgs = [o.messages for o in outs]
        hist = collections.Counter(hops)
        rows.append({
            "bench": "dht_sim", "nodes": n, "churn": churn, "live": len(live), "lookups": lookups,
            "success": sum(o.found for o in outs) / lookups,
            "hops_median": statistics.median(hops) if hops else None, "hops_p90": pct(hops, 0.9),
            "hops_max": max(hops, default=None), "hops_hist": dict(sorted(hist.items())),
            "msgs_mean": round(statistics.mean(msgs), 2), "msgs_median": statistics.median(msgs),
            "msgs_p90": pct(msgs, 0.9), "timeouts_mean": round(statistics.mean(o.failures for o in outs), 2),
            "virtual_s_median": round(statistics.median(o.duration for o in outs), 3),
            "replicas_min": min(stored), "join_s": round(join_s, 1), "join_msgs_per_node": round(join_msgs / n, 1),
            "table_mean": round(statistics.mean(len(x.core.table) for x in net.nodes), 1),
            "lookup_wall_ms": round(1000 * wall / lookups, 2), "routing_backend": routing.BACKEND,
        })  # fmt: skip
    return rows


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--nodes", type=int, nargs="+", default=[1000, 10000])
    ap.add_argument("--values", type=int, default=200)
    ap.add_argument("--lookups", type=int, default=1000)
    ap.add_argument("--churn", type=float, nargs="+", default=[0.0, 0.1, 0.3])
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--refresh", type=int, default=0, help="far buckets each joiner refreshes (0 = own-id lookup only)")
    args = ap.parse_args()
    rows = []
    for n in args.nodes:
        rows += run(n, args.values, args.lookups, args.churn, args.seed, args.refresh)
    hdr = f"{'nodes':>6} {'churn':>5} {'success':>8} {'hops med':>8} {'p90':>4} {'max':>4} {'msgs mean':>9} {'med':>4} {'p90':>4} {'timeouts':>8}  hop histogram"
    print(hdr)
    print("-" * len(hdr))
    for r in rows:
        print(f"{r['nodes']:>6} {r['churn']:>5.0%} {r['success']:>8.2%} {r['hops_median']:>8} {r['hops_p90']:>4} "
              f"{r['hops_max']:>4} {r['msgs_mean']:>9} {r['msgs_median']:>4} {r['msgs_p90']:>4} {r['timeouts_mean']:>8}  "
              f"{r['hops_hist']}")  # fmt: skip
    for r in rows:
        print(json.dumps(r))


if __name__ == "__main__":
    main()
