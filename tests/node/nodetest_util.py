"""Helpers for multi-node tests: real nodes on 127.0.0.1, temporary data dirs, bounded time."""

from __future__ import annotations

import asyncio
import contextlib
import functools
from pathlib import Path

from scp2p.dht.service import DhtConfig
from scp2p.node.config import NodeConfig
from scp2p.node.node import Node

FAST_DHT = DhtConfig(request_timeout=2.0, ping_timeout=1.0, lookup_timeout=10.0)


def async_test(timeout: float = 60.0):
    """Run an async test function under ``asyncio.run``, failing after ``timeout`` seconds."""

    def deco(fn):
        @functools.wraps(fn)
        def wrapper(*args, **kwargs):
            async def bounded():
                async with asyncio.timeout(timeout):
                    return await fn(*args, **kwargs)

            return asyncio.run(bounded())

        return wrapper

    return deco


def node_config(root: Path, name: str, bootstrap=(), **kw) -> NodeConfig:
    return NodeConfig(data_dir=root / name, listen=("tcp://127.0.0.1:0",), bootstrap=tuple(bootstrap),
                      sync_interval=kw.pop("sync_interval", 3600.0), **kw)  # fmt: skip


def seed_url(node: Node) -> str:
    return f"{node.listen_urls[0]}#{node.key.public_key.hex()}"


class Cluster:
    """Nodes started on demand (the first is the bootstrap node), all closed on exit."""

    def __init__(self, root: Path, **node_kw) -> None:
        self.root = root
        self.node_kw = node_kw
        self.stack = contextlib.AsyncExitStack()
        self.nodes: list[Node] = []

    async def __aenter__(self) -> "Cluster":
        await self.stack.__aenter__()
        self.nodes.append(await self.stack.enter_async_context(Node(node_config(self.root, "n0"), dht_config=FAST_DHT)))
        return self

    async def __aexit__(self, *exc) -> None:
        await self.stack.__aexit__(*exc)

    async def add(self, name: str | None = None, **kw) -> Node:
        name = name or f"n{len(self.nodes)}"
        cfg = node_config(self.root, name, bootstrap=[seed_url(self.nodes[0])], **{**self.node_kw, **kw})
        node = Node(cfg, dht_config=FAST_DHT)
        await node.start()
        self.stack.push_async_callback(node.close)
        self.nodes.append(node)
        return node
