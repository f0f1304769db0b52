"""Pure-Python twin of the routing hot paths: XOR distance, bucket index, closest-K.

Ids are 20-byte ``bytes`` (160-bit NodeIds, or the first 20 bytes of a DHT key).
The native twin ``scp2p.dht._routing_c`` (``_native/routing.pyx``) has the same API,
results and exceptions; this module is the reference.
"""

from __future__ import annotations

from typing import Iterable, Sequence

from ..limits import NODE_ID_LEN

__all__ = ["distance", "bucket_index", "closest", "closer"]

_from = int.from_bytes


def _check(x: object, what: str) -> bytes:
    if not isinstance(x, bytes) or len(x) != NODE_ID_LEN:
        size = len(x) if isinstance(x, (bytes, bytearray)) else type(x).__name__
        raise ValueError(f"{what} must be {NODE_ID_LEN} bytes, got {size}")
    return x


def distance(a: bytes, b: bytes) -> int:
    """XOR distance of two 160-bit ids, as a non-negative int."""
    return _from(_check(a, "id"), "big") ^ _from(_check(b, "id"), "big")


def bucket_index(self_id: bytes, other: bytes) -> int:
    """Index of the k-bucket ``other`` falls in: 159 for the farthest half, 0 for the nearest; -1 if equal."""
    return distance(self_id, other).bit_length() - 1


def closer(target: bytes, a: bytes, b: bytes) -> bool:
    """True when ``a`` is strictly closer to ``target`` than ``b``."""
    t = _from(_check(target, "target"), "big")
    return (_from(_check(a, "id"), "big") ^ t) < (_from(_check(b, "id"), "big") ^ t)


def closest(target: bytes, ids: Iterable[bytes] | Sequence[bytes], k: int) -> list[bytes]:
    """The (at most) ``k`` ids nearest ``target``, nearest first. Duplicates are kept as given."""
    t = _from(_check(target, "target"), "big")
    if k <= 0:
        return []
    keyed = [(_from(_check(i, "id"), "big") ^ t, n, i) for n, i in enumerate(ids)]
    if k < len(keyed) // 4:
        import heapq

        best = heapq.nsmallest(k, keyed)
    else:
        keyed.sort()
        best = keyed[:k]
    return [i for _, _, i in best]
