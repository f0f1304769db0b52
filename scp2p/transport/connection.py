"""The post-handshake session core, sans-I/O: frames in, events out; requests in, bytes out.

No sockets, no clock: every call that depends on time takes ``now``, and
:meth:`Connection.deadline` / :meth:`Connection.handle_timer` tell the driver
when to wake it. What lives here (once, for TCP, TLS, QUIC and relays alike):

* frame assembly with the 2 MiB limit checked before allocation, envelope parsing;
* ``req_id`` allocation (1..2**32-1, wrapping, skipping ids still in flight) and
  matching of responses; late responses (after a timeout) are dropped;
* **pipelining** only with peers that proved they are our own nodes: the
  initiator probes with a transport-private FEATURES request (type 0xFF01); a v0.1
  peer answers it with an error (unknown type) and gets one request at a time;
* **in-order answering**: requests get a sequence number and their responses
  leave in arrival order (a response that is ready early waits), unless the
  peer pipelines by FEATURES; a one-at-a-time peer sees exactly request/response;
* **keepalive**: after ``keepalive_interval`` without receiving anything, a PING
  (type 0xFF00) goes out; v0.1 peers answer it with an error response, which
  proves liveness just as well; no frame within ``keepalive_timeout`` closes;
* **idle timeout**: no application traffic and nothing in flight for
  ``idle_timeout`` closes the session gracefully.
"""

from __future__ import annotations

import logging
from collections import deque
from dataclasses import dataclass
from typing import Optional, Union

from ..errors import DecodeError, ProtocolViolation
from ..limits import MAX_FRAME, MAX_IN_FLIGHT, U32_MAX
from ..wire import codec
from ..wire.records import FLAG_ERROR, FLAG_RESPONSE, _Record
from ..wire.schema import u16, wire_record
from .frames import FrameReader, RawEnvelope, encode_envelope_header, parse_envelope

log = logging.getLogger(__name__)

#: transport-private message numbers (never sent as v0.1 registry types; see docs/transport.md)
PING_TYPE = 0xFF00
FEATURES_TYPE = 0xFF01
PRIVATE_TYPES = frozenset((PING_TYPE, FEATURES_TYPE))
#: payloads below this are joined to their header (one write); larger ones are written uncopied
JOIN_LIMIT = 16 * 1024


@wire_record(u16("max_in_flight"), max_size=1024)
@dataclass(frozen=True, slots=True)
class Features(_Record):
    """FEATURES payload: how many requests the sender accepts in flight on this session."""

    max_in_flight: int


# --------------------------------------------------------------------------- events
@dataclass(frozen=True, slots=True)
class RequestReceived:
    """A request (req_id != 0): answer it with :meth:`Connection.send_response` using ``seq``."""

    seq: int
    envelope: RawEnvelope


@dataclass(frozen=True, slots=True)
class MessageReceived:
    """A fire-and-forget message (req_id 0, no response flag)."""

    envelope: RawEnvelope


@dataclass(frozen=True, slots=True)
class ResponseReceived:
    """The response (or error response) to one of our requests."""

    envelope: RawEnvelope


@dataclass(frozen=True, slots=True)
class InFlightLimitChanged:
    """The peer told us (or showed) how many of our requests may be in flight."""

    limit: int


Event = Union[RequestReceived, MessageReceived, ResponseReceived, InFlightLimitChanged]
_FRAME_HEAD = 4


