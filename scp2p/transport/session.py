"""Sessions: the asyncio driver around the sans-I/O :class:`Handshake` and :class:`Connection`.

A :class:`Session` is transport-agnostic. A transport driver (``tcp.py`` for
TCP and TLS, ``quic.py``) owns the socket, implements the small :class:`Link`
interface (write buffers, pause/resume reading, close, abort) and calls the
session back with received bytes, write-buffer pressure and connection loss.
The session arms one timer (``loop.call_at``) from the cores' deadlines and its
requests' deadlines (a heap, not a timer per request), owns its handler tasks (a
held set, cancelled on close) and fails every waiter when it ends, so nothing
hangs. Requests and responses queued in one event-loop pass leave in one write
(the flush runs once per pass, ``loop.call_soon``).
"""

from __future__ import annotations

import asyncio
import enum
import heapq
import logging
import time
from dataclasses import dataclass, field
from typing import Callable, Optional, Protocol

from .. import limits
from ..errors import (
    Backpressure,
    DecodeError,
    HandshakeError,
    HandshakeTimeout,
    ProtocolViolation,
    RemoteError,
    RequestTimeout,
    SessionClosed,
)
from ..identity import NodeKey, node_id
from ..wire.messages import RESPONSE_TYPE, TYPE_OF, decode_payload, encode_payload
from ..wire.records import Capabilities
from .connection import (
    Connection,
    InFlightLimitChanged,
    MessageReceived,
    RequestReceived,
    ResponseReceived,
)
from .dispatch import DEFER, Dispatcher, RequestContext
from .datapath import envelope_fields
from .frames import FrameReader, RawEnvelope
from .handshake import Handshake, HandshakeResult, Role
from .hello import new_nonce

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class TransportConfig:
    """Timeouts (seconds) and bounds. Each phase has its own named timeout."""

    connect_timeout: float = 10.0
    handshake_timeout: float = limits.HANDSHAKE_TIMEOUT
    request_timeout: float = limits.REQUEST_TIMEOUT
    idle_timeout: Optional[float] = limits.IDLE_TIMEOUT
    keepalive_interval: Optional[float] = limits.KEEPALIVE_INTERVAL
    keepalive_timeout: float = limits.KEEPALIVE_TIMEOUT
    close_timeout: float = 5.0
    #: requests we accept in flight from a pipelining peer, and ask of it (FEATURES)
    max_in_flight: int = limits.MAX_IN_FLIGHT
    #: received requests served at once per session before it stops reading
    max_concurrent_handlers: int = limits.MAX_CONCURRENT_HANDLERS
    #: requests one peer may have outstanding through the pool, and waiting behind them
    max_requests_per_peer: int = limits.MAX_IN_FLIGHT
    max_queued_per_peer: int = 4096
    write_high_water: int = limits.WRITE_HIGH_WATER
    write_low_water: int = limits.WRITE_LOW_WATER
    #: accepted sessions at once (further connections are closed at once)
    max_inbound_sessions: int = 1024
    #: probe peers with FEATURES to pipeline with our own nodes
    probe_features: bool = True


class SessionState(enum.Enum):
    HANDSHAKING = "handshaking"
    OPEN = "open"
    CLOSING = "closing"
    CLOSED = "closed"


class Link(Protocol):
    """What a transport driver provides to a session."""

    def write(self, parts: list) -> None: ...
    def pause_reading(self) -> None: ...
    def resume_reading(self) -> None: ...
    def close(self) -> None: ...
    def abort(self) -> None: ...


@dataclass(frozen=True, slots=True)
class PeerConnected:
    session: "Session"
    remote_node_id: bytes
    remote_pubkey: bytes
    remote_addr: tuple
    remote_capabilities: Capabilities
    transport: str
    initiator: bool


@dataclass(frozen=True, slots=True)
class PeerDisconnected:
    session: "Session"
    remote_node_id: bytes
    remote_pubkey: bytes
    remote_addr: tuple
    transport: str
    reason: str
    remote_capabilities: Optional[Capabilities] = None


@dataclass(slots=True)
class LocalNode:
    """What every session of an endpoint shares."""

    key: NodeKey
    capabilities: Capabilities
    dispatcher: Dispatcher
    config: TransportConfig = field(default_factory=TransportConfig)
    on_open: Optional[Callable[["Session"], None]] = None
    on_closed: Optional[Callable[["Session", str], None]] = None
    #: a clock for Hello timestamps (tests pin it)
    wall_clock: Callable[[], float] = time.time


