"""Sync rules: heads and manifests that must be rejected, schedule and backoff, blocklists."""

from __future__ import annotations

import dataclasses
import random

import pytest

from scp2p.catalog import build_manifest, encode_manifest, manifest_id, sign_share_head
from scp2p.catalog.blocklist import Blocklist, blocklist_from_manifest, blocklist_items, merge
from scp2p.catalog.sync import SyncSchedule, accept_manifest, check_head
from scp2p.errors import IdMismatch, SignatureInvalid, StaleManifest, VerificationError
from scp2p.identity import ShareKey
from scp2p.store import Subscription
from scp2p.wire.records import ItemV1

KEY = ShareKey(bytes(range(32)))
OTHER = ShareKey(bytes(range(1, 33)))


def _publish(seq, key=KEY, expires_at=10_000, items=()):
    m = build_manifest(key, seq, items, created_at=100, expires_at=expires_at)
    return m, encode_manifest(m), sign_share_head(key, seq, manifest_id(m), 100)


def test_check_head():
    sub = Subscription(KEY.share_id, KEY.public_key, latest_seq=3, latest_manifest_id=b"\x00" * 32)
    assert check_head(sub, _publish(4)[2]) is True
    assert check_head(sub, _publish(3)[2]) is False  # not newer: ignored, never applied
    assert check_head(sub, _publish(2)[2]) is False  # rollback
    forged = dataclasses.replace(_publish(5)[2], latest_seq=6)
    with pytest.raises(SignatureInvalid):
        check_head(sub, forged)
    with pytest.raises(IdMismatch):
        check_head(sub, _publish(9, OTHER)[2])
    keyless = Subscription(KEY.share_id)
    assert check_head(keyless, forged) is True  # without the key a head cannot be verified...
    m, wire, _ = _publish(5)
    with pytest.raises(VerificationError):  # ...but the manifest it points to is
        accept_manifest(keyless, forged, wire, now=200)


def test_accept_manifest_checks_everything():
    sub = Subscription(KEY.share_id, KEY.public_key, latest_seq=3, latest_manifest_id=b"\x00" * 32)
    m, wire, head = _publish(4)
    assert accept_manifest(sub, head, wire, now=200) == m
    tampered = wire.replace(b"\x07", b"\x08", 1) if b"\x07" in wire else wire[:-1] + b"\x00"
    with pytest.raises(VerificationError):
        accept_manifest(sub, head, tampered, now=200)
    with pytest.raises(IdMismatch):  # a valid manifest, but not the one the head names
        accept_manifest(sub, head, _publish(4, items=[ItemV1(b"\x01" * 32, 1, "x")])[1], now=200)
    with pytest.raises(StaleManifest):
        accept_manifest(sub, head, wire, now=20_000)  # expired
    old_m, old_wire, old_head = _publish(3)
    with pytest.raises(StaleManifest):
        accept_manifest(sub, old_head, old_wire, now=200)
    o_m, o_wire, o_head = _publish(4, OTHER)
    with pytest.raises(IdMismatch):
        accept_manifest(sub, o_head, o_wire, now=200)


def test_schedule_interval_and_backoff():
    s = SyncSchedule(interval=60, base_backoff=5, max_backoff=100, rng=random.Random(1))
    a, b = b"a" * 32, b"b" * 32
    s.add(a, 0)
    s.add(b, 0)
    assert s.due(0) == [a, b]
    s.succeeded(a, 0)
    delays = [s.failed(b, 0) for _ in range(8)]
    assert 4 <= delays[0] <= 6 and delays[-1] <= 120 and delays == sorted(delays[:5]) + delays[5:]
    assert s.due(59) == [] and s.due(60) == [a]
    s.sync_now(10)
    assert s.due(10) == [a, b]
    s.remove(a)
    assert s.due(1000) == [b]


def test_blocklist_roundtrip():
    bad_share, bad_file = b"\x05" * 32, b"\x06" * 32
    items = blocklist_items([bad_share], [bad_file], reasons={bad_file: "malware"})
    m = build_manifest(KEY, 1, items + [ItemV1(b"\x07" * 32, 3, "ok.txt")], created_at=1)
    bl = blocklist_from_manifest(m)
    assert bl.blocks(share_id=bad_share) and bl.blocks(content_id=bad_file)
    assert not bl.blocks(share_id=b"\x07" * 32, content_id=b"\x07" * 32)
    assert merge([bl, Blocklist(content_ids=frozenset({b"\x08" * 32}))]).blocks(content_id=b"\x08" * 32)
    assert not Blocklist()
