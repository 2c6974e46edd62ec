"""What a joining viewer is synced with, read and built once for every viewer that asks at the
same time (gateway/batched.py): a room's settings, its snapshot, or what a resume from (epoch,
since) missed, each frame encoded for the wire once."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from gateway.batched import Batched
from gateway.connection import SyncFrame, sync_frame
from gateway.hub import replay_frame
from gateway.protocol import snapshot_frame
from rooms.log import RoomLog
from rooms.service import RoomService

ResumeKey = tuple[str, str, int]  # room, epoch, since


class SharedReads:
    """`limits()` gives (replay_limit, lossy_per_tick) as the gateway's config says now."""

    def __init__(
        self,
        rooms: RoomService,
        room_log: RoomLog,
        limits: Callable[[], tuple[int, int]],
        spacing_s: float,
    ) -> None:
        """`spacing_s` (the hub's tick): under a storm, each is read at most once a tick."""
        self._rooms = rooms
        self._log = room_log
        self._limits = limits
        self.settings: Batched[str, dict[str, Any]] = Batched(rooms.settings, spacing_s)
        self.snapshots: Batched[str, SyncFrame] = Batched(self._snapshot, spacing_s)
        self.replays: Batched[ResumeKey, SyncFrame] = Batched(self._replay, spacing_s)

    async def _snapshot(self, room: str) -> SyncFrame:
        snapshot = await self._rooms.snapshot(room)
        return sync_frame(str(snapshot["epoch"]), int(snapshot["seq"]), snapshot_frame(snapshot))

    async def _replay(self, key: ResumeKey) -> SyncFrame:
        room, epoch, since = key
        limit, lossy_cap = self._limits()
        replay = await self._log.read_since(room, epoch, since, limit)
        if replay.gap:
            return SyncFrame(replay.epoch, replay.seq, gap=True)
        text = replay_frame(replay.events, lossy_cap) if replay.events else ""
        return sync_frame(replay.epoch, replay.seq, text)
