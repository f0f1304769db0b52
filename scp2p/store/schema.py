"""Schema and forward migrations.

The schema version is ``PRAGMA user_version``; ``schema_migrations`` keeps a row per applied
step for humans. ``MIGRATIONS[i]`` turns version ``i`` into ``i + 1``. Each step runs in its
own transaction with foreign keys off (so table rebuilds work), is checked with
``PRAGMA foreign_key_check``, and sets ``user_version`` before committing: a crash or an
error leaves the database at the previous version, never half-migrated.

To change the schema: append a ``Migration`` (never edit a released one) and add the
version's fixture builder to the tests; ``tests/store/test_store_schema.py`` migrates from
every earlier version and checks the result equals a fresh database.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Callable, Sequence

import apsw

log = logging.getLogger(__name__)

#: ``PRAGMA application_id`` of an scp2p store ("SCP2")
APPLICATION_ID = 0x53435032


@dataclass(frozen=True, slots=True)
class Migration:
    """One forward step: ``apply`` turns schema ``version - 1`` into ``version``."""

    version: int
    description: str
    apply: Callable[[apsw.Connection], None]


def _sql(script: str) -> Callable[[apsw.Connection], None]:
    def apply(conn: apsw.Connection) -> None:
        conn.execute(script)

    return apply


# Conventions: ids are BLOBs with length CHECKs; enums are TEXT with CHECKs; unix seconds are
# INTEGER (saturated at 2**63-1); ``seq`` columns hold u64 biased by -2**63 so that the whole
# u64 range orders correctly in SQL; inode/mtime_ns hold u64 wrapped to int64 (equality only).
_V1 = """
CREATE TABLE schema_migrations(
    version     INTEGER PRIMARY KEY,
    description TEXT NOT NULL,
    applied_at  INTEGER NOT NULL DEFAULT (unixepoch())
);
CREATE TABLE meta(
    key   TEXT PRIMARY KEY,
    value BLOB
) WITHOUT ROWID;

CREATE TABLE node_identity(
    id          INTEGER PRIMARY KEY CHECK (id = 1),
    public_key  BLOB NOT NULL CHECK (length(public_key) = 32),
    secret      BLOB NOT NULL,
    secret_fmt  INTEGER NOT NULL CHECK (secret_fmt IN (0, 1))
);
CREATE TABLE share_keys(
    share_id    BLOB PRIMARY KEY CHECK (length(share_id) = 32),
    public_key  BLOB NOT NULL UNIQUE CHECK (length(public_key) = 32),
    secret      BLOB NOT NULL,
    secret_fmt  INTEGER NOT NULL CHECK (secret_fmt IN (0, 1)),
    label       TEXT
);

CREATE TABLE peers(
    id          INTEGER PRIMARY KEY,
    host        TEXT NOT NULL,
    port        INTEGER NOT NULL CHECK (port BETWEEN 0 AND 65535),
    transport   TEXT NOT NULL CHECK (transport IN ('tcp', 'tls', 'quic')),
    node_id     BLOB CHECK (node_id IS NULL OR length(node_id) = 20),
    pubkey_hint BLOB CHECK (pubkey_hint IS NULL OR length(pubkey_hint) = 32),
    first_seen  INTEGER NOT NULL,
    last_seen   INTEGER NOT NULL,
    failures    INTEGER NOT NULL DEFAULT 0,
    score       REAL NOT NULL DEFAULT 0,
    UNIQUE (host, port, transport)
);
CREATE INDEX peers_node_id ON peers(node_id) WHERE node_id IS NOT NULL;
CREATE INDEX peers_last_seen ON peers(last_seen);

CREATE TABLE subscriptions(
    share_id           BLOB PRIMARY KEY CHECK (length(share_id) = 32),
    share_pubkey       BLOB CHECK (share_pubkey IS NULL OR length(share_pubkey) = 32),
    trust              TEXT NOT NULL CHECK (trust IN ('trusted', 'normal', 'untrusted')),
    weight             REAL NOT NULL CHECK (weight >= 0),
    latest_seq         INTEGER,
    latest_manifest_id BLOB CHECK (latest_manifest_id IS NULL OR length(latest_manifest_id) = 32),
    blocklist_role     TEXT NOT NULL CHECK (blocklist_role IN ('none', 'honoured')),
    CHECK ((latest_seq IS NULL) = (latest_manifest_id IS NULL))
) WITHOUT ROWID;

