"""A room's hub in one process: takes the room's events in sequence order, exactly once, and on
each tick turns what arrived into one frame, encoded once, offered to every local viewer.

Lanes decide what a busy tick keeps (gateway/lanes.py, from each event's envelope): every
critical event; the latest state event per merge key; the most recent lossy events up to a
per-tick cap, the rest counted as skipped. Lossy events are sampled as they arrive, once for the
room (about `HubConfig.lossy_per_s` a second, the rest counted as skipped), so every viewer's
frame is the same bytes; a frame that would carry only state changes waits a little
(`HubConfig.state_gap_s`), so a flooded room sends about a frame per sampled comment. Each
event is put in its wire form (gateway/envelope.py) once, as it is accepted. A gap in sequence
numbers (a lost pub/sub message, a Redis reconnect) is filled from the log.

A big room is split into groups of up to `HubConfig.group_size` viewers whose ticks are spread
evenly over the tick: writing a frame costs a syscall per viewer, so one burst to 10,000 sockets
would make the last viewer wait for the other 9,999 (and for their readers); staggered groups
keep every burst short. Each group's frame holds what arrived since that group's previous frame.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field

from gateway import envelope, lanes, metrics, timing
from gateway.connection import Connection, Frame, SyncFrame
from gateway.protocol import CloseCode, direct_frame, events_frame
from gateway.wire import ENCODER
from rooms.log import Replay

log = logging.getLogger("live.gateway")

ReadSince = Callable[[str, str, int, int], Awaitable[Replay]]
Position = Callable[[str], Awaitable[tuple[str, int]]]
Snapshot = Callable[[str], Awaitable[SyncFrame]]

GAP_FILL_LIMIT = 2000
SNAPSHOT_ATTEMPTS = 20

WRITE_SHARE = 0.7  # the most of a tick that writing its frames may take before it stretches
TICK_RELAX = 0.9  # a stretched tick shrinks back by this factor per tick once writes are quick


@dataclass(frozen=True)
class HubConfig:
    tick_s: float = 0.05
    lossy_per_tick: int = 20
    lossy_per_s: float = 10.0  # lossy events let through per second, for the room; 0: all
    max_tick_s: float = 0.2  # how far a room too big to write every tick_s may stretch its tick
    group_size: int = 500  # viewers written in one burst; a bigger room's are split in groups
    state_gap_s: float = 0.1  # a frame of state changes alone waits this long after the last

    def __post_init__(self) -> None:
        if self.group_size < 1 or min(self.lossy_per_tick, self.lossy_per_s, self.state_gap_s) < 0:
            raise ValueError("group_size must be positive; lossy_per_*, state_gap_s not negative")


@dataclass(eq=False)
class _Group:
    """Viewers flushed together, and what their last frame covered."""

    cursor: int  # the room's seq when this group was last flushed
    lossy_seen: int  # the room's count of lossy events then
    sent_at: float = 0.0  # time.monotonic() of its last frame
    members: set[Connection] = field(default_factory=set)


def replay_frame(events: list[bytes], lossy_cap: int) -> str:
    """What a resuming viewer missed (events of one epoch), as one frame under the lanes' rules
    (not sampled: the cap keeps the most recent lossy events)."""
    chosen = lanes.select(events, lossy_cap)
    picked = [json.loads(e.raw) for e in chosen.events]
    epoch = str(json.loads(events[-1])["epoch"]) if events else ""
    return events_frame(epoch, [envelope.wire_event(e) for e in picked], chosen.skipped)


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
        self.connections: set[Connection] = set()  # change through add() and discard()
        self.epoch = ""
        self.seq = 0
        # When this hub began, or last started over (`_restart`), by time.monotonic: a replay
        # read before then may be of a log Redis has since lost (gateway/sync.py `covers`).
        self.restarted_at = time.monotonic()
        self.tick_s = config.tick_s
        sampler = lanes.Sampler(config.lossy_per_s)
        self._lanes = lanes.Lanes(config.lossy_per_tick, sampler)  # what some group lacks
        self._groups: list[_Group] = []
        self._group_of: dict[Connection, _Group] = {}
        self._next_group = 0
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

    # -- viewers --------------------------------------------------------------------------

    def add(self, connection: Connection) -> None:
        """A viewer joins the least full group, or a new one. A new group starts at the current
        seq: the viewer's snapshot or replay is read after this and covers what came before."""
        group = min(self._groups, key=lambda g: len(g.members), default=None)
        if group is None or len(group.members) >= self.config.group_size:
            group = _Group(self.seq, self._lanes.lossy_count)
            self._groups.append(group)
        group.members.add(connection)
        self._group_of[connection] = group
        self.connections.add(connection)

    def discard(self, connection: Connection) -> None:
        group = self._group_of.pop(connection, None)
        self.connections.discard(connection)
        if group is None:
            return
        group.members.discard(connection)
        if not group.members:
            self._groups.remove(group)
            self._next_group = 0

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

    def receive_direct(self, raw: bytes) -> None:
        """A message for one user (`{"to", "type", "data"}`, from the room's direct channel):
        sent to each of that user's connections here as a `direct` frame, outside `events` (no
        seq: it is not logged), on the reply path, so never conflated or dropped.
        The connections are scanned (a user may sign in after joining); direct messages are
        rare next to the room's events (one per lost lead or settlement offer)."""
        try:
            message = json.loads(raw)
            user, kind = str(message["to"]), str(message["type"])
            frame = direct_frame(kind, message["data"])
        except (ValueError, TypeError, KeyError):
            log.warning("room %s: dropped a malformed direct message: %r", self.room, raw[:200])
            return
        for connection in [c for c in self.connections if c.user == user]:
            connection.send(frame)
        metrics.DIRECT_SENT.inc()

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
        self.restarted_at = time.monotonic()
        self._lanes.clear()
        for group in self._groups:
            group.cursor, group.lossy_seen = seq, self._lanes.lossy_count
        self.resync([c for c in self.connections if c.is_synced and not c.closed])

    def resync_one(self, connection: Connection) -> None:
        self.resync([connection])

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
        for connection in connections:
            if not connection.closed and not connection.is_synced:
                connection.send_sync(snapshot)
        self._resyncing = []

    def _accept(self, seq: int, raw: bytes, event: dict[str, object]) -> None:
        self.seq = seq
        self._lanes.add(seq, envelope.wire_event(event), event, time.monotonic())

    # -- frames out ---------------------------------------------------------------------

    def flush(self) -> None:
        """Offer every group what it has not had yet, now (on shutdown)."""
        for group in list(self._groups):
            self._flush_group(group, now=True)

    def _flush_group(self, group: _Group, *, now: bool = False) -> None:
        """Build the group's frame (once for all its viewers) and offer it to each of them.
        Unless `now`, a frame that would carry neither a critical nor a lossy event (state
        changes, skipped counts) waits until `state_gap_s` after the group's previous frame:
        nothing is lost, the state is conflated meanwhile, and a flooded room sends about one
        frame per sampled comment instead of one per tick."""
        started = time.monotonic()
        chosen = self._lanes.since(group.cursor, group.lossy_seen)
        if (
            not now
            and not (chosen.critical or chosen.lossy)
            and started - group.sent_at < self.config.state_gap_s
        ):
            return
        frame = self._frame(chosen)
        group.cursor, group.lossy_seen = self.seq, self._lanes.lossy_count
        self._forget_offered()
        if frame is None:
            return
        group.sent_at = started
        written = 0
        for connection in list(group.members):
            try:
                written += connection.offer(frame)
            except Exception:  # one broken connection must not cost the others this frame
                log.exception("room %s: offering a frame failed; closing that viewer", self.room)
                connection.close(CloseCode.INTERNAL_ERROR, "internal error: reconnect")
        metrics.FRAMES_SENT.inc(written)
        timing.frame_written(frame.events)

    def _frame(self, chosen: lanes.Selection) -> Frame | None:
        """The frame of what a group has not had yet, in both encodings."""
        kept, lossy, skipped = chosen.kept, chosen.lossy, chosen.skipped
        if not (kept or lossy or skipped):
            return None
        metrics.LOSSY_DROPPED.inc(skipped)
        everything = chosen.events
        full = events_frame(self.epoch, [e.raw for e in everything], skipped)
        if lossy or skipped:
            left_out = skipped + len(lossy)
            reduced: str | None = (
                events_frame(self.epoch, [e.raw for e in kept], left_out) if kept else ""
            )
        else:
            reduced = None
        last_seq = everything[-1].seq if everything else self.seq
        first_seq = everything[0].seq if everything else 0
        events = tuple((e.seq, e.raw) for e in everything)
        wire = ENCODER.encode(full)
        return Frame(
            full, reduced, last_seq, self.epoch, first_seq, events, skipped, len(lossy), wire
        )

    def _forget_offered(self) -> None:
        """Critical and state events every group has been offered are not needed any more."""
        self._lanes.forget(min((g.cursor for g in self._groups), default=self.seq))

    def tick_next_group(self) -> None:
        """One step of the rotation: the next group's frame. A group whose frame fails is not
        retried at the others' expense: its viewers are closed and resume from their last seq,
        so they miss nothing."""
        if not self._groups:
            self._forget_offered()
            return
        if self._next_group >= len(self._groups):  # once per rotation
            self._next_group = 0
            self._compact()
        group = self._groups[self._next_group]
        self._next_group += 1
        try:
            self._flush_group(group)
        except Exception:  # a bad event must not stop the room
            log.exception("room %s: a group's frame failed; its viewers resume", self.room)
            group.cursor, group.lossy_seen = self.seq, self._lanes.lossy_count
            for connection in list(group.members):
                connection.close(CloseCode.INTERNAL_ERROR, "internal error: reconnect")

    def _compact(self) -> None:
        """After a crowd left: fold the two smallest groups into one when more groups remain
        than the room needs. Both are flushed first, so their viewers have been offered the
        same events and none is missed or repeated by the move."""
        size = self.config.group_size
        needed = -(-len(self.connections) // size)
        if len(self._groups) <= max(1, needed):
            return
        small, other = sorted(self._groups, key=lambda g: len(g.members))[:2]
        if len(small.members) + len(other.members) > size:
            return
        try:
            self._flush_group(small, now=True)
            self._flush_group(other, now=True)
        except Exception:
            log.exception("room %s: flushing groups to merge them failed", self.room)
            return
        for connection in small.members:
            self._group_of[connection] = other
        other.members |= small.members
        self._groups.remove(small)

    def _stretch(self, group_flush_s: float, groups: int) -> None:
        """Adapt the tick to the room's size: when writing a frame to every group would take
        more than WRITE_SHARE of the tick, the tick stretches (up to max_tick_s), so a big room
        gets fewer, fuller frames and the process keeps time; once writes are quick again it
        relaxes back to tick_s (by TICK_RELAX per tick, whatever the number of groups)."""
        needed = group_flush_s * groups / WRITE_SHARE
        relaxed = self.tick_s * (1 - (1 - TICK_RELAX) / groups)
        longest = max(self.config.max_tick_s, self.config.tick_s)
        self.tick_s = min(longest, max(self.config.tick_s, needed, relaxed))

    async def _tick_loop(self) -> None:
        loop = asyncio.get_running_loop()
        next_tick = loop.time()
        while True:
            groups = max(1, len(self._groups))
            next_tick += self.tick_s / groups
            await asyncio.sleep(max(0.0, next_tick - loop.time()))
            started = time.perf_counter()
            self.tick_next_group()
            self._stretch(time.perf_counter() - started, groups)
            if loop.time() - next_tick > self.tick_s * 10:
                next_tick = loop.time()  # far behind (loop stalled): do not burst to catch up
