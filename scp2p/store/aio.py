"""``AsyncStore``: the asyncio face of ``Store``. One dedicated thread owns the connection.

Every call is shipped to that thread and awaited, so the event loop never runs SQLite (or
scrypt) itself: a large transaction costs the loop nothing but a future's completion callback.
apsw releases the GIL while SQLite works, so the loop keeps running in parallel. Calls run in
submission order (one thread), which also serialises all writes - SQLite allows one writer anyway.

Cancelling an awaiting task does not interrupt a call that already started: every call is one
transaction, so it either commits or rolls back as a whole; a call not yet started is dropped.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import functools
import logging
from typing import Any, Callable, Concatenate, ParamSpec, TypeVar

from ..errors import StoreError
from .store import Store

log = logging.getLogger(__name__)

P = ParamSpec("P")
T = TypeVar("T")

__all__ = ["AsyncStore"]


class AsyncStore:
    """``await astore.run(Store.upsert_peers, peers)`` or ``await astore.run(lambda s: ...)``."""

    def __init__(self, store: Store, executor: concurrent.futures.ThreadPoolExecutor) -> None:
        self._store: Store | None = store
        self._executor = executor
        self.path = store.path

    @classmethod
    async def open(cls, *args: Any, **kwargs: Any) -> "AsyncStore":
        """Open a ``Store`` (same arguments as ``Store.open``) on a new writer thread."""
        executor = concurrent.futures.ThreadPoolExecutor(max_workers=1, thread_name_prefix="scp2p-store")
        loop = asyncio.get_running_loop()
        try:
            store = await loop.run_in_executor(executor, functools.partial(Store.open, *args, **kwargs))
        except BaseException:
            executor.shutdown(wait=False)
            raise
        return cls(store, executor)

    async def run(self, fn: Callable[Concatenate[Store, P], T], /, *args: P.args, **kwargs: P.kwargs) -> T:
        """Run ``fn(store, *args, **kwargs)`` on the writer thread and return its result."""
        store = self._store
        if store is None:
            raise StoreError(self.path, "the store is closed")
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._executor, functools.partial(fn, store, *args, **kwargs))

    async def close(self) -> None:
        """Finish queued calls, close the database, stop the thread. Idempotent."""
        store, self._store = self._store, None
        if store is None:
            return
        loop = asyncio.get_running_loop()
        try:
            await loop.run_in_executor(self._executor, store.close)
        finally:
            # the queue is empty now (close ran last), so this does not block the loop
            self._executor.shutdown(wait=True)

    @property
    def closed(self) -> bool:
        return self._store is None

    async def __aenter__(self) -> "AsyncStore":
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()
