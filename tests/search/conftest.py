"""Search fixtures: each index twin in turn."""

from __future__ import annotations

import pytest
from helpers import twin_names
from search_helpers import index_module


@pytest.fixture(params=twin_names(), scope="session")
def twin(request):
    """Each search twin module in turn (native only unless SCP2P_NO_EXTENSIONS is set)."""
    return index_module(request.param)
