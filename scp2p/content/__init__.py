"""Content addressing: ContentId, chunk hashes, describing and verifying files (PROTOCOL.md section 1)."""

from scp2p.content import hashing as _hashing
from scp2p.content.hashing import *  # noqa: F401,F403 - the public API is hashing's

__all__ = list(_hashing.__all__)
