"""The node: configuration now; the asyncio ``Node`` wiring the subsystems builds on it."""

from .config import NodeConfig, Profile

__all__ = ["NodeConfig", "Profile"]
