"""The routing selector: callers import this module, never a twin directly.

``distance(a, b)``, ``bucket_index(self_id, other)``, ``closer(target, a, b)`` and
``closest(target, ids, k)`` come from the native twin (``scp2p.dht._routing_c``, built
from ``_native/routing.pyx``) unless ``SCP2P_NO_EXTENSIONS=1`` or it is unavailable,
then from ``_routing_py``.
"""

from __future__ import annotations

from .._accel import pick

_impl = pick("scp2p.dht._routing_c", "scp2p.dht._routing_py")

distance = _impl.distance
bucket_index = _impl.bucket_index
closer = _impl.closer
closest = _impl.closest
#: "native" or "pure"
BACKEND = "native" if _impl.__name__.endswith("_c") else "pure"

__all__ = ["BACKEND", "bucket_index", "closer", "closest", "distance"]
