"""Viewer counts: each gateway process reports how many viewers it holds per room; the room's
count is their sum. Counts only, never member lists, so a big room costs one hash field per
process."""

from __future__ import annotations

from dataclasses import dataclass

from rooms import scripts
from rooms.keys import RoomKeys

REPORT_TTL_MS = 5000
ANNOUNCE_INTERVAL_MS = 1000


@dataclass(frozen=True)
class Tally:
    total: int
    announce: bool


class Presence:
    """One process's view of presence. Each process reports at least every `report_ttl_ms`
    (a report older than that no longer counts: its process is gone); the process told to
    `announce` publishes the room's viewer count, at most once per `announce_interval_ms`."""

    def __init__(
        self,
        client: scripts.Client,
        prefix: str,
        process_id: str,
        *,
        report_ttl_ms: int = REPORT_TTL_MS,
        announce_interval_ms: int = ANNOUNCE_INTERVAL_MS,
    ) -> None:
        if not process_id or process_id.startswith("_"):
            raise ValueError("a process id must be non-empty and not start with '_'")
        if report_ttl_ms < 1 or announce_interval_ms < 1:
            raise ValueError("the report ttl and the announce interval must be positive")
        self.prefix = prefix
        self.process_id = process_id
        self.report_ttl_ms = report_ttl_ms
        self.announce_interval_ms = announce_interval_ms
        self._report = scripts.load(client, "presence")

    async def report(self, room: str, count: int) -> Tally:
        """Record this process's count for the room; returns the total over all processes."""
        if count < 0:
            raise ValueError("a viewer count cannot be negative")
        total, announce = await self._report(
            keys=[RoomKeys(self.prefix, room).presence],
            args=[self.process_id, count, self.report_ttl_ms, self.announce_interval_ms],
        )
        return Tally(int(total), bool(announce))

    async def count(self, room: str) -> int:
        """The room's total, without reporting and without taking the announcement."""
        total, _ = await self._report(
            keys=[RoomKeys(self.prefix, room).presence], args=["", 0, self.report_ttl_ms, 0]
        )
        return int(total)
