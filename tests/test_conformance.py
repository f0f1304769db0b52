"""The conformance pack: shipped vectors pass under both backends; the runner checks any file in the format."""

from __future__ import annotations

import copy
import hashlib
import json
import os
import subprocess
import sys

import blake3
import cbor2
import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat
from helpers import ROOT, VECTORS_PATH, twin_names

from scp2p.conformance import default_vectors_path, run


def _summary(results):
    return sum(r.passed for r in results), sum(r.failed for r in results)


def _failures(results):
    return [f"{r.name}: {f}" for r in results for f in r.failures]


def test_shipped_vectors_pass(vectors):
    results = run(vectors)
    assert not _failures(results)
    passed, failed = _summary(results)
    assert failed == 0 and passed >= 70
    assert {r.name for r in results} >= {"ids", "dht_keys", "chunking", "signatures", "wire",
                                          "envelopes", "handshake", "negative"}  # fmt: skip


def test_vectors_copy_is_identical_to_shared():
    shared = ROOT.parent / "shared" / "conformance" / "vectors.json"
    if not shared.exists():
        pytest.skip("../shared is not beside this checkout (e.g. an sdist build)")
    assert VECTORS_PATH.read_bytes() == shared.read_bytes()


def test_default_path_is_the_shipped_file():
    assert default_vectors_path().read_bytes() == VECTORS_PATH.read_bytes()


@pytest.mark.parametrize("backend", twin_names())
def test_cli_under_each_backend(backend):
    env = dict(os.environ)
    env.pop("SCP2P_NO_EXTENSIONS", None)
    if backend == "pure":
        env["SCP2P_NO_EXTENSIONS"] = "1"
    proc = subprocess.run(
        [sys.executable, "-m", "scp2p.conformance"], capture_output=True, text=True, env=env, timeout=300
    )
    lines = proc.stdout.strip().splitlines()
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert f"{backend} backend" in lines[0]
    assert lines[-1].endswith("passed, 0 failed")
    assert "negative: 29 passed, 0 failed" in lines


# ----------------------------------------------------------------------------- another valid file
def _ints(b: bytes) -> list[int]:
    return list(b)


