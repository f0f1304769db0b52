"""Routing received requests to handlers: ``Dispatcher.register(msg_type, handler)``.

A handler is ``async def handler(ctx: RequestContext, message) -> response | None``.
``message`` is the decoded payload record (``PexRequest``, ``GetChunk``...); for a
type outside the v0.1 registry (an extension) it is the raw payload ``bytes``.
The response is a record (its type comes from ``RESPONSE_TYPE``), or ``bytes``
sent under the request's type for extensions, or ``None`` for no response.

Failure never kills the server: an unknown type, an undecodable payload, a
handler exception or a handler raising :class:`RemoteError` each become an error
response (flags 3, UTF-8 reason) and the session stays open.

A handler may come with a synchronous **fast path** (``register(t, handler, fast=fn)``):
``fn(ctx, message)`` answers like the handler without suspending, or returns :data:`DEFER`
when it cannot (a cache miss, a queue, a throttle), and then the async handler runs. The
session calls the fast path inline while it parses the request (no task, no extra
event-loop pass per request: the chunk server answers GET_CHUNK this way).

A type may also have a **raw lane** (``register(t, handler, raw=fn)``): ``fn(session, req_id,
payload)`` gets a request's undecoded payload (a memoryview, canonical envelope) and returns the
whole response frame as a list of buffers, or None when it does not answer this request - then
everything above runs as if the lane did not exist. It is for the steady state of a bulk
request (the chunk server's GET_CHUNK: payload parsed, chunk read and frame laid out in one
native call); it must only ever answer what the handler would answer the same way.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Awaitable, Callable, Optional

from ..errors import DecodeError, RemoteError
from ..identity import node_id
from ..wire.messages import REGISTRY, RESPONSE_TYPE, decode_payload, encode_payload
from ..wire.records import FLAG_RESPONSE, Capabilities
from ..wire.messages import ChunkData
from .frames import RawEnvelope, _bstr_head

#: byte strings at least this long are sent without copying them into the CBOR payload
ZERO_COPY_MIN = 4096

if TYPE_CHECKING:  # pragma: no cover
    from .session import Session

log = logging.getLogger(__name__)

Handler = Callable[["RequestContext", Any], Awaitable[Any]]
FastHandler = Callable[["RequestContext", Any], Any]
RawHandler = Callable[["Session", int, memoryview], Optional[list]]


class _Defer:
    __slots__ = ()

    def __repr__(self) -> str:
        return "DEFER"


#: what a fast handler returns when the request needs its async handler
DEFER: Any = _Defer()


@dataclass(frozen=True, slots=True)
class RequestContext:
    """Who sent the message being handled, and on which session."""

    session: "Session"
    msg_type: int
    req_id: int

    @property
    def remote_pubkey(self) -> bytes:
        return self.session.remote_pubkey

    @property
    def remote_node_id(self) -> bytes:
        return node_id(self.session.remote_pubkey)

    @property
    def remote_capabilities(self) -> Capabilities:
        return self.session.remote_capabilities

    @property
    def remote_addr(self) -> tuple:
        return self.session.remote_addr

    @property
    def transport(self) -> str:
        return self.session.transport

    @property
    def is_fire_and_forget(self) -> bool:
        return self.req_id == 0


@dataclass(frozen=True, slots=True)
class Reply:
    """What the session sends back: an envelope's type, flags and payload."""

    type: int
    flags: int
    #: bytes, or a tuple of buffers sent back to back (see encode_payload_parts)
    payload: object

    @property
    def is_error(self) -> bool:
        return bool(self.flags & 2)


def encode_payload_parts(msg):
    """``encode_payload(msg)``, except that a large trailing byte string (CHUNK_DATA's ``bytes``)
    is not copied: the result is then a tuple ``(cbor prefix, data)`` whose concatenation is
    byte for byte ``encode_payload(msg)``."""
    if type(msg) is ChunkData and len(msg.bytes) >= ZERO_COPY_MIN:
        head = encode_payload(ChunkData(msg.content_id, msg.chunk_index, b""))
        # the record ends with the empty byte string 0x40; replace it by the real header
        return (head[:-1] + _bstr_head(len(msg.bytes)), msg.bytes)
    return encode_payload(msg)


def _error(msg_type: int, reason: str) -> Reply:
    return Reply(msg_type, 3, reason.encode("utf-8", "replace")[:4096].decode("utf-8", "ignore").encode())


