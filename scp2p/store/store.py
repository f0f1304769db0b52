"""``Store``: the node's one SQLite database (apsw), synchronous and single-threaded.

All SQL of scp2p lives in this package. Every public method is one transaction (or joins the
caller's ``with store.transaction():``), so a crash never leaves a multi-row change half done.
asyncio code uses ``AsyncStore`` (``scp2p/store/aio.py``), which runs these methods on one
writer thread.
"""

from __future__ import annotations

import errno
import functools
import hashlib
import logging
import os
import stat
import warnings
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Iterable, Iterator, Sequence, TypeVar

import apsw

from ..errors import (
    BlobConflict,
    MigrationError,
    NotADatabase,
    NotAStore,
    PassphraseRequired,
    SchemaTooNew,
    StoreCorrupt,
    StoreError,
    StoreLocked,
    StoreReadOnly,
    WrongPassphrase,
)
from ..identity import NodeKey, ShareKey
from . import keycrypt
from .datadir import DB_FILENAME, default_data_dir, ensure_private_dir
from .keycrypt import KdfParams
from .records import (
    Blob,
    BlocklistRole,
    ManifestRow,
    OwnedDhtValue,
    OwnedShareKey,
    CompletedDownload,
    PartialDownload,
    PeerRecord,
    PublishedFile,
    PublishedShare,
    Subscription,
    TrustLevel,
    set_bits,
)
from .schema import APPLICATION_ID, MIGRATIONS, SCHEMA_VERSION, Migration, migrate, user_version

log = logging.getLogger(__name__)

__all__ = ["Store", "ManifestCachePolicy", "BLOB_CHUNK_SIZE"]

T = TypeVar("T")

#: blobs are stored in rows of this size, so a large search index never needs one huge row
BLOB_CHUNK_SIZE = 1 << 20
_MANY_SLICE = 256
_I64_MAX = (1 << 63) - 1
_BIAS = 1 << 63
_U64 = 1 << 64


# ----------------------------------------------------------------------- u64 <-> SQLite int64
def _seq_in(v: int) -> int:  # order-preserving: u64 -> int64
    return v - _BIAS


def _seq_out(v: int) -> int:
    return v + _BIAS


def _wrap_in(v: int) -> int:  # equality-preserving: u64 -> int64 (two's complement)
    return v - _U64 if v > _I64_MAX else v


def _wrap_out(v: int) -> int:
    return v + _U64 if v < 0 else v


def _time_in(v: int | None) -> int | None:  # unix seconds saturate at 2**63-1
    return None if v is None else min(v, _I64_MAX)


@dataclass(frozen=True, slots=True)
class ManifestCachePolicy:
    """LRU cap on *unpinned* cached manifests (pinned = ours or needed). None = no cap on that axis."""

    max_entries: int | None = None
    max_bytes: int | None = 256 * 1024 * 1024

    #: a light (mobile) profile
    @classmethod
    def light(cls) -> "ManifestCachePolicy":
        return cls(max_entries=2_000, max_bytes=32 * 1024 * 1024)


def _guarded(method: Callable[..., T]) -> Callable[..., T]:
    """Translate SQLite failures into scp2p errors naming the file."""

    @functools.wraps(method)
    def wrapper(self: "Store", *args: Any, **kwargs: Any) -> T:
        if self._conn is None:
            raise StoreError(self.path, "the store is closed")
        try:
            return method(self, *args, **kwargs)
        except apsw.Error as exc:
            raise self._translate(exc) from exc

    return wrapper