def _independent_vectors() -> dict:
    """A different valid vectors file, computed without scp2p: cbor2, cryptography, hashlib, blake3."""
    sk = Ed25519PrivateKey.from_private_bytes(bytes(range(100, 132)))
    pk = sk.public_key().public_bytes(Encoding.Raw, PublicFormat.Raw)
    sid = hashlib.sha256(pk).digest()
    items = [
        {"content_id": bytes([i]) * 32, "size": 262_145 * i, "name": f"Ünïcödé {i}.mkv",
         "mime": None if i % 2 else "video/x-matroska", "tags": ["movies", f"t{i}"],
         "chunks": [bytes([i, c]) * 16 for c in range(i + 1)]}
        for i in range(1, 4)
    ]  # fmt: skip
    fields = dict(version=1, share_pubkey=pk, share_id=sid, seq=300, created_at=1_800_000_000,
                  expires_at=None, title="другой каталог", description="x" * 30, items=items,
                  recommended_shares=[b"\xee" * 32, b"\x01" * 32])  # fmt: skip

    def item_map(it):
        return {k: (_ints(v) if k == "content_id" else [_ints(c) for c in v] if k == "chunks" else v)
                for k, v in it.items()}  # fmt: skip

    def positional(it):
        return list(item_map(it).values())

    base = [1, _ints(pk), _ints(sid), 300, 1_800_000_000, None, fields["title"], fields["description"]]
    recs = [_ints(r) for r in fields["recommended_shares"]]
    unsigned = cbor2.dumps(base + [[positional(i) for i in items], recs])
    sig = sk.sign(unsigned)
    preimage = cbor2.dumps(base + [[item_map(i) for i in items], recs, _ints(sig)])
    wire_map = dict(zip(["version", "share_pubkey", "share_id", "seq", "created_at", "expires_at", "title",
                         "description"], base))  # fmt: skip
    wire_map.update(items=[item_map(i) for i in items], recommended_shares=recs, signature=_ints(sig))
    wire = cbor2.dumps(wire_map)
    mid = blake3.blake3(preimage).digest()
    manifest_json = dict(fields, share_pubkey=pk.hex(), share_id=sid.hex(),
                         recommended_shares=[r.hex() for r in fields["recommended_shares"]],
                         items=[dict(i, content_id=i["content_id"].hex(), chunks=[c.hex() for c in i["chunks"]])
                                for i in items])  # fmt: skip

    head_signable = cbor2.dumps([_ints(sid), 300, _ints(mid), 1_800_000_005])
    head_sig = sk.sign(head_signable)
    head_value = cbor2.dumps({"share_id": _ints(sid), "latest_seq": 300, "latest_manifest_id": _ints(mid),
                              "updated_at": 1_800_000_005, "sig": _ints(head_sig)})  # fmt: skip
    head_key = hashlib.sha256(b"share:head:" + sid).digest()

    def gen(size, mul, add, mod):
        data = bytes((i * mul + add) % mod for i in range(size))
        chunks = [blake3.blake3(data[o : o + 262_144]).hexdigest() for o in range(0, size, 262_144)]
        return {"generator": {"size": size, "mul": mul, "add": add, "mod": mod, "rule": "byte i = (i*mul + add) % mod"},
                "content_id": blake3.blake3(data).hexdigest(), "chunks": chunks}  # fmt: skip

    peer = {"ip": {"V6": _ints(bytes(15) + b"\x02")}, "port": 65535, "transport": "quic", "pubkey_hint": _ints(pk)}
    providers = {"content_id": _ints(b"\x44" * 32), "providers": [peer, peer], "updated_at": 2**40}
    prov_value = cbor2.dumps(providers)
    return {
        "format": "scp2p-conformance-v1",
        "variant": "independent-test",
        "ids": [{"pubkey": pk.hex(), "share_id": sid.hex(), "node_id": sid[:20].hex()}],
        "dht_keys": [{"kind": k, "prefix": f"{k}:", "id": (b"\x5a" * 32).hex(),
                      "key": hashlib.sha256(f"{k}:".encode() + b"\x5a" * 32).hexdigest()}
                     for k in ("share:head", "manifest:loc", "content:prov")],  # fmt: skip
        "chunking": [gen(262_143, 3, 1, 256), gen(3 * 262_144 + 5, 13, 7, 241)],
        "signatures": [
            {"name": "m", "kind": "manifest", "share_secret_seed": bytes(range(100, 132)).hex(),
             "manifest": manifest_json, "unsigned_bytes": unsigned.hex(), "signature": sig.hex(),
             "manifest_id_preimage": preimage.hex(), "manifest_id": mid.hex(), "wire_bytes": wire.hex()},
            {"name": "h", "kind": "share_head", "share_secret_seed": bytes(range(100, 132)).hex(),
             "share_id": sid.hex(), "latest_seq": 300, "latest_manifest_id": mid.hex(), "updated_at": 1_800_000_005,
             "signable_bytes": head_signable.hex(), "signature": head_sig.hex(), "dht_value_bytes": head_value.hex(),
             "dht_key": head_key.hex()},
        ],  # fmt: skip
        "wire": [
            {"name": "providers", "type": 498, "payload": prov_value.hex(), "decoded": providers},
            {"name": "peer", "type": None, "payload": cbor2.dumps(peer).hex(), "decoded": peer},
            {"name": "chunk", "type": 501, "decoded": {"content_id": _ints(b"\x01" * 32), "chunk_index": 2**32 - 1,
                                                       "bytes": {"$bytes": "00ff"}},
             "payload": cbor2.dumps({"content_id": _ints(b"\x01" * 32), "chunk_index": 2**32 - 1,
                                     "bytes": b"\x00\xff"}).hex()},
        ],  # fmt: skip
        "envelopes": [
            {"name": "e", "type": 499, "req_id": 2**32 - 1, "flags": 0,
             "payload": cbor2.dumps({"content_id": _ints(b"\x09" * 32)}).hex(),
             "bytes": cbor2.dumps({"type": 499, "req_id": 2**32 - 1, "flags": 0,
                                   "payload": cbor2.dumps({"content_id": _ints(b"\x09" * 32)})}).hex()},
        ],  # fmt: skip
        "negative": [
            {"name": "prov-ok", "action": "validate_dht_value",
             "key": hashlib.sha256(b"content:prov:" + b"\x44" * 32).hexdigest(), "value": prov_value.hex(),
             "expect": "accept"},
            {"name": "head-under-prov-key", "action": "validate_dht_value",
             "key": hashlib.sha256(b"content:prov:" + b"\x44" * 32).hexdigest(), "value": head_value.hex(),
             "expect": "reject"},
            {"name": "head-verified", "action": "verify_share_head", "value": head_value.hex(),
             "share_pubkey": pk.hex(), "expect": "accept"},
            {"name": "manifest-ok", "action": "verify_manifest_wire", "bytes": wire.hex(), "expect": "accept"},
            {"name": "gen-ok", "action": "decode_envelope", "bytes": None, "expect": "accept",
             "generator": "envelope {type:501, req_id:9, flags:1, payload: 1048576 bytes of 0xab}"},
        ],  # fmt: skip
    }


