"""Every background loop of one process in one `asyncio.TaskGroup`, and one way to end them.

The domain and the gateway describe their background work as plain items, `(name, interval_s,
work)` (see `SaleService.loops` and `Gateway.loops`): `work` runs every `interval_s` seconds, or,
with `interval_s` None, is a long-running coroutine (the pub/sub reader) that is started again
should it ever return. A failure is logged, a storage error as a warning (Redis or PostgreSQL
away: next time, then) and anything else with its traceback, and the loop goes on: a loop never
dies silently, and one loop's failure never ends another (the group is never told of one).

The group lives in a task of its own, so that cancelling that task cancels every loop at once
(TaskGroup semantics) and a loop that would not end cannot hold the caller past its bound.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Iterable

from rooms.errors import STORAGE_ERRORS

log = logging.getLogger("live.background")

Work = Callable[[], Awaitable[None]]
Loop = tuple[str, float | None, Work]
"""(name, seconds between runs or None for a long-running coroutine, the work)."""

RESTART_S = 1.0  # before a long-running coroutine that ended is started again


class Background:
    """The process's background loops: `start` them once, `stop` cancels them all."""

    def __init__(self) -> None:
        self._owner: asyncio.Task[None] | None = None
        self._loops: dict[str, asyncio.Task[None]] = {}
        self._stopping = False

    async def start(self, loops: Iterable[Loop]) -> None:
        if self._owner is not None:
            raise RuntimeError("the background loops are already started")
        opened: asyncio.Future[asyncio.TaskGroup] = asyncio.get_running_loop().create_future()
        self._owner = asyncio.create_task(self._own(opened), name="background")
        self._owner.add_done_callback(self._ended)
        group = await opened
        for name, interval_s, work in loops:
            if name in self._loops:
                raise ValueError(f"two background loops named {name!r}")
            runner = _forever(name, work) if interval_s is None else _every(name, interval_s, work)
            self._loops[name] = group.create_task(runner, name=name)

    @property
    def running(self) -> list[str]:
        """The names of the loops still running."""
        return sorted(name for name, task in self._loops.items() if not task.done())

    async def stop(self) -> None:
        """Cancel the group (every loop ends at its next await) and wait until it is over;
        bound it from outside (see live.services.bounded)."""
        owner = self._owner
        if owner is None or owner.done():
            return
        self._stopping = True
        owner.cancel()
        try:
            await asyncio.wait({owner})
        finally:
            if not owner.done():
                log.warning("background loops still running: %s", ", ".join(self.running))

    async def _own(self, opened: asyncio.Future[asyncio.TaskGroup]) -> None:
        async with asyncio.TaskGroup() as group:
            opened.set_result(group)
            await asyncio.get_running_loop().create_future()  # until cancelled by stop()

    def _ended(self, owner: asyncio.Task[None]) -> None:
        if self._stopping:
            return  # cancelled by stop(), as it should be
        error = None if owner.cancelled() else owner.exception()
        log.error("the background loops ended before the service stopped", exc_info=error)


async def _every(name: str, interval_s: float, work: Work) -> None:
    while True:
        await asyncio.sleep(interval_s)
        await _attempt(name, work)


async def _forever(name: str, work: Work) -> None:
    """A long-running coroutine, started again (after RESTART_S) whenever it ends."""
    while True:
        await _attempt(name, work)
        log.warning("%s ended; starting it again in %.0f s", name, RESTART_S)
        await asyncio.sleep(RESTART_S)


async def _attempt(name: str, work: Work) -> None:
    """Run `work` once; a failure is logged, never raised."""
    try:
        await work()
    except STORAGE_ERRORS as exc:
        log.warning("%s failed, a store is unavailable: %r", name, exc)
    except Exception:
        log.exception("%s failed", name)
