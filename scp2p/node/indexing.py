"""The node's search index: loading it from the store and bringing it up to date.

The index image lives in the store's blob area (``scp2p.search``), with a small
JSON blob recording which manifest seq of each share it holds, so a restart loads
the image instead of re-indexing, and only shares whose manifests changed while
the index was not running are re-indexed.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any

from ..catalog.manifest import decode_manifest
from ..errors import Scp2pError
from ..search import Index

log = logging.getLogger(__name__)

#: the store blob recording which manifest seq of each share the saved index holds
INDEX_SEQS_BLOB = "search/seqs"


def wanted_shares(store: Any) -> list[tuple[bytes, Any, float, str]]:
    """(share id, latest manifest row, weight, trust) for every share the index should hold."""
    out = []
    for sub in store.subscriptions():
        row = store.latest_manifest(sub.share_id)
        if row is not None:
            out.append((sub.share_id, row, sub.weight, sub.trust.value))
    for pub in store.published_shares():
        row = store.latest_manifest(pub.share_id)
        if row is not None:
            out.append((pub.share_id, row, 1.0, "trusted"))
    return out


def index_doc_dir(store: Any) -> str | None:
    """The directory of the index's on-disk document store (an unlinked temporary file of
    content ids, names and mimes): the node's data directory, beside the store's database;
    None (the system temp directory) if the store has no directory."""
    path = getattr(store, "path", None)
    if not isinstance(path, (str, Path)) or not Path(path).is_file():
        return None
    return str(Path(path).parent)


def load_index(store: Any) -> tuple[Index, dict[bytes, int], bool]:
    """(index, indexed seq per share, changed?) from a sync Store; rebuilds what is stale."""
    doc_dir = index_doc_dir(store)
    try:
        index = Index.load(store, doc_dir=doc_dir)
        blob = store.blob(INDEX_SEQS_BLOB)
        seqs = {bytes.fromhex(k): v for k, v in json.loads(blob.data).items()} if blob is not None else {}
    except (Scp2pError, ValueError) as exc:  # a damaged image is rebuilt from the manifests
        log.warning("search index could not be loaded (%s); rebuilding", exc)
        index = None
    if index is None:
        index, seqs = Index(doc_dir=doc_dir), {}
    changed = False
    want = wanted_shares(store)
    have = set(index.share_ids())
    for sid, row, weight, trust in want:
        if sid not in have or seqs.get(sid) != row.seq:
            index_manifest(index, seqs, sid, decode_manifest(row.wire), weight=weight, trust=trust)
            changed = True
    for sid in have - {w[0] for w in want}:
        index.remove_share(sid)
        seqs.pop(sid, None)
        changed = True
    return index, seqs, changed


def index_manifest(index: Index, seqs: dict[bytes, int], share_id: bytes, m: Any, *, weight: float,
                   trust: str) -> None:  # fmt: skip
    index.replace_share(share_id, m.items, title=m.title, description=m.description, weight=weight, trust=trust)
    seqs[share_id] = m.seq


def index_image(index: Index, seqs: dict[bytes, int]) -> tuple[bytes, bytes]:
    """Snapshot (index image, seqs JSON); take it where the index is mutated."""
    return index.to_bytes(), json.dumps({k.hex(): v for k, v in seqs.items()}).encode()


def save_image(store: Any, image: tuple[bytes, bytes]) -> None:
    from ..search._base import BLOB_NAME

    with store.transaction():
        store.put_blob(BLOB_NAME, image[0])
        store.put_blob(INDEX_SEQS_BLOB, image[1])
