"""The data-path selector: callers import this module, never a twin directly.

``envelope_fields``, ``envelope_header``, ``chunk_fields``, ``chunk_tail``, ``uint``,
``free_buffer``, ``content_id_at``, ``get_chunk_fields`` and ``chunk_frame`` (see ``_datapath_py``) come from the native twin (``scp2p.transport._datapath_c``,
built from ``_native/datapath.pyx``) unless ``SCP2P_NO_EXTENSIONS=1`` or it is unavailable,
then from ``_datapath_py``.
"""

from __future__ import annotations

from .._accel import pick

_impl = pick("scp2p.transport._datapath_c", "scp2p.transport._datapath_py")

envelope_fields = _impl.envelope_fields
envelope_header = _impl.envelope_header
chunk_fields = _impl.chunk_fields
chunk_tail = _impl.chunk_tail
uint = _impl.uint
free_buffer = _impl.free_buffer
get_chunk_fields = _impl.get_chunk_fields
content_id_at = _impl.content_id_at
chunk_frame = _impl.chunk_frame
#: "native" or "pure"
BACKEND = "native" if _impl.__name__.endswith("_c") else "pure"

__all__ = [
    "BACKEND", "chunk_fields", "chunk_frame", "chunk_tail", "content_id_at", "envelope_fields", "envelope_header", "free_buffer",
    "get_chunk_fields", "uint",
]  # fmt: skip
