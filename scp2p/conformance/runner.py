"""Conformance runner: checks a ``scp2p-conformance-v1`` vectors file against this implementation.

Every section of the file is checked under the active codec backend; the wire
is checked both ways (encode the decoded form -> exact bytes; decode the
bytes -> the decoded form). A section or action this runner does not know is a
failure, never silently skipped. ``negative`` cases pass only with the expected
outcome: ``reject`` needs a specific :class:`~scp2p.errors.Scp2pError` (any other
exception is a crash, a failure), ``reject_or_clamp`` accepts a rejection or a
clamped result.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import cbor2

from .. import catalog, limits
from ..content import hashing
from ..dht.values import decode_store, validate_dht_value
from ..errors import Scp2pError
from ..identity import NodeKey, ShareKey, dht_key, node_id, share_head_key, share_id
from ..transport.hello import (
    decode_hello,
    hello_signing_bytes,
    initiator_verify_hello_frame,
    make_hello,
    verify_hello,
)
from ..wire import codec
from ..wire.framing import encode_frame, read_envelope_frame, read_frame, read_handshake_frame
from ..wire.jsonform import from_json, to_json
from ..wire.messages import decode_envelope, decode_payload, decode_typed, payload_classes
from ..wire.records import Capabilities, Envelope, ManifestV1, PeerAddr

FORMAT = "scp2p-conformance-v1"
META_KEYS = frozenset({"format", "variant", "notes", "actions"})


class CaseFailed(Exception):
    """A vector did not match (internal to the runner)."""


@dataclass
class SectionResult:
    name: str
    passed: int = 0
    failed: int = 0
    failures: list[str] = field(default_factory=list)


def _hex(s: str | None) -> bytes | None:
    return None if s is None else bytes.fromhex(s)


def _eq(what: str, actual: Any, expected: Any) -> None:
    if actual != expected:
        if isinstance(actual, bytes) and isinstance(expected, bytes):
            actual, expected = actual.hex(), expected.hex()
        a, e = repr(actual), repr(expected)
        if len(a) > 160:
            a = a[:160] + "..."
        if len(e) > 160:
            e = e[:160] + "..."
        raise CaseFailed(f"{what}: got {a}, expected {e}")


# ----------------------------------------------------------------------------- positive sections
def _case_ids(c: dict) -> None:
    pk = _hex(c["pubkey"])
    if "share_id" in c:
        _eq("share_id", share_id(pk).hex(), c["share_id"])
    if "node_id" in c:
        _eq("node_id", node_id(pk).hex(), c["node_id"])


def _case_dht_key(c: dict) -> None:
    _eq("dht key", dht_key(c["prefix"].encode(), _hex(c["id"])).hex(), c["key"])


def _generate(gen: dict) -> bytes:
    """Bytes by the rule ``byte i = (i*mul + add) % mod``, which repeats with period ``mod``."""
    size, mul, add, mod = gen["size"], gen["mul"], gen["add"], gen["mod"]
    period = bytes((i * mul + add) % mod for i in range(mod))
    return (period * (size // mod + 1))[:size]


def _case_chunking(c: dict) -> None:
    desc = hashing.describe_bytes(_generate(c["generator"]))
    _eq("content_id", desc.content_id.hex(), c["content_id"])
    _eq("chunks", [h.hex() for h in desc.chunks], c["chunks"])
    _eq("size", desc.size, c["generator"]["size"])


def _case_signature(c: dict) -> None:
    key = ShareKey(_hex(c["share_secret_seed"]))
    kind = c["kind"]
    if kind == "manifest":
        m = from_json(ManifestV1, c["manifest"])
        _eq("share_pubkey from seed", key.public_key, m.share_pubkey)
        _eq("unsigned_bytes", catalog.manifest_signing_bytes(m), _hex(c["unsigned_bytes"]))
        signed = catalog.sign_manifest(m, key)
        _eq("signature", signed.signature, _hex(c["signature"]))
        _eq("manifest_id_preimage", catalog.manifest_id_preimage(signed), _hex(c["manifest_id_preimage"]))
        _eq("manifest_id", catalog.manifest_id(signed).hex(), c["manifest_id"])
        wire = _hex(c["wire_bytes"])
        _eq("wire_bytes", catalog.encode_manifest(signed), wire)
        decoded = catalog.verify_manifest_wire(wire)
        _eq("decoded manifest", decoded, signed)
        catalog.check_manifest_id(decoded, _hex(c["manifest_id"]))
    elif kind == "share_head":
        head = catalog.sign_share_head(key, c["latest_seq"], _hex(c["latest_manifest_id"]), c["updated_at"])
        _eq("share_id", head.share_id.hex(), c["share_id"])
        _eq("signable_bytes", catalog.share_head_signing_bytes(head), _hex(c["signable_bytes"]))
        _eq("signature", head.sig.hex(), c["signature"])
        _eq("dht_value_bytes", catalog.encode_share_head(head), _hex(c["dht_value_bytes"]))
        decoded = catalog.decode_share_head(_hex(c["dht_value_bytes"]))
        catalog.verify_share_head(decoded, key.public_key)
        _eq("decoded head", decoded, head)
        if "dht_key" in c:
            _eq("dht_key", share_head_key(head.share_id).hex(), c["dht_key"])
    else:
        raise CaseFailed(f"unknown signature kind {kind!r}")


def _wire_candidates(c: dict) -> tuple[type, ...]:
    t = c.get("type")
    if t is None:
        return (PeerAddr,)
    return payload_classes(t)


def _case_wire(c: dict) -> None:
    payload = _hex(c["payload"])
    decoded = c["decoded"]
    errors = []
    for cls in _wire_candidates(c):
        try:
            record = from_json(cls, decoded)
        except Scp2pError as exc:
            errors.append(f"{cls.__name__}: {exc}")
            continue
        _eq(f"encode {cls.__name__}", codec.encode(record), payload)
        back = codec.decode(cls, payload)
        _eq(f"decode {cls.__name__}", to_json(back), decoded)
        _eq(f"decode {cls.__name__} record", back, record)
        return
    raise CaseFailed("decoded form fits no payload class for this type: " + "; ".join(errors))


def _case_envelope(c: dict) -> None:
    env = Envelope(c["type"], c["req_id"], c["flags"], _hex(c["payload"]))
    data = _hex(c["bytes"])
    _eq("encoded envelope", codec.encode(env), data)
    _eq("decoded envelope", decode_envelope(data), env)
    if not env.is_error:
        decode_payload(env.type, env.payload, env.is_response)  # the payload decodes by its type


def _case_handshake(c: dict) -> None:
    keys = {
        "initiator": NodeKey(_hex(c["initiator_secret_seed"])),
        "responder": NodeKey(_hex(c["responder_secret_seed"])),
    }
    for role in keys:
        if f"{role}_pubkey" in c:
            _eq(f"{role} pubkey", keys[role].public_key.hex(), c[f"{role}_pubkey"])
    i_nonce, r_nonce = _hex(c["initiator_nonce"]), _hex(c["responder_nonce"])
    for n, step in enumerate(c["steps"]):
        frame = _hex(step["frame"])
        who = step["from"]
        if who not in keys:
            raise CaseFailed(f"step {n}: unknown party {who!r}")
        if "capabilities" in step or "signable" in step:
            initiator = who == "initiator"
            hello = make_hello(
                keys[who],
                from_json(Capabilities, step["capabilities"]),
                i_nonce if initiator else r_nonce,
                None if initiator else i_nonce,
                step["timestamp"],
            )
            _eq(f"step {n} signable", hello_signing_bytes(hello), _hex(step["signable"]))
            _eq(f"step {n} signature", hello.signature.hex(), step["signature"])
            _eq(f"step {n} frame", encode_frame(codec.encode(hello), limits.MAX_HELLO_FRAME), frame)
            if initiator:
                body, _ = read_handshake_frame(frame)
                received = decode_hello(body)
                verify_hello(received)  # the responder's check
                _eq(f"step {n} decoded hello", received, hello)
            else:
                got = initiator_verify_hello_frame(frame, i_nonce, keys["responder"].public_key)
                _eq(f"step {n} decoded hello", got, hello)
        else:
            body, rest = read_envelope_frame(frame)
            _eq(f"step {n} bytes after frame", rest, b"")
            env, _msg = decode_typed(body)
            _eq(f"step {n} re-encoded frame", encode_frame(codec.encode(env)), frame)


# ----------------------------------------------------------------------------- negative actions
_GEN_ENVELOPE = re.compile(
    r"^\s*envelope\s*\{\s*type\s*:\s*(\d+)\s*,\s*req_id\s*:\s*(\d+)\s*,\s*flags\s*:\s*(\d+)\s*,"
    r"\s*payload\s*:\s*(\d+)\s+(?:zero bytes|bytes of 0x([0-9a-fA-F]{2}))\s*\}\s*$"
)


def _input_bytes(c: dict) -> bytes:
    if c.get("bytes") is not None:
        return _hex(c["bytes"])
    gen = c.get("generator")
    if isinstance(gen, str):
        m = _GEN_ENVELOPE.match(gen)
        if m:
            fill = bytes.fromhex(m.group(5)) if m.group(5) else b"\0"
            env = {"type": int(m.group(1)), "req_id": int(m.group(2)), "flags": int(m.group(3)),
                   "payload": fill * int(m.group(4))}  # fmt: skip
            return cbor2.dumps(env)
    raise CaseFailed(f"no input bytes and generator not understood: {gen!r}")


def _act_decode_payload(c: dict):
    """Decode as the type's request payload, else as its response payload (the form is not given)."""
    data = _input_bytes(c)
    if "response" in c:
        return decode_payload(c["type"], data, bool(c["response"]))
    try:
        return decode_payload(c["type"], data, False)
    except Scp2pError as first:
        try:
            return decode_payload(c["type"], data, True)
        except Scp2pError:
            raise first from None


