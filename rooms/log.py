"""A room's event log: one Lua call appends to a capped stream and publishes, so every event has
a sequence number, the log's epoch and the server's time, and late or reconnecting readers can
replay what they missed from the log with a bounded read."""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any, Literal, cast

import redis.asyncio as aioredis

from rooms import scripts
from rooms.events import Lane, lane_of
from rooms.keys import RoomKeys

LOG_MAX_LEN = 5000
RECENT_COMMENTS = 50

StateOp = Literal["set", "del", ""]


@dataclass(frozen=True)
class Published:
    seq: int
    epoch: str
    event: bytes


@dataclass(frozen=True)
class Replay:
    """What a reader missed: the events after `since`, or `gap=True` when the log cannot tell
    (epoch changed, or the events were trimmed away) and the reader needs a snapshot."""

    events: list[bytes]
    gap: bool
    epoch: str
    seq: int


class RoomLog:
    def __init__(self, client: aioredis.Redis, prefix: str) -> None:
        self.client = client
        self.prefix = prefix
        self._publish = scripts.load(client, "publish")

    def keys(self, room: str) -> RoomKeys:
        return RoomKeys(self.prefix, room)

    async def publish(
        self,
        room: str,
        event_type: str,
        data: dict[str, Any],
        *,
        state_op: StateOp = "",
        state_field: str = "",
        state_value: str = "",
    ) -> Published:
        lane = lane_of(event_type)
        keys = self.keys(room)
        recent = RECENT_COMMENTS if event_type == "comment" else 0
        seq, epoch, event = await self._publish(
            keys=[keys.seq, keys.epoch, keys.log, keys.state, keys.recent_comments],
            args=[
                keys.channel,
                event_type,
                lane.value,
                json.dumps(data, separators=(",", ":"), ensure_ascii=False),
                LOG_MAX_LEN,
                state_op,
                state_field,
                state_value,
                recent,
            ],
        )
        return Published(int(seq), _text(epoch), bytes(event))

    async def position(self, room: str) -> tuple[str, int]:
        """(epoch, last seq) of the room's log; ("", 0) when nothing was ever published."""
        keys = self.keys(room)
        epoch, seq = await self.client.mget([keys.epoch, keys.seq])
        return (_text(epoch) if epoch else "", int(seq or 0))

    async def read_since(self, room: str, epoch: str, since: int, limit: int) -> Replay:
        """Events with seq > since in the same epoch, at most `limit` of them, else a gap."""
        current_epoch, last = await self.position(room)
        if epoch != current_epoch or since > last:
            return Replay([], gap=True, epoch=current_epoch, seq=last)
        if since == last:
            return Replay([], gap=False, epoch=current_epoch, seq=last)
        if last - since > limit:
            return Replay([], gap=True, epoch=current_epoch, seq=last)
        entries = cast(
            list[tuple[bytes, dict[bytes, bytes]]],
            await self.client.xrange(
                self.keys(room).log, min=f"{since + 1}-0", max=f"{last}-0", count=limit
            ),
        )
        events = [fields[b"e"] for _, fields in entries]
        first = int(entries[0][0].split(b"-")[0]) if entries else last + 1
        return Replay(events, gap=first != since + 1, epoch=current_epoch, seq=last)

    async def recent_comments(self, room: str) -> list[dict[str, Any]]:
        raw = await self.client.lrange(self.keys(room).recent_comments, 0, RECENT_COMMENTS - 1)
        return [json.loads(item) for item in reversed(raw)]


def _text(value: bytes | str) -> str:
    return value.decode() if isinstance(value, bytes) else value


__all__ = ["LOG_MAX_LEN", "Lane", "Published", "Replay", "RoomLog"]
