"""Sans-I/O relay quotas: per-peer caps by trust tier, byte counters per UTC day.

Every byte a relay forwards on a stream is charged to **both** ends of the stream (the
requester and the slot owner), under the segment's kind. A peer's tier (``default`` or
``trusted``) chooses its :class:`RelayLimits`. Counters are a plain snapshot (``to_json`` /
``from_json``) that the relay persists in the store's blob area, so a restart does not reset
them; a new UTC day starts from zero.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Callable

from .. import limits
from ..errors import ContentRelayDisabled, RelayQuotaExceeded
from ..wire.records import RelayKind
from .messages import MAX_SEGMENT

MIB = 1024 * 1024
DAY = 86400


@dataclass(frozen=True, slots=True)
class RelayLimits:
    """Caps for one peer of one tier."""

    content: bool = False  #: may this peer's streams carry content at all
    control_bytes_per_day: int = 64 * MIB
    content_bytes_per_day: int = 1024 * MIB
    concurrent_streams: int = 8
    max_segment: int = MAX_SEGMENT


@dataclass(frozen=True, slots=True)
class RelayPolicy:
    """What a relay carries. Control only unless ``content`` is set (``"all"`` or ``"trusted"``)."""

    content: str = "off"  #: "off" | "trusted" | "all"
    default: RelayLimits = RelayLimits()
    trusted_limits: RelayLimits = RelayLimits(
        content=True, control_bytes_per_day=512 * MIB, content_bytes_per_day=16 * 1024 * MIB, concurrent_streams=32
    )
    #: node public key -> trusted?
    trusted: Callable[[bytes], bool] = field(default=lambda _pk: False)
    max_slots: int = 1024
    max_streams: int = 4096
    slot_lifetime: float = limits.RELAY_SLOT_LIFETIME

    def __post_init__(self) -> None:
        if self.content not in ("off", "trusted", "all"):
            raise ValueError("RelayPolicy.content must be 'off', 'trusted' or 'all'")

    def limits_for(self, pubkey: bytes) -> RelayLimits:
        trusted = bool(self.trusted(pubkey))
        lim = self.trusted_limits if trusted else self.default
        allowed = self.content == "all" or (self.content == "trusted" and trusted)
        if lim.content != allowed:
            lim = RelayLimits(allowed, lim.control_bytes_per_day, lim.content_bytes_per_day,
                              lim.concurrent_streams, lim.max_segment)  # fmt: skip
        return lim


class QuotaBook:
    """Bytes per peer per kind for the current day."""

    def __init__(self, policy: RelayPolicy) -> None:
        self.policy = policy
        self.day = -1
        self.used: dict[bytes, list[int]] = {}  # pubkey -> [control, content]
        self.dirty = False
        self.refused = 0

    def _roll(self, now: float) -> None:
        d = int(now // DAY)
        if d != self.day:
            self.day = d
            self.used.clear()
            self.dirty = True

    def check_segment(self, pubkey: bytes, kind: RelayKind, n: int, now: float) -> None:
        """Raise if ``pubkey`` may not pass ``n`` more bytes of ``kind`` today."""
        self._roll(now)
        lim = self.policy.limits_for(pubkey)
        if kind is RelayKind.CONTENT and not lim.content:
            self.refused += 1
            raise ContentRelayDisabled("content relaying is disabled on this relay")
        if n > lim.max_segment:
            self.refused += 1
            raise RelayQuotaExceeded(f"relay segment of {n} bytes exceeds {lim.max_segment}")
        cap = lim.content_bytes_per_day if kind is RelayKind.CONTENT else lim.control_bytes_per_day
        used = self.used.get(pubkey, (0, 0))[kind is RelayKind.CONTENT]
        if used + n > cap:
            self.refused += 1
            raise RelayQuotaExceeded(f"relay quota exceeded: {kind.value} bytes per day ({cap}) for peer {pubkey.hex()[:16]}")

    def charge(self, pubkey: bytes, kind: RelayKind, n: int, now: float) -> None:
        self._roll(now)
        row = self.used.setdefault(bytes(pubkey), [0, 0])
        row[kind is RelayKind.CONTENT] += n
        self.dirty = True

    def usage(self, pubkey: bytes, now: float) -> tuple[int, int]:
        self._roll(now)
        c, k = self.used.get(bytes(pubkey), (0, 0))
        return c, k

    def to_json(self) -> bytes:
        return json.dumps({"v": 1, "day": self.day, "used": {k.hex(): v for k, v in self.used.items()}}).encode()

    def load_json(self, data: bytes, now: float) -> None:
        """Restore counters; a snapshot from another day (or a bad one) starts the day at zero."""
        self._roll(now)
        try:
            obj = json.loads(data)
            if obj.get("v") != 1 or obj.get("day") != self.day:
                return
            self.used = {bytes.fromhex(k): [int(v[0]), int(v[1])] for k, v in obj["used"].items()}
        except (ValueError, KeyError, TypeError, IndexError, AttributeError):
            return


__all__ = ["DAY", "QuotaBook", "RelayLimits", "RelayPolicy"]