class Store:
    """The node's persistent state. Open with ``Store.open(path)``; close (or use ``with``).

    Not thread-safe: use it from one thread at a time (``AsyncStore`` owns one writer thread).
    """

    # ------------------------------------------------------------------ lifecycle
    def __init__(self, path: Path, conn: apsw.Connection, lock_fd: int | None, policy: ManifestCachePolicy) -> None:
        self.path = path
        self._conn: apsw.Connection | None = conn
        self._lock_fd = lock_fd
        self._kek: bytes | None = None  # key-encryption key, when a passphrase is set
        self._encrypted = False
        self.manifest_cache_policy = policy
        self._tick = 0

    @classmethod
    def open(
        cls,
        path: str | os.PathLike[str] | None = None,
        *,
        passphrase: str | bytes | None = None,
        kdf: KdfParams = KdfParams(),
        manifest_cache: ManifestCachePolicy = ManifestCachePolicy(),
        synchronous: str = "NORMAL",
        migrations: Sequence[Migration] = MIGRATIONS,
    ) -> "Store":
        """Open (creating if missing) the store at ``path`` (default: the platform data dir).

        Bad files raise a ``StoreError`` subclass naming the file; the file is left untouched.
        With ``passphrase`` the private keys are encrypted at rest (an unencrypted store adopts
        it: existing keys get encrypted). ``migrations`` is for tests of the migration machinery.
        """
        if synchronous.upper() not in ("NORMAL", "FULL", "EXTRA"):
            raise ValueError("synchronous must be NORMAL, FULL or EXTRA")
        db = Path(path) if path is not None else default_data_dir() / DB_FILENAME
        db = db.expanduser().absolute()
        ensure_private_dir(db.parent)
        lock_fd = _acquire_lock(db)
        try:
            _create_private_file(db)
            try:
                conn = apsw.Connection(str(db), flags=apsw.SQLITE_OPEN_READWRITE)
            except apsw.Error as exc:
                raise _translate_open(db, exc) from exc
        except BaseException:
            _release_lock(lock_fd)
            raise
        store = cls(db, conn, lock_fd, manifest_cache)  # from here on, store.close() owns conn and lock
        try:
            store._setup(synchronous.upper(), migrations)
            store._init_keys(passphrase, kdf)
        except BaseException:
            store.close()
            raise
        return store

    def _setup(self, synchronous: str, migrations: Sequence[Migration]) -> None:
        conn = self._conn
        assert conn is not None
        conn.set_busy_timeout(5_000)
        supported = len(migrations)
        # 1. read-only probe: nothing is written before the file is known to be ours
        try:
            app_id = conn.execute("PRAGMA application_id").fetchall()[0][0]
            version = user_version(conn)
            n_objects = conn.execute("SELECT count(*) FROM sqlite_schema").fetchall()[0][0]
        except apsw.Error as exc:
            raise _translate_open(self.path, exc) from exc
        if app_id not in (0, APPLICATION_ID) or (app_id == 0 and (version != 0 or n_objects != 0)):
            raise NotAStore(self.path, "is an SQLite database of another application, not an scp2p store; left untouched")
        if version > supported:
            raise SchemaTooNew(self.path, version, supported)
        if conn.readonly("main"):
            raise StoreReadOnly(self.path, "the database file is not writable")
        # 2. now it is ours: configure and migrate
        try:
            mode = conn.execute("PRAGMA journal_mode = WAL").fetchall()[0][0]
            if mode.lower() != "wal":
                raise StoreError(self.path, f"could not enable WAL (journal_mode is {mode})")
            conn.execute(f"PRAGMA synchronous = {synchronous}")
            conn.execute("PRAGMA foreign_keys = ON")
            conn.execute("PRAGMA trusted_schema = OFF")
        except apsw.Error as exc:
            raise _translate_open(self.path, exc) from exc
        if version < supported:
            try:
                applied = migrate(conn, migrations=migrations)
            except apsw.BusyError as exc:
                raise StoreLocked(self.path, "database is busy (another process is migrating it)") from exc
            except (apsw.CorruptError, apsw.NotADBError, apsw.ReadOnlyError, apsw.CantOpenError) as exc:
                raise _translate_open(self.path, exc) from exc
            except Exception as exc:
                raise MigrationError(
                    self.path, f"migration from schema {user_version(conn)} failed ({exc}); rolled back"
                ) from exc
            if applied:
                log.info("store %s: schema now %d (applied %s)", self.path, applied[-1], applied)
        self._tick = conn.execute("SELECT coalesce(max(last_used), 0) FROM manifests").fetchall()[0][0]
        _private_mode(self.path)

    def close(self) -> None:
        """Close the database and release the lock. Idempotent."""
        conn, self._conn = self._conn, None
        if conn is not None:
            try:
                conn.close()
            finally:
                _release_lock(self._lock_fd)
                self._lock_fd = None
                self._kek = None

    @property
    def closed(self) -> bool:
        return self._conn is None

    def __enter__(self) -> "Store":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __del__(self) -> None:
        if getattr(self, "_conn", None) is not None:
            warnings.warn(f"unclosed scp2p Store {self.path}", ResourceWarning, source=self)
            try:
                self.close()
            except Exception:  # pragma: no cover - interpreter shutdown
                pass

    def _translate(self, exc: apsw.Error) -> StoreError:
        return _translate_open(self.path, exc)

    # ------------------------------------------------------------------ transactions and helpers
    @contextmanager
    def transaction(self) -> Iterator["Store"]:
        """``with store.transaction():`` groups calls atomically (nests as savepoints)."""
        if self._conn is None:
            raise StoreError(self.path, "the store is closed")
        try:
            with self._conn:
                yield self
        except apsw.Error as exc:
            raise self._translate(exc) from exc

    def _all(self, sql: str, args: Sequence[Any] | dict[str, Any] = ()) -> list[tuple[Any, ...]]:
        assert self._conn is not None
        return self._conn.execute(sql, args).fetchall()

    def _one(self, sql: str, args: Sequence[Any] | dict[str, Any] = ()) -> tuple[Any, ...] | None:
        rows = self._all(sql, args)
        return rows[0] if rows else None

    def _exec(self, sql: str, args: Sequence[Any] | dict[str, Any] = ()) -> int:
        assert self._conn is not None
        self._conn.execute(sql, args)
        return self._conn.changes()

    def _executemany(self, sql: str, rows: Sequence[Sequence[Any]]) -> None:
        """``executemany`` in slices: between slices Python can switch threads (the event loop's
        thread gets the GIL back), which one long C-level ``executemany`` call would not allow."""
        assert self._conn is not None
        for i in range(0, len(rows), _MANY_SLICE):
            self._conn.executemany(sql, rows[i : i + _MANY_SLICE])

    @property
    @_guarded
    def schema_version(self) -> int:
        assert self._conn is not None
        return user_version(self._conn)

    @_guarded
    def integrity_check(self, *, quick: bool = False) -> list[str]:
        """``PRAGMA integrity_check`` (or ``quick_check``): ``['ok']`` when healthy, else the problems found."""
        try:
            return [r[0] for r in self._all("PRAGMA quick_check" if quick else "PRAGMA integrity_check")]
        except (apsw.CorruptError, apsw.NotADBError) as exc:  # too damaged for the check to finish
            return [f"check aborted: {exc}"]

    @_guarded
    def checkpoint(self, *, truncate: bool = False) -> None:
        """Copy the WAL into the database file (``TRUNCATE`` also empties the -wal file)."""
        self._all(f"PRAGMA wal_checkpoint({'TRUNCATE' if truncate else 'PASSIVE'})")

    # ------------------------------------------------------------------ keys
    def _init_keys(self, passphrase: str | bytes | None, kdf: KdfParams) -> None:
        try:
            row = self._one("SELECT value FROM meta WHERE key = 'kdf'")
            if row is None:
                self._encrypted = False
                if passphrase is not None:
                    log.info("store %s: encrypting private keys with the new passphrase", self.path)
                    self._reencrypt(passphrase, kdf)
                return
            if passphrase is None:
                raise PassphraseRequired(self.path, "private keys are encrypted; a passphrase is required")
            try:
                self._kek = keycrypt.unlock(row[0], passphrase)
            except keycrypt.BadPassphrase:
                raise WrongPassphrase(self.path, "wrong passphrase: it does not unlock the private keys") from None
            except ValueError as exc:
                raise StoreCorrupt(self.path, f"key-derivation record is damaged ({exc})") from None
            self._encrypted = True
        except apsw.Error as exc:
            raise self._translate(exc) from exc

    @property
    def encrypted(self) -> bool:
        """True if private keys are encrypted at rest."""
        return self._encrypted

    def _open_secret(self, secret: bytes, fmt: int, table: str, row_id: bytes) -> bytes:
        try:
            return keycrypt.open_secret(self._kek, secret, fmt, table, row_id)
        except keycrypt.BadSecret as exc:
            raise StoreCorrupt(self.path, f"private key in {table} does not decrypt ({exc})") from None

    @_guarded
    def change_passphrase(self, passphrase: str | bytes | None, *, kdf: KdfParams = KdfParams()) -> None:
        """Re-encrypt every private key under ``passphrase`` (None = store them plain), atomically."""
        self._reencrypt(passphrase, kdf)

    def _reencrypt(self, passphrase: str | bytes | None, kdf: KdfParams) -> None:
        conn = self._conn
        assert conn is not None
        if passphrase is None:
            record, key = None, None
        else:
            record, key = keycrypt.new_kdf_record(passphrase, kdf)
        conn.execute("PRAGMA secure_delete = ON")  # zero freed space holding old secrets
        try:
            with conn:
                node = self._one("SELECT public_key, secret, secret_fmt FROM node_identity WHERE id = 1")
                if node is not None:
                    seed = self._open_secret(node[1], node[2], "node_identity", b"1")
                    secret, fmt = keycrypt.seal(key, seed, "node_identity", b"1")
                    self._exec("UPDATE node_identity SET secret = ?, secret_fmt = ? WHERE id = 1", (secret, fmt))
                for share_id, sec, sfmt in self._all("SELECT share_id, secret, secret_fmt FROM share_keys"):
                    seed = self._open_secret(sec, sfmt, "share_keys", share_id)
                    secret, fmt = keycrypt.seal(key, seed, "share_keys", share_id)
                    self._exec("UPDATE share_keys SET secret = ?, secret_fmt = ? WHERE share_id = ?", (secret, fmt, share_id))
                if record is None:
                    self._exec("DELETE FROM meta WHERE key = 'kdf'")
                else:
                    self._exec("INSERT OR REPLACE INTO meta(key, value) VALUES ('kdf', ?)", (record,))
        finally:
            conn.execute("PRAGMA secure_delete = OFF")
        self._kek, self._encrypted = key, key is not None
        if not conn.in_transaction:
            conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")  # old secrets out of the -wal file too

    @_guarded
    def node_key(self) -> NodeKey | None:
        row = self._one("SELECT public_key, secret, secret_fmt FROM node_identity WHERE id = 1")
        if row is None:
            return None
        seed = self._open_secret(row[1], row[2], "node_identity", b"1")
        key = NodeKey(seed)
        if key.public_key != row[0]:
            raise StoreCorrupt(self.path, "node private key does not match its public key")
        return key

    @_guarded
    def set_node_key(self, key: NodeKey | bytes, *, replace: bool = False) -> NodeKey:
        """Store the node identity (a key or its 32-byte seed). Refuses to replace one unless ``replace``."""
        key = key if isinstance(key, NodeKey) else NodeKey(key)
        private_key, public = key.seed, key.public_key
        with self.transaction():
            if not replace and self._one("SELECT 1 FROM node_identity WHERE id = 1"):
                raise StoreError(self.path, "a node identity already exists (pass replace=True to replace it)")
            secret, fmt = keycrypt.seal(self._kek, private_key, "node_identity", b"1")
            self._exec(
                "INSERT OR REPLACE INTO node_identity(id, public_key, secret, secret_fmt) VALUES (1, ?, ?, ?)",
                (public, secret, fmt),
            )
        return key

    @_guarded
    def ensure_node_key(self) -> NodeKey:
        """The stored identity, or a new one if (and only if) none was ever stored."""
        with self.transaction():
            existing = self.node_key()
            if existing is not None:
                return existing
            log.info("store %s: generating a new node identity", self.path)
            return self.set_node_key(NodeKey.generate())

    @_guarded
    def add_share_key(self, key: ShareKey | bytes, label: str | None = None) -> OwnedShareKey:
        """Store a share key this node publishes (a key or its seed; idempotent, updates the label)."""
        key = key if isinstance(key, ShareKey) else ShareKey(key)
        private_key, public, share_id = key.seed, key.public_key, key.share_id
        secret, fmt = keycrypt.seal(self._kek, private_key, "share_keys", share_id)
        self._exec(
            "INSERT INTO share_keys(share_id, public_key, secret, secret_fmt, label) VALUES (?, ?, ?, ?, ?) "
            "ON CONFLICT(share_id) DO UPDATE SET label = excluded.label",
            (share_id, public, secret, fmt, label),
        )
        return OwnedShareKey(key, label)

    @_guarded
    def share_key(self, share_id: bytes) -> OwnedShareKey | None:
        row = self._one("SELECT public_key, secret, secret_fmt, label FROM share_keys WHERE share_id = ?", (share_id,))
        return None if row is None else self._share_key(share_id, row)

    def _share_key(self, share_id: bytes, row: tuple[Any, ...]) -> OwnedShareKey:
        seed = self._open_secret(row[1], row[2], "share_keys", share_id)
        key = ShareKey(seed)
        if key.public_key != row[0] or key.share_id != share_id:
            raise StoreCorrupt(self.path, "share private key does not match its public key")
        return OwnedShareKey(key, row[3])

    @_guarded
    def share_keys(self) -> list[OwnedShareKey]:
        rows = self._all("SELECT share_id, public_key, secret, secret_fmt, label FROM share_keys ORDER BY share_id")
        return [self._share_key(r[0], r[1:]) for r in rows]

    @_guarded
    def delete_share_key(self, share_id: bytes) -> bool:
        """Forget a share key (and, by cascade, its published share and files)."""
        return self._exec("DELETE FROM share_keys WHERE share_id = ?", (share_id,)) > 0

    # ------------------------------------------------------------------ peers
    _PEER_COLS = "host, port, transport, node_id, pubkey_hint, first_seen, last_seen, failures, score"
    _PEER_UPSERT = (
        "INSERT INTO peers(host, port, transport, node_id, pubkey_hint, first_seen, last_seen, failures, score) "
        "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?) ON CONFLICT(host, port, transport) DO UPDATE SET "
        "node_id = coalesce(excluded.node_id, node_id), pubkey_hint = coalesce(excluded.pubkey_hint, pubkey_hint), "
        "first_seen = min(first_seen, excluded.first_seen), last_seen = max(last_seen, excluded.last_seen), "
        "failures = excluded.failures, score = excluded.score"
    )

    @staticmethod
    def _peer_args(p: PeerRecord) -> tuple[Any, ...]:
        return (p.host, p.port, p.transport, p.node_id, p.pubkey_hint, _time_in(p.first_seen),
                _time_in(p.last_seen), _time_in(p.failures), float(p.score))

    @staticmethod
    def _peer(row: tuple[Any, ...]) -> PeerRecord:
        return PeerRecord(*row)

    @_guarded
    def upsert_peer(self, peer: PeerRecord) -> None:
        """Insert or update by (host, port, transport). first_seen keeps the minimum, last_seen the maximum."""
        self._exec(self._PEER_UPSERT, self._peer_args(peer))

    @_guarded
    def upsert_peers(self, peers: Iterable[PeerRecord]) -> int:
        """Upsert many peers in one transaction; returns how many were given."""
        args = [self._peer_args(p) for p in peers]
        with self.transaction():
            self._executemany(self._PEER_UPSERT, args)
        return len(args)

    @_guarded
    def peer(self, host: str, port: int, transport: str = "tcp") -> PeerRecord | None:
        row = self._one(f"SELECT {self._PEER_COLS} FROM peers WHERE host = ? AND port = ? AND transport = ?",
                        (host, port, transport))
        return None if row is None else self._peer(row)

    @_guarded
    def peers_by_node_id(self, node_id: bytes) -> list[PeerRecord]:
        return [self._peer(r) for r in self._all(f"SELECT {self._PEER_COLS} FROM peers WHERE node_id = ?", (node_id,))]

    @_guarded
    def peers(self, *, limit: int | None = None, seen_since: int | None = None, by: str = "score") -> list[PeerRecord]:
        """Known peers, best first (``by`` = "score" or "last_seen")."""
        order = {"score": "score DESC, last_seen DESC", "last_seen": "last_seen DESC"}[by]
        where = "WHERE last_seen >= ?" if seen_since is not None else ""
        args: list[Any] = [] if seen_since is None else [_time_in(seen_since)]
        rows = self._all(f"SELECT {self._PEER_COLS} FROM peers {where} ORDER BY {order} LIMIT ?", [*args, -1 if limit is None else limit])
        return [self._peer(r) for r in rows]

    @_guarded
    def count_peers(self) -> int:
        return self._all("SELECT count(*) FROM peers")[0][0]

    @_guarded
    def bump_peer(self, host: str, port: int, transport: str = "tcp", *, failures_delta: int = 0,
                  score_delta: float = 0.0, seen_at: int | None = None) -> bool:
        """Adjust a peer's failure count/score and optionally its last_seen (a success resets failures)."""
        if seen_at is not None:
            sql = ("UPDATE peers SET failures = max(0, failures + ?), score = score + ?, last_seen = max(last_seen, ?) "
                   "WHERE host = ? AND port = ? AND transport = ?")
            args: tuple[Any, ...] = (failures_delta, score_delta, _time_in(seen_at), host, port, transport)
        else:
            sql = "UPDATE peers SET failures = max(0, failures + ?), score = score + ? WHERE host = ? AND port = ? AND transport = ?"
            args = (failures_delta, score_delta, host, port, transport)
        return self._exec(sql, args) > 0

    @_guarded
    def delete_peer(self, host: str, port: int, transport: str = "tcp") -> bool:
        return self._exec("DELETE FROM peers WHERE host = ? AND port = ? AND transport = ?", (host, port, transport)) > 0

    @_guarded
    def prune_peers(self, *, seen_before: int | None = None, min_failures: int | None = None) -> int:
        """Delete peers last seen before ``seen_before`` or with at least ``min_failures`` failures."""
        conds, args = [], []
        if seen_before is not None:
            conds.append("last_seen < ?")
            args.append(_time_in(seen_before))
        if min_failures is not None:
            conds.append("failures >= ?")
            args.append(min_failures)
        if not conds:
            return 0
        return self._exec(f"DELETE FROM peers WHERE {' OR '.join(conds)}", args)

    # ------------------------------------------------------------------ subscriptions
    _SUB_COLS = "share_id, share_pubkey, trust, weight, latest_seq, latest_manifest_id, blocklist_role"

    @staticmethod
    def _sub(row: tuple[Any, ...]) -> Subscription:
        seq = None if row[4] is None else _seq_out(row[4])
        return Subscription(row[0], row[1], TrustLevel(row[2]), row[3], seq, row[5], BlocklistRole(row[6]))

    @_guarded
    def put_subscription(self, sub: Subscription) -> None:
        """Insert or update a subscription. The head (seq, manifest id) never moves backwards."""
        seq = None if sub.latest_seq is None else _seq_in(sub.latest_seq)
        self._exec(
            f"INSERT INTO subscriptions({self._SUB_COLS}) VALUES (?, ?, ?, ?, ?, ?, ?) "
            "ON CONFLICT(share_id) DO UPDATE SET share_pubkey = coalesce(excluded.share_pubkey, share_pubkey), "
            "trust = excluded.trust, weight = excluded.weight, blocklist_role = excluded.blocklist_role, "
            "latest_manifest_id = CASE WHEN excluded.latest_seq IS NOT NULL AND (latest_seq IS NULL OR excluded.latest_seq > latest_seq) "
            "  THEN excluded.latest_manifest_id ELSE latest_manifest_id END, "
            "latest_seq = CASE WHEN excluded.latest_seq IS NOT NULL AND (latest_seq IS NULL OR excluded.latest_seq > latest_seq) "
            "  THEN excluded.latest_seq ELSE latest_seq END",
            (sub.share_id, sub.share_pubkey, sub.trust.value, float(sub.weight), seq, sub.latest_manifest_id, sub.blocklist.value),
        )

    @_guarded
    def advance_subscription_head(self, share_id: bytes, seq: int, manifest_id: bytes) -> bool:
        """Record a newer ShareHead; returns False (and changes nothing) unless ``seq`` is strictly newer."""
        Subscription(share_id, latest_seq=seq, latest_manifest_id=manifest_id)  # validates
        return self._exec(
            "UPDATE subscriptions SET latest_seq = ?, latest_manifest_id = ? "
            "WHERE share_id = ? AND (latest_seq IS NULL OR latest_seq < ?)",
            (_seq_in(seq), manifest_id, share_id, _seq_in(seq)),
        ) > 0

    @_guarded
    def subscription(self, share_id: bytes) -> Subscription | None:
        row = self._one(f"SELECT {self._SUB_COLS} FROM subscriptions WHERE share_id = ?", (share_id,))
        return None if row is None else self._sub(row)

    @_guarded
    def subscriptions(self, trust: Iterable[TrustLevel] | None = None) -> list[Subscription]:
        rows = self._all(f"SELECT {self._SUB_COLS} FROM subscriptions ORDER BY share_id")
        subs = [self._sub(r) for r in rows]
        if trust is not None:
            wanted = {TrustLevel(t) for t in trust}
            subs = [s for s in subs if s.trust in wanted]
        return subs

    @_guarded
    def delete_subscription(self, share_id: bytes) -> bool:
        return self._exec("DELETE FROM subscriptions WHERE share_id = ?", (share_id,)) > 0

    # ------------------------------------------------------------------ manifest cache (LRU)
    _MAN_COLS = "manifest_id, share_id, seq, created_at, expires_at, wire, title, item_count"

    @staticmethod
    def _man(row: tuple[Any, ...]) -> ManifestRow:
        return ManifestRow(row[0], row[1], _seq_out(row[2]), row[3], row[4], row[5], row[6], row[7])

    def _next_tick(self) -> int:
        self._tick += 1
        return self._tick

    @_guarded
    def put_manifest(self, row: ManifestRow, *, pinned: bool = False) -> bool:
        """Cache a manifest (pinned ones are never evicted). Evicts least recently used ones over the cap.

        Returns False if the manifest was itself evicted at once (larger than the whole cache).
        """
        cap = self.manifest_cache_policy.max_bytes
        with self.transaction():
            if not pinned and cap is not None and len(row.wire) > cap:
                # never flush the whole cache for one oversized entry; keep it only if already pinned
                return self._one("SELECT 1 FROM manifests WHERE manifest_id = ? AND pinned = 1", (row.manifest_id,)) is not None
            self._exec(
                f"INSERT INTO manifests({self._MAN_COLS}, size, pinned, last_used) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?) "
                "ON CONFLICT(manifest_id) DO UPDATE SET pinned = max(pinned, excluded.pinned), last_used = excluded.last_used",
                (row.manifest_id, row.share_id, _seq_in(row.seq), _time_in(row.created_at), _time_in(row.expires_at),
                 row.wire, row.title, row.item_count, len(row.wire), int(pinned), self._next_tick()),
            )
            self._evict()
            return self._one("SELECT 1 FROM manifests WHERE manifest_id = ?", (row.manifest_id,)) is not None

    def _evict(self) -> None:
        policy = self.manifest_cache_policy
        count, size = self._all("SELECT count, bytes FROM manifest_cache_totals WHERE id = 1")[0]
        over_n = max(0, count - policy.max_entries) if policy.max_entries is not None else 0
        over_b = max(0, size - policy.max_bytes) if policy.max_bytes is not None else 0
        if not over_n and not over_b:
            return
        victims: list[bytes] = []
        assert self._conn is not None
        for mid, msize in self._conn.execute("SELECT manifest_id, size FROM manifests WHERE pinned = 0 ORDER BY last_used"):
            if over_n <= 0 and over_b <= 0:
                break
            victims.append(mid)
            over_n -= 1
            over_b -= msize
        self._executemany("DELETE FROM manifests WHERE manifest_id = ?", [(v,) for v in victims])
        log.debug("store: evicted %d cached manifests", len(victims))

    @_guarded
    def manifest(self, manifest_id: bytes, *, touch: bool = True) -> ManifestRow | None:
        """A cached manifest; ``touch`` marks it recently used."""
        with self.transaction():
            row = self._one(f"SELECT {self._MAN_COLS} FROM manifests WHERE manifest_id = ?", (manifest_id,))
            if row is not None and touch:
                self._exec("UPDATE manifests SET last_used = ? WHERE manifest_id = ?", (self._next_tick(), manifest_id))
        return None if row is None else self._man(row)

    @_guarded
    def latest_manifest(self, share_id: bytes) -> ManifestRow | None:
        row = self._one(f"SELECT {self._MAN_COLS} FROM manifests WHERE share_id = ? ORDER BY seq DESC LIMIT 1", (share_id,))
        return None if row is None else self._man(row)

    @_guarded
    def manifest_ids(self, share_id: bytes | None = None) -> list[bytes]:
        if share_id is None:
            return [r[0] for r in self._all("SELECT manifest_id FROM manifests ORDER BY manifest_id")]
        return [r[0] for r in self._all("SELECT manifest_id FROM manifests WHERE share_id = ? ORDER BY seq", (share_id,))]

    @_guarded
    def set_manifest_pinned(self, manifest_id: bytes, pinned: bool) -> bool:
        with self.transaction():
            changed = self._exec("UPDATE manifests SET pinned = ? WHERE manifest_id = ?", (int(pinned), manifest_id)) > 0
            self._evict()
        return changed

    @_guarded
    def delete_manifest(self, manifest_id: bytes) -> bool:
        return self._exec("DELETE FROM manifests WHERE manifest_id = ?", (manifest_id,)) > 0

    @_guarded
    def manifest_cache_usage(self) -> tuple[int, int]:
        """(count, bytes) of unpinned cached manifests (what the LRU cap applies to)."""
        count, size = self._all("SELECT count, bytes FROM manifest_cache_totals WHERE id = 1")[0]
        return count, size

    @_guarded
    def set_manifest_cache_policy(self, policy: ManifestCachePolicy) -> None:
        self.manifest_cache_policy = policy
        with self.transaction():
            self._evict()

    # ------------------------------------------------------------------ DHT values we own
    @staticmethod
    def _dht(row: tuple[Any, ...]) -> OwnedDhtValue:
        return OwnedDhtValue(row[0], row[1], row[2], row[3])

    @_guarded
    def put_dht_value(self, value: OwnedDhtValue) -> None:
        self._exec("INSERT OR REPLACE INTO dht_owned(key, value, ttl, next_republish_at) VALUES (?, ?, ?, ?)",
                   (value.key, value.value, value.ttl, _time_in(value.next_republish_at)))

    @_guarded
    def put_dht_values(self, values: Iterable[OwnedDhtValue]) -> None:
        assert self._conn is not None
        with self.transaction():
            self._executemany(
                "INSERT OR REPLACE INTO dht_owned(key, value, ttl, next_republish_at) VALUES (?, ?, ?, ?)",
                [(v.key, v.value, v.ttl, _time_in(v.next_republish_at)) for v in values])

    @_guarded
    def dht_value(self, key: bytes) -> OwnedDhtValue | None:
        row = self._one("SELECT key, value, ttl, next_republish_at FROM dht_owned WHERE key = ?", (key,))
        return None if row is None else self._dht(row)

    @_guarded
    def dht_values(self) -> list[OwnedDhtValue]:
        return [self._dht(r) for r in self._all("SELECT key, value, ttl, next_republish_at FROM dht_owned ORDER BY key")]

    @_guarded
    def dht_values_due(self, now: int, *, limit: int | None = None) -> list[OwnedDhtValue]:
        """Values whose republish time has come, soonest first."""
        rows = self._all("SELECT key, value, ttl, next_republish_at FROM dht_owned WHERE next_republish_at <= ? "
                         "ORDER BY next_republish_at LIMIT ?", (_time_in(now), -1 if limit is None else limit))
        return [self._dht(r) for r in rows]

    @_guarded
    def mark_republished(self, key: bytes, next_republish_at: int) -> bool:
        return self._exec("UPDATE dht_owned SET next_republish_at = ? WHERE key = ?", (_time_in(next_republish_at), key)) > 0

    @_guarded
    def delete_dht_value(self, key: bytes) -> bool:
        return self._exec("DELETE FROM dht_owned WHERE key = ?", (key,)) > 0

    # ------------------------------------------------------------------ published shares and files
    @_guarded
    def put_published_share(self, share: PublishedShare) -> None:
        """Record a share we publish; its key must already be stored (``add_share_key``)."""
        if self._one("SELECT 1 FROM share_keys WHERE share_id = ?", (share.share_id,)) is None:
            raise StoreError(self.path, "cannot publish a share whose key is not stored (add_share_key first)")
        self._exec(
            "INSERT INTO published_shares(share_id, root_path, title, description, latest_seq, latest_manifest_id) "
            "VALUES (?, ?, ?, ?, ?, ?) ON CONFLICT(share_id) DO UPDATE SET root_path = excluded.root_path, "
            "title = excluded.title, description = excluded.description, latest_seq = excluded.latest_seq, "
            "latest_manifest_id = excluded.latest_manifest_id",
            (share.share_id, share.root_path, share.title, share.description, _seq_in(share.latest_seq), share.latest_manifest_id),
        )

    @staticmethod
    def _pshare(row: tuple[Any, ...]) -> PublishedShare:
        return PublishedShare(row[0], row[1], row[2], row[3], _seq_out(row[4]), row[5])

    @_guarded
    def published_share(self, share_id: bytes) -> PublishedShare | None:
        row = self._one("SELECT share_id, root_path, title, description, latest_seq, latest_manifest_id "
                        "FROM published_shares WHERE share_id = ?", (share_id,))
        return None if row is None else self._pshare(row)

    @_guarded
    def published_shares(self) -> list[PublishedShare]:
        return [self._pshare(r) for r in self._all(
            "SELECT share_id, root_path, title, description, latest_seq, latest_manifest_id FROM published_shares ORDER BY share_id")]

    @_guarded
    def delete_published_share(self, share_id: bytes) -> bool:
        """Stop publishing (files go with it; the share key stays)."""
        return self._exec("DELETE FROM published_shares WHERE share_id = ?", (share_id,)) > 0

    _FILE_COLS = "path, size, mtime_ns, inode, content_id, chunk_hashes"

    @staticmethod
    def _file_args(share_id: bytes, f: PublishedFile) -> tuple[Any, ...]:
        return (share_id, f.path, _wrap_in(f.size), _wrap_in(f.mtime_ns), _wrap_in(f.inode), f.content_id, b"".join(f.chunk_hashes))

    @staticmethod
    def _file(row: tuple[Any, ...]) -> PublishedFile:
        blob = row[5]
        hashes = tuple(blob[i : i + 32] for i in range(0, len(blob), 32))
        return PublishedFile(row[0], _wrap_out(row[1]), _wrap_out(row[2]), _wrap_out(row[3]), row[4], hashes)

    @_guarded
    def put_published_files(self, share_id: bytes, files: Iterable[PublishedFile]) -> None:
        """Insert or update files of a published share (by path)."""
        assert self._conn is not None
        with self.transaction():
            self._executemany(
                f"INSERT OR REPLACE INTO published_files(share_id, {self._FILE_COLS}) VALUES (?, ?, ?, ?, ?, ?, ?)",
                [self._file_args(share_id, f) for f in files])

    @_guarded
    def replace_published_files(self, share_id: bytes, files: Iterable[PublishedFile]) -> None:
        """Make ``files`` the complete file list of the share, atomically."""
        assert self._conn is not None
        args = [self._file_args(share_id, f) for f in files]
        with self.transaction():
            self._exec("DELETE FROM published_files WHERE share_id = ?", (share_id,))
            self._executemany(
                f"INSERT INTO published_files(share_id, {self._FILE_COLS}) VALUES (?, ?, ?, ?, ?, ?, ?)", args)

    @_guarded
    def published_file(self, share_id: bytes, path: str) -> PublishedFile | None:
        row = self._one(f"SELECT {self._FILE_COLS} FROM published_files WHERE share_id = ? AND path = ?", (share_id, path))
        return None if row is None else self._file(row)

    @_guarded
    def published_files(self, share_id: bytes) -> list[PublishedFile]:
        return [self._file(r) for r in self._all(
            f"SELECT {self._FILE_COLS} FROM published_files WHERE share_id = ? ORDER BY path", (share_id,))]

    @_guarded
    def unchanged_file(self, share_id: bytes, path: str, size: int, mtime_ns: int, inode: int) -> PublishedFile | None:
        """The stored entry if the file's stat is unchanged (so its hashes can be reused), else None."""
        f = self.published_file(share_id, path)
        return f if f is not None and f.matches_stat(size, mtime_ns, inode) else None

    @_guarded
    def files_with_content(self, content_id: bytes) -> list[tuple[bytes, PublishedFile]]:
        """(share_id, file) for every published local file with this content id (to serve chunks)."""
        return [(r[0], self._file(r[1:])) for r in self._all(
            f"SELECT share_id, {self._FILE_COLS} FROM published_files WHERE content_id = ? ORDER BY share_id, path", (content_id,))]

    @_guarded
    def delete_published_file(self, share_id: bytes, path: str) -> bool:
        return self._exec("DELETE FROM published_files WHERE share_id = ? AND path = ?", (share_id, path)) > 0

    # ------------------------------------------------------------------ partial downloads
    _PART_COLS = "content_id, target_path, size, chunk_count, bitmap, manifest_id, share_id"

    @staticmethod
    def _part(row: tuple[Any, ...]) -> PartialDownload:
        return PartialDownload(row[0], row[1], _wrap_out(row[2]), row[3], row[4], row[5], row[6])

    # ------------------------------------------------------------------ completed downloads
    _DONE_COLS = "content_id, path, size, mtime_ns, inode, completed_at"

    @_guarded
    def put_completed_download(self, d: CompletedDownload) -> None:
        self._exec(f"INSERT OR REPLACE INTO completed_downloads({self._DONE_COLS}) VALUES (?, ?, ?, ?, ?, ?)",
                   (d.content_id, d.path, _wrap_in(d.size), _wrap_in(d.mtime_ns), _wrap_in(d.inode),
                    min(d.completed_at, _I64_MAX)))  # fmt: skip

    @_guarded
    def completed_downloads(self, content_id: bytes | None = None) -> list[CompletedDownload]:
        where, args = ("WHERE content_id = ?", (content_id,)) if content_id is not None else ("", ())
        rows = self._all(f"SELECT {self._DONE_COLS} FROM completed_downloads {where} ORDER BY content_id, path", args)
        return [CompletedDownload(r[0], r[1], _wrap_out(r[2]), _wrap_out(r[3]), _wrap_out(r[4]), r[5]) for r in rows]

    @_guarded
    def delete_completed_download(self, content_id: bytes, path: str) -> bool:
        return self._exec("DELETE FROM completed_downloads WHERE content_id = ? AND path = ?", (content_id, path)) > 0

    @_guarded
    def put_partial(self, p: PartialDownload) -> None:
        self._exec(f"INSERT OR REPLACE INTO partial_downloads({self._PART_COLS}) VALUES (?, ?, ?, ?, ?, ?, ?)",
                   (p.content_id, p.target_path, _wrap_in(p.size), p.chunk_count, p.bitmap, p.manifest_id, p.share_id))

    @_guarded
    def partial(self, content_id: bytes, target_path: str) -> PartialDownload | None:
        row = self._one(f"SELECT {self._PART_COLS} FROM partial_downloads WHERE content_id = ? AND target_path = ?",
                        (content_id, target_path))
        return None if row is None else self._part(row)

    @_guarded
    def partials(self) -> list[PartialDownload]:
        return [self._part(r) for r in self._all(f"SELECT {self._PART_COLS} FROM partial_downloads ORDER BY content_id, target_path")]

    @_guarded
    def mark_chunks_done(self, content_id: bytes, target_path: str, indices: Iterable[int]) -> PartialDownload:
        """Set the bits of verified chunks (call after the chunk bytes are durably written)."""
        with self.transaction():
            p = self.partial(content_id, target_path)
            if p is None:
                raise StoreError(self.path, f"no partial download of {content_id.hex()} to {target_path!r}")
            bitmap = set_bits(p.bitmap, indices, p.chunk_count)
            self._exec("UPDATE partial_downloads SET bitmap = ? WHERE content_id = ? AND target_path = ?",
                       (bitmap, content_id, target_path))
        return PartialDownload(p.content_id, p.target_path, p.size, p.chunk_count, bitmap, p.manifest_id, p.share_id)

    @_guarded
    def delete_partial(self, content_id: bytes, target_path: str) -> bool:
        return self._exec("DELETE FROM partial_downloads WHERE content_id = ? AND target_path = ?", (content_id, target_path)) > 0

    # ------------------------------------------------------------------ blob area (search index etc.)
    @staticmethod
    def _check_blob_name(name: str) -> None:
        if not isinstance(name, str) or not 1 <= len(name) <= 255:
            raise ValueError("blob name must be a string of 1..255 characters")

    @_guarded
    def put_blob(self, name: str, data: bytes | Iterable[bytes], *, expected_generation: int | None = None) -> int:
        """Replace the blob ``name`` atomically; returns its new generation (strictly increasing, store-wide).

        ``data`` may be bytes or an iterable of byte pieces (streamed, never joined). With
        ``expected_generation`` (0 = must not exist) the write is a compare-and-set: a mismatch
        raises ``BlobConflict`` and changes nothing.
        """
        self._check_blob_name(name)
        pieces: Iterable[bytes] = (data,) if isinstance(data, (bytes, bytearray, memoryview)) else data
        with self.transaction():
            cur = self._one("SELECT generation FROM blobs WHERE name = ?", (name,))
            current = 0 if cur is None else cur[0]
            if expected_generation is not None and expected_generation != current:
                raise BlobConflict(self.path, f"blob {name!r} is at generation {current}, expected {expected_generation}")
            row = self._one("SELECT value FROM meta WHERE key = 'blob_generation'")
            generation = (0 if row is None else int(row[0])) + 1
            self._exec("INSERT OR REPLACE INTO meta(key, value) VALUES ('blob_generation', ?)", (generation,))
            self._exec("DELETE FROM blob_chunks WHERE name = ?", (name,))
            self._exec("INSERT OR REPLACE INTO blobs(name, generation, size, chunks, sha256) VALUES (?, ?, 0, 0, zeroblob(32))",
                       (name, generation))
            digest, size, idx, buf = hashlib.sha256(), 0, 0, bytearray()
            for piece in pieces:
                buf += piece
                while len(buf) >= BLOB_CHUNK_SIZE:
                    chunk = bytes(buf[:BLOB_CHUNK_SIZE])
                    del buf[:BLOB_CHUNK_SIZE]
                    self._exec("INSERT INTO blob_chunks(name, idx, data) VALUES (?, ?, ?)", (name, idx, chunk))
                    digest.update(chunk)
                    size += len(chunk)
                    idx += 1
            if buf or idx == 0:
                chunk = bytes(buf)
                self._exec("INSERT INTO blob_chunks(name, idx, data) VALUES (?, ?, ?)", (name, idx, chunk))
                digest.update(chunk)
                size += len(chunk)
                idx += 1
            self._exec("UPDATE blobs SET size = ?, chunks = ?, sha256 = ? WHERE name = ?", (size, idx, digest.digest(), name))
        return generation

    @_guarded
    def blob(self, name: str) -> Blob | None:
        """The blob's bytes, checked against its stored SHA-256 (``StoreCorrupt`` if they differ)."""
        with self.transaction():
            meta = self._one("SELECT generation, size, chunks, sha256 FROM blobs WHERE name = ?", (name,))
            if meta is None:
                return None
            chunks = self._all("SELECT idx, data FROM blob_chunks WHERE name = ? ORDER BY idx", (name,))
        generation, size, n, sha = meta
        data = b"".join(c[1] for c in chunks)
        if [c[0] for c in chunks] != list(range(n)) or len(data) != size or hashlib.sha256(data).digest() != sha:
            raise StoreCorrupt(self.path, f"blob {name!r} does not match its checksum")
        return Blob(name, generation, data)

    @_guarded
    def blob_generation(self, name: str) -> int | None:
        row = self._one("SELECT generation FROM blobs WHERE name = ?", (name,))
        return None if row is None else row[0]

    @_guarded
    def blob_names(self, prefix: str = "") -> list[tuple[str, int, int]]:
        """(name, generation, size) of blobs whose name starts with ``prefix``."""
        rows = self._all("SELECT name, generation, size FROM blobs WHERE substr(name, 1, ?) = ? ORDER BY name",
                         (len(prefix), prefix))
        return [(r[0], r[1], r[2]) for r in rows]

    @_guarded
    def delete_blob(self, name: str, *, expected_generation: int | None = None) -> bool:
        with self.transaction():
            cur = self._one("SELECT generation FROM blobs WHERE name = ?", (name,))
            if expected_generation is not None and expected_generation != (0 if cur is None else cur[0]):
                raise BlobConflict(self.path, f"blob {name!r} is at generation {cur and cur[0]}, expected {expected_generation}")
            return self._exec("DELETE FROM blobs WHERE name = ?", (name,)) > 0


