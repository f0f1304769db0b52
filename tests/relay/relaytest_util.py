"""Helpers for relay loopback tests (the node tests' helpers, plus a config for outbound-only nodes)."""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "node"))

from nodetest_util import FAST_DHT, async_test, seed_url  # noqa: E402

from scp2p.node.config import NodeConfig  # noqa: E402


def node_config(root: Path, name: str, *, listen=("tcp://127.0.0.1:0",), bootstrap=(), **kw) -> NodeConfig:
    """``listen=()`` makes an outbound-only node: the simulated NAT."""
    return NodeConfig(data_dir=root / name, listen=tuple(listen), bootstrap=tuple(bootstrap),
                      sync_interval=3600.0, auto_sync=False, **kw)  # fmt: skip


__all__ = ["FAST_DHT", "async_test", "node_config", "seed_url"]
