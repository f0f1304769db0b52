"""Real sockets on 127.0.0.1: 20 DHT nodes over the transport's Endpoint (TCP, port 0)."""

from __future__ import annotations

import asyncio
import functools

import pytest

from scp2p.catalog.invite import Invite, InvitePeer, parse_invite
from scp2p.dht.link import invite_peer_addrs, make_service
from scp2p.dht.service import DhtConfig
from scp2p.errors import Scp2pError
from scp2p.identity import NodeKey, content_prov_key
from scp2p.store import AsyncStore
from scp2p.transport.endpoint import Endpoint
from scp2p.wire import codec
from scp2p.wire.messages import FindNode, FindNodeResult, FindValue, MsgType, Store
from scp2p.wire.records import PeerAddr, Providers

CFG = DhtConfig(request_timeout=3.0, ping_timeout=2.0, lookup_timeout=20.0, tick=3600, flush_interval=0.0)


def run_async(fn):
    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        return asyncio.run(fn(*args, **kwargs))

    return wrapper


class Node:
    def __init__(self, seed: int, store=None) -> None:
        self.key = NodeKey(seed.to_bytes(32, "big"))
        self.store = store
        self.ep = None
        self.dht = None

    async def start(self) -> "Node":
        self.ep = Endpoint(self.key, listen=["tcp://127.0.0.1:0"])
        await self.ep.start()
        self.dht = make_service(self.ep, store=self.store, config=CFG)
        return self

    @property
    def addr(self) -> PeerAddr:
        return self.dht.self_addr

    async def stop(self) -> None:
        if self.dht is not None:
            await self.dht.close()
        if self.ep is not None:
            await self.ep.close()


def value(i: int) -> tuple[bytes, bytes]:
    cid = bytes([i]) * 32
    return content_prov_key(cid), codec.encode(Providers(cid, (PeerAddr("127.0.0.1", 7000 + i),), 1))


async def network(n: int) -> list[Node]:
    nodes = [await Node(i + 1).start() for i in range(n)]
    seed = PeerAddr(nodes[0].addr.ip, nodes[0].addr.port)  # by address only, as in a config file
    for nd in nodes[1:]:
        await nd.dht.bootstrap([seed])
        await nd.dht.wait_idle()
    for nd in nodes:
        await nd.dht.find_node(nd.dht.node_id)
        await nd.dht.wait_idle()
    return nodes


@run_async
async def test_twenty_nodes_find_ids_and_values_and_survive_30_percent_loss(tmp_path):
    nodes: list[Node] = []
    try:
        async with asyncio.timeout(80):
            nodes = await network(20)
            for a in nodes:
                for b in nodes:
                    if a is not b:
                        got = await a.dht.find_node(b.dht.node_id)
                        assert got and got[0].node_id == b.dht.node_id
            stored = [value(i) for i in range(3)]
            for i, (k, v) in enumerate(stored):
                assert await nodes[i].dht.store(k, v) >= 10
            for a in nodes:
                for k, v in stored:
                    hit = await a.dht.find_value(k)
                    assert hit is not None and hit.value == v
            # kill 30% of the nodes (not the storers): values are still found
            for nd in nodes[-6:]:
                await nd.stop()
            live = nodes[:-6]
            for a in live:
                for k, v in stored:
                    hit = await a.dht.find_value(k)
                    assert hit is not None and hit.value == v
    finally:
        for nd in nodes:
            await nd.stop()


@run_async
async def test_restarted_node_rejoins_from_its_peer_database(tmp_path):
    nodes: list[Node] = []
    joiner = None
    try:
        async with asyncio.timeout(60):
            nodes = await network(8)
            k, v = value(9)
            await nodes[2].dht.store(k, v)
            astore = await AsyncStore.open(tmp_path / "db")
            joiner = await Node(100, astore).start()
            await joiner.dht.bootstrap([nodes[0].addr])
            await joiner.dht.wait_idle()
            await joiner.stop()
            assert await astore.run(lambda s: s.count_peers()) >= 5
            joiner = await Node(100, astore).start()  # new port, no seeds
            assert await joiner.dht.bootstrap([]) >= 5
            hit = await joiner.dht.find_value(k)
            assert hit is not None and hit.value == v
            await joiner.stop()
            joiner = None
            await astore.close()
    finally:
        if joiner is not None:
            await joiner.stop()
        for nd in nodes:
            await nd.stop()


