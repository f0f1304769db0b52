"""Connections: framing, the Hello handshake and (later) the TCP/TLS/QUIC drivers."""
