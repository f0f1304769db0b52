"""Blocklist shares (PROTOCOL.md section 7).

A blocklist is an ordinary share whose manifest lists what it blocks as items
marked by their ``mime``, so it travels, syncs and verifies like any catalog and
needs no new wire fields:

- a blocked share: ``mime = "application/x-scp2p-blocked-share"``, ``content_id`` = the
  ShareId, ``size`` 0, no chunks;
- a blocked file: ``mime = "application/x-scp2p-blocked-content"``, ``content_id`` = the
  ContentId, ``size`` 0, no chunks.

The item ``name`` may carry a human-readable reason. Other items in a blocklist share
are ordinary files. A subscriber honours a blocklist only when the user marked that
subscription as one (``BlocklistRole.HONOURED``); then every listed share and content
id disappears from search results and is refused for download.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Iterable

from ..wire.records import ItemV1, ManifestV1

BLOCKED_SHARE_MIME = "application/x-scp2p-blocked-share"
BLOCKED_CONTENT_MIME = "application/x-scp2p-blocked-content"
BLOCK_TAG = "blocked"


@dataclass(frozen=True, slots=True)
class Blocklist:
    share_ids: frozenset[bytes] = frozenset()
    content_ids: frozenset[bytes] = frozenset()

    @classmethod
    def of(cls, ids) -> "Blocklist":
        """``None`` -> empty; a Blocklist as is; an iterable of ids blocks each as a share and a content id."""
        if ids is None or isinstance(ids, Blocklist):
            return ids or cls()
        s = frozenset(bytes(i) for i in ids)
        return cls(s, s)

    def blocks(self, share_id: bytes | None = None, content_id: bytes | None = None) -> bool:
        return (share_id is not None and share_id in self.share_ids) or (
            content_id is not None and content_id in self.content_ids
        )

    def __or__(self, other: "Blocklist") -> "Blocklist":
        return Blocklist(self.share_ids | other.share_ids, self.content_ids | other.content_ids)

    def __bool__(self) -> bool:
        return bool(self.share_ids or self.content_ids)


EMPTY = Blocklist()


def blocklist_from_manifest(m: ManifestV1) -> Blocklist:
    shares = {it.content_id for it in m.items if it.mime == BLOCKED_SHARE_MIME}
    contents = {it.content_id for it in m.items if it.mime == BLOCKED_CONTENT_MIME}
    return Blocklist(frozenset(shares), frozenset(contents))


def merge(blocklists: Iterable[Blocklist]) -> Blocklist:
    out = EMPTY
    for b in blocklists:
        out = out | b
    return out


def blocklist_items(
    share_ids: Iterable[bytes] = (), content_ids: Iterable[bytes] = (), *, reasons: dict[bytes, str] | None = None
) -> list[ItemV1]:
    """Items that publish a blocklist (put them in the blocklist share's manifest)."""
    reasons = reasons or {}
    items = [ItemV1(s, 0, reasons.get(s, f"share {s.hex()}"), BLOCKED_SHARE_MIME, (BLOCK_TAG,), ()) for s in share_ids]
    items += [
        ItemV1(c, 0, reasons.get(c, f"content {c.hex()}"), BLOCKED_CONTENT_MIME, (BLOCK_TAG,), ()) for c in content_ids
    ]
    return items
