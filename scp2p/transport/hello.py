"""The Hello message of the identity-binding handshake (PROTOCOL.md section 4.2).

Building, signing and checking Hellos; the handshake state machine and drivers
build on these.
"""

from __future__ import annotations

import os
from typing import Optional

from ..errors import HandshakeError, SignatureInvalid
from ..identity import NodeKey, verify_signature
from ..limits import MAX_HELLO_FRAME, NONCE_LEN
from ..wire import codec
from ..wire.framing import encode_frame, read_frame
from ..wire.records import HELLO_SIGNED_FIELDS, Capabilities, Hello


def hello_signing_bytes(hello: Hello) -> bytes:
    """CBOR array ``[node_pubkey, capabilities, nonce, echoed_nonce, timestamp_unix_secs]``."""
    return codec.encode_signing(hello, HELLO_SIGNED_FIELDS, False)


def new_nonce() -> bytes:
    return os.urandom(NONCE_LEN)


def make_hello(
    key: NodeKey,
    capabilities: Capabilities,
    nonce: bytes,
    echoed_nonce: Optional[bytes],
    timestamp: int,
) -> Hello:
    unsigned = Hello(key.public_key, capabilities, nonce, echoed_nonce, timestamp, bytes(64))
    return Hello(key.public_key, capabilities, nonce, echoed_nonce, timestamp, key.sign(hello_signing_bytes(unsigned)))


def encode_hello_frame(hello: Hello) -> bytes:
    return encode_frame(codec.encode(hello), MAX_HELLO_FRAME)


def decode_hello(body) -> Hello:
    return codec.decode(Hello, body, MAX_HELLO_FRAME)


def verify_hello(hello: Hello) -> None:
    """Raise :class:`HandshakeError` unless the Hello is signed by its own node key."""
    try:
        verify_signature(hello.node_pubkey, hello.signature, hello_signing_bytes(hello))
    except SignatureInvalid as exc:
        raise HandshakeError(f"peer hello signature invalid: {exc}") from None


def check_responder_hello(hello: Hello, our_nonce: bytes, expected_pubkey: Optional[bytes]) -> None:
    """The initiator's checks on the responder's Hello: signature, echoed nonce, expected key."""
    verify_hello(hello)
    if hello.echoed_nonce != our_nonce:
        raise HandshakeError("peer hello does not echo our nonce")
    if expected_pubkey is not None and hello.node_pubkey != bytes(expected_pubkey):
        raise HandshakeError("peer node key differs from the expected pubkey_hint")


def initiator_verify_hello_frame(frame: bytes, our_nonce: bytes, expected_pubkey: Optional[bytes]) -> Hello:
    """Read one handshake frame (64 KiB limit) holding the responder's Hello and check it."""
    body, _rest = read_frame(frame, MAX_HELLO_FRAME)
    hello = decode_hello(body)
    check_responder_hello(hello, our_nonce, expected_pubkey)
    return hello


__all__ = [
    "check_responder_hello", "decode_hello",
    "encode_hello_frame", "hello_signing_bytes", "initiator_verify_hello_frame", "make_hello",
    "new_nonce", "verify_hello",
]  # fmt: skip
