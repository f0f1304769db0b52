"""Channel-binding values for TLS 1.3 and QUIC (see docs/transport.md, "Channel binding").

A binding value is a secret both ends of *one* encrypted channel compute
identically and that differs on every other channel (a relay that terminates
the encryption ends up with two channels, two values). The handshake derives
each side's Hello nonce from it (:func:`scp2p.transport.handshake.binding_nonce`),
so the node-key signature on a Hello covers the channel.

* TLS 1.3: the RFC 9266 ``tls-exporter`` value, i.e. the RFC 8446 section 7.5
  exporter with label ``EXPORTER-Channel-Binding``, empty context, 32 bytes.
  Python's ``ssl`` module has no exporter call, so it is read through the
  OpenSSL function ``SSL_export_keying_material`` on the connection's ``SSL*``
  (CPython only; the layout of ``_ssl._SSLSocket`` is stable from 3.8 to 3.13).
* QUIC (aioquic): ``HKDF-Expand-Label(client_application_traffic_secret_0,
  "scp2p channel binding", "", 32)`` from the TLS 1.3 key schedule inside the
  QUIC handshake. aioquic has no exporter API either; the client holds this
  secret as its 1-RTT write secret and the server as its 1-RTT read secret.
"""

from __future__ import annotations

import ctypes
import os
import sys
from typing import Any, Optional

from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.kdf.hkdf import HKDFExpand

from ..errors import TransportError

BINDING_LEN = 32
TLS_EXPORTER_LABEL = b"EXPORTER-Channel-Binding"
QUIC_BINDING_LABEL = b"scp2p channel binding"

_export = None


def _exporter_fn():
    global _export
    if _export is None:
        if sys.implementation.name != "cpython" or not (3, 8) <= sys.version_info[:2] <= (3, 13):
            raise TransportError("TLS exporter needs CPython 3.8-3.13")
        fn = _find_symbol("SSL_export_keying_material", _ssl_libraries())
        if fn is None:
            raise TransportError("SSL_export_keying_material not found beside the ssl module")
        fn.argtypes = [
            ctypes.c_void_p, ctypes.c_char_p, ctypes.c_size_t, ctypes.c_char_p, ctypes.c_size_t,
            ctypes.c_char_p, ctypes.c_size_t, ctypes.c_int,
        ]  # fmt: skip
        fn.restype = ctypes.c_int
        _export = fn
    return _export


def _ssl_libraries() -> list:
    """Where OpenSSL's libssl may be reached, in order: the ``_ssl`` module itself (``dlsym`` on
    its handle also searches the libraries it depends on: Linux, macOS); on POSIX the process's
    global symbols; then a ``libssl*`` library beside ``_ssl`` (Windows: ``GetProcAddress`` on
    ``_ssl.pyd`` does not search its dependencies; CPython ships ``libssl-3.dll`` next to it, already
    loaded by ``_ssl``, so this is the very library its ``SSL*`` belongs to)."""
    import _ssl

    out: list = [_ssl.__file__]
    if os.name == "posix":
        out.append(None)
    d = os.path.dirname(_ssl.__file__)
    try:
        names = sorted(os.listdir(d))
    except OSError:  # pragma: no cover
        names = []
    out += [os.path.join(d, n) for n in names if n.lower().startswith("libssl") and n.lower().endswith((".dll", ".so", ".dylib"))]
    return out


def _find_symbol(name: str, libraries) -> Optional[Any]:
    """The first of ``libraries`` (paths; None: the process) that exports ``name``, as a ctypes function."""
    for path in libraries:
        try:
            return getattr(ctypes.CDLL(path), name)
        except (OSError, AttributeError):
            continue
    return None


def _ssl_ptr(sslobj) -> int:
    # struct PySSLSocket { PyObject_HEAD; PyObject *Socket; SSL *ssl; ... }
    inner = sslobj._sslobj
    head = ctypes.sizeof(ctypes.c_ssize_t) + ctypes.sizeof(ctypes.c_void_p)
    ptr = ctypes.c_void_p.from_address(id(inner) + head + ctypes.sizeof(ctypes.c_void_p)).value
    if not ptr:
        raise TransportError("no SSL handle")
    return ptr


def tls_binding(sslobj) -> bytes:
    """The RFC 9266 tls-exporter value of a completed TLS 1.3 connection (``ssl.SSLObject``)."""
    if sslobj is None:
        raise TransportError("not a TLS connection")
    if sslobj.version() != "TLSv1.3":
        raise TransportError(f"channel binding needs TLS 1.3, got {sslobj.version()}")
    fn = _exporter_fn()
    out = ctypes.create_string_buffer(BINDING_LEN)
    rc = fn(_ssl_ptr(sslobj), out, BINDING_LEN, TLS_EXPORTER_LABEL, len(TLS_EXPORTER_LABEL), None, 0, 0)
    if rc != 1:
        raise TransportError("SSL_export_keying_material failed")
    return out.raw


def _hkdf_label(secret: bytes, label: bytes, length: int) -> bytes:
    full = b"tls13 " + label
    info = length.to_bytes(2, "big") + bytes((len(full),)) + full + b"\x00"
    return HKDFExpand(hashes.SHA256(), length, info).derive(secret)


def quic_binding(quic, is_client: bool) -> bytes:
    """The binding value of a QUIC connection whose handshake completed (aioquic ``QuicConnection``)."""
    tls = getattr(quic, "tls", None)
    secret = getattr(tls, "_enc_key" if is_client else "_dec_key", None)
    if not secret:
        raise TransportError("QUIC application traffic secret unavailable (handshake incomplete?)")
    return _hkdf_label(bytes(secret), QUIC_BINDING_LABEL, BINDING_LEN)


__all__ = ["BINDING_LEN", "QUIC_BINDING_LABEL", "TLS_EXPORTER_LABEL", "quic_binding", "tls_binding"]
