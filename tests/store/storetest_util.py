from __future__ import annotations

import os

from scp2p.store import KdfParams, Store

#: cheap scrypt so tests stay fast (the format and code path are the same)
FAST_KDF = KdfParams(n_log2=4, r=8, p=1)


def seed(n: int) -> bytes:
    return bytes([n]) * 32


def ident(n: int, size: int = 32) -> bytes:
    return n.to_bytes(4, "big") * (size // 4) if size % 4 == 0 else bytes([n % 256]) * size


def file_snapshot(path) -> tuple[bytes, int]:
    with open(path, "rb") as f:
        data = f.read()
    return data, os.stat(path).st_mode