@run_async
async def test_hostile_peers_over_sockets():
    """Floods get error responses while others are served; a peer answering garbage and
    itself in every FIND_NODE reply does not stop lookups finishing correctly."""
    nodes: list[Node] = []
    try:
        async with asyncio.timeout(60):
            nodes = await network(8)
            victim, flooder, other = nodes[1], nodes[2], nodes[3]
            refused = 0
            for i in range(400):  # beyond the STORE burst (200) and the unknown-keyspace quota (64)
                try:
                    await flooder.ep.pool.request(victim.addr, Store(i.to_bytes(2, "big") + bytes(30), b"x", 60),
                                                  timeout=5)  # fmt: skip
                except Scp2pError:
                    refused += 1
            assert refused >= 300
            # the victim still serves others (and holds what the flooder got in before the limit)
            res = await other.ep.pool.request(victim.addr, FindValue(bytes(32)), timeout=5)
            assert res.value is not None and res.value.value == b"x"
            assert (await other.ep.pool.request(victim.addr, FindValue(b"\xff" * 32), timeout=5)).value is None
            k, v = value(1)
            with pytest.raises(Scp2pError):  # a value under the wrong key
                await other.ep.pool.request(victim.addr, Store(content_prov_key(bytes(32)), v, 60), timeout=5)
            # an evil node: itself plus unroutable junk in every FIND_NODE / FIND_VALUE reply
            evil = nodes[4]
            junk = tuple(PeerAddr("127.0.0.1", 1 + i, pubkey_hint=bytes([i]) * 32) for i in range(30))

            async def evil_handler(ctx, message):
                return FindNodeResult((evil.addr, evil.addr, *junk))

            evil.ep.dispatcher.register(MsgType.FIND_NODE, evil_handler, replace=True)
            await nodes[0].dht.store(k, v)
            for a in nodes:
                if a is evil or a is nodes[6]:
                    continue
                found = await a.dht.find_node(nodes[6].dht.node_id)
                assert found[0].node_id == nodes[6].dht.node_id
                hit = await a.dht.find_value(k)
                assert hit is not None and hit.value == v
            assert isinstance(await other.ep.pool.request(victim.addr, FindNode(bytes(20)), timeout=5), FindNodeResult)
    finally:
        for nd in nodes:
            await nd.stop()


def test_invite_link_peers_become_bootstrap_addresses():
    key = NodeKey(bytes([9]) * 32)
    inv = Invite(bytes(32), None, (InvitePeer("tcp://127.0.0.1:7001", key.public_key), InvitePeer("tls://127.0.0.1:7002"),
                                   InvitePeer("quic://[::1]:7003")))  # fmt: skip
    addrs = invite_peer_addrs(parse_invite(inv.to_link()))
    assert [(str(a.ip), a.port, str(a.transport), a.pubkey_hint) for a in addrs] == [
        ("127.0.0.1", 7001, "tcp", key.public_key), ("::1", 7003, "quic", None)]


@run_async
async def test_bootstrap_from_an_invite_link():
    nodes: list[Node] = []
    try:
        async with asyncio.timeout(30):
            nodes = await network(4)
            first = nodes[0].addr
            link = Invite(bytes(32), None, (InvitePeer(f"tcp://127.0.0.1:{first.port}", first.pubkey_hint),)).to_link()
            late = await Node(50).start()
            nodes.append(late)
            assert await late.dht.bootstrap(invite_peer_addrs(parse_invite(link))) >= 3
    finally:
        for nd in nodes:
            await nd.stop()
