"""Portability of the transport: where the TLS exporter is looked up (Windows: in the ``libssl``
DLL beside ``_ssl``, since ``GetProcAddress`` does not search a DLL's dependencies), and plain
TCP sessions without ``sendmsg`` (Windows) - forced on POSIX."""

from __future__ import annotations

import ctypes.util
import os
import sys

import pytest
from transport_util import endpoint, run

from scp2p.transport import binding, tcp
from scp2p.wire import messages as m


def _loaded_libssl() -> str | None:
    """The path of the libssl this process loaded for ``ssl`` (Linux: /proc/self/maps)."""
    import ssl  # noqa: F401 - loads _ssl and libssl

    try:
        with open("/proc/self/maps") as fh:
            for line in fh:
                path = line.split()[-1]
                if os.path.basename(path).startswith("libssl.so"):
                    return path
    except OSError:
        pass
    return None


def test_ssl_library_candidates(tmp_path, monkeypatch):
    import _ssl

    for name in ("_ssl.pyd", "libssl-3.dll", "libcrypto-3.dll", "sqlite3.dll"):
        (tmp_path / name).write_bytes(b"")
    monkeypatch.setattr(_ssl, "__file__", str(tmp_path / "_ssl.pyd"))
    got = binding._ssl_libraries()
    assert got[0] == str(tmp_path / "_ssl.pyd") and got[-1] == str(tmp_path / "libssl-3.dll")
    assert got[1:-1] == ([None] if os.name == "posix" else [])


def test_find_symbol_skips_libraries_without_it(tmp_path):
    libc = ctypes.util.find_library("c")
    if libc is None:
        pytest.skip("no C library to look in")
    assert binding._find_symbol("SSL_export_keying_material", [libc, str(tmp_path / "missing.dll")]) is None
    assert binding._find_symbol("malloc", [str(tmp_path / "missing.dll"), libc]) is not None


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="finds the loaded libssl through /proc")
def test_tls_session_with_the_exporter_from_the_libssl_path(monkeypatch):
    """The Windows lookup order on Linux: not in the first library, found in libssl by path; a TLS
    session then binds its Hellos with that function."""
    libssl = _loaded_libssl()
    if libssl is None:
        pytest.skip("libssl not found among the loaded libraries")
    monkeypatch.setattr(binding, "_ssl_libraries", lambda: [ctypes.util.find_library("c"), libssl])
    monkeypatch.setattr(binding, "_export", None)

    async def go():
        async with endpoint("tls") as a, endpoint(None) as b:
            assert await b.pool.request(a.listen_addrs[0], m.PexRequest(8), timeout=10) == m.PexOffer(())

    run(go())
    assert binding._export is not None


def test_tcp_sessions_without_sendmsg(monkeypatch):
    """Windows' plain TCP path: every write through the asyncio transport, no read bursts."""
    monkeypatch.setattr(tcp, "VECTORED_SEND", False)
    protos: list = []
    real = tcp.StreamProtocol.connection_made

    def made(self, transport):
        real(self, transport)
        protos.append(self)

    monkeypatch.setattr(tcp.StreamProtocol, "connection_made", made)
    cid = bytes(range(32))

    async def go():
        async with endpoint("tcp") as a, endpoint(None) as b:
            url = a.listen_addrs[0]
            for i in range(20):
                assert await b.pool.request(url, m.GetChunk(cid, i), timeout=10) == m.ChunkData(cid, i, cid * 8)

    run(go())
    assert len(protos) == 2 and all(p._sock is None for p in protos)


def test_quic_listener_turns_icmp_resets_off_on_windows_only(monkeypatch):
    """The WSAIoctl call's shape, with a stand-in ws2_32 (the real one is Windows-only)."""
    import ctypes
    import socket

    from scp2p.transport import quic

    calls: list = []

    def wsaioctl(*args):
        calls.append(args)
        return 0

    class Ws2:
        WSAIoctl = staticmethod(wsaioctl)  # a plain function: takes argtypes / restype like a ctypes one

    class Transport:
        def __init__(self, sock):
            self.sock = sock

        def get_extra_info(self, name):
            return self.sock if name == "socket" else None

    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        t = Transport(s)
        if sys.platform != "win32":
            assert quic._ignore_icmp_resets(t) is False  # a no-op off Windows
            monkeypatch.setattr(sys, "platform", "win32")
            monkeypatch.setattr(ctypes, "WinDLL", lambda name: Ws2() if name == "ws2_32" else None, raising=False)
            assert quic._ignore_icmp_resets(t) is True
            (args,) = calls
            assert args[0] == s.fileno() and args[1] == 0x9800000C and len(args) == 9
            assert args[4:6] == (None, 0) and args[7:] == (None, None)
