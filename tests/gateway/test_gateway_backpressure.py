"""A viewer that stops reading costs only itself: it is cut off with SLOW_CONSUMER after the
grace period while the others keep receiving, and it resumes without losing a critical event."""

from __future__ import annotations

import asyncio
import contextlib
import time
from dataclasses import replace

import redis.asyncio as aioredis
from gateway_testkit import (
    Viewer,
    close_all,
    eventually,
    make_room,
    open_viewers,
    serve,
    small_receive_buffer_socket,
    ws_url,
)

from gateway.connection import Backpressure
from gateway.protocol import CloseCode
from live.settings import Settings
from rooms.events import Lane
from rooms.log import RoomLog

LOSSY_PER_TICK = 5
BACKPRESSURE = Backpressure(high_water=4, hard_limit=16, grace_s=1.0, close_timeout_s=20.0)
COMMENT = "big frames fill the socket buffers of a viewer that stopped reading quickly " * 100


async def test_slow_viewer_is_cut_off_without_slowing_others_and_resumes(
    settings: Settings, redis: aioredis.Redis
) -> None:
    settings = replace(settings, tick_ms=20)
    async with serve(
        settings,
        backpressure=BACKPRESSURE,
        lossy_per_tick=LOSSY_PER_TICK,
        lossy_per_s=0,  # no sampling: the whole flood reaches the viewers' queues
        replay_limit=5000,
    ) as served:
        room = await make_room(served.url, settings)
        url = ws_url(served.url, room.id)
        others = await open_viewers(url, 5, lossy_cap=LOSSY_PER_TICK)
        port = int(served.url.rsplit(":", 1)[1])
        slow = await Viewer.open(
            url,
            lossy_cap=LOSSY_PER_TICK,
            sock=small_receive_buffer_socket(port),
            max_queue=1,
        )
        log = RoomLog(redis, settings.redis_prefix)
        critical: list[int] = []
        stop = asyncio.Event()

        async def flood() -> None:
            n = 0
            while not stop.is_set():
                await log.publish(
                    room.id,
                    "comment",
                    {"id": f"c{n}", "user": "u", "text": COMMENT},
                    lane=Lane.LOSSY,
                )
                n += 1
                if n % 5 == 0:
                    await asyncio.sleep(0.01)  # a few hundred comments a second

        async def host() -> None:
            n = 0
            while not stop.is_set():
                message = {"text": f"deal {n}", "by": "host", "role": "host"}
                critical.append(
                    (await log.publish(room.id, "host_message", message, lane=Lane.CRITICAL)).seq
                )
                n += 1
                await asyncio.sleep(0.1)

        hub = served.gateway.hubs[room.id]
        tasks = [asyncio.create_task(flood()), asyncio.create_task(host())]
        try:
            await asyncio.sleep(0.3)
            slow.pause()
            paused_at = time.monotonic()
            for viewer in others:
                viewer.lags_ms.clear()

            def cut() -> bool:
                return any(c.close_code == CloseCode.SLOW_CONSUMER for c in hub.connections)

            await eventually(cut, within=20)
            cut_after = time.monotonic() - paused_at
            await asyncio.sleep(0.5)  # the others go on meanwhile
        finally:
            stop.set()
            for task in tasks:
                await task
        last = critical[-1]
        for viewer in others:
            await viewer.wait_for(lambda v=viewer: v.seq >= last)  # type: ignore[misc]
        worst_lag = max(max(v.lags_ms) for v in others)
        print(
            f"{len(critical)} host messages, log at {last}; "
            f"slow viewer cut off {cut_after:.2f}s after it stopped reading; worst lag of the "
            f"others meanwhile {worst_lag:.0f} ms (tick {settings.tick_ms} ms)"
        )
        assert cut_after >= BACKPRESSURE.grace_s
        assert worst_lag < 25 * settings.tick_ms  # a few ticks, with room for a loaded machine
        for viewer in others:
            assert [e["seq"] for e in viewer.critical() if e["type"] == "host_message"] == critical
            assert viewer.over_cap == 0 and viewer.disorder == 0 and viewer.stale == 0
            assert viewer.skipped > 0  # the flood was sampled

        # The slow viewer reads again: what was already in the socket, then the close code.
        slow.resume()
        assert await slow.wait_closed(within=20) == CloseCode.SLOW_CONSUMER
        assert slow.seq < last
        seen = [e["seq"] for e in slow.critical() if e["type"] == "host_message"]
        assert seen == critical[: len(seen)]
        back = await Viewer.open(
            ws_url(served.url, room.id, **slow.resume_params()),
            lossy_cap=LOSSY_PER_TICK,
            resume=(slow.epoch, slow.seq),
        )
        await back.wait_for(lambda: back.seq >= last)
        assert back.welcome is not None and back.welcome["resumed"] is True
        resumed = [e["seq"] for e in back.critical() if e["type"] == "host_message"]
        assert seen + resumed == critical  # every critical event, once
        assert back.over_cap == 0 and back.disorder == 0 and back.stale == 0
        await close_all([*others, back])
        with contextlib.suppress(Exception):
            await slow.close()
