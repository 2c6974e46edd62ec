"""A room's event log: one Lua call appends to a capped stream and publishes (SPUBLISH on a Redis
Cluster, so a room's messages stay on its shard; PUBLISH on a plain Redis), so every event has a
sequence number, the log's epoch and the server's time, and late or reconnecting readers can
replay what they missed from the log with a bounded read. Each event's envelope carries the lane
(and merge key) its publisher gave it: see rooms/events.py.

The Redis client must not decode responses (events travel as the bytes that were logged)."""

from __future__ import annotations

import json
import re
import uuid
from dataclasses import dataclass
from typing import Any, Literal

from rooms import scripts
from rooms.events import Lane, route
from rooms.keys import RoomKeys

LOG_MAX_LEN = 5000
RECENT_COMMENTS = 50
# Event ids remembered per room so that a replayed publish (a retry after a timeout) returns its
# first answer; fewer than LOG_MAX_LEN, so a remembered event is always still in the log.
IDS_KEPT = 1000

StateOp = Literal["set", "del", ""]


@dataclass(frozen=True)
class Published:
    seq: int
    epoch: str
    event: bytes


@dataclass(frozen=True)
class Replay:
    """What a reader missed: the events after `since`, or `gap=True` (and no events) when the log
    cannot tell (epoch changed, too far behind, events trimmed away) and the reader needs a
    snapshot. `epoch` and `seq` are the log's position the events bring the reader to."""

    events: list[bytes]
    gap: bool
    epoch: str
    seq: int


@dataclass(frozen=True)
class RoomState:
    """The Redis side of a snapshot, read atomically with the log position it reflects: the
    room's live state hash (`state`, raw) and, decoded, the snapshot parts publishers added
    (`parts`: each registered part's value, None while unset)."""

    epoch: str
    seq: int
    state: dict[str, str]
    recent_comments: list[dict[str, Any]]
    server_time_ms: int
    parts: dict[str, Any]


# What the room's own snapshot shows or keeps in its live state: no part may take these names.
ROOM_FIELDS = frozenset(
    {"room", "pinned", "host_message", "slow_mode", "ended", "viewers", "comments"}
    | {"seq", "epoch", "server_time_ms"}
)
SNAPSHOT_PART = re.compile(r"[a-z][a-z0-9_]{0,63}")


