"""A node told to stop (SIGTERM) drains before it stops, so that a load balancer moves its
viewers to other nodes without losing them:

1. `/readyz` answers 503 at once (its `serving` check says `draining`): the balancer's health
   check takes the node out and sends no new viewer to it;
2. `LIVE_DRAIN_S` later (bounded by settings: at most a minute), long enough for the balancer to
   notice (deploy/haproxy.cfg: 2 failed checks 500 ms apart), the gateway closes every viewer
   with 1012 "service restart" after what its room had buffered: each reconnects at once,
   through the balancer to another node, and resumes from the room log;
3. the server's own SIGTERM handler (uvicorn's) then stops it as before.

Only SIGTERM drains (what process managers and `scripts/cluster down` send): Ctrl-C (SIGINT)
and a second SIGTERM stop at once. The handler is installed by `live serve`'s app only (tests
serving the app in their own loop keep their signals); with LIVE_DRAIN_S=0 it only adds step 2.
"""

from __future__ import annotations

import asyncio
import logging
import signal
import threading
from collections.abc import Awaitable, Callable
from types import FrameType
from typing import Any

log = logging.getLogger("live")

Handler = Callable[[int, FrameType | None], Any]


class Drain:
    def __init__(self, delay_s: float, close_viewers: Callable[[], Awaitable[object]]) -> None:
        self.delay_s = delay_s
        self.draining = False
        self._close_viewers = close_viewers
        self._previous: Handler | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._stopping: asyncio.Task[None] | None = None

    async def check(self) -> str | None:
        """A readiness check: fails from the moment the node drains."""
        return "draining: this node is stopping" if self.draining else None

    def install(self) -> None:
        """Take SIGTERM over from the server that runs this loop (called at start-up, in the
        main thread); the server's handler is called once the drain is over."""
        previous = signal.getsignal(signal.SIGTERM)
        if threading.current_thread() is not threading.main_thread() or not callable(previous):
            return  # nobody stops this server on SIGTERM: nothing to delay
        self._loop = asyncio.get_running_loop()
        self._previous = previous
        signal.signal(signal.SIGTERM, self._on_sigterm)

    def uninstall(self) -> None:
        """Give SIGTERM back to the server's handler (at shutdown)."""
        if self._previous is not None and signal.getsignal(signal.SIGTERM) == self._on_sigterm:
            signal.signal(signal.SIGTERM, self._previous)

    def _on_sigterm(self, signum: int, frame: FrameType | None) -> None:
        if self.draining or self._loop is None:  # a second SIGTERM: stop now
            self._stop(signum, frame)
            return
        self.draining = True
        self._loop.call_soon_threadsafe(self._begin, signum)

    def _begin(self, signum: int) -> None:
        self._stopping = asyncio.create_task(self._drain(signum), name="drain")

    async def _drain(self, signum: int) -> None:
        log.info("SIGTERM: draining (not ready) for %.1f s, then closing viewers", self.delay_s)
        await asyncio.sleep(self.delay_s)
        try:
            await self._close_viewers()  # bounded by its caller
        finally:
            self._stop(signum, None)

    def _stop(self, signum: int, frame: FrameType | None) -> None:
        if self._previous is not None:
            self._previous(signum, frame)
