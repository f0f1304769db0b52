"""Item builders for the search tests (a uniquely named module; tests/ is not a package)."""

from __future__ import annotations

import hashlib
import importlib

from scp2p.wire.records import ItemV1

SEARCH_TWINS = {"native": "scp2p.search._index_c", "pure": "scp2p.search._index_py"}


def index_module(name: str):
    return importlib.import_module(SEARCH_TWINS[name])


def cid(text: str) -> bytes:
    return hashlib.blake2b(text.encode(), digest_size=32).digest()


def sid(n: int) -> bytes:
    return bytes([n]) * 32


def item(name: str, tags=(), size: int = 1000, mime: str | None = None, key: str | None = None) -> ItemV1:
    return ItemV1(content_id=cid(key or name), size=size, name=name, mime=mime, tags=tuple(tags))
