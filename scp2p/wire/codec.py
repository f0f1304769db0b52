"""The codec selector: callers import this module, never a twin directly.

``encode(obj)``, ``decode(cls, data, max_size=None)`` and
``encode_signing(obj, nfields, nested_arrays)`` come from the native twin
(``scp2p.wire._codec_c``, built from ``_native/codec.pyx``) unless
``SCP2P_NO_EXTENSIONS=1`` or it is unavailable, then from ``_codec_py``.
"""

from __future__ import annotations

from .._accel import pick

_impl = pick("scp2p.wire._codec_c", "scp2p.wire._codec_py")

encode = _impl.encode
decode = _impl.decode
encode_signing = _impl.encode_signing
#: "native" or "pure"
BACKEND = "native" if _impl.__name__.endswith("_c") else "pure"

__all__ = ["BACKEND", "decode", "encode", "encode_signing"]
