"""pytest-benchmark: describe_file vs one raw single-pass BLAKE3 hash of the same file.

    pytest benchmarks/bench_hashing.py --benchmark-enable
    SCP2P_BENCH_HASH_SIZE=1G pytest benchmarks/bench_hashing.py --benchmark-enable

The file (random bytes, 64 MiB unless ``SCP2P_BENCH_HASH_SIZE`` says otherwise)
is made once per session in pytest's temp dir, read once so the page cache is
warm, and removed at the end. All variants live in ``hashing_bench.py``, which
also prints the ratio table (``python benchmarks/hashing_bench.py``).
"""

from __future__ import annotations

import os

import pytest

import hashing_bench as hb
from scp2p.content import chunk_count, describe_bytes, describe_file

SIZE = hb.parse_size(os.environ.get("SCP2P_BENCH_HASH_SIZE", "64M"))


@pytest.fixture(scope="module")
def bench_file(tmp_path_factory):
    path = tmp_path_factory.mktemp("hashbench") / "data.bin"
    hb.make_file(str(path), SIZE)
    hb.warm(str(path))
    yield str(path)
    path.unlink()


@pytest.fixture(scope="module")
def expected(bench_file):
    return hb.raw_update_mmap(bench_file)


def _run(benchmark, fn, path, expected):
    benchmark.extra_info["bytes"] = SIZE
    got = benchmark.pedantic(fn, args=(path,), rounds=5, warmup_rounds=1, iterations=1)
    assert got == expected
    stats = getattr(benchmark, "stats", None)
    if stats is not None and getattr(stats, "stats", None) is not None:
        benchmark.extra_info["median_MB_s"] = round(SIZE / stats.stats.median / 1e6, 1)


@pytest.mark.benchmark(group="hash-file")
def test_raw_update_mmap(benchmark, bench_file, expected):
    _run(benchmark, hb.raw_update_mmap, bench_file, expected)


@pytest.mark.benchmark(group="hash-file")
def test_raw_readinto(benchmark, bench_file, expected):
    _run(benchmark, hb.raw_readinto, bench_file, expected)


@pytest.mark.benchmark(group="hash-file")
def test_describe_file(benchmark, bench_file, expected):
    _run(benchmark, hb.describe, bench_file, expected)


@pytest.mark.benchmark(group="hash-file")
def test_mmap_two_threads(benchmark, bench_file, expected):
    _run(benchmark, hb.mmap_two_threads, bench_file, expected)


@pytest.mark.benchmark(group="hash-bytes")
def test_describe_bytes(benchmark):
    data = os.urandom(min(SIZE, 64 << 20))
    d = benchmark(describe_bytes, data)
    assert d.size == len(data)


def test_describe_file_is_right(bench_file, expected):
    d = describe_file(bench_file)
    assert d.content_id == expected and d.size == SIZE and len(d.chunks) == chunk_count(SIZE)