class Connection:
    """One session's post-handshake state. See the module docstring."""

    def __init__(
        self,
        *,
        initiator: bool,
        now: float,
        max_in_flight: int = MAX_IN_FLIGHT,
        probe_features: bool = True,
        keepalive_interval: Optional[float] = None,
        keepalive_timeout: float = 20.0,
        idle_timeout: Optional[float] = None,
        max_frame: int = MAX_FRAME,
        reader: Optional[FrameReader] = None,
    ) -> None:
        self.initiator = initiator
        self.reader = reader if reader is not None else FrameReader(max_frame)
        self.reader.limit = max_frame
        self.reader.single = False
        self.local_max_in_flight = max_in_flight
        #: how many of our requests the peer accepts at once (1 until it proves it pipelines)
        self.remote_max_in_flight = 1
        #: the peer sent FEATURES: it is one of ours, responses may leave out of order
        self.peer_pipelines = False
        self.keepalive_interval = keepalive_interval
        self.keepalive_timeout = keepalive_timeout
        self.idle_timeout = idle_timeout
        self._out: list = []
        self._out_bytes = 0
        self._events: deque = deque()
        self._pending: dict[int, int] = {}  # req_id -> type, our application requests
        self._internal: dict[int, int] = {}  # req_id -> type, our FEATURES / PING
        self._next_req = 1
        self._recv_seq = 0  # next sequence number for an incoming request
        self._resp_next = 0  # next sequence number whose response may leave
        self._held: dict[int, list] = {}
        self._open = 0  # requests received and not yet answered
        self._last_rx = now
        self._last_activity = now
        self._ping_sent: Optional[float] = None
        self._features_probe: Optional[int] = None
        self.late_responses = 0
        if initiator and probe_features:
            self._features_probe = self._send_internal(FEATURES_TYPE, codec.encode(Features(max_in_flight)))

    # ------------------------------------------------------------------ output
    def data_to_send(self) -> list:
        """Buffers to write, in order (header and payload are separate: no join copies)."""
        out, self._out, self._out_bytes = self._out, [], 0
        return out

    @property
    def pending_output(self) -> int:
        return self._out_bytes

    def _emit(self, msg_type: int, req_id: int, flags: int, payload) -> list:
        """Header and payload buffers of one envelope frame; ``payload`` may be a tuple of parts."""
        if type(payload) is tuple:
            n = sum(len(p) for p in payload)
            return [encode_envelope_header(msg_type, req_id, flags, n), *payload]
        n = len(payload)
        if n >= JOIN_LIMIT:  # large: no copy, two writes
            return [encode_envelope_header(msg_type, req_id, flags, n), payload]
        return [encode_envelope_header(msg_type, req_id, flags, n) + payload]  # small: one write/syscall

    def _write(self, parts: list) -> None:
        for p in parts:
            self._out.append(p)
            self._out_bytes += len(p)

    def _alloc_req_id(self) -> int:
        for _ in range(len(self._pending) + len(self._internal) + 1):
            rid = self._next_req
            self._next_req = 1 if rid >= U32_MAX else rid + 1
            if rid not in self._pending and rid not in self._internal:
                return rid
        raise ProtocolViolation("no free req_id")  # unreachable: at most 2**32-2 in flight

    def _send_internal(self, msg_type: int, payload: bytes) -> int:
        rid = self._alloc_req_id()
        self._internal[rid] = msg_type
        self._write(self._emit(msg_type, rid, 0, payload))
        return rid

    # ------------------------------------------------------------------ requests we send
    @property
    def in_flight(self) -> int:
        """Our application requests awaiting a response."""
        return len(self._pending)

    @property
    def can_send_request(self) -> bool:
        busy = len(self._pending) + (1 if self._internal and self.remote_max_in_flight == 1 else 0)
        return busy < self.remote_max_in_flight

    def send_request(self, msg_type: int, payload, now: float) -> int:
        """Queue a request; returns its req_id. The driver respects :attr:`can_send_request`."""
        rid = self._alloc_req_id()
        self._pending[rid] = msg_type
        self._last_activity = now
        self._write(self._emit(msg_type, rid, 0, payload))
        return rid

    def send_message(self, msg_type: int, payload, now: float) -> None:
        """Queue a fire-and-forget message (req_id 0)."""
        self._last_activity = now
        self._write(self._emit(msg_type, 0, 0, payload))

    def forget_request(self, req_id: int) -> None:
        """Stop waiting for a response (timeout, cancellation); a late one is dropped."""
        self._pending.pop(req_id, None)

    # ------------------------------------------------------------------ requests we answer
    @property
    def unanswered(self) -> int:
        """Requests received whose response has not been sent (receive-side backpressure)."""
        return self._open

    def send_response(self, seq: int, msg_type: int, req_id: int, flags: int, payload, now: float) -> None:
        """Answer request ``seq``. ``payload`` None means the request gets no response."""
        self._last_activity = now
        self._open -= 1
        self._answer(seq, [] if payload is None else self._emit(msg_type, req_id, flags, payload))

    def answer_taken(self, parts: list, now: float) -> None:
        """The driver took the next frame, a request, itself and answered it at once: ``parts``
        is the whole response frame (what :meth:`next_event` + :meth:`send_response` would do,
        with the frame built by the caller). It leaves in turn like any response."""
        seq = self._recv_seq
        self._recv_seq += 1
        self._last_activity = now
        self._answer(seq, parts)

    def _answer(self, seq: int, parts: list) -> None:
        if self.peer_pipelines or seq == self._resp_next:
            self._write(parts)
            if seq == self._resp_next:
                self._resp_next += 1
                while self._resp_next in self._held:
                    self._write(self._held.pop(self._resp_next))
                    self._resp_next += 1
            else:
                self._held[seq] = []
        else:
            self._held[seq] = parts

    def send_error(self, seq: int, msg_type: int, req_id: int, reason: str, now: float) -> None:
        data = reason.encode("utf-8", "replace")[:4096].decode("utf-8", "ignore").encode()
        self.send_response(seq, msg_type, req_id, FLAG_RESPONSE | FLAG_ERROR, data, now)

    # ------------------------------------------------------------------ input
    def receive_data(self, data, now: float) -> None:
        self._last_rx = now
        self._ping_sent = None
        try:
            self.reader.feed(data)
        except DecodeError as exc:
            raise ProtocolViolation(f"bad frame: {exc}") from exc

    def buffer_updated(self, nbytes: int, now: float) -> None:
        self._last_rx = now
        self._ping_sent = None
        try:
            self.reader.buffer_updated(nbytes)
        except DecodeError as exc:
            raise ProtocolViolation(f"bad frame: {exc}") from exc

    @property
    def has_events(self) -> bool:
        """Events are queued ahead of the frames still buffered."""
        return bool(self._events)

    def take_response(self, req_id: int) -> bool:
        """The driver takes the next frame, a response to our application request ``req_id``,
        itself (what :meth:`next_event` would turn into a :class:`ResponseReceived`); False -
        nothing changed - when ``req_id`` is not one of ours in flight."""
        if self._pending.pop(req_id, None) is None:
            return False
        self._last_activity = self._last_rx
        return True

    def next_event(self) -> Optional[Event]:
        """The next event, or None when more bytes are needed. Raises :class:`ProtocolViolation`."""
        while True:
            if self._events:
                return self._events.popleft()
            frames = self.reader.frames
            if not frames:
                return None
            body = frames.popleft()
            try:
                env = parse_envelope(body)
            except DecodeError as exc:
                raise ProtocolViolation(f"bad envelope: {exc}") from exc
            ev = self._classify(env)
            if ev is not None:
                return ev

    def _classify(self, env: RawEnvelope) -> Optional[Event]:
        if env.is_response:
            rid = env.req_id
            if rid in self._internal:
                self._internal_response(self._internal.pop(rid), env)
                return None
            if self._pending.pop(rid, None) is None:
                self.late_responses += 1
                log.debug("dropping response to unknown req_id %d (type %d)", rid, env.type)
                return None
            self._last_activity = self._last_rx
            return ResponseReceived(env)
        if env.req_id == 0:
            if env.type in PRIVATE_TYPES:
                return None
            self._last_activity = self._last_rx
            return MessageReceived(env)
        seq = self._recv_seq
        self._recv_seq += 1
        self._open += 1
        if env.type == PING_TYPE:
            self.send_response(seq, PING_TYPE, env.req_id, FLAG_RESPONSE, b"", self._last_activity)
            return None
        if env.type == FEATURES_TYPE:
            try:
                feats = codec.decode(Features, env.payload)
            except DecodeError as exc:
                self.send_error(seq, env.type, env.req_id, f"bad FEATURES payload: {exc}", self._last_activity)
                return None
            self.send_response(
                seq, FEATURES_TYPE, env.req_id, FLAG_RESPONSE,
                codec.encode(Features(self.local_max_in_flight)), self._last_activity,
            )  # fmt: skip
            self.peer_pipelines = True
            self._set_limit(feats.max_in_flight)
            return self._events.popleft() if self._events else None
        self._last_activity = self._last_rx
        return RequestReceived(seq, env)

    def _internal_response(self, msg_type: int, env: RawEnvelope) -> None:
        if msg_type == FEATURES_TYPE:
            if env.is_error or env.type != FEATURES_TYPE:
                log.debug("peer does not pipeline (FEATURES answered with an error): one request at a time")
                self._set_limit(1)
                return
            try:
                feats = codec.decode(Features, env.payload)
            except DecodeError:
                self._set_limit(1)
                return
            self.peer_pipelines = True
            self._set_limit(feats.max_in_flight)

    def _set_limit(self, n: int) -> None:
        n = max(1, min(int(n), self.local_max_in_flight))
        self.remote_max_in_flight = n
        self._events.append(InFlightLimitChanged(n))

    # ------------------------------------------------------------------ timers
    def deadline(self) -> Optional[float]:
        """When :meth:`handle_timer` must run next (None: no timer)."""
        # (runs after every processed read: no list, no min())
        if self._ping_sent is not None:
            when = self._ping_sent + self.keepalive_timeout
        elif self.keepalive_interval is not None:
            when = self._last_rx + self.keepalive_interval
        else:
            when = None
        if self.idle_timeout is not None and not self._pending and not self._open:
            idle = self._last_activity + self.idle_timeout
            if when is None or idle < when:
                when = idle
        return when

    def handle_timer(self, now: float) -> Optional[str]:
        """Run due timers: may queue a PING; returns a reason when the session must close."""
        if self._ping_sent is not None and now >= self._ping_sent + self.keepalive_timeout:
            return "keepalive timeout: peer silent"
        if self.idle_timeout is not None and not self._pending and self.unanswered == 0:
            if now >= self._last_activity + self.idle_timeout:
                return "idle timeout"
        if (
            self._ping_sent is None
            and self.keepalive_interval is not None
            and now >= self._last_rx + self.keepalive_interval
        ):
            if self.can_send_request and not self._internal:
                self._send_internal(PING_TYPE, b"")
                self._ping_sent = now
            else:  # a one-at-a-time peer is busy with our request: its timeout covers liveness
                self._last_rx = now
        return None


__all__ = [
    "Connection", "Event", "FEATURES_TYPE", "Features", "InFlightLimitChanged", "MessageReceived",
    "PING_TYPE", "PRIVATE_TYPES", "RequestReceived", "ResponseReceived",
]  # fmt: skip
