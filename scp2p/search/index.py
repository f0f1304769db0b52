"""Selector: the native search kernels if built, else the pure twin (see scp2p._accel)."""

from __future__ import annotations

from .._accel import pick

_impl = pick("scp2p.search._index_c", "scp2p.search._index_py")

Index = _impl.Index
tokenize = _impl.tokenize
IMPLEMENTATION = _impl.__name__
