from __future__ import annotations

import pytest

from scp2p.store import Store


@pytest.fixture
def db_path(tmp_path):
    return tmp_path / "data" / "scp2p.db"


@pytest.fixture
def store(db_path):
    s = Store.open(db_path)
    yield s
    s.close()
