"""The node: ``Node`` (asyncio), ``NodeConfig``, typed events and the control channel."""

from .config import NodeConfig, Profile
from .node import API_VERSION, Node

__all__ = ["API_VERSION", "Node", "NodeConfig", "Profile"]
