"""QUIC driver (aioquic): one bidirectional stream carries the session.

The client opens stream 0 after the QUIC (TLS 1.3) handshake and runs the
Hello exchange on it with channel binding (see binding.py); everything after is
the same framed envelope stream as on TCP, so the same :class:`Session` and
sans-I/O cores serve it. Further streams are refused (reset): pipelining on the
one stream already gives our nodes parallel requests (see docs/transport.md).

Backpressure: sending pauses while more than ``write_high_water`` bytes on the
stream are not yet acknowledged (aioquic keeps them for retransmission) and
resumes below ``write_low_water``. Receiving: aioquic returns flow-control credit
as soon as it hands data over, so while the session asks to pause reading, the
driver holds received stream data back from it (bounded by the peer's own
write-buffer limit and our handler cap, not by the QUIC window).
"""

from __future__ import annotations

import asyncio
import logging
import socket
import ssl
import sys
from functools import partial
from typing import Callable, Optional

from aioquic.asyncio.protocol import QuicConnectionProtocol
from aioquic.asyncio.server import serve
from aioquic.quic.configuration import QuicConfiguration
from aioquic.quic.connection import QuicConnection
from aioquic.quic.events import ConnectionTerminated, HandshakeCompleted, StreamDataReceived

from ..errors import ConnectFailed
from .binding import quic_binding
from .session import LocalNode, Session
from .tls import ALPN, SelfSigned

log = logging.getLogger(__name__)

#: QUIC flow-control windows (aioquic's 1 MiB defaults throttle 256 KiB chunk streams)
MAX_DATA = 16 * 1024 * 1024
MAX_STREAM_DATA = 8 * 1024 * 1024


def _config(local: LocalNode, *, is_client: bool, cert: Optional[SelfSigned] = None) -> QuicConfiguration:
    cfg = local.config
    idle = max(cfg.idle_timeout or 3600.0, (cfg.keepalive_interval or 0) + cfg.keepalive_timeout) + 30.0
    conf = QuicConfiguration(
        is_client=is_client,
        alpn_protocols=[ALPN],
        idle_timeout=idle,
        max_data=MAX_DATA,
        max_stream_data=MAX_STREAM_DATA,
        verify_mode=ssl.CERT_NONE,  # identity comes from the bound Hello
        server_name="scp2p" if is_client else None,
    )
    if cert is not None:
        conf.certificate = cert.certificate
        conf.private_key = cert.private_key
    return conf


