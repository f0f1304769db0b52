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
import socket
import ssl
from typing import Callable, Optional

from ..errors import ConnectFailed
from .binding import tls_binding
from .session import LocalNode, Session

log = logging.getLogger(__name__)

#: buffers per sendmsg (Linux IOV_MAX is 1024)
_IOV_MAX = 512


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
            if self.scheme == "tcp" and hasattr(raw, "sendmsg"):
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
        self.session.buffer_updated(nbytes)

    def eof_received(self) -> bool:
        return False  # close the transport; connection_lost follows

    def pause_writing(self) -> None:
        if self.session is not None:
            self.session.pause_writing()

    def resume_writing(self) -> None:
        if self.session is not None:
            self.session.resume_writing()

    def connection_lost(self, exc: Optional[BaseException]) -> None:
        if self.session is not None:
            self.session.connection_lost(exc)
        elif not self.made.done():
            self.made.set_exception(ConnectFailed(f"connection lost before the session started: {exc}"))

    # --------------------------------------------------------------- Link
    def write(self, parts: list) -> None:
        t = self.transport
        if t is None or t.is_closing():
            return
        if len(parts) == 1:
            t.write(parts[0])
            return
        sock = self._sock
        if sock is not None and not t.get_write_buffer_size():
            # What asyncio's write() does for one buffer (try to send now), for all of them in
            # one sendmsg: header + chunk, or every request queued in this loop pass. What
            # does not fit goes through the transport (which buffers it and waits for the socket).
            head = parts[:_IOV_MAX]
            try:
                sent = sock.sendmsg(head)
            except (BlockingIOError, InterruptedError):
                sent = 0
            except OSError:
                sent = 0  # the transport's own write reports it and closes
            i = 0
            while sent and i < len(parts):
                n = len(parts[i])
                if sent < n:
                    parts = [memoryview(parts[i])[sent:], *parts[i + 1 :]]
                    i = 0
                    break
                sent -= n
                i += 1
            parts = parts[i:]
        for p in parts:
            t.write(p)

    def pause_reading(self) -> None:
        if self.transport is not None and not self.transport.is_closing():
            self.transport.pause_reading()

    def resume_reading(self) -> None:
        if self.transport is not None and not self.transport.is_closing():
            self.transport.resume_reading()

    def close(self) -> None:
        if self.transport is not None:
            self.transport.close()

    def abort(self) -> None:
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
        reuse_address=True,
    )  # fmt: skip


__all__ = ["StreamProtocol", "dial_stream", "listen_stream"]
