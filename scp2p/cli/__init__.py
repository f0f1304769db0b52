"""The ``scp2p`` command line."""

from .main import main

__all__ = ["main"]
