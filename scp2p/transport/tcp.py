"""Stream driver for plain TCP (the v0.1 transport) and TLS 1.3 over TCP.

One ``asyncio.BufferedProtocol`` serves both: the session's frame reader hands
out its own buffers, so the kernel (or asyncio's TLS layer) writes frame bodies
straight into them. For TLS, asyncio calls ``connection_made`` after the TLS
handshake; the channel-binding value is read from the SSL object there and the
Hello exchange runs inside the encrypted channel.
"""

from __future__ import annotations

import asyncio
import logging
import os
import socket
import ssl
from collections import deque
from typing import Callable, Optional

from ..errors import ConnectFailed
from .binding import tls_binding
from .session import LocalNode, Session, SessionState

log = logging.getLogger(__name__)

#: buffers per sendmsg (Linux and macOS IOV_MAX is 1024)
_IOV_MAX = 512
#: ``socket.sendmsg`` exists (not on Windows). The own write queue (vectored sends, no copy into
#: the transport's buffer) and the read bursts need it and a selector loop's fd writer (not the
#: Proactor loop - Windows' default - nor uvloop); without either every write goes through
#: ``transport.write`` and every read through the transport's own read events
VECTORED_SEND = hasattr(socket.socket, "sendmsg")
#: SO_REUSEADDR on listening sockets: on POSIX it only allows a restart while old connections are
#: in TIME_WAIT; on Windows it lets another socket bind the same port while we listen (asyncio's
#: own default is the same: POSIX only)
REUSE_ADDRESS = os.name == "posix"
#: socket reads per read event while whole large frames (chunks) arrive (see buffer_updated)
READ_BURST = 4


class StreamProtocol(asyncio.BufferedProtocol):
    """Glue between an asyncio stream transport and a :class:`Session` (also its ``Link``)."""

    def __init__(
        self,
        local: LocalNode,
        *,
        initiator: bool,
        scheme: str,
        expected_pubkey: Optional[bytes] = None,
        on_session: Optional[Callable[[Session], bool]] = None,
    ) -> None:
        self.local = local
        self.initiator = initiator
        self.scheme = scheme
        self.expected_pubkey = expected_pubkey
        self.on_session = on_session
        self.transport: Optional[asyncio.Transport] = None
        self.session: Optional[Session] = None
        self.made: asyncio.Future = asyncio.get_running_loop().create_future()
        #: the plain TCP socket for vectored writes while the transport's buffer is empty
        self._sock: Optional[socket.socket] = None
        self._init_queue(asyncio.get_running_loop())

    def _init_queue(self, loop) -> None:
        #: buffers the socket did not take yet (plain TCP): kept as they are - no copy into
        #: the transport's buffer - and sent with sendmsg when the socket is writable
        self._q: deque = deque()
        self._qbytes = 0
        self._qpaused = False
        self._qwriter = False
        self._close_after = False
        self._loop = loop
        #: the session paused reading (no extra reads in buffer_updated then)
        self._rpaused = False

    # --------------------------------------------------------------- asyncio protocol
    def connection_made(self, transport) -> None:
        self.transport = transport
        cfg = self.local.config
        transport.set_write_buffer_limits(high=cfg.write_high_water, low=cfg.write_low_water)
        sock = transport.get_extra_info("socket")
        if sock is not None:
            try:
                sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            except OSError:  # pragma: no cover
                pass
            raw = getattr(sock, "_sock", None)  # asyncio's TransportSocket wraps the real one
            # the own write queue needs a selector loop's fd writer (not Proactor, not uvloop)
            if self.scheme == "tcp" and VECTORED_SEND and raw is not None and hasattr(self._loop, "_add_writer"):
                self._sock = raw
        peer = transport.get_extra_info("peername") or ("?", 0)
        binding = None
        if self.scheme == "tls":
            try:
                binding = tls_binding(transport.get_extra_info("ssl_object"))
            except Exception as exc:  # noqa: BLE001
                log.warning("no TLS channel binding available: %s", exc)
                transport.abort()
                if not self.made.done():
                    self.made.set_exception(ConnectFailed(f"TLS channel binding unavailable: {exc}"))
                return
        self.session = Session(
            self.local,
            self,
            initiator=self.initiator,
            transport=self.scheme,
            remote_addr=tuple(peer[:2]),
            expected_pubkey=self.expected_pubkey,
            binding=binding,
        )
        if self.on_session is not None and not self.on_session(self.session):
            self.session.abort("refused: too many sessions")
            return
        self.session.start()
        if not self.made.done():
            self.made.set_result(self.session)

    def get_buffer(self, sizehint: int) -> memoryview:
        return self.session.get_buffer(sizehint)

    def buffer_updated(self, nbytes: int) -> None:
        session = self.session
        session.buffer_updated(nbytes)
        sock = self._sock
        if sock is None:
            return
        # a stream of large frames (chunks): read the socket again at once, up to READ_BURST
        # reads per read event, instead of one event-loop pass (epoll, callback) per chunk
        reader = session.reader
        t = self.transport
        for _ in range(READ_BURST - 1):
            if self._rpaused or not reader.expects_large or session.state is SessionState.CLOSED or t.is_closing():
                return
            try:
                n = sock.recv_into(session.get_buffer(-1))
            except (BlockingIOError, InterruptedError):
                return
            except OSError:
                return  # the transport's next read reports it
            if not n:
                return  # end of stream: the transport's next read sees it too
            session.buffer_updated(n)

    def eof_received(self) -> bool:
        return False  # close the transport; connection_lost follows

    def pause_writing(self) -> None:
        if self.session is not None:
            self.session.pause_writing()

    def resume_writing(self) -> None:
        if self.session is not None:
            self.session.resume_writing()

    def connection_lost(self, exc: Optional[BaseException]) -> None:
        self._close_after = False
        self._drop_queue()
        if self.session is not None:
            self.session.connection_lost(exc)
        elif not self.made.done():
            self.made.set_exception(ConnectFailed(f"connection lost before the session started: {exc}"))

    # --------------------------------------------------------------- Link
    def write(self, parts: list) -> None:
        t = self.transport
        if t is None or t.is_closing() or self._close_after:
            return
        sock = self._sock
        q = self._q
        if sock is None or (not q and t.get_write_buffer_size()):
            for p in parts:  # TLS (or anything the transport already holds goes first)
                t.write(p)
            return
        if not q:
            # What asyncio's write() does for one buffer (try to send now), for all of them in
            # one sendmsg: header + chunk, or every request queued in this loop pass.
            parts = self._send(sock, parts)
            if parts is None or not parts:
                return
        for p in parts:
            q.append(p)
            self._qbytes += len(p)
        if not self._qwriter:
            self._qwriter = True
            self._loop._add_writer(sock.fileno(), self._write_ready)
        if not self._qpaused and self._qbytes > self.local.config.write_high_water:
            self._qpaused = True
            self.pause_writing()

    def _send(self, sock: socket.socket, parts: list) -> Optional[list]:
        """One sendmsg of (up to _IOV_MAX of) ``parts``; what the socket did not take, or None
        after a socket error (the transport is aborted: connection_lost follows)."""
        try:
            sent = sock.sendmsg(parts[:_IOV_MAX])
        except (BlockingIOError, InterruptedError):
            return parts
        except OSError as exc:
            log.debug("send failed: %s", exc)
            self.abort()
            return None
        i = 0
        n = len(parts)
        while i < n:
            k = len(parts[i])
            if sent < k:
                if sent:
                    return [memoryview(parts[i])[sent:], *parts[i + 1 :]]
                break
            sent -= k
            i += 1
        return parts[i:]

    def _write_ready(self) -> None:
        q, sock = self._q, self._sock
        t = self.transport
        if t is None or sock is None or (t.is_closing() and not self._close_after):
            self._drop_queue()
            return
        while q:
            head = list(q) if len(q) <= _IOV_MAX else [q[i] for i in range(_IOV_MAX)]
            rest = self._send(sock, head)
            if rest is None:
                return
            taken = len(head) - len(rest)
            for _ in range(taken):
                self._qbytes -= len(q.popleft())
            if rest and len(rest[0]) != len(q[0]):  # the first one went out in part
                self._qbytes -= len(q[0]) - len(rest[0])
                q[0] = rest[0]
            if rest:
                break
        if not q:
            self._qwriter = False
            self._loop._remove_writer(sock.fileno())
            if self._close_after:
                self._close_after = False
                t.close()
        if self._qpaused and self._qbytes <= self.local.config.write_low_water:
            self._qpaused = False
            self.resume_writing()

    def _drop_queue(self) -> None:
        self._q.clear()
        self._qbytes = 0
        if self._qwriter:
            self._qwriter = False
            if self._sock is not None and self._sock.fileno() >= 0:
                self._loop._remove_writer(self._sock.fileno())

    def pause_reading(self) -> None:
        self._rpaused = True
        if self.transport is not None and not self.transport.is_closing():
            self.transport.pause_reading()

    def resume_reading(self) -> None:
        self._rpaused = False
        if self.transport is not None and not self.transport.is_closing():
            self.transport.resume_reading()

    def close(self) -> None:
        if self.transport is not None:
            if self._q:
                self._close_after = True  # closed once the queue is written
                return
            self.transport.close()

    def abort(self) -> None:
        self._close_after = False
        self._drop_queue()
        if self.transport is not None:
            self.transport.abort()


