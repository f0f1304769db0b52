"""Test helpers shared by several test modules (tests/ is on sys.path; it is not a package,
so an installed wheel, not the source tree, is what the suite imports)."""

from __future__ import annotations

import importlib
import os
from pathlib import Path

from scp2p import _accel

ROOT = Path(__file__).resolve().parent.parent
VECTORS_PATH = ROOT / "conformance" / "vectors.json"

CI = os.environ.get("CI", "").lower() in {"1", "true", "yes"}
#: hypothesis examples of random bytes per decoder in CI (issue 2: >= 10,000)
FUZZ_EXAMPLES = 10_000 if CI else 500
#: damaged encodings per decoder in the seeded (non-hypothesis) mutation loop
SEEDED_MUTATIONS = 50_000 if CI else 5_000

TWIN_MODULES = {"native": "scp2p.wire._codec_c", "pure": "scp2p.wire._codec_py"}


def twin_names() -> list[str]:
    """The codec twins under test: native (unless SCP2P_NO_EXTENSIONS is set) and pure."""
    names = ["pure"]
    if not _accel.NO_EXTENSIONS:
        names.insert(0, "native")
    return names


def load_twin(name: str):
    return importlib.import_module(TWIN_MODULES[name])