# ----------------------------------------------------------------------- files, locks, errors
def _create_private_file(path: Path) -> None:
    """Create the database file owner-only (0600) if missing; tighten a looser existing one."""
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_CLOEXEC", 0), 0o600)
    except FileExistsError:
        if not path.is_file():
            raise NotADatabase(path, "is not a regular file") from None
        return  # its mode is tightened only once it is known to be ours
    except OSError as exc:
        raise StoreReadOnly(path, f"cannot create the database file ({exc.strerror or exc}); is the directory writable?") from exc
    os.close(fd)
    log.info("store: created %s", path)


def _private_mode(path: Path) -> None:
    if os.name != "posix":
        return
    for p in (path, Path(f"{path}-wal"), Path(f"{path}-shm")):
        try:
            mode = stat.S_IMODE(p.stat().st_mode)
            if mode & 0o077:
                os.chmod(p, mode & 0o700)
                log.warning("store: %s was accessible to others (mode %o); now owner-only", p, mode)
        except FileNotFoundError:
            pass
        except OSError as exc:
            log.warning("store: cannot make %s owner-only: %s", p, exc)


#: the single-owner lock: ``flock`` on POSIX, ``msvcrt.locking`` (a byte-range lock of the lock
#: file's first byte, held by the descriptor's handle) on Windows, which has no ``fcntl``
try:
    import fcntl as _fcntl