CREATE TABLE manifests(
    manifest_id BLOB PRIMARY KEY CHECK (length(manifest_id) = 32),
    share_id    BLOB NOT NULL CHECK (length(share_id) = 32),
    seq         INTEGER NOT NULL,
    created_at  INTEGER NOT NULL,
    expires_at  INTEGER,
    title       TEXT,
    item_count  INTEGER NOT NULL,
    wire        BLOB NOT NULL,
    size        INTEGER NOT NULL,
    pinned      INTEGER NOT NULL DEFAULT 0 CHECK (pinned IN (0, 1)),
    last_used   INTEGER NOT NULL
);
CREATE INDEX manifests_share_seq ON manifests(share_id, seq);
CREATE INDEX manifests_lru ON manifests(last_used) WHERE pinned = 0;
-- running totals of the evictable (unpinned) cache, kept by triggers in the same transaction
CREATE TABLE manifest_cache_totals(
    id    INTEGER PRIMARY KEY CHECK (id = 1),
    count INTEGER NOT NULL,
    bytes INTEGER NOT NULL
);
INSERT INTO manifest_cache_totals VALUES (1, 0, 0);
CREATE TRIGGER manifests_ins AFTER INSERT ON manifests WHEN NEW.pinned = 0 BEGIN
    UPDATE manifest_cache_totals SET count = count + 1, bytes = bytes + NEW.size WHERE id = 1;
END;
CREATE TRIGGER manifests_del AFTER DELETE ON manifests WHEN OLD.pinned = 0 BEGIN
    UPDATE manifest_cache_totals SET count = count - 1, bytes = bytes - OLD.size WHERE id = 1;
END;
CREATE TRIGGER manifests_upd AFTER UPDATE OF size, pinned ON manifests BEGIN
    UPDATE manifest_cache_totals
       SET count = count - (OLD.pinned = 0) + (NEW.pinned = 0),
           bytes = bytes - (CASE WHEN OLD.pinned = 0 THEN OLD.size ELSE 0 END)
                         + (CASE WHEN NEW.pinned = 0 THEN NEW.size ELSE 0 END)
     WHERE id = 1;
END;

CREATE TABLE dht_owned(
    key               BLOB PRIMARY KEY CHECK (length(key) = 32),
    value             BLOB NOT NULL CHECK (length(value) <= 65536),
    ttl               INTEGER NOT NULL CHECK (ttl BETWEEN 1 AND 604800),
    next_republish_at INTEGER NOT NULL
) WITHOUT ROWID;
CREATE INDEX dht_owned_due ON dht_owned(next_republish_at);

CREATE TABLE published_shares(
    share_id           BLOB PRIMARY KEY REFERENCES share_keys(share_id) ON DELETE CASCADE,
    root_path          TEXT,
    title              TEXT,
    description        TEXT,
    latest_seq         INTEGER NOT NULL,
    latest_manifest_id BLOB CHECK (latest_manifest_id IS NULL OR length(latest_manifest_id) = 32)
) WITHOUT ROWID;
CREATE TABLE published_files(
    share_id     BLOB NOT NULL REFERENCES published_shares(share_id) ON DELETE CASCADE,
    path         TEXT NOT NULL,
    size         INTEGER NOT NULL,
    mtime_ns     INTEGER NOT NULL,
    inode        INTEGER NOT NULL,
    content_id   BLOB NOT NULL CHECK (length(content_id) = 32),
    chunk_hashes BLOB NOT NULL CHECK (length(chunk_hashes) % 32 = 0),
    PRIMARY KEY (share_id, path)
);
CREATE INDEX published_files_content ON published_files(content_id);

