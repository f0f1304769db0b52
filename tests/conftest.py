"""Shared fixtures: codec twins, vectors, hypothesis profiles."""

from __future__ import annotations

import json

import pytest
from helpers import CI, VECTORS_PATH, load_twin, twin_names
from hypothesis import HealthCheck, settings

# Property tests: a quick profile locally, the full one in CI (CI=true).
settings.register_profile("dev", max_examples=200, deadline=None)
settings.register_profile(
    "ci", max_examples=1000, deadline=None, suppress_health_check=[HealthCheck.too_slow]
)
settings.load_profile("ci" if CI else "dev")


@pytest.fixture(params=twin_names(), scope="session")
def codec(request):
    """Each codec twin in turn (native only unless SCP2P_NO_EXTENSIONS is set)."""
    return load_twin(request.param)


@pytest.fixture(scope="session")
def vectors() -> dict:
    with open(VECTORS_PATH, encoding="utf-8") as fh:
        return json.load(fh)