async def dial_stream(
    local: LocalNode,
    host: str,
    port: int,
    *,
    scheme: str,
    ssl_context: Optional[ssl.SSLContext] = None,
    expected_pubkey: Optional[bytes] = None,
) -> Session:
    """Connect, run the Hello exchange (bounded by the config's timeouts), return the open session."""
    loop = asyncio.get_running_loop()
    cfg = local.config
    proto_holder: list[StreamProtocol] = []

    def factory() -> StreamProtocol:
        p = StreamProtocol(local, initiator=True, scheme=scheme, expected_pubkey=expected_pubkey)
        proto_holder.append(p)
        return p

    try:
        async with asyncio.timeout(cfg.connect_timeout):
            await loop.create_connection(
                factory, host, port, ssl=ssl_context, server_hostname="scp2p" if ssl_context else None,
                ssl_handshake_timeout=cfg.handshake_timeout if ssl_context else None,
            )  # fmt: skip
    except (OSError, TimeoutError, ssl.SSLError) as exc:
        raise ConnectFailed(f"{scheme}://{host}:{port}: {exc or type(exc).__name__}") from exc
    proto = proto_holder[0]
    session = await proto.made
    try:
        await session.ready  # bounded by the session's handshake timer
    except BaseException:
        session.abort("handshake failed")
        raise
    return session


async def listen_stream(
    local: LocalNode,
    host: str,
    port: int,
    *,
    scheme: str,
    on_session: Callable[[Session], bool],
    ssl_context: Optional[ssl.SSLContext] = None,
) -> asyncio.AbstractServer:
    loop = asyncio.get_running_loop()
    cfg = local.config
    return await loop.create_server(
        lambda: StreamProtocol(local, initiator=False, scheme=scheme, on_session=on_session),
        host, port, ssl=ssl_context,
        ssl_handshake_timeout=cfg.handshake_timeout if ssl_context else None,
        reuse_address=REUSE_ADDRESS,
    )  # fmt: skip


__all__ = ["StreamProtocol", "dial_stream", "listen_stream"]