except ImportError:  # pragma: no cover - Windows
    _fcntl = None
try:
    import msvcrt as _msvcrt
except ImportError:
    _msvcrt = None


def _acquire_lock(db: Path) -> int | None:
    """Hold an exclusive lock on ``<db>.lock`` so one process (one Store) owns the state."""
    if _fcntl is None and _msvcrt is None:  # pragma: no cover - SQLite's own locking still protects the file
        return None
    lock_path = Path(f"{db}.lock")
    try:
        fd = os.open(lock_path, os.O_RDWR | os.O_CREAT | getattr(os, "O_CLOEXEC", 0), 0o600)
    except OSError as exc:
        raise StoreReadOnly(db, f"cannot create the lock file {lock_path.name} ({exc.strerror or exc}); "
                                "is the directory writable?") from exc
    try:
        if _fcntl is not None:
            _fcntl.flock(fd, _fcntl.LOCK_EX | _fcntl.LOCK_NB)
        else:  # a fresh descriptor is at offset 0: byte 0 (a lock may lie beyond the end of the file)
            _msvcrt.locking(fd, _msvcrt.LK_NBLCK, 1)
    except OSError as exc:
        os.close(fd)
        if exc.errno in (errno.EWOULDBLOCK, errno.EAGAIN, errno.EACCES, errno.EDEADLK):
            raise StoreLocked(db, "is already open in another process or Store") from None
        raise StoreError(lock_path, f"cannot lock ({exc.strerror or exc})") from exc
    return fd


