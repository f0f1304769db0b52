"""Helpers for the live transport tests: run coroutines bounded in time, raw v0.1-style peers."""

from __future__ import annotations

import asyncio
import os
import time

from scp2p.identity import NodeKey
from scp2p.transport import Dispatcher, Endpoint, TransportConfig
from scp2p.transport.frames import FrameReader, encode_envelope_frame, parse_envelope
from scp2p.transport.handshake import Handshake, Role
from scp2p.wire import messages as m
from scp2p.wire.records import Capabilities

#: every live test finishes within this many seconds or fails
BOUND = 30.0


def run(coro, timeout: float = BOUND):
    async def bounded():
        async with asyncio.timeout(timeout):
            return await coro

    return asyncio.run(bounded())


def quick_config(**kw) -> TransportConfig:
    base = dict(connect_timeout=5.0, handshake_timeout=5.0, request_timeout=10.0, close_timeout=2.0)
    base.update(kw)
    return TransportConfig(**base)


def echo_dispatcher() -> Dispatcher:
    d = Dispatcher()

    async def pex(ctx, msg):
        return m.PexOffer(())

    async def chunk(ctx, msg):
        return m.ChunkData(msg.content_id, msg.chunk_index, msg.content_id * 8)

    d.register(m.MsgType.PEX_REQUEST, pex)
    d.register(m.MsgType.GET_CHUNK, chunk)
    return d


def endpoint(scheme: str = "tcp", dispatcher=None, **cfg) -> Endpoint:
    listen = [f"{scheme}://127.0.0.1:0"] if scheme else []
    return Endpoint(NodeKey.generate(), Capabilities.desktop(), listen, dispatcher or echo_dispatcher(), quick_config(**cfg))


class RawPeer:
    """A hand-driven plain-TCP peer (the initiator side), for v0.1-style and hostile behaviour."""

    def __init__(self, reader, writer, key: NodeKey) -> None:
        self.r, self.w, self.key = reader, writer, key
        self.frames = FrameReader()

    @classmethod
    async def connect(cls, port: int, *, handshake: bool = True, key: NodeKey | None = None) -> "RawPeer":
        r, w = await asyncio.open_connection("127.0.0.1", port)
        peer = cls(r, w, key or NodeKey.generate())
        if handshake:
            hs = Handshake(Role.INITIATOR, peer.key, Capabilities(), timestamp=int(time.time()), nonce=os.urandom(32))
            w.write(hs.initiate())
            while not hs.done:
                data = await r.read(65536)
                if not data:
                    raise ConnectionError("closed during handshake")
                hs.receive_data(data)
            peer.frames.feed(hs.leftover())
        return peer

    def send_raw(self, data: bytes) -> None:
        self.w.write(data)

    def send(self, msg_type: int, req_id: int, payload: bytes, flags: int = 0) -> None:
        self.w.write(encode_envelope_frame(msg_type, req_id, flags, payload))

    async def recv(self):
        while not self.frames.frames:
            data = await self.r.read(65536)
            if not data:
                raise ConnectionError("closed")
            self.frames.feed(data)
        return parse_envelope(self.frames.frames.popleft())

    async def closed(self) -> bool:
        """True once the server closed the connection (reads until EOF)."""
        try:
            while await self.r.read(65536):
                pass
        except ConnectionError:
            pass
        return True

    def close(self) -> None:
        self.w.close()
