"""The asyncio DHT service over an in-memory link (payloads go through the wire codec)."""

from __future__ import annotations

import asyncio
import functools
import ipaddress

import pytest

from scp2p.dht.service import REPUBLISH_FRACTION, DhtConfig, DhtService
from scp2p.errors import HandshakeError, Scp2pError
from scp2p.identity import NodeKey, content_prov_key, node_id
from scp2p.store import AsyncStore
from scp2p.wire import codec
from scp2p.wire.messages import (
    TYPE_OF,
    FindNode,
    FindNodeResult,
    FindValue,
    FindValueResult,
    PexOffer,
    PexRequest,
    Store,
    decode_payload,
    encode_payload,
    RESPONSE_TYPE,
)
from scp2p.wire.records import PeerAddr, Providers

def run_async(fn):
    """Run an async test on a fresh event loop (no asyncio plugin is installed)."""

    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        return asyncio.run(fn(*args, **kwargs))

    return wrapper


FAST = DhtConfig(request_timeout=1.0, ping_timeout=1.0, lookup_timeout=20.0, tick=3600, flush_interval=0.0)


class Clock:
    def __init__(self) -> None:
        self.t = 1_700_000_000.0

    def __call__(self) -> float:
        return self.t


class FakeNet:
    """Services by (ip, port); a request is encoded, handled by the target, and its reply decoded."""

    def __init__(self) -> None:
        self.nodes: dict[tuple, DhtService] = {}
        self.down: set[tuple] = set()
        self.messages = 0

    def link(self, key: NodeKey, addr: PeerAddr) -> "FakeLink":
        return FakeLink(self, key.public_key, addr)


class FakeLink:
    def __init__(self, net: FakeNet, pubkey: bytes, addr: PeerAddr) -> None:
        self.net, self.pubkey, self.addr = net, pubkey, addr

    def _target(self, peer: PeerAddr) -> DhtService:
        ident = (str(peer.ip), peer.port)
        svc = self.net.nodes.get(ident)
        if svc is None or ident in self.net.down:
            raise ConnectionRefusedError(f"nothing at {ident}")
        if peer.pubkey_hint is not None and peer.pubkey_hint != svc.pubkey:
            raise HandshakeError("unexpected key")
        return svc

    async def request(self, peer, message, timeout):
        svc = self._target(peer)
        self.net.messages += 1
        t = TYPE_OF[type(message)]
        wire_msg = decode_payload(t, encode_payload(message))
        await asyncio.sleep(0)  # let other tasks run, as a real round trip would
        resp = svc.handle(self.pubkey, str(self.addr.ip), wire_msg)
        return svc.pubkey, decode_payload(RESPONSE_TYPE[t], encode_payload(resp), True)

    async def send(self, peer, message):
        svc = self._target(peer)
        svc.handle(self.pubkey, str(self.addr.ip), decode_payload(TYPE_OF[type(message)], encode_payload(message)))


def make(net: FakeNet, i: int, clock: Clock, **kw) -> DhtService:
    key = NodeKey(i.to_bytes(32, "big"))
    addr = PeerAddr(ipaddress.IPv4Address("127.0.0.1"), 10_000 + i, pubkey_hint=key.public_key)
    svc = DhtService(key.public_key, net.link(key, addr), self_addr=addr, config=FAST, clock=clock, **kw)
    net.nodes[("127.0.0.1", addr.port)] = svc
    return svc


async def build(n: int, clock: Clock) -> tuple[FakeNet, list[DhtService]]:
    net = FakeNet()
    nodes = [make(net, i, clock) for i in range(n)]
    seed = nodes[0].self_addr
    for s in nodes[1:]:
        await s.bootstrap([PeerAddr(seed.ip, seed.port)])  # seed known by address only
        await s.wait_idle()
    for s in nodes:  # a second round, as the periodic refresh would do
        await s.find_node(s.node_id)
        await s.wait_idle()
    return net, nodes


def provider_value(i: int) -> tuple[bytes, bytes]:
    cid = bytes([i]) * 32
    return content_prov_key(cid), codec.encode(Providers(cid, (PeerAddr("127.0.0.1", 9000 + i),), 1))


@run_async
async def test_nodes_find_each_other_and_values_survive_churn():
    clock = Clock()
    async with asyncio.timeout(60):
        net, nodes = await build(24, clock)
        for a in nodes:
            assert len(a.core.table) >= 10
            for b in nodes:
                if a is not b:
                    got = await a.find_node(b.node_id)
                    assert got and got[0].node_id == b.node_id
        keys = []
        for i in range(5):
            key, value = provider_value(i)
            assert await nodes[i].store(key, value) >= 10
            keys.append((key, value))
        for a in nodes:
            for key, value in keys:
                hit = await a.find_value(key)
                assert hit is not None and hit.value == value
        # kill 30%: values are still found by every live node
        dead = nodes[-7:]
        for d in dead:
            net.down.add(("127.0.0.1", d.self_addr.port))
        for a in nodes[:-7]:
            for key, value in keys:
                hit = await a.find_value(key)
                assert hit is not None and hit.value == value
            await a.wait_idle()
        for s in nodes:
            await s.close()


