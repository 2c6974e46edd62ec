"""Reads shared by the callers that want the same thing at once: a join storm reads a room's
settings and snapshot (and a reconnect storm each `since` a room's viewers resume from) once per
Redis round trip, not once per viewer, and the frame made of it is built and encoded once.

The rule that keeps a shared read as good as a caller's own: every caller gets the result of a
read that began after it called. A caller that comes while a read of its key is running waits
for the next one, which begins when the running one ends (or, with `spacing_s`, that long after
it began: a join storm reads a room once per tick) and serves every caller that came meanwhile.
So a viewer that joined a hub before asking for its snapshot always gets a snapshot read after
it joined (the hub's frames continue from it: nothing is missed)."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Hashable
from typing import Any, Generic, TypeVar

K = TypeVar("K", bound=Hashable)
V = TypeVar("V")


class Batched(Generic[K, V]):
    def __init__(
        self,
        read: Callable[[K], Awaitable[V]],
        spacing_s: float = 0.0,
        remember: int = 0,
        worth_keeping: Callable[[V], bool] = lambda value: True,
    ) -> None:
        """`spacing_s`: while callers keep coming, a key's reads begin at most this often (a
        caller may wait that long; a lone caller never waits). `remember`: how many keys' latest
        results are kept for callers that say one is good enough (`get`'s `fresh`), of those
        results `worth_keeping` says."""
        self._read = read
        self.spacing_s = spacing_s
        self._next: dict[K, asyncio.Future[V]] = {}  # callers waiting for a read not yet begun
        self._running: set[K] = set()
        self._tasks: set[asyncio.Task[None]] = set()
        self._remember = remember
        self._worth_keeping = worth_keeping
        self._latest: dict[K, V] = {}  # the latest result of the keys read last, oldest first
        self.reads = 0  # reads done, for tests and metrics
        self.reused = 0  # callers given the latest result, no read

    async def get(self, key: K, fresh: Callable[[V], bool] | None = None) -> V:
        """The result of a read begun after this call; or, when `fresh` says the latest read's
        result is as good for this caller (its source has not changed since, as far as the
        caller can tell), that one at once."""
        if fresh is not None:
            latest = self._latest.get(key)
            if latest is not None and fresh(latest):
                self._latest[key] = self._latest.pop(key)  # the most recently used, last
                self.reused += 1
                return latest
        future = self._next.get(key)
        if future is None:
            future = asyncio.get_running_loop().create_future()
            future.add_done_callback(_retrieve)
            self._next[key] = future
            if key not in self._running:
                self._running.add(key)
                task = asyncio.create_task(self._run(key))
                self._tasks.add(task)
                task.add_done_callback(self._tasks.discard)
        return await asyncio.shield(future)  # a caller that gives up leaves the others theirs

    async def _run(self, key: K) -> None:
        """One read per batch of callers, as long as callers came during the previous one (each
        round serves every caller so far, so the rounds end once callers stop coming)."""
        future: asyncio.Future[V] | None = None
        loop = asyncio.get_running_loop()
        try:
            while (future := self._next.pop(key, None)) is not None:
                self.reads += 1
                began = loop.time()
                try:
                    value = await self._read(key)
                except Exception as exc:
                    future.set_exception(exc)
                else:
                    future.set_result(value)
                    self._keep(key, value)
                future = None
                if key in self._next:  # callers came meanwhile: more may come in the spacing
                    await asyncio.sleep(max(0.0, began + self.spacing_s - loop.time()))
        finally:
            self._running.discard(key)
            if future is not None and not future.done():  # cancelled mid-read (shutdown)
                future.cancel()

    def _keep(self, key: K, value: V) -> None:
        self._latest.pop(key, None)
        if not self._remember or not self._worth_keeping(value):
            return
        self._latest[key] = value
        if len(self._latest) > self._remember:
            del self._latest[next(iter(self._latest))]  # the least recently used


def _retrieve(future: asyncio.Future[Any]) -> None:
    """A read's failure is its callers' to handle; when they all gave up, nobody needs it."""
    if not future.cancelled():
        future.exception()
