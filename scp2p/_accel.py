"""The one place that picks native (Cython) or pure-Python twins.

Pure when ``SCP2P_NO_EXTENSIONS`` is set to a true value, when not running on
CPython, or under ``TYPE_CHECKING``; otherwise native, falling back to pure
on ``ImportError``. What loaded is recorded for ``scp2p --version``.
"""

from __future__ import annotations

import importlib
import logging
import os
import platform
from types import ModuleType
from typing import TYPE_CHECKING

log = logging.getLogger(__name__)

NO_EXTENSIONS: bool = (
    os.environ.get("SCP2P_NO_EXTENSIONS", "").strip().lower() in {"1", "yes", "true", "on"}
    or platform.python_implementation() != "CPython"
    or TYPE_CHECKING
)

#: module name -> "native" | "pure", for every twin picked so far
loaded: dict[str, str] = {}


def pick(native: str, pure: str) -> ModuleType:
    """Import and return the native twin if allowed and importable, else the pure one."""
    if not NO_EXTENSIONS:
        try:
            mod = importlib.import_module(native)
        except ImportError as exc:
            log.warning("native module %s unavailable (%s); using pure twin %s", native, exc, pure)
        else:
            loaded[native] = "native"
            return mod
    mod = importlib.import_module(pure)
    loaded[pure] = "pure"
    return mod


def backend() -> str:
    """``"native"`` if every twin loaded natively, else ``"pure"``."""
    _load_all()
    return "native" if loaded and all(v == "native" for v in loaded.values()) else "pure"


#: every selector module (each calls :func:`pick` at import); add new twins here
SELECTORS: tuple[str, ...] = ("scp2p.wire.codec", "scp2p.dht.routing", "scp2p.search.index", "scp2p.transport.datapath")


def _load_all() -> None:
    # importing the selector modules fills ``loaded``
    for name in SELECTORS:
        importlib.import_module(name)
