"""The peer database: the store's ``peers`` table seen from the DHT and PEX.

All functions take a :class:`scp2p.store.Store` first, so an asyncio caller runs
them on the store's writer thread: ``await astore.run(peerdb.record_contact, addr, now)``.
Times are unix seconds passed in.

Freshness rules (what each event may change):

* **direct contact** (a handshake and reply from the peer at that address):
  ``last_seen`` = now, failures reset to 0, score + 1 (capped), node id and
  pubkey hint set from the verified key;
* **failure** to reach it: failures + 1, score - 1 (``last_seen`` untouched);
* **hearsay** (PEX offers, FIND_NODE replies): only *new* addresses are inserted,
  with ``first_seen`` = now, ``last_seen`` = 0 (never reached by us) and score -1;
  a known address is left exactly as it is - hearsay never overrides what we
  verified, nor refreshes it.

Addresses whose failures reach ``MAX_FAILURES`` are pruned by :func:`prune`, as are
hearsay entries never reached within ``HEARSAY_MAX_AGE``.
"""

from __future__ import annotations

import ipaddress
from typing import Iterable, Optional

from ..identity import node_id as node_id_of
from ..limits import PEX_MAX_AGE
from ..store.records import PeerRecord
from ..store.store import Store
from ..wire.records import PeerAddr, Transport

__all__ = [
    "to_record", "to_addr", "record_contact", "record_failure", "merge_hearsay",
    "bootstrap_candidates", "offer_candidates", "prune", "MAX_FAILURES", "SCORE_CAP",
]  # fmt: skip

MAX_FAILURES = 8
SCORE_CAP = 100.0
HEARSAY_MAX_AGE = 7 * 24 * 3600


def to_record(addr: PeerAddr, *, node_id: Optional[bytes] = None, first_seen: int = 0, last_seen: int = 0,
              failures: int = 0, score: float = 0.0) -> PeerRecord:  # fmt: skip
    if node_id is None and addr.pubkey_hint is not None:
        node_id = node_id_of(addr.pubkey_hint)
    return PeerRecord(str(addr.ip), addr.port, str(addr.transport), node_id, addr.pubkey_hint,
                      first_seen, last_seen, failures, score)  # fmt: skip


def to_addr(rec: PeerRecord) -> Optional[PeerAddr]:
    """The wire address of a stored peer (None for transports v0.1 cannot name, e.g. ``tls``)."""
    try:
        transport = Transport(rec.transport)
        return PeerAddr(ipaddress.ip_address(rec.host), rec.port, transport, rec.pubkey_hint)
    except ValueError:
        return None


def record_contact(store: Store, addr: PeerAddr, now: int) -> None:
    """We reached ``addr`` and it proved its key (``addr.pubkey_hint``)."""
    now = int(now)
    with store.transaction():
        old = store.peer(str(addr.ip), addr.port, str(addr.transport))
        score = min(SCORE_CAP, (old.score if old else 0.0) + 1.0)
        first = old.first_seen if old and old.first_seen else now
        store.upsert_peer(to_record(addr, first_seen=first, last_seen=now, failures=0, score=score))


def record_failure(store: Store, addr: PeerAddr, now: int) -> None:
    store.bump_peer(str(addr.ip), addr.port, str(addr.transport), failures_delta=1, score_delta=-1.0)


def merge_hearsay(store: Store, addrs: Iterable[PeerAddr], now: int) -> int:
    """Insert the addresses we did not know yet; returns how many were new."""
    now = int(now)
    new = []
    with store.transaction():
        for a in addrs:
            if store.peer(str(a.ip), a.port, str(a.transport)) is None:
                new.append(to_record(a, first_seen=now, last_seen=0, score=-1.0))
        if new:
            store.upsert_peers(new)
    return len(new)


def bootstrap_candidates(store: Store, *, limit: int = 64) -> list[PeerAddr]:
    """Stored peers to try when joining, best score first (those with a known key first)."""
    recs = [r for r in store.peers(limit=limit * 4) if r.failures < MAX_FAILURES]
    recs.sort(key=lambda r: (r.pubkey_hint is None, -r.score, -r.last_seen))
    out = []
    for r in recs:
        a = to_addr(r)
        if a is not None:
            out.append(a)
            if len(out) >= limit:
                break
    return out


def offer_candidates(store: Store, now: int, *, limit: int = 2000) -> list[tuple[PeerAddr, int]]:
    """(address, last_seen) of the peers we reached within ``PEX_MAX_AGE``, for :func:`pex.select_offer`."""
    out = []
    for r in store.peers(seen_since=int(now) - PEX_MAX_AGE, by="last_seen", limit=limit):
        a = to_addr(r)
        if a is not None and r.last_seen > 0:
            out.append((a, r.last_seen))
    return out


def prune(store: Store, now: int) -> int:
    """Forget peers that keep failing, and hearsay never confirmed within ``HEARSAY_MAX_AGE``."""
    n = store.prune_peers(min_failures=MAX_FAILURES)
    with store.transaction():
        stale = [r for r in store.peers(by="last_seen") if r.last_seen == 0 and r.first_seen < int(now) - HEARSAY_MAX_AGE]
        for r in stale:
            store.delete_peer(r.host, r.port, r.transport)
    return n + len(stale)
