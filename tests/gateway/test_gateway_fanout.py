"""A thousand viewers in one room over real sockets: every critical event reaches every viewer,
and while comments flood the room each frame keeps to the lossy cap and critical events still
arrive within a few ticks."""

from __future__ import annotations

import asyncio
import os
import statistics
import sys
import time

import redis.asyncio as aioredis
from gateway_testkit import REPO, close_all, eventually, make_room, open_viewers, serve, ws_url

from bench.fanout.procstats import raise_fd_limit
from live.settings import Settings
from rooms.events import Lane
from rooms.log import RoomLog

VIEWERS = 1000
LOSSY_PER_TICK = 20
FLOOD_PER_S = 3000
FLOOD_S = 2.5


async def _flood(settings: Settings, room: str) -> asyncio.subprocess.Process:
    """Comments published straight into the room's log by another process (another core)."""
    return await asyncio.create_subprocess_exec(
        sys.executable,
        str(REPO / "tests" / "gateway" / "flood.py"),
        settings.redis_url,
        settings.redis_prefix,
        room,
        str(FLOOD_PER_S),
        str(FLOOD_S),
        cwd=REPO,
        env={**os.environ, "PYTHONPATH": str(REPO)},
        stdout=asyncio.subprocess.PIPE,
    )


async def test_thousand_viewers_get_every_critical_event_through_a_comment_flood(
    settings: Settings, redis: aioredis.Redis
) -> None:
    raise_fd_limit(4 * VIEWERS + 1000)
    async with serve(settings, lossy_per_tick=LOSSY_PER_TICK) as served:
        room = await make_room(served.url, settings)
        started = time.monotonic()
        viewers = await open_viewers(ws_url(served.url, room.id), VIEWERS, lossy_cap=LOSSY_PER_TICK)
        connected_s = time.monotonic() - started
        for viewer in viewers:
            viewer.keep_events = False
        log = RoomLog(redis, settings.redis_prefix)
        critical: list[int] = []

        async def host(count: int, every_s: float) -> None:
            for n in range(count):
                if n % 5 == 0:
                    published = await room.pin(room.products[n % 2])
                    seq = published["seq"]
                else:
                    message = {"text": f"deal {n}", "by": "host", "role": "host"}
                    seq = (
                        await log.publish(room.id, "host_message", message, lane=Lane.CRITICAL)
                    ).seq
                critical.append(seq)
                await asyncio.sleep(every_s)

        # Quiet room first: every critical event to every viewer.
        await host(5, 0.02)
        # Then the same under a comment flood from another process.
        flood = await _flood(settings, room.id)
        await asyncio.sleep(0.3)
        flood_from = len(critical)
        await host(int(FLOOD_S / 0.1) - 5, 0.1)
        out, _ = await flood.communicate()
        assert flood.returncode == 0
        published_comments = int(out.decode().split()[0])
        # The flood may outlast the host: one more critical event after its last comment, and
        # wait until every comment is delivered or counted as skipped.
        await host(1, 0)
        last = critical[-1]
        await eventually(
            lambda: all(
                v.seq >= last and v.lossy + v.skipped == published_comments for v in viewers
            ),
            within=20,
            every=0.05,
        )
        for viewer in viewers:
            assert sorted(viewer.arrivals) == critical  # every critical event, once each
            assert viewer.over_cap == 0 and viewer.disorder == 0 and viewer.stale == 0
        skipped = sum(v.skipped for v in viewers) / VIEWERS
        quiet_lags = [lag for v in viewers for lag in v.lags_ms[:flood_from]]
        flood_lags = [lag for v in viewers for lag in v.lags_ms[flood_from:]]
        print(
            f"\n{VIEWERS} viewers connected in {connected_s:.1f}s; critical lag in the quiet "
            f"room (ms): median {statistics.median(quiet_lags):.0f}, max {max(quiet_lags):.0f}; "
            f"{published_comments} comments "
            f"in {FLOOD_S}s, {skipped:.0f} skipped per viewer; critical lag during the flood "
            f"(ms): median {statistics.median(flood_lags):.0f}, "
            f"p99 {statistics.quantiles(flood_lags, n=100)[98]:.0f}, max {max(flood_lags):.0f}; "
            f"tick {settings.tick_ms} ms"
        )
        assert skipped > 0
        for viewer in viewers:  # each comment either delivered or counted as skipped
            assert viewer.lossy + viewer.skipped == published_comments
        # The figures printed above are the measurement (about 2 ticks median on an idle
        # machine); this is a guard against critical events queued behind the flood, with room
        # for a shared machine: the thousand viewers run in this process, beside the server.
        tick_ms = settings.tick_ms
        assert statistics.median(flood_lags) <= 20 * tick_ms
        assert max(flood_lags) <= 100 * tick_ms
        await close_all(viewers)
