"""Sans-I/O relay slot table: who holds which slot, until when. Time is an argument.

A slot id is **derived from the owner's node key**: the first 8 bytes (big-endian u64) of
SHA-256("scp2p relay slot" ‖ node public key). The relay binds a slot to the key proven in the
session's Hello, so only that node can take or renew it, and the id stays the same across
renewals, reconnections and relay restarts: an address that points through a relay slot keeps
working after the relay comes back (docs/relay.md, "Addressing").

``register(owner, slot_id, now)``: ``slot_id`` None asks for the slot (a new lease), a number
renews it; a number that is not the caller's derived id is refused. Every registration lives
``lifetime`` seconds (10 minutes, PROTOCOL.md section 9) from ``now``.
"""

from __future__ import annotations

import hashlib
import heapq
from dataclasses import dataclass
from typing import Optional

from .. import limits
from ..errors import RelayQuotaExceeded, RelayRefused, RelaySlotUnknown


def slot_id_for(node_pubkey: bytes) -> int:
    """The slot id a relay gives the node holding ``node_pubkey``."""
    return int.from_bytes(hashlib.sha256(b"scp2p relay slot" + bytes(node_pubkey)).digest()[:8], "big")


@dataclass(frozen=True, slots=True)
class Slot:
    slot_id: int
    owner: bytes
    expires_at: float
    #: the session (or any handle) the owner is reachable on; None while offline
    session: object = None


class SlotTable:
    def __init__(self, *, lifetime: float = limits.RELAY_SLOT_LIFETIME, max_slots: int = 1024) -> None:
        self.lifetime = lifetime
        self.max_slots = max_slots
        self._slots: dict[int, Slot] = {}
        self._heap: list[tuple[float, int]] = []

    def __len__(self) -> int:
        return len(self._slots)

    def __contains__(self, slot_id: int) -> bool:
        return slot_id in self._slots

    def register(self, owner: bytes, slot_id: Optional[int], now: float, session: object = None) -> Slot:
        want = slot_id_for(owner)
        if slot_id is not None and slot_id != want:
            raise RelayRefused(f"slot {slot_id} does not belong to this node")
        if want not in self._slots and len(self._slots) >= self.max_slots:
            raise RelayQuotaExceeded(f"relay full ({self.max_slots} slots)")
        slot = Slot(want, bytes(owner), now + self.lifetime, session)
        self._slots[want] = slot
        heapq.heappush(self._heap, (slot.expires_at, want))
        return slot

    def get(self, slot_id: int, now: float) -> Slot:
        """The live slot; :class:`RelaySlotUnknown` if there is none (or it expired)."""
        slot = self._slots.get(slot_id)
        if slot is None or slot.expires_at <= now:
            raise RelaySlotUnknown(f"no relay slot {slot_id} here")
        return slot

    def detach(self, session: object) -> list[Slot]:
        """The owner's session ended: its slots stay (until expiry) but are offline."""
        out = []
        for sid, s in list(self._slots.items()):
            if s.session is session:
                self._slots[sid] = Slot(s.slot_id, s.owner, s.expires_at, None)
                out.append(s)
        return out

    def release(self, slot_id: int) -> None:
        self._slots.pop(slot_id, None)

    def expire(self, now: float) -> list[Slot]:
        """Drop every slot whose lease ran out; returns them."""
        out = []
        while self._heap and self._heap[0][0] <= now:
            _t, sid = heapq.heappop(self._heap)
            s = self._slots.get(sid)
            if s is not None and s.expires_at <= now:
                del self._slots[sid]
                out.append(s)
        return out

    def next_deadline(self) -> Optional[float]:
        while self._heap:
            t, sid = self._heap[0]
            s = self._slots.get(sid)
            if s is not None and s.expires_at == t:
                return t
            heapq.heappop(self._heap)  # stale entry (renewed or released)
        return None

    def slots(self) -> list[Slot]:
        return list(self._slots.values())


__all__ = ["Slot", "SlotTable", "slot_id_for"]
