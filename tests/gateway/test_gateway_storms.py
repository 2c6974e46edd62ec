"""Join and reconnect storms on real sockets: viewers that join a room at the same time share one
snapshot read and get the same snapshot bytes; viewers that all reconnect at once with
`since`/`epoch` each get exactly what they missed, from one log read per `since`."""

from __future__ import annotations

import asyncio
import json
from collections import Counter
from functools import partial
from typing import Any

import pytest
import redis.asyncio as aioredis
from gateway_testkit import Viewer, close_all, eventually, make_room, serve, ws_url
from websockets.asyncio.client import connect

from gateway.connection import SyncFrame
from gateway.sync import covers
from live.settings import Settings
from rooms.events import Lane
from rooms.log import Replay, RoomLog

VIEWERS = 40


def _reached(viewer: Viewer, seq: int) -> bool:
    return viewer.seq >= seq


async def _welcome_and_sync(url: str) -> tuple[dict[str, Any], str]:
    """A raw viewer's welcome and the text of the frame after it (its snapshot)."""
    async with connect(url, open_timeout=30) as ws:
        welcome = json.loads(await ws.recv())
        sync = await ws.recv()
        assert isinstance(sync, str)
        return welcome, sync


async def test_viewers_joining_at_once_share_one_snapshot_read(
    settings: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    async with serve(settings) as served:
        room = await make_room(served.url, settings)
        await room.pin(room.products[0])
        rooms = served.gateway.rooms
        real_snapshot = rooms.snapshot
        reads = 0
        first_read = asyncio.Event()

        async def counted(room_id: str) -> dict[str, Any]:
            nonlocal reads
            reads += 1
            if reads == 1:
                await first_read.wait()  # held: the viewers below join meanwhile
            snapshot: dict[str, Any] = await real_snapshot(room_id)
            return snapshot

        monkeypatch.setattr(rooms, "snapshot", counted)
        url = ws_url(served.url, room.id)
        first = asyncio.create_task(_welcome_and_sync(url))
        await eventually(lambda: reads == 1)
        crowd = asyncio.gather(*(_welcome_and_sync(url) for _ in range(VIEWERS)))
        hub = served.gateway.hubs[room.id]
        await eventually(lambda: len(hub.connections) == VIEWERS + 1, within=30)
        first_read.set()
        synced = await crowd
        await first
        assert reads == 2  # the held read, then one for every viewer that came meanwhile
        texts = {text for _, text in synced}
        assert len(texts) == 1  # the same bytes for all
        snapshot = json.loads(texts.pop())["snapshot"]
        assert snapshot["pinned"]["id"] == room.products[0]
        assert all(w["seq"] == snapshot["seq"] and not w["resumed"] for w, _ in synced)


async def test_a_reconnect_storm_resumes_every_viewer_with_what_it_missed(
    settings: Settings, redis: aioredis.Redis, monkeypatch: pytest.MonkeyPatch
) -> None:
    async with serve(settings) as served:
        room = await make_room(served.url, settings)
        log = RoomLog(redis, settings.redis_prefix)
        viewers = [await Viewer.open(ws_url(served.url, room.id)) for _ in range(VIEWERS)]
        epoch, since = viewers[0].epoch, viewers[0].seq
        assert all((v.epoch, v.seq) == (epoch, since) for v in viewers)
        await close_all(viewers)  # all dropped at once
        missed = [(await room.pin(room.products[0]))["seq"]]
        for text in ("a", "b"):
            message = {"text": text, "by": "h", "role": "host"}
            published = await log.publish(room.id, "host_message", message, lane=Lane.CRITICAL)
            missed.append(published.seq)
        missed.append((await room.pin(room.products[1]))["seq"])

        room_log = served.gateway.log
        real_read = room_log.read_since
        reads: Counter[int] = Counter()

        async def counted(room_id: str, at: str, after: int, limit: int) -> Replay:
            reads[after] += 1
            replay: Replay = await real_read(room_id, at, after, limit)
            return replay

        monkeypatch.setattr(room_log, "read_since", counted)
        # Half resume from where they were, half as if they had applied the first missed event.
        starts = [since if i % 2 else missed[0] for i in range(VIEWERS)]
        back = await asyncio.gather(
            *(
                Viewer.open(
                    ws_url(served.url, room.id, since=start, epoch=epoch), resume=(epoch, start)
                )
                for start in starts
            )
        )
        await asyncio.gather(*(v.wait_for(partial(_reached, v, missed[-1])) for v in back))
        for viewer, start in zip(back, starts, strict=True):
            assert viewer.welcome is not None and viewer.welcome["resumed"] is True
            assert viewer.snapshots == 0 and viewer.stale == 0 and viewer.disorder == 0
            assert [e["seq"] for e in viewer.applied] == [s for s in missed if s > start]
        assert set(reads) <= {since, missed[0]}
        assert sum(reads.values()) < VIEWERS  # shared: fewer log reads than viewers
        await close_all(back)


async def test_resumes_during_publishing_miss_nothing_and_reuse_replays(
    settings: Settings,
) -> None:
    """Viewers resume from one `since` in waves while the host keeps pinning: each gets every
    event after its `since` once, in order, whether its replay was read for it or was the
    latest one of that `since`, reused because its hub had nothing past it."""
    async with serve(settings) as served:
        room = await make_room(served.url, settings)
        first = await Viewer.open(ws_url(served.url, room.id))
        epoch, since = first.epoch, first.seq
        await close_all([first])
        published = [(await room.pin(room.products[n % 2]))["seq"] for n in range(3)]
        replays = served.gateway.shared.replays

        async def wave() -> list[Viewer]:
            url = ws_url(served.url, room.id, since=since, epoch=epoch)
            return list(
                await asyncio.gather(*(Viewer.open(url, resume=(epoch, since)) for _ in range(5)))
            )

        quiet = await wave() + await wave()  # nothing published between the two waves
        assert replays.reused > 0
        viewers = list(quiet)
        for n in range(6):  # a wave and a pin at once, six times
            pin = asyncio.create_task(room.pin(room.products[n % 2]))
            viewers += await wave()
            published.append((await pin)["seq"])
        await asyncio.gather(*(v.wait_for(partial(_reached, v, published[-1])) for v in viewers))
        for viewer in viewers:
            assert viewer.welcome is not None and viewer.welcome["resumed"] is True
            assert viewer.snapshots == viewer.stale == viewer.disorder == 0
            assert [e["seq"] for e in viewer.applied] == published
        await close_all(viewers)


def test_a_replay_read_before_its_hub_started_over_covers_nobody() -> None:
    """After Redis lost writes the same epoch and seqs come back with other events, and the hub
    starts over: a replay read before that never stands for a new read."""
    frame = SyncFrame("e1", 120, "text", b"wire", read_at=5.0)
    assert covers(frame, "e1", 111, restarted_at=0.0)
    assert not covers(frame, "e1", 111, restarted_at=6.0)  # the hub started over since
    assert not covers(frame, "e1", 121, restarted_at=0.0)  # the hub has more
    assert not covers(frame, "e2", 1, restarted_at=0.0)
    assert not covers(SyncFrame("e1", 120, gap=True, read_at=5.0), "e1", 1, restarted_at=0.0)
