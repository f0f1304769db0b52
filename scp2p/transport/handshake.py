"""The identity-binding handshake (PROTOCOL.md section 4.2) as a sans-I/O state machine.

Bytes in, bytes out; the caller passes the timestamp and nonce (no clock, no
randomness inside), so the vectors' ``handshake`` transcript is reproduced byte
for byte. With a ``binding`` (the TLS/QUIC channel-binding value, see
:mod:`scp2p.transport.binding` and docs/transport.md) each side's nonce is
*derived* from the channel instead of drawn at random, and each side checks the
other's nonce against its own view of the channel: a Hello recorded on one
channel and replayed on another fails with :class:`ChannelBindingError`.
"""

from __future__ import annotations

import enum
import hashlib
from dataclasses import dataclass
from typing import Optional

from ..errors import ChannelBindingError, DecodeError, HandshakeError
from ..identity import NodeKey, node_id
from ..limits import MAX_HELLO_FRAME, NONCE_LEN
from ..wire.records import Capabilities, Hello
from .frames import FrameReader
from .hello import check_responder_hello, decode_hello, encode_hello_frame, make_hello, verify_hello


class Role(enum.Enum):
    INITIATOR = "initiator"
    RESPONDER = "responder"


class HandshakeState(enum.Enum):
    START = "start"  # initiator: before initiate()
    WAIT_HELLO = "wait_hello"  # waiting for the peer's Hello
    DONE = "done"
    FAILED = "failed"


BINDING_LABEL = b"scp2p/1 channel-binding nonce "


def binding_nonce(binding: bytes, role: Role) -> bytes:
    """The nonce a side of a bound channel must use: SHA-256(label ‖ role ‖ binding value)."""
    return hashlib.sha256(BINDING_LABEL + role.value.encode() + b" " + bytes(binding)).digest()


@dataclass(frozen=True, slots=True)
class HandshakeResult:
    """What a completed handshake proved about the peer."""

    local_hello: Hello
    remote_hello: Hello
    bound: bool

    @property
    def remote_pubkey(self) -> bytes:
        return self.remote_hello.node_pubkey

    @property
    def remote_node_id(self) -> bytes:
        return node_id(self.remote_hello.node_pubkey)

    @property
    def remote_capabilities(self) -> Capabilities:
        return self.remote_hello.capabilities


class Handshake:
    """One side of the Hello exchange.

    Initiator: ``initiate()`` gives the Hello frame to send, then feed the
    responder's bytes with ``receive_data`` until ``done``. Responder: feed the
    initiator's bytes; ``receive_data`` returns the answering Hello frame.
    Any failure raises :class:`HandshakeError` (or a :class:`DecodeError` for
    malformed bytes) and leaves the state ``FAILED``. Bytes after the Hello
    frame are kept: ``leftover()`` hands them to the post-handshake reader.
    """

    def __init__(
        self,
        role: Role,
        key: NodeKey,
        capabilities: Capabilities,
        *,
        timestamp: int,
        nonce: Optional[bytes] = None,
        expected_pubkey: Optional[bytes] = None,
        binding: Optional[bytes] = None,
        allow_self: bool = False,
    ) -> None:
        if binding is not None:
            derived = binding_nonce(binding, role)
            if nonce is not None and bytes(nonce) != derived:
                raise ValueError("on a bound channel the nonce is derived from the binding")
            nonce = derived
        if nonce is None or len(nonce) != NONCE_LEN:
            raise ValueError(f"a {NONCE_LEN}-byte nonce is required")
        self.role = role
        self.key = key
        self.capabilities = capabilities
        self.timestamp = int(timestamp)
        self.nonce = bytes(nonce)
        self.expected_pubkey = None if expected_pubkey is None else bytes(expected_pubkey)
        self.binding = None if binding is None else bytes(binding)
        self.allow_self = allow_self
        self.state = HandshakeState.START if role is Role.INITIATOR else HandshakeState.WAIT_HELLO
        self.result: Optional[HandshakeResult] = None
        self._reader = FrameReader(MAX_HELLO_FRAME, single=True)
        self._local: Optional[Hello] = None
        self._extra = bytearray()

    @property
    def done(self) -> bool:
        return self.state is HandshakeState.DONE

    def initiate(self) -> bytes:
        """The initiator's Hello frame (echoed_nonce null)."""
        if self.role is not Role.INITIATOR or self.state is not HandshakeState.START:
            raise HandshakeError(f"initiate() in state {self.state.value} as {self.role.value}")
        self._local = make_hello(self.key, self.capabilities, self.nonce, None, self.timestamp)
        self.state = HandshakeState.WAIT_HELLO
        return encode_hello_frame(self._local)

    def receive_data(self, data) -> bytes:
        """Feed bytes from the peer; returns bytes to send (the responder's Hello, once)."""
        if self.state is HandshakeState.DONE:
            self._extra += data
            return b""
        try:
            self._reader.feed(data)
            if not self._reader.frames:
                return b""
            return self.receive_frame(self._reader.frames.popleft())
        except (HandshakeError, DecodeError):
            self.state = HandshakeState.FAILED
            raise

    def leftover(self) -> bytes:
        """Bytes received after the peer's Hello frame (the first envelopes)."""
        out = self._reader.take_buffered() + bytes(self._extra)
        self._extra.clear()
        return out

    def receive_frame(self, body) -> bytes:
        """Process the peer's Hello frame body (a driver with its own frame reader calls this)."""
        if self.state is not HandshakeState.WAIT_HELLO:
            self.state = HandshakeState.FAILED
            raise HandshakeError(f"unexpected hello in state {self.state.value}")
        try:
            hello = decode_hello(body)
            out = self._check(hello)
        except (HandshakeError, DecodeError):
            self.state = HandshakeState.FAILED
            raise
        self.state = HandshakeState.DONE
        return out

    def _check(self, hello: Hello) -> bytes:
        if self.role is Role.INITIATOR:
            check_responder_hello(hello, self.nonce, self.expected_pubkey)
            self._check_binding(hello, Role.RESPONDER)
            self._check_self(hello)
            self.result = HandshakeResult(self._local, hello, self.binding is not None)
            return b""
        verify_hello(hello)
        if hello.echoed_nonce is not None:
            raise HandshakeError("initiator hello must not echo a nonce")
        if self.expected_pubkey is not None and hello.node_pubkey != self.expected_pubkey:
            raise HandshakeError("peer node key differs from the expected key")
        self._check_binding(hello, Role.INITIATOR)
        self._check_self(hello)
        self._local = make_hello(self.key, self.capabilities, self.nonce, hello.nonce, self.timestamp)
        self.result = HandshakeResult(self._local, hello, self.binding is not None)
        return encode_hello_frame(self._local)

    def _check_binding(self, hello: Hello, peer_role: Role) -> None:
        if self.binding is not None and hello.nonce != binding_nonce(self.binding, peer_role):
            raise ChannelBindingError("peer hello nonce is not bound to this channel (replayed or relayed hello)")

    def _check_self(self, hello: Hello) -> None:
        if not self.allow_self and hello.node_pubkey == self.key.public_key:
            raise HandshakeError("connected to ourselves")


__all__ = [
    "BINDING_LABEL", "Handshake", "HandshakeResult", "HandshakeState", "Role", "binding_nonce",
]  # fmt: skip