class Dispatcher:
    """Handlers per message type. One dispatcher serves every session of an endpoint."""

    def __init__(self) -> None:
        self._handlers: dict[int, Handler] = {}
        #: synchronous fast paths (see the module docstring)
        self._fast: dict[int, FastHandler] = {}
        #: raw lanes (see the module docstring), read by the session
        self.raw: dict[int, RawHandler] = {}
        self.handler_errors = 0
        #: messages handled, by type (for status counters)
        self.handled: dict[int, int] = {}

    def register(
        self,
        msg_type: int,
        handler: Handler,
        *,
        replace: bool = False,
        fast: Optional[FastHandler] = None,
        raw: Optional[RawHandler] = None,
    ) -> None:
        t = int(msg_type)
        if t in self._handlers and not replace:
            raise ValueError(f"a handler for type {t} is already registered")
        self._handlers[t] = handler
        for table, fn in ((self._fast, fast), (self.raw, raw)):
            if fn is not None:
                table[t] = fn
            else:
                table.pop(t, None)

    def unregister(self, msg_type: int) -> None:
        self._handlers.pop(int(msg_type), None)
        self._fast.pop(int(msg_type), None)
        self.raw.pop(int(msg_type), None)

    def has_fast(self, msg_type: int) -> bool:
        return msg_type in self._fast

    def dispatch_now(self, ctx: RequestContext, env: RawEnvelope) -> Any:
        """The fast path for ``env`` (a type with a fast handler): the reply (None: nothing to
        send), or :data:`DEFER` - then :meth:`dispatch` must run (nothing was counted)."""
        t = env.type
        answer = env.req_id != 0
        try:
            message = decode_payload(t, env.payload, False) if (t, False) in REGISTRY else bytes(env.payload)
        except DecodeError:
            return DEFER  # the async path reports it
        try:
            result = self._fast[t](ctx, message)
        except RemoteError as exc:
            result = _error(t, exc.reason) if answer else None
        except Exception:  # a handler bug must not kill the session
            self.handler_errors += 1
            log.exception("fast handler for message type %d failed (peer %s)", t, ctx.remote_addr)
            result = _error(t, "internal error") if answer else None
        else:
            if result is DEFER:
                return DEFER
            result = self._reply(t, answer, result)
        self.handled[t] = self.handled.get(t, 0) + 1
        return result

    def handles(self, msg_type: int) -> bool:
        return int(msg_type) in self._handlers

    async def dispatch(self, ctx: RequestContext, env: RawEnvelope) -> Optional[Reply]:
        """Run the handler for ``env``; the reply to send (None: nothing to send)."""
        t = env.type
        answer = env.req_id != 0
        handler = self._handlers.get(t)
        self.handled[t] = self.handled.get(t, 0) + 1
        if handler is None:
            log.debug("no handler for message type %d from %s", t, ctx.remote_addr)
            return _error(t, f"unknown message type {t}") if answer else None
        if (t, False) in REGISTRY:
            try:
                message = decode_payload(t, env.payload, False)
            except DecodeError as exc:
                log.debug("bad payload for type %d from %s: %s", t, ctx.remote_addr, exc)
                return _error(t, f"bad payload: {exc}") if answer else None
        else:
            message = bytes(env.payload)
        try:
            result = await handler(ctx, message)
        except RemoteError as exc:
            return _error(t, exc.reason) if answer else None
        except Exception:  # a handler bug must not kill the session
            self.handler_errors += 1
            log.exception("handler for message type %d failed (peer %s)", t, ctx.remote_addr)
            return _error(t, "internal error") if answer else None
        return self._reply(t, answer, result)

    def _reply(self, t: int, answer: bool, result: Any) -> Optional[Reply]:
        if not answer:
            return None
        if result is None:
            if (t, False) in REGISTRY and RESPONSE_TYPE.get(t) is not None:
                return _error(t, "no response")
            return None
        if isinstance(result, Reply):
            return result
        if isinstance(result, (bytes, bytearray, memoryview)):
            return Reply(t, FLAG_RESPONSE, bytes(result))
        rtype = RESPONSE_TYPE.get(t)
        if rtype is None:
            log.error("handler for type %d returned a response but the type has none", t)
            return _error(t, "internal error")
        try:
            return Reply(rtype, FLAG_RESPONSE, encode_payload_parts(result))
        except Exception:
            self.handler_errors += 1
            log.exception("handler for message type %d returned an unencodable response", t)
            return _error(t, "internal error")


__all__ = [
    "DEFER", "Dispatcher", "FastHandler", "Handler", "RawHandler", "Reply", "RequestContext", "encode_payload_parts",
]  # fmt: skip
