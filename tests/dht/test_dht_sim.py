"""A 200-node simulated network through the same sans-I/O core (the 10k run is benchmarks/dht_sim.py)."""

from __future__ import annotations

import hashlib
import statistics

from scp2p.dht import routing
from scp2p.dht.simnet import SimNetwork


def test_200_nodes_find_nodes_and_values_under_churn():
    net = SimNetwork(seed=7)
    net.add_nodes(200)
    ids = [n.node_id for n in net.nodes]
    # every node can find a random other node's id; lookups converge on the true closest
    for _ in range(30):
        a, b = net.rng.sample(net.nodes, 2)
        out = net.find_node(a, b.node_id)
        assert out.found
        expect = routing.closest(b.node_id, [i for i in ids if i != a.node_id], 20)
        assert [c.node_id for c in out.closest] == expect
    keys = [hashlib.sha256(b"key%d" % i).digest() for i in range(40)]
    for i, key in enumerate(keys):
        assert net.store(net.rng.choice(net.nodes), key, b"value%d" % i) == 20
    hops = []
    for i, key in enumerate(keys):
        out = net.find_value(net.rng.choice(net.nodes), key)
        assert out.found
        hops.append(out.hops)
    assert statistics.median(hops) <= 4
    net.kill(0.3)
    live = net.live_nodes()
    found = sum(net.find_value(net.rng.choice(live), key).found for key in keys)
    assert found == len(keys)
