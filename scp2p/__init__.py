"""scp2p: a Python implementation of SCP2P (Subscribed Catalog P2P), protocol v0.1."""

from ._version import __version__
from ._accel import backend
from .errors import Scp2pError

__all__ = ["__version__", "API_VERSION", "backend", "Node", "NodeConfig", "Scp2pError"]


def __getattr__(name: str):
    # ``scp2p.Node`` without importing the whole node stack on ``import scp2p``
    if name in ("Node", "NodeConfig", "API_VERSION"):
        from . import node

        return getattr(node, name)
    raise AttributeError(f"module 'scp2p' has no attribute {name!r}")
