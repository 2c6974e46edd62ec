"""Viewer counts: each gateway process reports how many viewers it holds per room; the room's
count is their sum. Counts only, never member lists, so a big room costs one hash field per
process."""

from __future__ import annotations

from dataclasses import dataclass

import redis.asyncio as aioredis

from rooms import scripts
from rooms.keys import RoomKeys

REPORT_TTL_MS = 5000
ANNOUNCE_INTERVAL_MS = 1000


@dataclass(frozen=True)
class Tally:
    total: int
    announce: bool


class Presence:
    def __init__(self, client: aioredis.Redis, prefix: str, process_id: str) -> None:
        self.prefix = prefix
        self.process_id = process_id
        self._report = scripts.load(client, "presence")

    async def report(self, room: str, count: int) -> Tally:
        """Record this process's count for the room; returns the total over all processes."""
        total, announce = await self._report(
            keys=[RoomKeys(self.prefix, room).presence],
            args=[self.process_id, count, REPORT_TTL_MS, ANNOUNCE_INTERVAL_MS],
        )
        return Tally(int(total), bool(announce))

    async def count(self, room: str) -> int:
        """The room's total without reporting (count 0 from a process id of no one)."""
        total, _ = await self._report(
            keys=[RoomKeys(self.prefix, room).presence],
            args=["_reader", 0, REPORT_TTL_MS, 2**62],
        )
        return int(total)