def test_runner_accepts_another_valid_file(tmp_path):
    vec = _independent_vectors()
    results = run(vec)
    assert not _failures(results)
    assert _summary(results)[0] == 1 + 1 + 3 + 2 + 2 + 3 + 1 + 5
    path = tmp_path / "other.json"
    path.write_text(json.dumps(vec))
    proc = subprocess.run([sys.executable, "-m", "scp2p.conformance", str(path)], capture_output=True,
                          text=True, timeout=300)  # fmt: skip
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert proc.stdout.strip().splitlines()[-1] == "18 passed, 0 failed"


@pytest.mark.parametrize(
    "breakage",
    [
        lambda v: v["ids"][0].update(node_id="00" * 20),
        lambda v: v["signatures"][0].update(signature="00" * 64),
        lambda v: v["wire"][0]["decoded"].update(port=1),
        lambda v: v["envelopes"][0].update(req_id=8),
        lambda v: v["negative"][0].update(expect="accept"),
        lambda v: v["negative"][3].update(expect="reject"),
        lambda v: v["negative"][0].update(action="frobnicate"),
        lambda v: v.update(mystery=[{"x": 1}]),
        lambda v: v.update(format="scp2p-conformance-v9"),
        lambda v: v["chunking"][3]["chunks"].reverse(),
        lambda v: v["handshake"][0]["steps"][1].update(timestamp=1700000002),
    ],
)
def test_runner_reports_mismatches(vectors, breakage, tmp_path):
    broken = copy.deepcopy(vectors)
    breakage(broken)
    results = run(broken)
    assert _summary(results)[1] >= 1, "a broken vectors file must produce a failure"
    path = tmp_path / "broken.json"
    path.write_text(json.dumps(broken))
    proc = subprocess.run([sys.executable, "-m", "scp2p.conformance", "-q", str(path)], capture_output=True,
                          text=True, timeout=300)  # fmt: skip
    assert proc.returncode == 1
    assert "FAIL" in proc.stdout


def test_unreadable_vectors_file(tmp_path):
    bad = tmp_path / "bad.json"
    bad.write_text("{not json")
    proc = subprocess.run([sys.executable, "-m", "scp2p.conformance", str(bad)], capture_output=True, text=True,
                          timeout=60)  # fmt: skip
    assert proc.returncode == 2 and "cannot read vectors file" in proc.stderr