class RoomLog:
    def __init__(self, client: scripts.Client, prefix: str) -> None:
        self.client = client
        self.prefix = prefix
        self._parts: dict[str, None] = {}  # an ordered set
        self.sharded = scripts.sharded(client)  # SPUBLISH, for SSUBSCRIBE readers
        self._command = "SPUBLISH" if self.sharded else "PUBLISH"
        self._publish = scripts.load(client, "publish")
        self._read = scripts.load(client, "read")
        self._snapshot = scripts.load(client, "snapshot")

    def keys(self, room: str) -> RoomKeys:
        return RoomKeys(self.prefix, room)

    def add_snapshot_part(self, name: str) -> None:
        """The extension point of the room snapshot: another package (flash_sales: `sale`,
        `stock`) adds a part of its own without rooms naming it.

        A part is a field of the room's live state hash that its owner keeps up to date with its
        events (`publish(..., state_op="set", state_field=name, state_value=<JSON>)`, or "del"),
        so the value changes atomically with the event that announces it. Every snapshot then
        shows it under `name`, JSON-decoded, or null while unset; it is read in the same atomic
        step as the log position, so a viewer resuming from the snapshot misses nothing.
        Registered once per process, by the part's owner when it is built; idempotent."""
        if not SNAPSHOT_PART.fullmatch(name) or name in ROOM_FIELDS:
            raise ValueError(f"{name!r} cannot be a snapshot part (taken, or not a-z0-9_)")
        self._parts[name] = None

    @property
    def snapshot_parts(self) -> tuple[str, ...]:
        return tuple(self._parts)

    async def publish(
        self,
        room: str,
        event_type: str,
        data: dict[str, Any],
        *,
        lane: Lane,
        key: str = "",
        state_op: StateOp = "",
        state_field: str = "",
        state_value: str = "",
        event_id: str = "",
    ) -> Published:
        """Log and broadcast one event. Its publisher says how it travels: `lane`, and for the
        state lane the merge `key` (the latest event per key and tick reaches the viewers, e.g.
        `stock:<sale id>`); both go into the envelope, which the gateway obeys. `state_op`
        changes one field of the room's live state in the same atomic step. `event_id`
        (default: a fresh one) makes the call idempotent: publishing the same id again returns
        the first result."""
        lane = route(event_type, lane, key)
        keys = self.keys(room)
        recent = RECENT_COMMENTS if event_type == "comment" else 0
        seq, epoch, event = await self._publish(
            keys=[
                keys.seq,
                keys.epoch,
                keys.log,
                keys.state,
                keys.recent_comments,
                keys.published_ids,
            ],
            args=[
                keys.channel,
                event_type,
                lane.value,
                key,
                json.dumps(data, separators=(",", ":"), ensure_ascii=False, allow_nan=False),
                LOG_MAX_LEN,
                state_op,
                state_field,
                state_value,
                recent,
                event_id or uuid.uuid4().hex,
                IDS_KEPT,
                self._command,
            ],
        )
        return Published(int(seq), _text(epoch), _bytes(event))

    async def position(self, room: str) -> tuple[str, int]:
        """(epoch, last seq) of the room's log; ("", 0) when nothing was ever published."""
        keys = self.keys(room)
        epoch, seq = await self.client.mget([keys.epoch, keys.seq])
        return (_text(epoch) if epoch else "", int(seq or 0))

    async def read_since(self, room: str, epoch: str, since: int, limit: int) -> Replay:
        """Events with seq > since in the same epoch, at most `limit` of them, else a gap."""
        if limit < 1:
            raise ValueError("limit must be positive")
        keys = self.keys(room)
        current, last, raw = await self._read(
            keys=[keys.seq, keys.epoch, keys.log], args=[epoch, max(since, 0), limit]
        )
        current, last = _text(current), int(last)
        if epoch != current or since < 0 or since > last or last - since > limit:
            return Replay([], gap=True, epoch=current, seq=last)
        events = [_bytes(event) for event in raw]
        if len(events) != last - since:  # trimmed away (or lost): the log cannot tell
            return Replay([], gap=True, epoch=current, seq=last)
        return Replay(events, gap=False, epoch=current, seq=last)

    async def state(self, room: str) -> RoomState:
        keys = self.keys(room)
        epoch, seq, flat, recent, now_ms = await self._snapshot(
            keys=[keys.seq, keys.epoch, keys.state, keys.recent_comments], args=[RECENT_COMMENTS]
        )
        state = {_text(flat[i]): _text(flat[i + 1]) for i in range(0, len(flat), 2)}
        comments = [json.loads(item) for item in reversed(recent)]
        parts = {name: json.loads(state[name]) if name in state else None for name in self._parts}
        return RoomState(_text(epoch), int(seq), state, comments, int(now_ms), parts)

    async def recent_comments(self, room: str) -> list[dict[str, Any]]:
        """The last comments, oldest first (as full events)."""
        raw = await self.client.lrange(self.keys(room).recent_comments, 0, RECENT_COMMENTS - 1)
        return [json.loads(item) for item in reversed(raw)]


def _text(value: bytes | str) -> str:
    return value.decode() if isinstance(value, bytes) else value


def _bytes(value: bytes | str) -> bytes:
    return value.encode() if isinstance(value, str) else bytes(value)


__all__ = ["IDS_KEPT", "LOG_MAX_LEN", "Lane", "Published", "Replay", "RoomLog", "RoomState"]
