"""pytest-benchmark: CBOR codec twins (native, pure) and a plain cbor2 round trip.

    pytest benchmarks/bench_codec.py --benchmark-enable
    SCP2P_BENCH_CODEC_ITEMS=100000 pytest benchmarks/bench_codec.py --benchmark-enable

The manifest (10,000 items unless ``SCP2P_BENCH_CODEC_ITEMS`` says otherwise) is
built once per module by ``codec_bench.make_manifest`` (deterministic). The
cbor2 variants convert every 32/64-byte value to a list of ints and back, as
``codec_bench.py`` does; that script also prints the speedup table.
"""

from __future__ import annotations

import os
import sys

import pytest

import codec_bench as cb
from scp2p.wire import _codec_py
from scp2p.wire.records import ManifestV1

ITEMS = int(os.environ.get("SCP2P_BENCH_CODEC_ITEMS", "10000"))

TWINS = [pytest.param(_codec_py, id="pure")]
if cb._codec_c is not None:
    TWINS.insert(0, pytest.param(cb._codec_c, id="native"))


@pytest.fixture(scope="module")
def manifest():
    return cb.make_manifest(ITEMS)


@pytest.fixture(scope="module")
def wire(manifest):
    return _codec_py.encode(manifest)


def _pedantic(benchmark, fn, *args):
    benchmark.extra_info["items"] = ITEMS
    return benchmark.pedantic(fn, args=args, rounds=5, warmup_rounds=1, iterations=1)


@pytest.mark.benchmark(group="codec-encode")
@pytest.mark.parametrize("impl", TWINS)
def test_encode(benchmark, impl, manifest, wire):
    assert _pedantic(benchmark, impl.encode, manifest) == wire


@pytest.mark.benchmark(group="codec-decode")
@pytest.mark.parametrize("impl", TWINS)
def test_decode(benchmark, impl, manifest, wire):
    assert _pedantic(benchmark, impl.decode, ManifestV1, wire, sys.maxsize) == manifest


@pytest.mark.benchmark(group="codec-encode")
def test_encode_cbor2(benchmark, manifest, wire):
    assert len(_pedantic(benchmark, cb.cbor2_encode, manifest)) == len(wire)


@pytest.mark.benchmark(group="codec-decode")
def test_decode_cbor2(benchmark, manifest):
    data = cb.cbor2_encode(manifest)
    assert len(_pedantic(benchmark, cb.cbor2_decode, data)["items"]) == ITEMS
