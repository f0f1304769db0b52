"""Schema versioning: forward migrations from every earlier version, atomic steps, newer refused."""

from __future__ import annotations

import apsw
import pytest

from scp2p.errors import MigrationError, SchemaTooNew
from scp2p.store import SCHEMA_VERSION, PeerRecord, Store
from scp2p.store.schema import APPLICATION_ID, MIGRATIONS, Migration, check_migrations, migrate

from storetest_util import file_snapshot


def _schema(path) -> list[tuple[str, str, str]]:
    conn = apsw.Connection(str(path))
    try:
        rows = conn.execute("SELECT type, name, sql FROM sqlite_schema WHERE name NOT LIKE 'sqlite_%' ORDER BY type, name").fetchall()
        return [(t, n, " ".join((s or "").split())) for t, n, s in rows]
    finally:
        conn.close()


def build_fixture(path, version: int) -> None:
    """A database exactly as an older scp2p left it at schema ``version`` (0 = brand-new empty file)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    conn = apsw.Connection(str(path))
    try:
        migrate(conn, target=version)
        if version >= 1:  # some state that must survive the upgrade
            conn.execute("INSERT INTO peers(host, port, transport, first_seen, last_seen) VALUES ('10.1.1.1', 7, 'tcp', 1, 2)")
    finally:
        conn.close()


@pytest.fixture
def fresh_schema(tmp_path):
    Store.open(tmp_path / "fresh" / "db").close()
    return _schema(tmp_path / "fresh" / "db")


def test_migrations_are_numbered_without_gaps():
    check_migrations(MIGRATIONS)
    assert SCHEMA_VERSION == len(MIGRATIONS)
    with pytest.raises(ValueError):
        check_migrations([Migration(1, "a", lambda c: None), Migration(3, "b", lambda c: None)])


@pytest.mark.parametrize("version", range(0, SCHEMA_VERSION))
def test_migrates_from_every_earlier_version(tmp_path, fresh_schema, version):
    path = tmp_path / "old" / "db"
    build_fixture(path, version)
    with Store.open(path) as s:
        assert s.schema_version == SCHEMA_VERSION
        assert s.integrity_check() == ["ok"]
        if version >= 1:
            assert s.peer("10.1.1.1", 7).last_seen == 2
    assert _schema(path) == fresh_schema
    conn = apsw.Connection(str(path))
    assert conn.execute("PRAGMA application_id").fetchall()[0][0] == APPLICATION_ID
    assert [r[0] for r in conn.execute("SELECT version FROM schema_migrations ORDER BY version")] == list(range(1, SCHEMA_VERSION + 1))
    conn.close()


def test_zero_byte_file_is_a_new_store(tmp_path):
    path = tmp_path / "db"
    path.write_bytes(b"")
    with Store.open(path) as s:
        assert s.schema_version == SCHEMA_VERSION


# A hypothetical next version, to exercise the machinery beyond v1 today.
def _v2(conn: apsw.Connection) -> None:
    # a table rebuild (the 12-step ALTER pattern) with foreign keys off, as real migrations need
    conn.execute(
        "CREATE TABLE peers_new(id INTEGER PRIMARY KEY, host TEXT NOT NULL, port INTEGER NOT NULL, transport TEXT NOT NULL, "
        "node_id BLOB, pubkey_hint BLOB, first_seen INTEGER NOT NULL, last_seen INTEGER NOT NULL, failures INTEGER NOT NULL DEFAULT 0, "
        "score REAL NOT NULL DEFAULT 0, note TEXT, UNIQUE(host, port, transport));"
        "INSERT INTO peers_new SELECT *, 'migrated' FROM peers; DROP TABLE peers; ALTER TABLE peers_new RENAME TO peers;"
        "CREATE INDEX peers_node_id ON peers(node_id) WHERE node_id IS NOT NULL; CREATE INDEX peers_last_seen ON peers(last_seen);"
    )


NEXT = (*MIGRATIONS, Migration(SCHEMA_VERSION + 1, "peers.note", _v2))


@pytest.mark.parametrize("version", range(0, SCHEMA_VERSION + 1))
def test_future_migration_applies_from_each_version_and_keeps_data(tmp_path, version):
    path = tmp_path / "db"
    build_fixture(path, version)
    with Store.open(path, migrations=NEXT) as s:
        assert s.schema_version == SCHEMA_VERSION + 1
        assert s.integrity_check() == ["ok"]
        s.upsert_peer(PeerRecord("10.2.2.2", 8))  # typed methods still work on the new shape
        if version >= 1:
            assert s.peer("10.1.1.1", 7).last_seen == 2
            assert s._all("SELECT note FROM peers WHERE host = '10.1.1.1'") == [("migrated",)]
    # an older scp2p refuses the newer file and leaves it alone
    before = file_snapshot(path)
    with pytest.raises(SchemaTooNew) as e:
        Store.open(path)
    assert (e.value.found, e.value.supported) == (SCHEMA_VERSION + 1, SCHEMA_VERSION)
    assert str(path) in str(e.value) and "newer" in str(e.value)
    assert file_snapshot(path) == before


def test_failed_migration_rolls_back_to_previous_version(tmp_path):
    path = tmp_path / "db"
    build_fixture(path, SCHEMA_VERSION)

    def broken(conn: apsw.Connection) -> None:
        conn.execute("CREATE TABLE half_done(x); DELETE FROM peers;")
        raise RuntimeError("bug in migration")

    with pytest.raises(MigrationError, match="rolled back") as e:
        Store.open(path, migrations=(*MIGRATIONS, Migration(SCHEMA_VERSION + 1, "broken", broken)))
    assert str(path) in str(e.value)
    with Store.open(path) as s:
        assert s.schema_version == SCHEMA_VERSION
        assert s.peer("10.1.1.1", 7) is not None
        assert s._all("SELECT name FROM sqlite_schema WHERE name = 'half_done'") == []
