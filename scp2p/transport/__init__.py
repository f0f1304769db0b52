"""Connections: framing, the Hello handshake, sessions over TCP / TLS 1.3 / QUIC, the request layer.

Public API (see docs/transport.md): :class:`Endpoint`, :class:`SessionPool`,
:class:`Session`, :class:`Dispatcher`, :class:`RequestContext`,
:class:`TransportConfig`, the events :class:`PeerConnected` / :class:`PeerDisconnected`,
and the sans-I/O cores :class:`Handshake` and :class:`Connection`.
"""

from .connection import Connection
from .dispatch import Dispatcher, Reply, RequestContext
from .endpoint import Endpoint, EventStream, SessionPool
from .handshake import Handshake, HandshakeResult, Role
from .session import PeerConnected, PeerDisconnected, Session, SessionState, TransportConfig
from .urls import PeerURL, dial_order, parse_url

#: another name for Endpoint
TransportNode = Endpoint

__all__ = [
    "Connection", "Dispatcher", "Endpoint", "EventStream", "Handshake", "HandshakeResult",
    "PeerConnected", "PeerDisconnected", "PeerURL", "Reply", "RequestContext", "Role", "Session",
    "SessionPool", "SessionState", "TransportConfig", "TransportNode", "dial_order", "parse_url",
]  # fmt: skip
