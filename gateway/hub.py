"""A room's hub in one process: takes the room's events in sequence order, exactly once, and on
each tick turns what arrived into one frame, encoded once, offered to every local viewer.

Lanes decide what a busy tick keeps: every critical event; the latest state event per key
(stock of a sale, viewer count); lossy events up to a per-tick cap, the rest counted as skipped.
A gap in sequence numbers (a lost pub/sub message, a Redis reconnect) is filled from the log.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from gateway import metrics
from gateway.connection import Connection, Frame
from gateway.protocol import CloseCode, events_frame, snapshot_frame
from rooms.log import Replay

log = logging.getLogger("live.gateway")

ReadSince = Callable[[str, str, int, int], Awaitable[Replay]]
Position = Callable[[str], Awaitable[tuple[str, int]]]
Snapshot = Callable[[str], Awaitable[dict[str, object]]]

GAP_FILL_LIMIT = 2000
SNAPSHOT_ATTEMPTS = 20


@dataclass(frozen=True)
class HubConfig:
    tick_s: float = 0.05
    lossy_per_tick: int = 20


@dataclass
class _Event:
    seq: int
    raw: bytes
    lane: str
    state_key: str


def _lane_and_key(event: dict[str, object]) -> tuple[str, str]:
    """The event's lane and, for the state lane, what it conflates on (type, and sale)."""
    lane = str(event.get("lane", "critical"))
    if lane != "state":
        return lane, ""
    data = event.get("data")
    sale = data.get("sale_id", "") if isinstance(data, dict) else ""
    return lane, f"{event.get('type')}:{sale}"


def replay_frame(events: list[bytes], lossy_cap: int) -> str:
    """What a resuming viewer missed, as one frame under the lanes' rules: every critical event,
    the latest state event per key, the most recent `lossy_cap` lossy events (the rest counted
    in `skipped`)."""
    kept: list[tuple[int, bytes]] = []
    state: dict[str, tuple[int, bytes]] = {}
    lossy: list[tuple[int, bytes]] = []
    for raw in events:
        event = json.loads(raw)
        lane, key = _lane_and_key(event)
        item = (int(event["seq"]), raw)
        if lane == "state":
            state[key] = item
        elif lane == "lossy":
            lossy.append(item)
        else:
            kept.append(item)
    skipped = max(0, len(lossy) - lossy_cap)
    chosen = sorted([*kept, *state.values(), *lossy[skipped:]])
    return events_frame([raw for _, raw in chosen], skipped)


