"""What a joining viewer is synced with, read and built once for every viewer that asks at the
same time (gateway/batched.py): a room's settings, its snapshot, or what a resume from (epoch,
since) missed, each frame encoded for the wire once."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import replace
from typing import Any

from gateway.batched import Batched
from gateway.connection import SyncFrame, sync_frame
from gateway.hub import replay_frame
from gateway.protocol import snapshot_frame
from rooms.log import RoomLog
from rooms.service import RoomService

ResumeKey = tuple[str, str, int]  # room, epoch, since
REMEMBERED_REPLAYS = 64  # the (room, epoch, since) of a reconnect storm, in one process
REMEMBERED_REPLAY_BYTES = 64 * 1024  # a bigger replay is read again for every caller


def covers(frame: SyncFrame, epoch: str, seq: int, restarted_at: float) -> bool:
    """Whether a replay brings a viewer who joined a hub at (`epoch`, `seq`) up to it: the hub
    sends that viewer every event after `seq` (held until the replay is queued, and those the
    replay has too left out), so a replay read before the viewer came is complete if it reaches
    `seq` of the same epoch, and began after the hub last started over (`restarted_at`: after
    Redis lost writes, the same epoch and seqs may come back with other events)."""
    return (
        not frame.gap and frame.epoch == epoch and frame.seq >= seq and frame.read_at > restarted_at
    )


def _worth_keeping(frame: SyncFrame) -> bool:
    return not frame.gap and len(frame.wire) <= REMEMBERED_REPLAY_BYTES


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
        # A replay depends only on (room, epoch, since) and the log's head: the latest one of a
        # key is as good as a new read for a viewer whose hub has nothing past it (`covers`).
        self.replays: Batched[ResumeKey, SyncFrame] = Batched(
            self._replay, spacing_s, remember=REMEMBERED_REPLAYS, worth_keeping=_worth_keeping
        )

    async def _snapshot(self, room: str) -> SyncFrame:
        snapshot = await self._rooms.snapshot(room)
        return sync_frame(str(snapshot["epoch"]), int(snapshot["seq"]), snapshot_frame(snapshot))

    async def _replay(self, key: ResumeKey) -> SyncFrame:
        room, epoch, since = key
        limit, lossy_cap = self._limits()
        read_at = time.monotonic()
        replay = await self._log.read_since(room, epoch, since, limit)
        if replay.gap:
            return SyncFrame(replay.epoch, replay.seq, gap=True)
        text = replay_frame(replay.events, lossy_cap) if replay.events else ""
        return replace(sync_frame(replay.epoch, replay.seq, text), read_at=read_at)
