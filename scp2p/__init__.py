"""scp2p: a Python implementation of SCP2P (Subscribed Catalog P2P), protocol v0.1."""

from ._version import __version__
from ._accel import backend
from .errors import Scp2pError

__all__ = ["__version__", "backend", "Scp2pError"]
