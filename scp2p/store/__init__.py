"""scp2p.store: everything a node remembers, in one transactional SQLite database (apsw).

Other subsystems persist here, through typed methods of ``Store`` (synchronous, one thread) or
``AsyncStore`` (asyncio; one writer thread). Bulk state of their own (the search index) goes to
the blob area: ``put_blob(name, data)`` / ``blob(name)``. See docs/store.md.
"""

from .aio import AsyncStore
from .datadir import DB_FILENAME, default_data_dir
from .keycrypt import KdfParams
from .records import (
    Blob,
    BlocklistRole,
    CompletedDownload,
    ManifestRow,
    NodeKey,
    OwnedDhtValue,
    PartialDownload,
    PeerRecord,
    PublishedFile,
    PublishedShare,
    OwnedShareKey,
    Subscription,
    TrustLevel,
)
from .schema import SCHEMA_VERSION
from .store import BLOB_CHUNK_SIZE, ManifestCachePolicy, Store

__all__ = [
    "AsyncStore",
    "Blob",
    "BLOB_CHUNK_SIZE",
    "BlocklistRole",
    "CompletedDownload",
    "DB_FILENAME",
    "KdfParams",
    "ManifestCachePolicy",
    "ManifestRow",
    "NodeKey",
    "OwnedDhtValue",
    "PartialDownload",
    "PeerRecord",
    "PublishedFile",
    "PublishedShare",
    "SCHEMA_VERSION",
    "OwnedShareKey",
    "Store",
    "Subscription",
    "TrustLevel",
    "default_data_dir",
]