class RoomHub:
    def __init__(
        self,
        room: str,
        config: HubConfig,
        read_since: ReadSince,
        position: Position,
        snapshot: Snapshot,
    ) -> None:
        self.room = room
        self.config = config
        self._read_since = read_since
        self._position = position
        self._snapshot = snapshot
        self.connections: set[Connection] = set()
        self.epoch = ""
        self.seq = 0
        self._critical: list[_Event] = []
        self._state: dict[str, _Event] = {}
        self._lossy: list[_Event] = []
        self._lossy_skipped = 0
        self._filling = False
        self._held: list[bytes] = []
        self._tick_task: asyncio.Task[None] | None = None
        self._fill_task: asyncio.Task[None] | None = None
        self._snapshot_task: asyncio.Task[None] | None = None
        self._resyncing: list[Connection] = []

    async def start(self) -> None:
        """Learn the log position before the first event so nothing is taken for a gap."""
        self.epoch, self.seq = await self._position(self.room)
        self._tick_task = asyncio.create_task(self._tick_loop(), name=f"hub-tick-{self.room}")

    async def stop(self) -> None:
        for task in (self._tick_task, self._fill_task, self._snapshot_task):
            if task is not None:
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await task

    # -- events in ------------------------------------------------------------------------

    def receive(self, raw: bytes) -> None:
        """An event from pub/sub. Duplicates are dropped; a gap triggers a fill from the log."""
        metrics.EVENTS_RECEIVED.inc()
        if self._filling:
            self._held.append(raw)
            return
        try:
            event = json.loads(raw)
            epoch, seq = str(event["epoch"]), int(event["seq"])
        except (ValueError, TypeError, KeyError):
            log.warning("room %s: dropped a malformed event: %r", self.room, raw[:200])
            return
        if epoch != self.epoch:
            if not self.epoch and seq == 1:
                self.epoch = epoch  # the room's first log begins: nothing was missed
            else:
                self._restart(epoch, seq)
                return
        if seq <= self.seq:
            return
        if seq > self.seq + 1:
            self._held.append(raw)
            self.fill_gap()
            return
        self._accept(seq, raw, event)

    def fill_gap(self) -> None:
        """Read what this hub missed from the log (after a gap or a Redis reconnect)."""
        if self._filling:
            return
        self._filling = True
        self._fill_task = asyncio.create_task(self._fill(), name=f"hub-fill-{self.room}")

    async def _fill(self) -> None:
        try:
            for attempt in range(50):
                try:
                    replay = await self._read_since(self.room, self.epoch, self.seq, GAP_FILL_LIMIT)
                    break
                except Exception as exc:
                    log.warning("room %s: gap fill failed (%s), retrying", self.room, exc)
                    await asyncio.sleep(min(0.1 * (attempt + 1), 2.0))
            else:
                replay = Replay([], gap=True, epoch="", seq=0)
            metrics.GAP_FILLS.inc()
            held, self._held = self._held, []
            self._filling = False
            if replay.gap:
                self._restart(replay.epoch, replay.seq)
            else:
                for raw in replay.events:
                    self.receive(raw)
            for raw in held:  # what came in during the read; older ones are dropped as seen
                self.receive(raw)
        finally:
            self._filling = False

    def _restart(self, epoch: str, seq: int) -> None:
        """The log cannot say what was missed (new epoch, too far behind): send every synced
        viewer a snapshot; their frames are held meanwhile and continue from it."""
        self.epoch, self.seq = epoch, seq
        self._critical.clear()
        self._state.clear()
        self._lossy.clear()
        self._lossy_skipped = 0
        self.resync([c for c in self.connections if c.is_synced and not c.closed])

    def resync(self, connections: list[Connection]) -> None:
        """Send these viewers a fresh snapshot; their frames are held until it is queued."""
        for connection in connections:
            connection.resync()
        waiting = list(connections)
        if self._snapshot_task is not None and not self._snapshot_task.done():
            waiting.extend(c for c in self._resyncing if c not in connections)
            self._snapshot_task.cancel()  # read again: it must be read after this point
        self._resyncing = waiting
        self._snapshot_task = asyncio.create_task(
            self._resnapshot(waiting), name=f"hub-snapshot-{self.room}"
        )

    async def _resnapshot(self, connections: list[Connection]) -> None:
        for attempt in range(SNAPSHOT_ATTEMPTS):
            try:
                snapshot = await self._snapshot(self.room)
                break
            except Exception as exc:
                log.warning("room %s: snapshot after a log change failed: %s", self.room, exc)
                await asyncio.sleep(min(0.1 * (attempt + 1), 2.0))
        else:
            for connection in connections:  # they reconnect and get a snapshot then
                connection.close(CloseCode.TRY_AGAIN_LATER, "the room is unavailable: reconnect")
            return
        frame = snapshot_frame(snapshot)
        epoch, seq = str(snapshot["epoch"]), int(str(snapshot["seq"]))
        for connection in connections:
            if not connection.closed and not connection.is_synced:
                connection.send(frame)
                connection.synced(epoch, seq)
        self._resyncing = []

    def _accept(self, seq: int, raw: bytes, event: dict[str, object]) -> None:
        self.seq = seq
        lane, key = _lane_and_key(event)
        if lane == "state":
            self._state[key] = _Event(seq, raw, lane, key)
        elif lane == "lossy":
            if len(self._lossy) < self.config.lossy_per_tick:
                self._lossy.append(_Event(seq, raw, lane, ""))
            else:
                self._lossy_skipped += 1
                metrics.LOSSY_DROPPED.inc()
        else:
            self._critical.append(_Event(seq, raw, lane, ""))

    # -- frames out ---------------------------------------------------------------------

    def flush(self) -> Frame | None:
        """Build this tick's frame (once) and offer it to every local viewer."""
        if not (self._critical or self._state or self._lossy or self._lossy_skipped):
            return None
        kept = sorted([*self._critical, *self._state.values()], key=lambda e: e.seq)
        everything = sorted([*kept, *self._lossy], key=lambda e: e.seq)
        skipped = self._lossy_skipped
        full = events_frame([e.raw for e in everything], skipped)
        if self._lossy or skipped:
            left_out = skipped + len(self._lossy)
            reduced: str | None = events_frame([e.raw for e in kept], left_out) if kept else ""
        else:
            reduced = None
        last_seq = everything[-1].seq if everything else self.seq
        first_seq = everything[0].seq if everything else 0
        events = tuple((e.seq, e.raw) for e in everything)
        frame = Frame(
            full, reduced, last_seq, self.epoch, first_seq, events, skipped, len(self._lossy)
        )
        self._critical, self._state, self._lossy, self._lossy_skipped = [], {}, [], 0
        for connection in list(self.connections):
            try:
                connection.offer(frame)
            except Exception:  # one broken connection must not cost the others this frame
                log.exception("room %s: offering a frame failed; closing that viewer", self.room)
                connection.close(CloseCode.SERVICE_RESTART, "internal error: reconnect")
        return frame

    async def _tick_loop(self) -> None:
        loop = asyncio.get_running_loop()
        next_tick = loop.time()
        while True:
            next_tick += self.config.tick_s
            await asyncio.sleep(max(0.0, next_tick - loop.time()))
            try:
                self.flush()
            except Exception:  # a bad event must not stop the room
                log.exception("room %s: tick failed", self.room)
            if loop.time() - next_tick > self.config.tick_s * 10:
                next_tick = loop.time()  # far behind (loop stalled): do not burst to catch up
