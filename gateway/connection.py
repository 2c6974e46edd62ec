"""One viewer's socket: a bounded queue of frames drained by its own writer task.

The room never awaits a viewer. `offer` only appends to the queue; above the high-water mark the
viewer gets the frames without lossy events; past the hard limit for longer than the grace period
it is closed with SLOW_CONSUMER and resumes from its last sequence number on reconnect.
"""

from __future__ import annotations

import asyncio
import time
from collections import deque
from dataclasses import dataclass

from starlette.websockets import WebSocket

from gateway import metrics
from gateway.protocol import CloseCode


@dataclass(frozen=True)
class Backpressure:
    high_water: int = 32  # queued frames above which lossy events are left out
    hard_limit: int = 256  # queued frames above which the grace period starts
    grace_s: float = 5.0


@dataclass(frozen=True)
class Frame:
    """A tick's frame in two encodings built once for the whole room: with and without lossy
    events. `last_seq` lets a connection skip frames its snapshot already covered."""

    full: str
    reduced: str | None  # None when the tick had no lossy events (reduced == full)
    last_seq: int


class Connection:
    def __init__(self, websocket: WebSocket, backpressure: Backpressure) -> None:
        self.websocket = websocket
        self.backpressure = backpressure
        self.user: str | None = None
        self._queue: deque[str] = deque()
        self._ready = asyncio.Event()
        self._over_since: float | None = None
        self._synced_seq: int | None = None  # None until the first snapshot or replay is sent
        self._held: list[Frame] = []
        self.closed = False
        self._writer = asyncio.create_task(self._write_loop())

    def send(self, text: str) -> None:
        """Queue a frame that must not be dropped (replies, snapshots, errors)."""
        if self.closed:
            return
        self._queue.append(text)
        self._ready.set()

    def offer(self, frame: Frame) -> None:
        """Queue a room frame, degraded or refused by backpressure; never blocks."""
        if self.closed:
            return
        if self._synced_seq is None:
            self._held.append(frame)
            return
        if frame.last_seq and frame.last_seq <= self._synced_seq:
            return
        depth = len(self._queue)
        bp = self.backpressure
        if depth >= bp.hard_limit:
            now = time.monotonic()
            if self._over_since is None:
                self._over_since = now
            elif now - self._over_since > bp.grace_s:
                metrics.SLOW_CONSUMER_CLOSES.inc()
                self.close(CloseCode.SLOW_CONSUMER, "too slow: reconnect with since=<last seq>")
                return
        else:
            self._over_since = None
        if depth >= bp.high_water and frame.reduced is not None:
            metrics.DEGRADED_FRAMES.inc()
            if frame.reduced:
                self.send(frame.reduced)
            return
        self.send(frame.full)

    def synced(self, seq: int) -> None:
        """The snapshot or replay up to `seq` is queued: release the frames held meanwhile."""
        self._synced_seq = seq
        held, self._held = self._held, []
        for frame in held:
            self.offer(frame)

    def close(self, code: int, reason: str) -> None:
        if self.closed:
            return
        self.closed = True
        self._queue.clear()
        self._writer.cancel()
        asyncio.get_running_loop().create_task(self._close(code, reason))

    async def _close(self, code: int, reason: str) -> None:
        try:
            async with asyncio.timeout(5):
                await self.websocket.close(code=code, reason=reason)
        except Exception:
            pass

    async def _write_loop(self) -> None:
        send = self.websocket.send_text
        try:
            while True:
                await self._ready.wait()
                while self._queue:
                    await send(self._queue.popleft())
                    metrics.FRAMES_SENT.inc()
                self._ready.clear()
        except asyncio.CancelledError:
            raise
        except Exception:
            self.closed = True

    async def finish(self) -> None:
        """Stop the writer (the socket is closing)."""
        self.closed = True
        self._writer.cancel()
        try:
            await self._writer
        except (asyncio.CancelledError, Exception):
            pass