class Session:
    """One authenticated session with a peer. Create through an Endpoint/SessionPool."""

    def __init__(
        self,
        local: LocalNode,
        link: Link,
        *,
        initiator: bool,
        transport: str,
        remote_addr: tuple,
        expected_pubkey: Optional[bytes] = None,
        binding: Optional[bytes] = None,
    ) -> None:
        self.local = local
        self.config = local.config
        self.link = link
        self.initiator = initiator
        self.transport = transport
        self.remote_addr = remote_addr
        self.state = SessionState.HANDSHAKING
        self.close_reason = ""
        self.result: Optional[HandshakeResult] = None
        self.conn: Optional[Connection] = None
        self.reader = FrameReader(limits.MAX_HELLO_FRAME, single=True)
        self._loop = asyncio.get_running_loop()
        self._hs = Handshake(
            Role.INITIATOR if initiator else Role.RESPONDER,
            local.key,
            local.capabilities,
            timestamp=int(local.wall_clock()),
            nonce=None if binding is not None else new_nonce(),
            expected_pubkey=expected_pubkey,
            binding=binding,
        )
        self.ready: asyncio.Future = self._loop.create_future()
        self.closed: asyncio.Future = self._loop.create_future()
        #: req_id -> the future of a request_raw call, or the _Callback of a request_cb call
        self._waiters: dict[int, object] = {}
        #: request_cb calls awaiting their answer, and a future for a graceful close to wait on
        self._cb_pending = 0
        self._cb_idle: Optional[asyncio.Future] = None
        self._capacity: list[asyncio.Future] = []
        self._writable = asyncio.Event()
        self._writable.set()
        #: inline answers still allowed while the write buffer is above its high water mark
        self._over_budget = local.config.max_concurrent_handlers
        self._reading_paused = False
        self._tasks: set[asyncio.Task] = set()
        self._timer: Optional[asyncio.TimerHandle] = None
        #: (deadline, n, future) of our requests; one timer for all (entries of answered
        #: requests are dropped lazily when they reach the top, or in a compaction)
        self._deadlines: list = []
        self._deadline_n = 0
        self._flush_pending = False
        self._hs_deadline = self._loop.time() + self.config.handshake_timeout
        self.bytes_in = 0
        self.bytes_out = 0

    # ------------------------------------------------------------------ identity
    @property
    def remote_pubkey(self) -> bytes:
        if self.result is None:
            raise SessionClosed("handshake not complete")
        return self.result.remote_pubkey

    @property
    def remote_node_id(self) -> bytes:
        return node_id(self.remote_pubkey)

    @property
    def remote_capabilities(self) -> Capabilities:
        if self.result is None:
            raise SessionClosed("handshake not complete")
        return self.result.remote_capabilities

    @property
    def is_open(self) -> bool:
        return self.state is SessionState.OPEN

    @property
    def pipelining(self) -> bool:
        return self.conn is not None and self.conn.remote_max_in_flight > 1

    def __repr__(self) -> str:
        who = self.result.remote_node_id.hex()[:12] if self.result else "?"
        return f"<Session {self.transport} {self.remote_addr} node={who} {self.state.value}>"

    # ------------------------------------------------------------------ driver callbacks
    def start(self) -> None:
        """Called by the driver once the (encrypted) channel is up."""
        if self._hs.role is Role.INITIATOR:
            self._write([self._hs.initiate()])
        self._arm_timer()

    def get_buffer(self, sizehint: int = -1) -> memoryview:
        return self.reader.get_buffer(sizehint)

    def buffer_updated(self, nbytes: int) -> None:
        self.bytes_in += nbytes
        if self.state in (SessionState.CLOSED,):
            return
        try:
            if self.conn is not None:
                self.conn.buffer_updated(nbytes, self._loop.time())
            else:
                self.reader.buffer_updated(nbytes)
            self._process()
        except Exception as exc:  # noqa: BLE001 - every failure ends this session only
            self._fail(exc)

    def data_received(self, data) -> None:
        """The copying path (QUIC stream data)."""
        self.bytes_in += len(data)
        if self.state is SessionState.CLOSED:
            return
        try:
            if self.conn is not None:
                self.conn.receive_data(data, self._loop.time())
            else:
                self.reader.feed(data)
            self._process()
        except Exception as exc:  # noqa: BLE001
            self._fail(exc)

    def pause_writing(self) -> None:
        self._writable.clear()

    def resume_writing(self) -> None:
        self._writable.set()
        self._over_budget = self.config.max_concurrent_handlers

    def connection_lost(self, exc: Optional[BaseException]) -> None:
        reason = self.close_reason or (f"connection lost: {exc}" if exc else "connection closed by peer")
        self._finish(reason)

    # ------------------------------------------------------------------ processing
    def _fail(self, exc: BaseException) -> None:
        if isinstance(exc, (HandshakeError, DecodeError, ProtocolViolation, HandshakeTimeout)):
            log.info("session %r: %s", self, exc)
        else:
            log.exception("session %r failed", self)
        self.abort(str(exc) or type(exc).__name__, exc)

    def _process(self) -> None:
        if self.conn is None:
            frames = self.reader.frames
            if not frames:
                return
            reply = self._hs.receive_frame(frames.popleft())
            if reply:
                self._write([reply])
            self._open()
        conn = self.conn
        disp = self.local.dispatcher
        raw = disp.raw
        frames = conn.reader.frames
        waiters = self._waiters
        while True:
            # the fast lanes: a canonical response to a request_cb request (a downloader's
            # CHUNK_DATA) goes straight to its callback, a canonical request of a type with a
            # raw lane (a provider's GET_CHUNK) is answered by it; everything else (and what a
            # raw lane declines) is the core's event
            while frames and not conn.has_events:
                body = frames[0]
                f = envelope_fields(body)
                if f is None:
                    break
                if f[2] & 1:
                    w = waiters.get(f[1])
                    if type(w) is not _Callback or not conn.take_response(f[1]):
                        break
                    frames.popleft()
                    w.set_result(RawEnvelope(f[0], f[1], f[2], memoryview(body)[f[3] :]))
                elif not (raw and self._answer_raw(raw, f, body)):
                    break
            ev = conn.next_event()
            if ev is None:
                break
            if isinstance(ev, ResponseReceived):
                fut = self._waiters.get(ev.envelope.req_id)
                if fut is not None and not fut.done():
                    fut.set_result(ev.envelope)
            elif isinstance(ev, RequestReceived):
                env = ev.envelope
                if not (disp.has_fast(env.type) and self._answer_now(ev.seq, env)):
                    self._spawn(self._serve(ev.seq, env))
            elif isinstance(ev, MessageReceived):
                self._spawn(self._serve(None, ev.envelope))
            elif isinstance(ev, InFlightLimitChanged):
                self._wake_capacity()
        self._check_receive_pressure()
        self._flush()
        self._arm_timer()

    def _open(self) -> None:
        self.result = self._hs.result
        now = self._loop.time()
        cfg = self.config
        self.conn = Connection(
            initiator=self.initiator,
            now=now,
            max_in_flight=cfg.max_in_flight,
            probe_features=cfg.probe_features and self.initiator,
            keepalive_interval=cfg.keepalive_interval if self.initiator else None,
            keepalive_timeout=cfg.keepalive_timeout,
            idle_timeout=cfg.idle_timeout,
            reader=self.reader,
        )
        self.reader.resume()
        self.state = SessionState.OPEN
        if not self.ready.done():
            self.ready.set_result(self.result)
        if self.local.on_open is not None:
            self.local.on_open(self)
        self._arm_timer()

    def _write(self, parts: list) -> None:
        if parts and self.state is not SessionState.CLOSED:
            for p in parts:
                self.bytes_out += len(p)
            self.link.write(parts)

    def _flush(self) -> None:
        if self.conn is not None and self.conn.pending_output:
            self._write(self.conn.data_to_send())

    def _flush_soon(self) -> None:
        """Flush at the end of this event-loop pass: what every task queues in the pass
        leaves in one write (one ``sendmsg``) instead of a syscall per request."""
        if not self._flush_pending:
            self._flush_pending = True
            self._loop.call_soon(self._deferred_flush)

    def _deferred_flush(self) -> None:
        self._flush_pending = False
        if self.state is SessionState.CLOSED:
            return
        self._flush()
        self._arm_timer()

    def _spawn(self, coro) -> None:
        task = self._loop.create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._task_done)

    def _task_done(self, task: asyncio.Task) -> None:
        self._tasks.discard(task)
        if not task.cancelled() and task.exception() is not None:
            log.error("session task failed", exc_info=task.exception())
        self._check_receive_pressure()

    def _check_receive_pressure(self) -> None:
        busy = len(self._tasks)
        cap = self.config.max_concurrent_handlers
        if not self._reading_paused and busy >= cap:
            self._reading_paused = True
            self.link.pause_reading()
        elif self._reading_paused and busy < max(1, cap // 2) and self.state is not SessionState.CLOSED:
            self._reading_paused = False
            self.link.resume_reading()

    def _answer_now(self, seq: int, env: RawEnvelope) -> bool:
        """Answer a request through its handler's synchronous fast path, inline (no task);
        False when the fast path defers (or the write buffer stayed full for
        ``max_concurrent_handlers`` inline answers): ``_serve`` runs it.

        A full write buffer alone does not defer: a deferred answer is read and held by its
        task just the same (the pipelining peer's requests are bounded), and deferring one
        answer sends every later request of that peer down the task path behind it. The
        budget bounds what inline answers add above the high water mark until it drains."""
        if self.state is SessionState.CLOSED:
            return False
        if not self._writable.is_set():
            if self._over_budget <= 0:
                return False
            self._over_budget -= 1
        reply = self.local.dispatcher.dispatch_now(RequestContext(self, env.type, env.req_id), env)
        if reply is DEFER:
            return False
        conn = self.conn
        if reply is None:
            conn.send_response(seq, env.type, env.req_id, 0, None, self._loop.time())
        else:
            conn.send_response(seq, reply.type, env.req_id, reply.flags, reply.payload, self._loop.time())
        self._flush_answer()
        return True

    def _flush_answer(self) -> None:
        """An inline answer was queued: a large response leaves at once - the peer starts
        receiving it while the next requests of this read are answered (instead of one write
        after all of them) - anything smaller with the rest of this pass."""
        if self.conn.pending_output >= FLUSH_NOW:
            self._flush()
        else:
            self._flush_soon()

    def _answer_raw(self, raw: dict, f: tuple, body) -> bool:
        """The next frame, a canonical request ``f`` (``envelope_fields``), answered by its type's
        raw lane (see :class:`Dispatcher`) and taken off the frames; False - nothing changed -
        when there is none, it declines, or the write budget is spent (as :meth:`_answer_now`)."""
        t, rid, flags = f[0], f[1], f[2]
        fn = raw.get(t)
        if fn is None or flags or not rid or self.state is SessionState.CLOSED:
            return False
        writable = self._writable.is_set()
        if not writable and self._over_budget <= 0:
            return False
        parts = fn(self, rid, memoryview(body)[f[3] :])
        if parts is None:
            return False
        if not writable:
            self._over_budget -= 1
        conn = self.conn
        conn.reader.frames.popleft()
        conn.answer_taken(parts, self._loop.time())
        handled = self.local.dispatcher.handled
        handled[t] = handled.get(t, 0) + 1
        self._flush_answer()
        return True

    async def _serve(self, seq: Optional[int], env: RawEnvelope) -> None:
        ctx = RequestContext(self, env.type, env.req_id)
        reply = await self.local.dispatcher.dispatch(ctx, env)
        if seq is None or self.conn is None or self.state is SessionState.CLOSED:
            return
        if reply is not None and not self._writable.is_set():
            await self._writable.wait()  # write-drain backpressure on responses
        if self.state is SessionState.CLOSED:
            return
        if reply is None:
            self.conn.send_response(seq, env.type, env.req_id, 0, None, self._loop.time())
        else:
            self.conn.send_response(seq, reply.type, env.req_id, reply.flags, reply.payload, self._loop.time())
        self._flush_soon()

    # ------------------------------------------------------------------ timers
    def _arm_timer(self) -> None:
        if self.state is SessionState.CLOSED:
            return
        when = self._hs_deadline if self.conn is None else self.conn.deadline()
        dl = self._deadlines
        while dl and dl[0][2].done():
            heapq.heappop(dl)
        if dl and (when is None or dl[0][0] < when):
            when = dl[0][0]
        t = self._timer
        if t is not None:
            if when is not None and t.when() <= when:
                return  # an earlier wake-up is armed; it re-arms for the rest
            t.cancel()
            self._timer = None
        if when is not None:
            self._timer = self._loop.call_at(when, self._on_timer)

    def _on_timer(self) -> None:
        self._timer = None
        if self.state is SessionState.CLOSED:
            return
        now = self._loop.time()
        dl = self._deadlines
        while dl and (dl[0][0] <= now + _EARLY or dl[0][2].done()):
            fut = heapq.heappop(dl)[2]
            if not fut.done():
                fut.set_exception(TimeoutError())
        if self.conn is None:
            if now >= self._hs_deadline:
                self._fail(HandshakeTimeout(f"handshake not completed within {self.config.handshake_timeout} s"))
                return
        else:
            reason = self.conn.handle_timer(now)
            if reason is not None:
                log.info("session %r: %s", self, reason)
                if reason == "idle timeout":
                    self._spawn_close(reason)
                else:
                    self.abort(reason)
                return
            self._flush()
            self._wake_capacity()
        self._arm_timer()

    def _spawn_close(self, reason: str) -> None:
        if self.state is SessionState.OPEN:
            self.state = SessionState.CLOSING
            self.close_reason = reason
            self._close_task = self._loop.create_task(self._graceful(reason))

    # ------------------------------------------------------------------ requests we send
    def _wake_capacity(self) -> None:
        while self._capacity and self.conn is not None and self.conn.can_send_request:
            fut = self._capacity.pop(0)
            if not fut.done():
                fut.set_result(None)
                return  # the woken sender takes the slot, then wakes the next

    async def _acquire_slot(self) -> None:
        while True:
            if self.state is not SessionState.OPEN:
                raise SessionClosed(self.close_reason or f"session {self.state.value}")
            if self.conn.can_send_request and not self._capacity:
                break
            fut = self._loop.create_future()
            self._capacity.append(fut)
            try:
                await fut
            except BaseException:
                if fut in self._capacity:
                    self._capacity.remove(fut)
                elif fut.done() and not fut.cancelled():
                    self._wake_capacity()  # pass the wake-up on
                raise
            if self.state is SessionState.OPEN and self.conn.can_send_request:
                break
        if not self._writable.is_set():
            await self._writable.wait()
            if self.state is not SessionState.OPEN:
                raise SessionClosed(self.close_reason or f"session {self.state.value}")

    async def request_raw(self, msg_type: int, payload, *, timeout: Optional[float] = None) -> RawEnvelope:
        """Send a request, return the response envelope (error responses included)."""
        if self.state is not SessionState.OPEN:
            raise SessionClosed(self.close_reason or f"session {self.state.value}")
        timeout = self.config.request_timeout if timeout is None else timeout
        loop = self._loop
        deadline = loop.time() + timeout
        fut = loop.create_future()
        self._add_deadline(deadline, fut)
        rid = None
        try:
            if not (self.conn.can_send_request and not self._capacity and self._writable.is_set()):
                async with asyncio.timeout_at(deadline):
                    await self._acquire_slot()
            rid = self.conn.send_request(msg_type, payload, loop.time())
            self._waiters[rid] = fut
            self._wake_capacity()
            self._flush_soon()
            return await fut
        except TimeoutError:
            raise RequestTimeout(f"no response to type {msg_type} within {timeout} s from {self.remote_addr}") from None
        finally:
            if not fut.done():
                fut.cancel()  # its heap entry is dropped when it reaches the top
            if rid is not None:
                self._waiters.pop(rid, None)
                if self.conn is not None:
                    self.conn.forget_request(rid)
                    self._wake_capacity()

    def request_cb(
        self, msg_type: int, payload, callback: Callable, *, timeout: Optional[float] = None
    ) -> Optional["_Callback"]:
        """Send a request now without a task or a future: ``callback(env, None)`` receives the
        response envelope (error responses included), ``callback(None, exc)`` a
        :class:`RequestTimeout` or :class:`SessionClosed`. The callback runs on the loop,
        inside the session's processing (it must not block; exceptions are logged).

        Returns a handle whose ``cancel()`` stops waiting (the callback is then never called),
        or None - and nothing is sent - when the request cannot leave at once (session not
        open, in-flight limit reached or other senders queued, write buffer full): the caller
        then uses :meth:`request_raw`, which waits for a slot."""
        conn = self.conn
        if (
            self.state is not SessionState.OPEN
            or not conn.can_send_request
            or self._capacity
            or not self._writable.is_set()
        ):
            return None
        now = self._loop.time()
        w = _Callback(self, callback, msg_type, self.config.request_timeout if timeout is None else timeout)
        self._add_deadline(now + w.timeout, w)
        w.rid = conn.send_request(msg_type, payload, now)
        self._waiters[w.rid] = w
        self._cb_pending += 1
        self._flush_soon()
        return w

    def _cb_end(self, w: "_Callback", answered: bool) -> None:
        """A request_cb request is over (answered, failed or cancelled): forget it."""
        rid = w.rid
        if self._waiters.get(rid) is w:
            del self._waiters[rid]
        if not answered and self.conn is not None:
            self.conn.forget_request(rid)  # a late response is dropped
        if self._capacity:
            self._wake_capacity()
        self._cb_pending -= 1
        if not self._cb_pending and self._cb_idle is not None:
            if not self._cb_idle.done():
                self._cb_idle.set_result(None)
            self._cb_idle = None

    def _add_deadline(self, deadline: float, fut) -> None:
        dl = self._deadlines
        if len(dl) > 2 * len(self._waiters) + 256:  # many answered entries: compact
            dl[:] = [e for e in dl if not e[2].done()]
            heapq.heapify(dl)
        self._deadline_n += 1
        heapq.heappush(dl, (deadline, self._deadline_n, fut))
        t = self._timer
        if t is None or t.when() > deadline:
            self._arm_timer()

    async def request(self, message, *, timeout: Optional[float] = None, msg_type: Optional[int] = None):
        """Send a typed request; the typed response. Error responses raise :class:`RemoteError`."""
        t = TYPE_OF[type(message)] if msg_type is None else int(msg_type)
        expected = RESPONSE_TYPE.get(t)
        if expected is None:
            raise ValueError(f"message type {t} has no response; use send()")
        env = await self.request_raw(t, encode_payload(message), timeout=timeout)
        return decode_response(t, env)

    async def send(self, message, *, msg_type: Optional[int] = None, timeout: Optional[float] = None) -> None:
        """Fire-and-forget (req_id 0). Waits for the write buffer to drain below the high water
        mark; raises :class:`Backpressure` if it does not within ``timeout``."""
        if self.state is not SessionState.OPEN:
            raise SessionClosed(self.close_reason or f"session {self.state.value}")
        t = TYPE_OF[type(message)] if msg_type is None else int(msg_type)
        payload = message if isinstance(message, (bytes, bytearray)) else encode_payload(message)
        if not self._writable.is_set():
            timeout = self.config.request_timeout if timeout is None else timeout
            try:
                async with asyncio.timeout(timeout):
                    await self._writable.wait()
            except TimeoutError:
                raise Backpressure(f"write buffer to {self.remote_addr} did not drain within {timeout} s") from None
            if self.state is not SessionState.OPEN:
                raise SessionClosed(self.close_reason or f"session {self.state.value}")
        self.conn.send_message(t, payload, self._loop.time())
        self._flush()
        self._arm_timer()

    # ------------------------------------------------------------------ closing
    async def close(self, timeout: Optional[float] = None) -> None:
        """Graceful close: no new requests; wait (bounded) for in-flight work, flush, close."""
        if self.state in (SessionState.OPEN, SessionState.HANDSHAKING):
            self.state = SessionState.CLOSING
            self.close_reason = self.close_reason or "closed locally"
            await self._graceful(self.close_reason, timeout)
        elif self.state is SessionState.CLOSING:
            await asyncio.wait([self.closed], timeout=self.config.close_timeout if timeout is None else timeout)
        await self.wait_closed()

    async def _graceful(self, reason: str, timeout: Optional[float] = None) -> None:
        timeout = self.config.close_timeout if timeout is None else timeout
        self._fail_capacity(reason)
        try:
            async with asyncio.timeout(timeout):
                while self._waiters or self._tasks:
                    pending = [f for f in self._waiters.values() if not isinstance(f, _Callback)] + list(self._tasks)
                    if self._cb_pending:
                        if self._cb_idle is None:
                            self._cb_idle = self._loop.create_future()
                        pending.append(self._cb_idle)
                    await asyncio.wait(pending, return_when=asyncio.FIRST_COMPLETED)
                self._flush()
                self.link.close()
                await asyncio.shield(self.closed)
        except TimeoutError:
            log.info("session %r: graceful close timed out, aborting", self)
            self.abort(reason)
        except asyncio.CancelledError:
            self.abort(reason)
            raise

    async def wait_closed(self) -> None:
        await asyncio.shield(self.closed)
        if self._tasks:
            await asyncio.wait(list(self._tasks), timeout=self.config.close_timeout)

    def abort(self, reason: str = "aborted", exc: Optional[BaseException] = None) -> None:
        """Close at once: fail all waiters, cancel handlers, drop the connection."""
        if self.state is SessionState.CLOSED:
            return
        self.close_reason = self.close_reason or reason
        self.link.abort()
        self._finish(self.close_reason, exc)

    def _fail_capacity(self, reason: str) -> None:
        for fut in self._capacity:
            if not fut.done():
                fut.set_result(None)  # wakes the sender, which sees the state and raises
        self._capacity.clear()

    def _finish(self, reason: str, exc: Optional[BaseException] = None) -> None:
        if self.state is SessionState.CLOSED:
            return
        was_open = self.conn is not None
        self.state = SessionState.CLOSED
        self.close_reason = self.close_reason or reason
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        if not self.ready.done():
            if isinstance(exc, (HandshakeError, HandshakeTimeout)):
                self.ready.set_exception(exc)
            elif isinstance(exc, DecodeError):
                err = HandshakeError(f"bad hello from peer: {exc}")
                err.__cause__ = exc
                self.ready.set_exception(err)
            else:
                self.ready.set_exception(SessionClosed(f"closed during handshake: {self.close_reason}"))
            self.ready.exception()  # mark retrieved
        err = SessionClosed(self.close_reason)
        for fut in list(self._waiters.values()):  # a callback may cancel other requests
            if not fut.done():
                fut.set_exception(err)
        self._fail_capacity(reason)
        self._writable.set()
        for t in list(self._tasks):
            t.cancel()
        if not self.closed.done():
            self.closed.set_result(self.close_reason)
        if was_open and self.local.on_closed is not None:
            self.local.on_closed(self, self.close_reason)


#: a timer may fire up to the loop's clock resolution early; deadlines that close count as due
_EARLY = 1e-6
#: output queued by inline answers is written at once from this size on (else at the end of the pass)
FLUSH_NOW = 128 * 1024


class _Callback:
    """A request sent with :meth:`Session.request_cb`: stands where a future would (the waiter
    table and the deadline heap call ``done``/``set_result``/``set_exception``) and calls the
    callback instead of waking a task."""

    __slots__ = ("session", "callback", "msg_type", "timeout", "rid", "_done")

    def __init__(self, session: Session, callback: Callable, msg_type: int, timeout: float) -> None:
        self.session = session
        self.callback = callback
        self.msg_type = msg_type
        self.timeout = timeout
        self.rid = 0
        self._done = False

    def done(self) -> bool:
        return self._done

    def cancel(self) -> bool:
        """Stop waiting (the callback is not called; a late response is dropped)."""
        if self._done:
            return False
        self._done = True
        self.session._cb_end(self, False)
        return True

    def set_result(self, env: RawEnvelope) -> None:
        if not self._done:
            self._done = True
            self.session._cb_end(self, True)
            self._call(env, None)

    def set_exception(self, exc: BaseException) -> None:
        if not self._done:
            self._done = True
            self.session._cb_end(self, False)
            if type(exc) is TimeoutError:
                s = self.session
                exc = RequestTimeout(f"no response to type {self.msg_type} within {self.timeout} s from {s.remote_addr}")
            self._call(None, exc)

    def _call(self, env, exc) -> None:
        try:
            self.callback(env, exc)
        except Exception:  # noqa: BLE001 - a callback bug must not break the session
            log.exception("request callback failed")


def decode_response(request_type: int, env: RawEnvelope):
    """Turn a response envelope into the typed message, or raise :class:`RemoteError`."""
    if env.is_error:
        raise RemoteError(bytes(env.payload).decode("utf-8", "replace"), env.type)
    if not env.is_response:
        raise ProtocolViolation("response without the RESPONSE flag")
    expected = RESPONSE_TYPE.get(request_type)
    if env.type != expected:
        raise ProtocolViolation(f"response type {env.type} to a type {request_type} request (expected {expected})")
    return decode_payload(env.type, env.payload, True)


__all__ = [
    "LocalNode", "Link", "PeerConnected", "PeerDisconnected", "Session", "SessionState",
    "TransportConfig", "decode_response",
]  # fmt: skip
