"""``python -m scp2p.conformance [VECTORS] [-v]``: check a vectors file; exit 1 on any failure."""

from __future__ import annotations

import argparse
import json
import sys

from .. import __version__
from .._accel import backend
from .runner import default_vectors_path, load, run


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m scp2p.conformance", description=__doc__)
    parser.add_argument("vectors", nargs="?", help="vectors file (default: the shipped conformance/vectors.json)")
    parser.add_argument("-q", "--quiet", action="store_true", help="print only failures and the summary")
    args = parser.parse_args(argv)
    path = args.vectors or default_vectors_path()
    try:
        vectors = load(path)
    except (OSError, json.JSONDecodeError) as exc:
        print(f"cannot read vectors file {path}: {exc}", file=sys.stderr)
        return 2
    if not isinstance(vectors, dict):
        print(f"{path}: not a conformance vectors object", file=sys.stderr)
        return 2
    print(f"scp2p {__version__} conformance, {backend()} backend, vectors {path}")
    results = run(vectors)
    passed = sum(r.passed for r in results)
    failed = sum(r.failed for r in results)
    for r in results:
        if not args.quiet or r.failed:
            print(f"{r.name}: {r.passed} passed, {r.failed} failed")
        for f in r.failures:
            print(f"  FAIL {f}")
    print(f"{passed} passed, {failed} failed")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