def _act_validate_store(c: dict):
    store = decode_store(_input_bytes(c))
    if store.ttl_secs > limits.MAX_TTL:
        raise CaseFailed(f"accepted a TTL of {store.ttl_secs}s above {limits.MAX_TTL}")
    return store


ACTIONS: dict[str, Callable[[dict], Any]] = {
    "verify_manifest_wire": lambda c: catalog.verify_manifest_wire(_input_bytes(c)),
    "check_manifest_id": lambda c: catalog.check_manifest_id(
        catalog.decode_manifest(_input_bytes(c)), _hex(c["claimed_id"])
    ),
    "validate_dht_value": lambda c: validate_dht_value(
        _hex(c["key"]), _hex(c["value"]), share_pubkey=_hex(c.get("share_pubkey"))
    ),
    "verify_share_head": lambda c: catalog.verify_share_head(
        catalog.decode_share_head(_hex(c["value"])), _hex(c["share_pubkey"])
    ),
    "verify_chunk": lambda c: hashing.verify_chunk(_input_bytes(c), _hex(c["expected_hash"])),
    "read_envelope_frame": lambda c: read_frame(_input_bytes(c), limits.MAX_FRAME),
    "read_handshake_frame": lambda c: read_frame(_input_bytes(c), limits.MAX_HELLO_FRAME),
    "decode_envelope": lambda c: decode_envelope(_input_bytes(c)),
    "decode_typed": lambda c: decode_typed(_input_bytes(c)),
    "decode_payload": _act_decode_payload,
    "initiator_verify_hello": lambda c: initiator_verify_hello_frame(
        _hex(c["frame"]), _hex(c["initiator_nonce"]), _hex(c.get("expected_pubkey"))
    ),
    "validate_store": _act_validate_store,
}


