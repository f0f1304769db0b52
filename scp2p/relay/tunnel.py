"""One end of a relayed stream: the transport ``Link`` under an end-to-end :class:`Session`.

Multiplexing model (docs/relay.md): each relayed stream carries one complete scp2p session
(Hello exchange, then Envelope frames) as an opaque byte stream, cut into RELAY_STREAM segments.
Segments of one stream and direction travel **stop-and-wait**: the next segment leaves when the
previous one was acknowledged (the relay acknowledges only after the far end did), so a stream
is ordered and back-pressured end to end, and small writes that queue up meanwhile are
coalesced into one segment. A segment never mixes control and content frames
(:class:`~scp2p.relay.frames.FrameTracker`). An empty segment closes the stream.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any, Callable, Optional

from ..errors import RelayRefused, Scp2pError
from ..wire.messages import MsgType
from ..wire.records import RelayKind
from .frames import FrameTracker
from .messages import MAX_SEGMENT, stream_payload

log = logging.getLogger(__name__)

HIGH_WATER = 4 * 1024 * 1024
LOW_WATER = 1024 * 1024


class Tunnel:
    """The Link of a relayed session. ``relay`` is the session with the relay (either direction)."""

    def __init__(
        self,
        relay: Any,
        slot_id: int,
        stream_id: int,
        *,
        segment: int = MAX_SEGMENT,
        timeout: float = 30.0,
        on_done: Optional[Callable[["Tunnel"], None]] = None,
        spawn: Optional[Callable[[Any], None]] = None,
    ) -> None:
        self.relay = relay
        self.slot_id = slot_id
        self.stream_id = stream_id
        self.segment = min(segment, MAX_SEGMENT)
        self.timeout = timeout
        self.on_done = on_done
        self.spawn = spawn
        self.session: Any = None
        self.refusal: Optional[str] = None
        self.bytes_out = 0
        self.bytes_in = 0
        self._tracker = FrameTracker()
        self._raw = bytearray()
        self._runs: list[list] = []  # [kind, n] covering the front of _raw
        self._wake = asyncio.Event()
        self._readable = asyncio.Event()
        self._readable.set()
        self._paused_writer = False
        self._closing = False
        self._done = False
        self._remote_closed = False
        self._pump: Optional[asyncio.Task] = None

    @property
    def key(self) -> tuple:
        return (self.relay, self.slot_id, self.stream_id)

    def attach(self, session: Any) -> None:
        self.session = session
        self._pump = asyncio.get_running_loop().create_task(self._run(), name=f"relay-tunnel-{self.stream_id}")

    # ------------------------------------------------------------------ Link
    def write(self, parts: list) -> None:
        if self._done or self._closing:
            return
        for p in parts:
            for kind, n in self._tracker.feed(p):
                if self._runs and self._runs[-1][0] is kind:
                    self._runs[-1][1] += n
                else:
                    self._runs.append([kind, n])
            self._raw += p
        self._wake.set()
        if len(self._raw) > HIGH_WATER and not self._paused_writer and self.session is not None:
            self._paused_writer = True
            self.session.pause_writing()

    def pause_reading(self) -> None:
        self._readable.clear()

    def resume_reading(self) -> None:
        self._readable.set()

    def close(self) -> None:
        """Graceful: flush what is queued, send the close segment, then report the loss."""
        self._closing = True
        self._wake.set()

    def abort(self) -> None:
        self._closing = True
        self._raw.clear()
        self._runs.clear()
        if self._pump is not None and not self._pump.done():
            self._pump.cancel()
        if not self._remote_closed and not self._done and self.spawn is not None:
            self.spawn(self._send_close())
        self._finish("aborted")

    async def _send_close(self) -> None:
        try:
            await self._send(RelayKind.CONTROL, b"")
        except (Scp2pError, OSError):
            pass

    # ------------------------------------------------------------------ inbound
    async def deliver(self, payload: bytes) -> None:
        """A segment from the far end (through the relay). Acknowledged when this returns."""
        if self._done:
            return
        if not payload:
            self._remote_closed = True
            self._finish("relayed stream closed by the far end")
            return
        self.bytes_in += len(payload)
        self.session.data_received(payload)
        if not self._readable.is_set():
            try:
                async with asyncio.timeout(self.timeout):
                    await self._readable.wait()
            except TimeoutError:
                pass

    def relay_lost(self, reason: str) -> None:
        self._remote_closed = True
        if self.session is not None:
            self.session.abort(f"relay session lost: {reason}")
        self._finish(reason)

    # ------------------------------------------------------------------ pump
    async def _run(self) -> None:
        try:
            while True:
                if not self._runs:
                    if self._closing:
                        break
                    self._wake.clear()
                    await self._wake.wait()
                    continue
                kind, n = self._runs[0]
                take = min(n, self.segment)
                data = bytes(self._raw[:take])
                del self._raw[:take]
                if take == n:
                    self._runs.pop(0)
                else:
                    self._runs[0][1] -= take
                await self._send(kind, data)
                self.bytes_out += take
                if self._paused_writer and len(self._raw) < LOW_WATER:
                    self._paused_writer = False
                    self.session.resume_writing()
            if not self._remote_closed:
                await self._send(RelayKind.CONTROL, b"")
        except RelayRefused as exc:
            self.refusal = exc.reason
            log.info("relay refused a segment on stream %d: %s", self.stream_id, exc.reason)
            if self.session is not None:
                self.session.abort(f"relay refused the stream: {exc.reason}")
        except (Scp2pError, OSError) as exc:
            if self.session is not None:
                self.session.abort(f"relayed stream failed: {exc}")
        finally:
            self._finish("closed")

    async def _send(self, kind: RelayKind, data: bytes) -> None:
        env = await self.relay.request_raw(
            MsgType.RELAY_STREAM, stream_payload(self.slot_id, self.stream_id, kind, data), timeout=self.timeout
        )
        if env.is_error:
            raise RelayRefused(bytes(env.payload).decode("utf-8", "replace"))

    def _finish(self, reason: str) -> None:
        if self._done:
            return
        self._done = True
        self._readable.set()
        if self.session is not None:
            self.session.connection_lost(None if reason in ("closed", "aborted") else ConnectionError(reason))
        if self.on_done is not None:
            self.on_done(self)


__all__ = ["Tunnel"]
