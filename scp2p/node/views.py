"""JSON-able views of node state, shared by the CLI (direct store access) and the control channel."""

from __future__ import annotations

from typing import Any

from ..catalog.publish import PublishResult
from ..store import Subscription
from ..store.records import BlocklistRole


def publish_view(res: PublishResult) -> dict:
    return {"share_id": res.share_id.hex(), "seq": res.seq, "manifest_id": res.manifest_id.hex(),
            "items": len(res.manifest.items), "hashed_files": res.hashed_files, "hashed_bytes": res.hashed_bytes,
            "manifest_bytes": len(res.wire)}  # fmt: skip


def shares_view(store: Any) -> list[dict]:
    """Rows for ``scp2p shares`` from a (sync) Store."""
    rows = []
    for p in store.published_shares():
        m = store.manifest(p.latest_manifest_id, touch=False) if p.latest_manifest_id else None
        rows.append({"share_id": p.share_id.hex(), "seq": p.latest_seq, "items": m.item_count if m else 0,
                     "title": p.title, "folder": p.root_path})  # fmt: skip
    return rows


def subscription_view(s: Subscription) -> dict:
    return {"share_id": s.share_id.hex(), "trust": s.trust.value, "weight": s.weight, "seq": s.latest_seq,
            "blocklist": s.blocklist is BlocklistRole.HONOURED, "has_pubkey": s.share_pubkey is not None}  # fmt: skip


def peers_view(store: Any, limit: int = 200) -> list[dict]:
    return [{"address": f"{p.transport}://{p.host}:{p.port}", "node_id": p.node_id.hex() if p.node_id else None,
             "last_seen": p.last_seen, "failures": p.failures, "score": p.score, "connected": False}
            for p in store.peers(limit=limit)]  # fmt: skip


def subscribe_view(s: Subscription, peers: list[str], synced_seq: int | None, sync_error: str | None) -> dict:
    return {**subscription_view(s), "peers": peers, "synced_seq": synced_seq, "sync_error": sync_error}


def hits_view(page: Any) -> dict:
    return {"total": page.total, "total_is_estimate": page.total_is_estimate,
            "hits": [{"content_id": h.content_id.hex(), "name": h.name, "size": h.size, "share_id": h.share_id.hex(),
                      "score": h.score, "mime": h.mime, "tags": list(h.tags), "snippet": h.snippet}
                     for h in page.hits]}  # fmt: skip


def honoured_blocklist(store: Any) -> Any:
    """The union of the blocklists of subscriptions marked as honoured, from a (sync) Store."""
    from ..catalog.blocklist import blocklist_from_manifest, merge
    from ..catalog.manifest import decode_manifest

    wires = [row.wire for sub in store.subscriptions() if sub.blocklist is BlocklistRole.HONOURED
             for row in [store.latest_manifest(sub.share_id)] if row is not None]  # fmt: skip
    bl = merge(blocklist_from_manifest(decode_manifest(w)) for w in wires)
    return bl or None


def recommended_view(store: Any) -> list[dict]:
    """Shares recommended by the catalogs we follow (and by our own), not yet subscribed."""
    from ..catalog.manifest import decode_manifest

    own = [p.share_id for p in store.published_shares()]
    subscribed = {s.share_id for s in store.subscriptions()} | set(own)
    sources = [s.share_id for s in store.subscriptions()] + own
    by: dict[bytes, list[str]] = {}
    for sid in sources:
        row = store.latest_manifest(sid)
        if row is None:
            continue
        for rec in decode_manifest(row.wire).recommended_shares:
            if rec not in subscribed and rec != sid:
                by.setdefault(rec, []).append(sid.hex())
    return [{"share_id": k.hex(), "recommended_by": v} for k, v in sorted(by.items(), key=lambda kv: -len(kv[1]))]