def _case_negative(c: dict) -> None:
    action = ACTIONS.get(c.get("action"))
    if action is None:
        raise CaseFailed(f"action {c.get('action')!r} not understood")
    expect = c.get("expect")
    if expect not in ("accept", "reject", "reject_or_clamp"):
        raise CaseFailed(f"expectation {expect!r} not understood")
    try:
        action(c)
    except CaseFailed:
        raise
    except Scp2pError as exc:
        if expect == "accept":
            raise CaseFailed(f"rejected ({type(exc).__name__}: {exc}) but expected accept") from None
        return
    except Exception as exc:  # noqa: BLE001 - a crash is exactly what this must report
        raise CaseFailed(f"crashed with {type(exc).__name__}: {exc}") from None
    if expect == "reject":
        raise CaseFailed("accepted but expected reject")


SECTIONS: dict[str, Callable[[dict], None]] = {
    "ids": _case_ids,
    "dht_keys": _case_dht_key,
    "chunking": _case_chunking,
    "signatures": _case_signature,
    "wire": _case_wire,
    "envelopes": _case_envelope,
    "handshake": _case_handshake,
    "negative": _case_negative,
}


def run(vectors: dict) -> list[SectionResult]:
    """Check every section of a parsed vectors file; returns one result per section."""
    results: list[SectionResult] = []
    fmt = SectionResult("format")
    if vectors.get("format") == FORMAT:
        fmt.passed += 1
    else:
        fmt.failed += 1
        fmt.failures.append(f"format is {vectors.get('format')!r}, expected {FORMAT!r}")
    results.append(fmt)
    for name, cases in vectors.items():
        if name in META_KEYS:
            continue
        res = SectionResult(name)
        results.append(res)
        check = SECTIONS.get(name)
        if check is None or not isinstance(cases, list):
            res.failed += 1
            res.failures.append(f"section {name!r} not understood")
            continue
        for i, case in enumerate(cases):
            label = case.get("name", f"#{i}") if isinstance(case, dict) else f"#{i}"
            try:
                check(case)
            except CaseFailed as exc:
                res.failed += 1
                res.failures.append(f"{label}: {exc}")
            except Exception as exc:  # noqa: BLE001 - report, keep checking the rest
                res.failed += 1
                res.failures.append(f"{label}: {type(exc).__name__}: {exc}")
            else:
                res.passed += 1
    return results


def default_vectors_path() -> Path:
    """The shipped vectors: package data in an installed wheel, else the repository's conformance/."""
    here = Path(__file__).resolve().parent
    packaged = here / "vectors.json"
    if packaged.exists():
        return packaged
    return here.parent.parent / "conformance" / "vectors.json"


def load(path: str | Path) -> dict:
    with open(path, encoding="utf-8") as fh:
        return json.load(fh)