@run_async
async def test_restart_rejoins_from_peer_database_without_seeds(tmp_path):
    clock = Clock()
    async with asyncio.timeout(60):
        net, nodes = await build(12, clock)
        key, value = provider_value(1)
        await nodes[3].store(key, value)
        astore = await AsyncStore.open(tmp_path / "db")
        joiner = make(net, 100, clock, store=astore)
        await joiner.bootstrap([nodes[0].self_addr])
        await joiner.wait_idle()
        await joiner.close()  # flushes the peer database
        assert await astore.run(lambda s: s.count_peers()) >= 5
        del net.nodes[("127.0.0.1", joiner.self_addr.port)]
        again = make(net, 100, clock, store=astore)
        assert len(again.core.table) == 0
        assert await again.bootstrap([]) >= 5  # no seeds: the persisted peers
        hit = await again.find_value(key)
        assert hit is not None and hit.value == value
        await again.close()
        await astore.close()
        for s in nodes:
            await s.close()


@run_async
async def test_owner_republishes_before_expiry(tmp_path):
    clock = Clock()
    async with asyncio.timeout(60):
        net, nodes = await build(8, clock)
        astore = await AsyncStore.open(tmp_path / "db")
        owner = make(net, 50, clock, store=astore)
        await owner.bootstrap([nodes[0].self_addr])
        key, value = provider_value(7)
        ttl = 1000
        assert await owner.publish(key, value, ttl) >= 5
        holders = [s for s in nodes if key in s.core.storage]
        assert holders
        clock.t += ttl * REPUBLISH_FRACTION - 1
        await owner.maintain_once()
        assert all(s.core.storage.entry(key, clock.t).expires_at < clock.t + ttl / 2 for s in holders)
        clock.t += 2
        await owner.maintain_once()  # republished: fresh expiry everywhere it is held
        for s in holders:
            assert s.core.storage.entry(key, clock.t).expires_at >= clock.t + ttl - 5
        clock.t += ttl  # nobody serves an expired value (the owner republished once only)
        for s in nodes:
            s.core.storage.expire(clock.t - 1)
        owned = await astore.run(lambda s: s.dht_value(key))
        assert owned.next_republish_at > clock.t - ttl
        await owner.close()
        await astore.close()
        for s in nodes:
            await s.close()


@run_async
async def test_hostile_peers_floods_and_bad_values():
    clock = Clock()
    async with asyncio.timeout(60):
        net, nodes = await build(10, clock)
        victim, attacker = nodes[1], nodes[2]
        # oversize value / value under the wrong key are refused through the real handler
        key, value = provider_value(3)
        with pytest.raises(Scp2pError):
            victim.handle(attacker.pubkey, "127.0.0.1", Store(content_prov_key(bytes(32)), value, 60))
        # a flood of STORE and FIND_VALUE from one peer gets refusals; others are still served
        refused = 0
        for i in range(300):
            try:
                victim.handle(attacker.pubkey, "127.0.0.1", Store(bytes([i % 256, i // 256]) + bytes(30), b"x", 60))
            except Scp2pError:
                refused += 1
        assert refused > 200
        for _ in range(300):
            try:
                victim.handle(attacker.pubkey, "127.0.0.1", FindValue(key))
            except Scp2pError:
                refused += 1
        assert refused > 400
        assert isinstance(victim.handle(nodes[3].pubkey, "127.0.0.1", FindNode(bytes(20))), FindNodeResult)


@run_async
async def test_garbage_and_self_returning_peers_do_not_break_lookups():
    clock = Clock()
    async with asyncio.timeout(60):
        net, nodes = await build(12, clock)
        evil = nodes[5]

        def evil_handle(remote_pubkey, remote_ip, msg):
            me = evil.self_addr
            junk = tuple(PeerAddr("127.0.0.1", 1 + i, pubkey_hint=bytes([i]) * 32) for i in range(40))
            if isinstance(msg, FindNode):
                return FindNodeResult((me, me, *junk))
            if isinstance(msg, FindValue):
                # a value that does not belong to the key, plus junk
                return FindValueResult(Store(msg.key, b"\xa1" + b"garbage", 60), (me, *junk))
            if isinstance(msg, PexRequest):
                return PexOffer(junk)
            return None

        evil.handle = evil_handle
        key, value = provider_value(9)
        await nodes[0].store(key, value)
        for a in nodes:
            if a is evil or a is nodes[7]:
                continue
            hit = await a.find_value(key)
            assert hit is not None and hit.value == value
            found = await a.find_node(nodes[7].node_id)
            assert found[0].node_id == nodes[7].node_id
            assert all(c.node_id != node_id(bytes([3]) * 32) for c in found)
            await a.wait_idle()
