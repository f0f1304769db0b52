"""Shared fixtures: codec twins, vectors, hypothesis profiles."""

from __future__ import annotations

import importlib
import json
import os
from pathlib import Path

import pytest
from hypothesis import HealthCheck, settings

from scp2p import _accel

ROOT = Path(__file__).resolve().parent.parent
VECTORS_PATH = ROOT / "conformance" / "vectors.json"

_CI = os.environ.get("CI", "").lower() in {"1", "true", "yes"}

# Property tests: a quick profile locally, the full one in CI (CI=true).
settings.register_profile("dev", max_examples=200, deadline=None)
settings.register_profile(
    "ci", max_examples=1000, deadline=None, suppress_health_check=[HealthCheck.too_slow]
)
settings.load_profile("ci" if _CI else "dev")

#: decoders get at least this many random / mutated examples in CI (issue 2: >= 10,000)
FUZZ_EXAMPLES = 10_000 if _CI else 500
#: damaged encodings per decoder in the seeded (non-hypothesis) mutation loop
SEEDED_MUTATIONS = 50_000 if _CI else 5_000


def _twins() -> list[str]:
    names = ["pure"]
    if not _accel.NO_EXTENSIONS:
        names.insert(0, "native")
    return names


TWIN_MODULES = {"native": "scp2p.wire._codec_c", "pure": "scp2p.wire._codec_py"}


def load_twin(name: str):
    return importlib.import_module(TWIN_MODULES[name])


@pytest.fixture(params=_twins(), scope="session")
def codec(request):
    """Each codec twin in turn (native only unless SCP2P_NO_EXTENSIONS is set)."""
    return load_twin(request.param)


@pytest.fixture(scope="session")
def vectors() -> dict:
    with open(VECTORS_PATH, encoding="utf-8") as fh:
        return json.load(fh)
