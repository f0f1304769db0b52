"""Manifest and share-head tools (PROTOCOL.md section 3)."""

from __future__ import annotations

import dataclasses

import pytest

from scp2p import catalog, errors
from scp2p.content.hashing import describe_file
from scp2p.identity import ShareKey, share_head_key
from scp2p.limits import DEFAULT_MANIFEST_LIFETIME
from scp2p.wire.records import ItemV1


@pytest.fixture
def key():
    return ShareKey(bytes(range(32)))


def _items(n=3):
    return [ItemV1(bytes([i]) * 32, i * 10, f"f{i}.bin", None, ("t",), (bytes([i + 1]) * 32,)) for i in range(n)]


def test_build_sign_verify(key):
    m = catalog.build_manifest(key, 3, _items(), title="T", created_at=1000)
    assert m.expires_at == 1000 + DEFAULT_MANIFEST_LIFETIME
    catalog.verify_manifest(m)
    wire = catalog.encode_manifest(m)
    back = catalog.verify_manifest_wire(wire)
    assert back == m
    catalog.check_manifest_id(back, catalog.manifest_id(m))
    assert catalog.build_manifest(key, 3, [], created_at=5, expires_at=None).expires_at is None


def test_tampering_is_detected(key):
    m = catalog.build_manifest(key, 3, _items(), created_at=1000)
    for change in [dict(seq=4), dict(title="x"), dict(items=_items(2)), dict(recommended_shares=(b"\x01" * 32,))]:
        with pytest.raises(errors.SignatureInvalid):
            catalog.verify_manifest(dataclasses.replace(m, **change))
    with pytest.raises(errors.IdMismatch):
        catalog.check_manifest_id(dataclasses.replace(m, seq=4), catalog.manifest_id(m))
    other = ShareKey.generate()
    with pytest.raises(errors.IdMismatch):
        catalog.verify_manifest(dataclasses.replace(m, share_pubkey=other.public_key))
    with pytest.raises(errors.SignatureInvalid):
        catalog.verify_manifest(dataclasses.replace(m, signature=None))
    with pytest.raises(errors.VerificationError):
        catalog.verify_manifest(dataclasses.replace(m, version=2))
    with pytest.raises(errors.IdMismatch):
        catalog.sign_manifest(m, other)


def test_manifest_id_covers_signature(key):
    m = catalog.build_manifest(key, 1, _items(1), created_at=1)
    assert catalog.manifest_id(m) != catalog.manifest_id(dataclasses.replace(m, signature=b"\x00" * 64))


def test_share_head(key, vectors):
    case = next(s for s in vectors["signatures"] if s["kind"] == "share_head")
    head = catalog.sign_share_head(key, case["latest_seq"], bytes.fromhex(case["latest_manifest_id"]), case["updated_at"])
    assert catalog.encode_share_head(head).hex() == case["dht_value_bytes"]
    assert share_head_key(head.share_id).hex() == case["dht_key"]
    catalog.verify_share_head(catalog.decode_share_head(catalog.encode_share_head(head)), key.public_key)
    with pytest.raises(errors.SignatureInvalid):
        catalog.verify_share_head(dataclasses.replace(head, latest_seq=8), key.public_key)
    with pytest.raises(errors.IdMismatch):
        catalog.verify_share_head(head, ShareKey.generate().public_key)


def test_item_from_file(tmp_path):
    root = tmp_path / "share"
    (root / "Music" / "Jazz").mkdir(parents=True)
    f = root / "Music" / "Jazz" / "take five.mp3"
    f.write_bytes(b"\x01" * 300_000)
    item = catalog.item_from_file(f, root=root, tags=["live", "jazz", ""])
    desc = describe_file(f)
    assert item.name == "take five.mp3" and item.size == 300_000
    assert item.content_id == desc.content_id and item.chunks == desc.chunks and len(item.chunks) == 2
    assert item.mime == "audio/mpeg"
    assert item.tags == ("music", "jazz", "live")
    plain = tmp_path / "noext"
    plain.write_bytes(b"")
    empty = catalog.item_from_file(plain)
    assert empty.mime == catalog.DEFAULT_MIME and empty.chunks == () and empty.tags == ()


def test_decode_manifest_enforces_the_1mib_limit(key):
    items = [ItemV1(bytes([i % 256]) * 32, 1, "n" * 200, "x/y", (), tuple(bytes([7]) * 32 for _ in range(8)))
             for i in range(2500)]  # fmt: skip
    m = catalog.build_manifest(key, 1, items, created_at=1)
    wire = catalog.encode_manifest(m)
    assert len(wire) > 1 << 20
    with pytest.raises(errors.LimitExceeded):
        catalog.decode_manifest(wire)
    assert catalog.decode_manifest(wire, max_size=len(wire)) == m
