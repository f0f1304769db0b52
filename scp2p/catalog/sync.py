"""Subscription sync rules, sans-I/O: what a fetched head or manifest must satisfy, and when to sync.

The asyncio side (DHT lookups, GET_MANIFEST requests) asks these functions whether to
accept what it fetched; nothing here does I/O or reads a clock.
"""

from __future__ import annotations

import random
from dataclasses import dataclass, field
from typing import Optional

from ..errors import IdMismatch, StaleManifest, VerificationError
from ..identity import share_id as share_id_of
from ..store import Subscription
from ..wire.records import ManifestV1, ShareHead
from .manifest import check_manifest_id, decode_manifest, verify_manifest
from .share_head import verify_share_head


def check_head(sub: Subscription, head: ShareHead) -> bool:
    """Validate a ShareHead found for ``sub``; True if it is newer than what we hold.

    Raises :class:`IdMismatch` for a head of another share and :class:`SignatureInvalid`
    when the share key is known and the head does not verify. An older or equal head is
    not an error (the DHT may hold stale copies): it returns False and must be ignored.
    """
    if head.share_id != sub.share_id:
        raise IdMismatch("share head is for another share")
    if sub.share_pubkey is not None:
        verify_share_head(head, sub.share_pubkey)
    return sub.latest_seq is None or head.latest_seq > sub.latest_seq


def accept_manifest(sub: Subscription, head: ShareHead, data: bytes, *, now: int) -> ManifestV1:
    """Decode and fully check a fetched manifest for ``head``; returns it or raises.

    Checks, in order: decodes within the 1 MiB limit; its ManifestId is the head's;
    share id and (if known) public key are the subscription's; the signature verifies;
    seq is the head's and newer than what we hold; it has not expired.
    """
    m = decode_manifest(data)
    check_manifest_id(m, head.latest_manifest_id)
    if m.share_id != sub.share_id or share_id_of(m.share_pubkey) != sub.share_id:
        raise IdMismatch("manifest belongs to another share")
    if sub.share_pubkey is not None and m.share_pubkey != sub.share_pubkey:
        raise IdMismatch("manifest is signed by another key than the subscribed one")
    verify_manifest(m)
    if m.seq != head.latest_seq:
        raise VerificationError(f"manifest seq {m.seq} differs from its head's {head.latest_seq}")
    if sub.latest_seq is not None and m.seq <= sub.latest_seq:
        raise StaleManifest(f"manifest seq {m.seq} is not newer than held seq {sub.latest_seq}")
    if m.expires_at is not None and m.expires_at <= now:
        raise StaleManifest(f"manifest expired at {m.expires_at}")
    return m


@dataclass
class _Entry:
    due: float
    failures: int = 0
    #: bumped by ``sync_now``: a sync that started before the bump must run again
    generation: int = 0


@dataclass
class SyncSchedule:
    """When each subscription is due: every ``interval`` seconds, exponential backoff on failure.

    Backoff: ``min(max_backoff, base_backoff * 2**(failures-1))`` with +-20% jitter.
    """

    interval: float = 300.0
    base_backoff: float = 5.0
    max_backoff: float = 1800.0
    rng: random.Random = field(default_factory=random.Random)
    _entries: dict[bytes, _Entry] = field(default_factory=dict)

    def add(self, share_id: bytes, now: float) -> None:
        self._entries.setdefault(share_id, _Entry(now))

    def remove(self, share_id: bytes) -> None:
        self._entries.pop(share_id, None)

    def due(self, now: float) -> list[bytes]:
        return sorted(s for s, e in self._entries.items() if e.due <= now)

    def next_deadline(self) -> Optional[float]:
        return min((e.due for e in self._entries.values()), default=None)

    def generation(self, share_id: bytes) -> int:
        e = self._entries.get(share_id)
        return e.generation if e is not None else 0

    def succeeded(self, share_id: bytes, now: float, started: Optional[int] = None) -> None:
        """A sync that began at generation ``started`` worked; it is due again after ``interval``,
        or at once if ``sync_now`` was called for it meanwhile (news arrived during the sync)."""
        e = self._entries.get(share_id)
        if e is not None:
            e.failures = 0
            e.due = now if started is not None and e.generation != started else now + self.interval

    def failed(self, share_id: bytes, now: float, started: Optional[int] = None) -> float:
        """Record a failure; returns the delay until the next try."""
        e = self._entries.get(share_id)
        if e is None:
            return self.interval
        if started is not None and e.generation != started:
            e.due = now  # news arrived during the failed attempt: try again at once
            return 0.0
        e.failures += 1
        delay = min(self.max_backoff, self.base_backoff * 2 ** (e.failures - 1))
        delay *= 1 + self.rng.uniform(-0.2, 0.2)
        e.due = now + delay
        return delay

    def sync_now(self, now: float, share_id: Optional[bytes] = None) -> None:
        """Make one subscription (or all) due now, also if a sync of it is already running."""
        entries = self._entries.values() if share_id is None else filter(None, [self._entries.get(share_id)])
        for e in entries:
            e.due = min(e.due, now)
            e.generation += 1
