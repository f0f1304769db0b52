"""The iterative lookup state machine on a synthetic clock, with honest and hostile peers."""

from __future__ import annotations

import hashlib
import random

from scp2p.dht import routing
from scp2p.dht.lookup import Lookup
from scp2p.dht.table import Contact
from scp2p.wire.records import PeerAddr


def mk(i: int) -> Contact:
    pub = hashlib.sha256(b"pub%d" % i).digest()
    return Contact.from_addr(PeerAddr("127.0.0.1", 1000 + i, pubkey_hint=pub))


WORLD = [mk(i) for i in range(300)]
BY_ID = {c.node_id: c for c in WORLD}


def honest_reply(node: Contact, target: bytes, k: int = 20) -> list[PeerAddr]:
    """A node that knows everybody answers with the k closest (never itself)."""
    others = [c.node_id for c in WORLD if c.node_id != node.node_id]
    return [BY_ID[n].addr for n in routing.closest(target, others, k)]


def drive(lk: Lookup, reply, now: float = 0.0, step: float = 0.1, limit: int = 10_000) -> float:
    """Answer every query after ``step`` seconds via ``reply(contact) -> peers | None`` (None = silent)."""
    pending: list[tuple[float, Contact, object]] = []
    for _ in range(limit):
        for q in lk.next_queries(now):
            pending.append((now + step, q.contact, reply(q.contact)))
        if lk.done:
            return now
        answerable = [p for p in pending if p[2] is not None]
        deadline = lk.next_deadline()
        if answerable and (deadline is None or answerable[0][0] <= deadline):
            at, c, peers = answerable[0]
            pending.remove(answerable[0])
            now = max(now, at)
            if isinstance(peers, tuple):  # (peers, value)
                lk.on_response(c.node_id, peers[0], now, value=peers[1])
            else:
                lk.on_response(c.node_id, peers, now)
        elif deadline is not None:
            now = deadline
            lk.handle_timer(now)
    raise AssertionError("lookup did not finish")


def test_find_node_converges_to_true_closest():
    rng = random.Random(1)
    for _ in range(5):
        target = rng.randbytes(20)
        me = WORLD[0]
        lk = Lookup(target, rng.sample(WORLD[1:], 3), self_id=me.node_id, now=0.0)
        drive(lk, lambda c: honest_reply(c, target))
        expect = routing.closest(target, [c.node_id for c in WORLD if c is not me], 20)
        assert [c.node_id for c in lk.closest()] == expect
        assert lk.queries <= 60 and lk.hops >= 1


def test_alpha_bounds_parallel_requests():
    target = bytes(20)
    lk = Lookup(target, WORLD[1:30], self_id=WORLD[0].node_id, now=0.0, alpha=3)
    first = lk.next_queries(0.0)
    assert len(first) == 3 and lk.in_flight == 3
    assert lk.next_queries(0.0) == []
    # they are the three closest seeds
    expect = routing.closest(target, [c.node_id for c in WORLD[1:30]], 3)
    assert [q.contact.node_id for q in first] == expect
    assert all(q.deadline == 5.0 for q in first)


def test_timeouts_drive_failures_and_lookup_ends():
    target = bytes(20)
    lk = Lookup(target, WORLD[1:10], self_id=WORLD[0].node_id, now=0.0, timeout=2.0)
    end = drive(lk, lambda c: None)  # nobody answers
    assert lk.done and lk.closest() == [] and lk.failures == 9
    assert end == 6.0  # three rounds of alpha=3 timeouts


def test_find_value_stops_at_first_value():
    rng = random.Random(2)
    target = rng.randbytes(20)
    holders = set(routing.closest(target, [c.node_id for c in WORLD], 5))

    def reply(c):
        return (honest_reply(c, target), b"v" if c.node_id in holders else None)

    lk = Lookup(target, rng.sample(WORLD, 3), self_id=bytes(20), now=0.0, key=target + bytes(12))
    drive(lk, reply)
    assert lk.value == b"v" and lk.value_from.node_id in holders
    assert lk.in_flight >= 0 and lk.done


def test_self_returning_and_garbage_peers_do_not_stall():
    """Every peer replies with itself, us, duplicates and key-less addresses: the lookup ends quickly."""
    me = WORLD[0]
    target = bytes(20)
    junk = [PeerAddr("127.0.0.1", 9)] * 50  # no pubkey_hint: not routable

    def reply(c):
        return [c.addr, c.addr, me.addr, *junk]

    lk = Lookup(target, WORLD[1:4], self_id=me.node_id, now=0.0)
    drive(lk, reply)
    assert lk.queries == 3 and lk.done and len(lk.closest()) == 3


def test_fake_close_nodes_are_bounded_by_max_queries():
    """A hostile peer invents fresh, unreachable 'closer' nodes in every reply."""
    rng = random.Random(3)
    target = bytes(20)
    def reply(c):
        if c.addr.port == 7:  # a fake: never answers
            return None
        return [PeerAddr("127.0.0.1", 7, pubkey_hint=rng.randbytes(32)) for _ in range(200)]

    lk = Lookup(target, WORLD[1:4], self_id=WORLD[0].node_id, now=0.0, timeout=1.0, max_queries=40)
    end = drive(lk, reply)
    assert lk.done and lk.queries <= 40
    assert end <= 40 * 1.0


def test_late_and_unsolicited_replies_are_ignored():
    lk = Lookup(bytes(20), WORLD[1:4], self_id=WORLD[0].node_id, now=0.0, timeout=1.0)
    qs = lk.next_queries(0.0)
    lk.on_response(WORLD[200].node_id, [WORLD[5].addr], 0.5)  # never asked
    lk.handle_timer(1.0)
    lk.on_response(qs[0].contact.node_id, [WORLD[5].addr], 1.5)  # too late
    assert lk.responses == 0 and lk.failures == 3
    assert lk.next_queries(1.5) == [] and lk.done
