"""Typed node events and the bus that fans them out to subscribers.

Ordering guarantee: every subscriber sees events in the order the node emitted them
(one FIFO queue per subscriber). For one share, ``ManifestUpdated`` events arrive in
increasing ``seq``; ``SearchIndexUpdated`` for a share follows its ``ManifestUpdated``.
For one download, ``DownloadProgress`` events precede exactly one ``DownloadCompleted``
or ``DownloadFailed``. A subscriber that falls more than ``maxsize`` events behind loses
the oldest ones and receives an ``EventsDropped`` with the count (never blocks the node).
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from typing import AsyncIterator, Optional, Union


@dataclass(frozen=True, slots=True)
class PeerConnected:
    node_id: bytes
    address: str


@dataclass(frozen=True, slots=True)
class PeerDisconnected:
    node_id: bytes
    address: str
    reason: str = ""


@dataclass(frozen=True, slots=True)
class ManifestUpdated:
    share_id: bytes
    seq: int
    manifest_id: bytes
    items: int


@dataclass(frozen=True, slots=True)
class SearchIndexUpdated:
    share_id: bytes
    items: int


@dataclass(frozen=True, slots=True)
class DownloadProgress:
    content_id: bytes
    done: int
    total: int
    rate: float


@dataclass(frozen=True, slots=True)
class DownloadCompleted:
    content_id: bytes
    path: str


@dataclass(frozen=True, slots=True)
class DownloadFailed:
    content_id: bytes
    reason: str


@dataclass(frozen=True, slots=True)
class SyncFailed:
    share_id: bytes
    reason: str


@dataclass(frozen=True, slots=True)
class EventsDropped:
    count: int


Event = Union[
    PeerConnected, PeerDisconnected, ManifestUpdated, SearchIndexUpdated, DownloadProgress, DownloadCompleted,
    DownloadFailed, SyncFailed, EventsDropped,
]  # fmt: skip


class EventStream:
    """One subscriber's events, in emission order. Registered at creation: nothing is missed
    between ``subscribe()`` and the first ``await``. Ends when the bus closes or on ``close()``."""

    def __init__(self, bus: "EventBus", maxsize: int) -> None:
        self._bus = bus
        self._queue: asyncio.Queue = asyncio.Queue(maxsize)
        self._dropped = 0
        bus._subs.append(self)

    def _put(self, event: Optional[Event]) -> None:
        if self._queue.full():
            self._queue.get_nowait()
            self._dropped += 1
        self._queue.put_nowait(event)

    def __aiter__(self) -> "EventStream":
        return self

    async def __anext__(self) -> Event:
        if self._dropped:
            n, self._dropped = self._dropped, 0
            return EventsDropped(n)
        ev = await self._queue.get()
        if ev is None:
            self.close()
            raise StopAsyncIteration
        return ev

    def close(self) -> None:
        if self in self._bus._subs:
            self._bus._subs.remove(self)


class EventBus:
    """Fan-out of node events; ``emit`` never blocks."""

    def __init__(self) -> None:
        self._subs: list[EventStream] = []

    def emit(self, event: Event) -> None:
        for s in list(self._subs):
            s._put(event)

    def subscribe(self, maxsize: int = 1024) -> EventStream:
        """Events from now on, until the bus closes."""
        return EventStream(self, maxsize)

    def close(self) -> None:
        for s in list(self._subs):
            s._put(None)

    async def wait_for(self, predicate, timeout: Optional[float] = None, stream: Optional[EventStream] = None) -> Event:
        """The first event matching ``predicate`` on ``stream`` (subscribe first to miss nothing)."""
        stream = stream if stream is not None else self.subscribe()
        async with asyncio.timeout(timeout):
            async for ev in stream:
                if predicate(ev):
                    return ev
        raise LookupError("event bus closed before a matching event")
