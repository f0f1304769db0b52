"""Identities, ids and DHT keys (PROTOCOL.md section 1)."""

from __future__ import annotations

import hashlib

import pytest

from scp2p import errors
from scp2p.identity import (
    NodeKey,
    ShareKey,
    content_prov_key,
    dht_key,
    manifest_loc_key,
    node_id,
    routing_id,
    share_head_key,
    share_id,
    verify_signature,
)


def test_ids_match_vectors(vectors):
    for case in vectors["ids"]:
        pk = bytes.fromhex(case["pubkey"])
        assert share_id(pk).hex() == case["share_id"]
        assert node_id(pk).hex() == case["node_id"]


def test_dht_key_derivations(vectors):
    derive = {"share:head": share_head_key, "manifest:loc": manifest_loc_key, "content:prov": content_prov_key}
    for case in vectors["dht_keys"]:
        ident = bytes.fromhex(case["id"])
        assert derive[case["kind"]](ident).hex() == case["key"]
        assert dht_key(case["prefix"].encode(), ident).hex() == case["key"]
    assert routing_id(b"\x01" * 32) == b"\x01" * 20


def test_keys_sign_and_verify():
    node, share = NodeKey.generate(), ShareKey.generate()
    assert node.node_id == hashlib.sha256(node.public_key).digest()[:20]
    assert share.share_id == hashlib.sha256(share.public_key).digest()
    sig = share.sign(b"msg")
    verify_signature(share.public_key, sig, b"msg")
    with pytest.raises(errors.SignatureInvalid):
        verify_signature(share.public_key, sig, b"msg!")
    with pytest.raises(errors.SignatureInvalid):
        verify_signature(node.public_key, sig, b"msg")
    assert ShareKey(share.seed) == share  # deterministic from the seed


def test_secret_never_in_repr():
    key = NodeKey(b"\x42" * 32)
    assert "42" * 8 not in repr(key)
    assert key.public_key.hex() in repr(key)


@pytest.mark.parametrize("bad", [b"", b"\x00" * 31, b"\x00" * 33, "x" * 32])
def test_bad_key_material(bad):
    with pytest.raises(errors.KeyFormatError):
        NodeKey(bad)
    with pytest.raises(errors.KeyFormatError):
        share_id(bad)


def test_invalid_public_key_is_a_signature_error():
    # not a valid curve point: a specific error, not a crash
    bad_point = bytes.fromhex("02" + "ff" * 31)
    with pytest.raises(errors.SignatureInvalid):
        verify_signature(bad_point, b"\x00" * 64, b"m")