class QuicSessionProtocol(QuicConnectionProtocol):
    """A QUIC connection carrying one :class:`Session` on its first bidirectional stream."""

    def __init__(
        self,
        quic: QuicConnection,
        stream_handler=None,
        *,
        local: LocalNode,
        is_client: bool,
        expected_pubkey: Optional[bytes] = None,
        on_session: Optional[Callable[[Session], bool]] = None,
    ) -> None:
        super().__init__(quic, stream_handler)
        self.local = local
        self.is_client = is_client
        self.expected_pubkey = expected_pubkey
        self.on_session = on_session
        self.session: Optional[Session] = None
        self.stream_id: Optional[int] = None
        self.made: asyncio.Future = self._loop.create_future()
        self._held: list = []
        self._paused = False
        self._write_paused = False
        self._closing = False
        self._terminated = False
        self._flush_handle: Optional[asyncio.Handle] = None

    # --------------------------------------------------------------- QUIC events
    def quic_event_received(self, event) -> None:
        if isinstance(event, HandshakeCompleted):
            self._start(event)
        elif isinstance(event, StreamDataReceived):
            self._stream_data(event)
        elif isinstance(event, ConnectionTerminated):
            self._terminate(f"QUIC connection closed: {event.reason_phrase or event.error_code}")

    def _start(self, event: HandshakeCompleted) -> None:
        if event.alpn_protocol != ALPN:
            self._abort_quic("wrong ALPN")
            return
        try:
            binding = quic_binding(self._quic, self.is_client)
        except Exception as exc:  # noqa: BLE001
            self._abort_quic(f"no channel binding: {exc}")
            return
        peer = self._quic._network_paths[0].addr if self._quic._network_paths else ("?", 0)
        self.session = Session(
            self.local, self, initiator=self.is_client, transport="quic", remote_addr=tuple(peer[:2]),
            expected_pubkey=self.expected_pubkey, binding=binding,
        )  # fmt: skip
        if self.on_session is not None and not self.on_session(self.session):
            self.session.abort("refused: too many sessions")
            return
        if self.is_client:
            self.stream_id = self._quic.get_next_available_stream_id()
        self.session.start()
        if not self.made.done():
            self.made.set_result(self.session)

    def _stream_data(self, event: StreamDataReceived) -> None:
        if self.session is None:
            return
        if self.stream_id is None and not self.is_client and event.stream_id % 4 == 0:
            self.stream_id = event.stream_id
        if event.stream_id != self.stream_id:
            try:
                self._quic.reset_stream(event.stream_id, 0)
            except Exception:  # noqa: BLE001 - receive-only or already reset
                pass
            return
        if event.data:
            if self._paused:
                self._held.append(event.data)
            else:
                self.session.data_received(event.data)
        if event.end_stream:
            self._terminate("stream finished by peer")
            self._abort_quic("stream finished")

    def _terminate(self, reason: str) -> None:
        if self._terminated:
            return
        self._terminated = True
        if self._flush_handle is not None:
            self._flush_handle.cancel()
            self._flush_handle = None
        if self.session is not None:
            self.session.connection_lost(ConnectionError(reason))
        elif not self.made.done():
            self.made.set_exception(ConnectFailed(reason))
            self.made.exception()  # the dialler may have given up already
        if self.is_client and self._transport is not None:
            self._transport.close()

    def datagram_received(self, data, addr) -> None:
        super().datagram_received(data, addr)
        self._check_write_buffer()
        if self._closing and self._unacked() == 0:
            self._close_quic()

    def error_received(self, exc) -> None:
        if self.session is None:  # e.g. ICMP port unreachable while dialling
            self._terminate(f"QUIC dial failed: {exc}")

    def connection_lost(self, exc) -> None:
        self._terminate(f"UDP socket closed: {exc}")
        super().connection_lost(exc)

    # --------------------------------------------------------------- Link
    def _unacked(self) -> int:
        if self.stream_id is None:
            return 0
        stream = self._quic._streams.get(self.stream_id)
        return len(stream.sender._buffer) if stream is not None else 0

    def _check_write_buffer(self) -> None:
        if self.session is None:
            return
        n = self._unacked()
        cfg = self.local.config
        if not self._write_paused and n > cfg.write_high_water:
            self._write_paused = True
            self.session.pause_writing()
        elif self._write_paused and n <= cfg.write_low_water:
            self._write_paused = False
            self.session.resume_writing()

    def write(self, parts: list) -> None:
        if self._terminated or self.stream_id is None:
            return
        for p in parts:
            self._quic.send_stream_data(self.stream_id, p)
        if self._flush_handle is None:  # coalesce the writes of one loop iteration into datagrams
            self._flush_handle = self._loop.call_soon(self._flush)
        self._check_write_buffer()

    def _flush(self) -> None:
        self._flush_handle = None
        if not self._terminated:
            self.transmit()

    def pause_reading(self) -> None:
        self._paused = True

    def resume_reading(self) -> None:
        self._paused = False
        while self._held and not self._paused and self.session is not None:
            self.session.data_received(self._held.pop(0))

    def close(self) -> None:
        """Graceful: close once everything written is acknowledged."""
        if self._terminated:
            return
        self._closing = True
        if self._unacked() == 0:
            self._close_quic()

    def _close_quic(self) -> None:
        if not self._terminated:
            self._quic.close(error_code=0, reason_phrase="session closed")
            self.transmit()
            self._terminate("closed locally")

    def abort(self) -> None:
        self._abort_quic("aborted")

    def _abort_quic(self, reason: str) -> None:
        if not self._terminated:
            self._quic.close(error_code=0x100, reason_phrase=reason)
            self.transmit()
            self._terminate(reason)


#: UDP socket buffers: a 256 KiB response is ~200 datagrams; the default ~208 KiB receive buffer
#: drops some of them when the loop is busy, and every loss halves the congestion window
UDP_BUFFER = 4 * 1024 * 1024