CREATE TABLE partial_downloads(
    content_id  BLOB NOT NULL CHECK (length(content_id) = 32),
    target_path TEXT NOT NULL,
    size        INTEGER NOT NULL,
    chunk_count INTEGER NOT NULL CHECK (chunk_count >= 0),
    bitmap      BLOB NOT NULL CHECK (length(bitmap) = (chunk_count + 7) / 8),
    manifest_id BLOB CHECK (manifest_id IS NULL OR length(manifest_id) = 32),
    share_id    BLOB CHECK (share_id IS NULL OR length(share_id) = 32),
    PRIMARY KEY (content_id, target_path)
);

CREATE TABLE blobs(
    name       TEXT PRIMARY KEY CHECK (length(name) BETWEEN 1 AND 255),
    generation INTEGER NOT NULL,
    size       INTEGER NOT NULL,
    chunks     INTEGER NOT NULL,
    sha256     BLOB NOT NULL CHECK (length(sha256) = 32)
) WITHOUT ROWID;
CREATE TABLE blob_chunks(
    name TEXT NOT NULL REFERENCES blobs(name) ON DELETE CASCADE,
    idx  INTEGER NOT NULL,
    data BLOB NOT NULL,
    PRIMARY KEY (name, idx)
);
"""

# v2: files this node downloaded and verified, served to others after a restart too
_V2 = """
CREATE TABLE completed_downloads(
    content_id   BLOB NOT NULL CHECK (length(content_id) = 32),
    path         TEXT NOT NULL,
    size         INTEGER NOT NULL,
    mtime_ns     INTEGER NOT NULL,
    inode        INTEGER NOT NULL,
    completed_at INTEGER NOT NULL,
    PRIMARY KEY (content_id, path)
);
"""

MIGRATIONS: tuple[Migration, ...] = (
    Migration(1, "initial schema: keys, peers, subscriptions, manifests, dht, published, partials, blobs", _sql(_V1)),
    Migration(2, "completed downloads", _sql(_V2)),
)

SCHEMA_VERSION = MIGRATIONS[-1].version


def check_migrations(migrations: Sequence[Migration]) -> None:
    """Migrations must be numbered 1, 2, 3... with no gaps."""
    for i, m in enumerate(migrations):
        if m.version != i + 1:
            raise ValueError(f"migration #{i} has version {m.version}, expected {i + 1}")


def user_version(conn: apsw.Connection) -> int:
    return conn.execute("PRAGMA user_version").fetchall()[0][0]


def migrate(
    conn: apsw.Connection,
    *,
    migrations: Sequence[Migration] = MIGRATIONS,
    target: int | None = None,
) -> list[int]:
    """Apply the steps from the current ``user_version`` up to ``target`` (default: the last).

    Returns the versions applied. The caller has checked that the database is ours and not newer.
    Errors propagate as raised by SQLite/the step; the step's transaction is rolled back.
    """
    check_migrations(migrations)
    target = len(migrations) if target is None else target
    current = user_version(conn)
    applied: list[int] = []
    if current >= target:
        return applied
    conn.execute("PRAGMA foreign_keys = OFF")  # no-op inside a transaction, so done here
    try:
        for m in migrations[current:target]:
            log.info("store: migrating schema %d -> %d (%s)", m.version - 1, m.version, m.description)
            conn.execute("BEGIN IMMEDIATE")
            try:
                if user_version(conn) != m.version - 1:  # another process migrated meanwhile
                    conn.execute("ROLLBACK")
                    continue
                if m.version == 1:
                    conn.execute(f"PRAGMA application_id = {APPLICATION_ID}")
                m.apply(conn)
                problems = conn.execute("PRAGMA foreign_key_check").fetchall()
                if problems:
                    raise ValueError(f"foreign key violations after migration {m.version}: {problems[:5]}")
                conn.execute(
                    "INSERT INTO schema_migrations(version, description) VALUES (?, ?)",
                    (m.version, m.description),
                )
                conn.execute(f"PRAGMA user_version = {int(m.version)}")
                conn.execute("COMMIT")
            except BaseException:
                if conn.in_transaction:
                    conn.execute("ROLLBACK")
                raise
            applied.append(m.version)
    finally:
        conn.execute("PRAGMA foreign_keys = ON")
    return applied