def _release_lock(fd: int | None) -> None:
    if fd is None:
        return
    if _fcntl is None and _msvcrt is not None:
        try:  # unlock explicitly: Windows drops the locks of a closed handle only eventually
            os.lseek(fd, 0, os.SEEK_SET)
            _msvcrt.locking(fd, _msvcrt.LK_UNLCK, 1)
        except OSError:  # pragma: no cover
            pass
    os.close(fd)  # closing the descriptor releases the flock


def _translate_open(path: Path, exc: BaseException) -> StoreError:
    msg = str(exc).split(":", 1)[-1].strip() if ":" in str(exc) else str(exc)
    if isinstance(exc, apsw.NotADBError):
        return NotADatabase(path, f"is not an SQLite database ({msg}); left untouched")
    if isinstance(exc, apsw.CorruptError):
        return StoreCorrupt(path, f"the database is corrupt ({msg}); left untouched - restore a backup or move it aside")
    if isinstance(exc, (apsw.ReadOnlyError, apsw.CantOpenError, apsw.PermissionsError)):
        return StoreReadOnly(path, f"cannot write the database or create its -wal/-shm files next to it ({msg}); "
                                   "check that the file and its directory are writable")
    if isinstance(exc, apsw.BusyError):
        return StoreLocked(path, f"the database is busy ({msg})")
    if isinstance(exc, apsw.FullError):
        return StoreError(path, f"disk full ({msg})")
    if isinstance(exc, apsw.IOError):
        return StoreError(path, f"I/O error ({msg})")
    return StoreError(path, f"SQLite error: {exc}")