def _grow_buffers(transport) -> None:
    sock = transport.get_extra_info("socket")
    if sock is None:
        return
    for opt in (socket.SO_RCVBUF, socket.SO_SNDBUF):
        try:
            sock.setsockopt(socket.SOL_SOCKET, opt, UDP_BUFFER)
        except OSError:  # pragma: no cover - capped by net.core.rmem_max / wmem_max
            pass


#: WSAIoctl control code _WSAIOW(IOC_VENDOR, 12): whether an ICMP port unreachable is reported as
#: WSAECONNRESET on the next receive of a UDP socket
_SIO_UDP_CONNRESET = 0x9800000C


def _ignore_icmp_resets(transport) -> bool:
    """Windows: turn ``SIO_UDP_CONNRESET`` off on a listening UDP socket. Otherwise one answer to a
    peer that has gone (ICMP port unreachable) makes the next ``WSARecvFrom`` fail with
    ``ConnectionResetError``, and CPython's Proactor datagram transport then stops reading for good
    (python/cpython#127057): the listener goes deaf. True if it was set; elsewhere a no-op (False).
    Not exercised by the Linux tests; a failure only logs."""
    if sys.platform != "win32":
        return False
    sock = transport.get_extra_info("socket")
    if sock is None:
        return False
    try:  # pragma: no cover - Windows
        import ctypes
        from ctypes import wintypes

        fn = ctypes.WinDLL("ws2_32").WSAIoctl
        fn.argtypes = [ctypes.c_size_t, wintypes.DWORD, ctypes.c_void_p, wintypes.DWORD, ctypes.c_void_p,
                       wintypes.DWORD, ctypes.POINTER(wintypes.DWORD), ctypes.c_void_p, ctypes.c_void_p]  # fmt: skip
        fn.restype = ctypes.c_int
        off, got = wintypes.BOOL(False), wintypes.DWORD(0)
        rc = fn(sock.fileno(), _SIO_UDP_CONNRESET, ctypes.byref(off), ctypes.sizeof(off), None, 0, ctypes.byref(got), None, None)
    except (OSError, AttributeError, ValueError, TypeError) as exc:  # pragma: no cover
        log.debug("cannot turn SIO_UDP_CONNRESET off: %s", exc)
        return False
    return rc == 0  # pragma: no cover


class QuicListener:
    """A QUIC listener (wraps aioquic's server) with the bound port."""

    def __init__(self, server) -> None:
        self._server = server
        _grow_buffers(server._transport)
        _ignore_icmp_resets(server._transport)
        self.port = server._transport.get_extra_info("sockname")[1]

    def close(self) -> None:
        self._server.close()

    async def wait_closed(self) -> None:
        return None


async def listen_quic(
    local: LocalNode, host: str, port: int, cert: SelfSigned, *, on_session: Callable[[Session], bool]
) -> QuicListener:
    server = await serve(
        host, port, configuration=_config(local, is_client=False, cert=cert),
        create_protocol=partial(QuicSessionProtocol, local=local, is_client=False, on_session=on_session),
    )  # fmt: skip
    return QuicListener(server)


async def dial_quic(local: LocalNode, host: str, port: int, *, expected_pubkey: Optional[bytes] = None) -> Session:
    loop = asyncio.get_running_loop()
    cfg = local.config
    quic = QuicConnection(configuration=_config(local, is_client=True))
    try:
        # a connected UDP socket: ICMP "port unreachable" fails the dial at once (error_received)
        transport, proto = await loop.create_datagram_endpoint(
            lambda: QuicSessionProtocol(quic, local=local, is_client=True, expected_pubkey=expected_pubkey),
            remote_addr=(host, port),
        )
    except OSError as exc:
        raise ConnectFailed(f"quic://{host}:{port}: {exc}") from exc
    _grow_buffers(transport)
    try:
        proto.connect((host, port))
        try:
            async with asyncio.timeout(cfg.connect_timeout):
                session = await asyncio.shield(proto.made)
        except TimeoutError:
            raise ConnectFailed(f"quic://{host}:{port}: no QUIC handshake within {cfg.connect_timeout} s") from None
        await session.ready
        return session
    except BaseException:
        proto._abort_quic("dial failed")
        transport.close()
        raise


__all__ = ["QuicListener", "QuicSessionProtocol", "dial_quic", "listen_quic"]
