"""One viewer's socket: frames written straight to the transport while it keeps up (see
gateway/wire.py), else a bounded queue of frames drained by a writer task that lives as long
as something is queued.

The room never awaits a viewer. `offer` only appends to the queue; above the high-water mark the
viewer gets the frames without lossy events; past the hard limit for longer than the grace period
(or past the absolute cap at once) it is closed with SLOW_CONSUMER and resumes from its last
sequence number on reconnect.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass

from starlette.websockets import WebSocket

from gateway import metrics
from gateway.protocol import CloseCode, events_frame
from gateway.wire import ENCODER, DirectSocket, text_frame

log = logging.getLogger("live.gateway")
DEADLINE_SLACK_S = 0.001  # a deadline timer firing this much early (clock granularity) is due


@dataclass(frozen=True)
class Backpressure:
    high_water: int = 32  # queued frames above which lossy events are left out
    hard_limit: int = 256  # queued frames above which the grace period starts
    grace_s: float = 5.0
    close_timeout_s: float = 10.0  # how long a close may wait behind a full socket buffer

    @property
    def cap(self) -> int:
        """Queued frames beyond which a connection is closed without waiting for the grace."""
        return 4 * self.hard_limit


@dataclass(frozen=True)
class Frame:
    """A tick's frame in two encodings built once for the whole room: with and without lossy
    events. `first_seq`, `last_seq` and `epoch` let a connection skip what its snapshot or
    replay already covered; `events` (seq, event) rebuilds the rare frame that overlaps it."""

    full: str
    reduced: str | None  # None when the tick had no lossy events (reduced == full); "" for none
    last_seq: int
    epoch: str = ""
    first_seq: int = 0
    events: tuple[tuple[int, bytes], ...] = ()
    skipped: int = 0
    lossy: int = 0  # lossy events in `full`, left out of `reduced`
    wire: bytes = b""  # `full` framed for the wire, for direct writes; b"": frame on demand

    def after(self, seq: int) -> Frame:
        """This frame without the events up to `seq` (built for one connection, once)."""
        rest = [raw for s, raw in self.events if s > seq]
        frame = events_frame(self.epoch, rest, self.skipped)
        return Frame(frame, None, self.last_seq, self.epoch)


@dataclass(frozen=True, slots=True)
class SyncFrame:
    """A snapshot or a replay that brings a viewer to the log position (`epoch`, `seq`), as text
    and framed for the wire, built once for every viewer it goes to; `text` is "" for a replay
    with nothing missed. `gap`: the log could not give the replay (a snapshot is needed)."""

    epoch: str
    seq: int
    text: str = ""
    wire: bytes = b""
    gap: bool = False
    read_at: float = 0.0  # a replay's: when its read began (time.monotonic)


def sync_frame(epoch: str, seq: int, text: str) -> SyncFrame:
    return SyncFrame(epoch, seq, text, text_frame(text.encode()) if text else b"")


class Connection:
    """Lean, as there are thousands per process: no task while nothing is queued (the writer
    task exists only while frames wait for a slow socket), the queue and the held frames made
    on first use."""

    __slots__ = (
        "_closing",
        "_deadline",
        "_direct",
        "_epoch",
        "_held",
        "_over_since",
        "_queue",
        "_synced_seq",
        "_writer",
        "backpressure",
        "close_code",
        "closed",
        "on_closed",
        "on_stale",
        "user",
        "websocket",
    )

    def __init__(self, websocket: WebSocket, backpressure: Backpressure) -> None:
        self.websocket = websocket
        self.backpressure = backpressure
        self.user: str | None = None
        self.close_code: int | None = None
        self.on_closed: Callable[[], None] | None = None  # called once the close is done
        self.on_stale: Callable[[Connection], None] | None = None  # needs a new snapshot
        self._queue: deque[str] | None = None
        self._writer: asyncio.Task[None] | None = None  # while something is queued
        self._over_since: float | None = None
        self._epoch: str | None = None
        self._synced_seq: int | None = None  # None until a snapshot or replay is queued
        self._held: list[Frame] | None = None
        self._closing: asyncio.Task[None] | None = None
        self._deadline: asyncio.TimerHandle | None = None
        self.closed = False
        self._direct = DirectSocket.of(websocket.scope)

    @property
    def is_synced(self) -> bool:
        return self._synced_seq is not None

    @property
    def synced_epoch(self) -> str | None:
        return self._epoch

    @property
    def queued(self) -> int:
        return len(self._queue) if self._queue else 0

    def send(self, text: str, wire: bytes = b"") -> None:
        """Queue a frame that must not be dropped (replies, snapshots, errors); `wire`: `text`
        framed already (a frame shared by many viewers)."""
        if self.closed:
            return
        if self._direct is not None and self._writer is None:
            if self._direct.try_write(wire or ENCODER.encode(text)):
                metrics.FRAMES_SENT.inc()
                return
        queue = self._queue
        if queue is None:
            queue = self._queue = deque()
        elif len(queue) >= self.backpressure.cap:
            self._too_slow()
            return
        queue.append(text)
        if self._writer is None:
            self._writer = asyncio.get_running_loop().create_task(self._write_loop(queue))

    def send_sync(self, frame: SyncFrame) -> None:
        """Send a snapshot or replay (nothing for an empty replay) and release the frames held
        meanwhile."""
        if frame.text:
            self.send(frame.text, frame.wire)
        self.synced(frame.epoch, frame.seq)

    def offer(self, frame: Frame) -> bool:
        """Queue a room frame, degraded or refused by backpressure; never blocks. True when the
        frame went straight to the socket (the room counts those in bulk)."""
        if self.closed:
            return False
        synced = self._synced_seq
        if synced is None:
            self._hold(frame)
            return False
        if frame.epoch and self._epoch and frame.epoch != self._epoch:
            # Synced to another epoch than the room's frames (it joined while the log was
            # replaced): its state cannot be patched, so it starts over with a snapshot.
            self.resync()
            self._hold(frame)
            if self.on_stale is not None:
                self.on_stale(self)
            else:
                self.close(CloseCode.INTERNAL_ERROR, "the room's log changed: reconnect")
            return False
        if frame.last_seq and frame.last_seq <= synced:
            return False
        if frame.first_seq and frame.first_seq <= synced:
            frame = frame.after(synced)  # no event twice after a snapshot or replay
        elif (
            frame.wire
            and self._direct is not None
            and self._writer is None
            and self._direct.try_write(frame.wire)
        ):
            # The fast path of nearly every viewer on nearly every tick: nothing queued.
            self._over_since = None
            return True
        self._offer_queued(frame)
        return False

    def _hold(self, frame: Frame) -> None:
        held = self._held
        if held is None:
            self._held = [frame]
        elif len(held) >= self.backpressure.cap:
            self._too_slow()
        else:
            held.append(frame)

    def _offer_queued(self, frame: Frame) -> None:
        """The backpressure rules, for a frame that could not go straight to the socket."""
        depth = self.queued
        bp = self.backpressure
        if depth >= bp.hard_limit:
            now = time.monotonic()
            if self._over_since is None:
                self._over_since = now
            elif now - self._over_since > bp.grace_s or depth >= bp.cap:
                self._too_slow()
                return
        else:
            self._over_since = None
        if depth >= bp.high_water and frame.reduced is not None:
            metrics.DEGRADED_FRAMES.inc()
            metrics.LOSSY_WITHHELD.inc(frame.lossy)
            if frame.reduced:
                self.send(frame.reduced)
            return
        self.send(frame.full, frame.wire)

    def synced(self, epoch: str, seq: int) -> None:
        """The snapshot or replay up to `seq` of `epoch` is queued: release the frames held
        meanwhile."""
        self._epoch = epoch
        self._synced_seq = seq
        held, self._held = self._held, None
        for frame in held or ():
            if not (frame.epoch and epoch and frame.epoch != epoch):  # else from an older log
                if self.offer(frame):
                    metrics.FRAMES_SENT.inc()

    def resync(self) -> None:
        """A new snapshot is coming (the room's log changed): hold frames until `synced`."""
        self._synced_seq = None

    def close_at(self, when_s: float | None, code: int, reason: str) -> None:
        """Close with `code` at wall-clock time `when_s` (a token's `exp`), replacing any earlier
        deadline; None removes it. One timer handle in the loop per connection, no task: an
        idle viewer costs nothing more until then."""
        self._cancel_deadline()
        if when_s is None or self.closed:
            return
        loop = asyncio.get_running_loop()
        delay = max(0.0, when_s - time.time())
        self._deadline = loop.call_at(loop.time() + delay, self._deadline_due, when_s, code, reason)

    def _cancel_deadline(self) -> None:
        if self._deadline is not None:
            self._deadline.cancel()
            self._deadline = None

    def _deadline_due(self, when_s: float, code: int, reason: str) -> None:
        self._deadline = None
        if when_s - time.time() > DEADLINE_SLACK_S:  # the wall clock was set back meanwhile
            self.close_at(when_s, code, reason)
            return
        self.close(code, reason, drain=True)

    def _too_slow(self) -> None:
        metrics.SLOW_CONSUMER_CLOSES.inc()
        self.close(CloseCode.SLOW_CONSUMER, "too slow: reconnect with since=<last seq>")

    def close(self, code: int, reason: str, *, drain: bool = False) -> None:
        """Close with `code`, never blocking the caller: what is queued is dropped, or with
        `drain` written first (the replies and errors that explain the close)."""
        if self.closed:
            return
        self.closed = True
        self.close_code = code
        self._held = None
        self._cancel_deadline()
        if not drain:
            if self._queue:
                self._queue.clear()
            if self._writer is not None:
                self._writer.cancel()
        self._closing = asyncio.get_running_loop().create_task(self._close(code, reason))

    async def _close(self, code: int, reason: str) -> None:
        # The close frame waits behind whatever the socket still buffers: a viewer that reads
        # again in time gets the code; one that does not is given up (its reader is cut).
        try:
            async with asyncio.timeout(self.backpressure.close_timeout_s):
                writer = self._writer
                if writer is not None:
                    await asyncio.wait([writer])
                await self.websocket.close(code=code, reason=reason)
        except TimeoutError:
            if self._direct is not None:
                self._direct.abort()  # it never read its close frame: drop the socket
        except Exception:  # the socket is gone already: nothing left to close
            log.debug("closing a viewer's socket failed", exc_info=True)
        finally:
            if self.on_closed is not None:
                self.on_closed()

    async def _write_loop(self, queue: deque[str]) -> None:
        """Drain the queue through ASGI, then end: direct writes resume once it is empty."""
        send = self.websocket.send_text
        try:
            while queue:  # bounded: the queue is capped, and `close` clears it
                await send(queue.popleft())
                metrics.FRAMES_SENT.inc()
        except asyncio.CancelledError:
            raise
        except Exception:  # the viewer went away mid-write; the endpoint's read sees it too
            log.debug("a write to a viewer failed", exc_info=True)
            self.closed = True
            queue.clear()
            self._held = None
        finally:
            self._writer = None

    async def finish(self, *, wait_close: bool = True) -> None:
        """Let a pending close go out (unless the socket is gone), then stop the writer: the
        endpoint is returning."""
        self.closed = True
        self._cancel_deadline()
        if self._closing is not None:
            if not wait_close:
                self._closing.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await self._closing
        writer = self._writer
        if writer is not None:
            writer.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await writer
