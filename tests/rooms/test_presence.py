"""Viewer counts on real Redis: per-process reports, their sum, expiry, one announcer."""

from __future__ import annotations

import asyncio

import httpx
import pytest
import redis.asyncio as aioredis
from room_helpers import Tokens, bearer, create_room

from live.settings import Settings
from rooms.keys import RoomKeys
from rooms.presence import Presence

TTL_MS = 400
INTERVAL_MS = 300


def process(redis: aioredis.Redis, prefix: str, name: str) -> Presence:
    return Presence(redis, prefix, name, report_ttl_ms=TTL_MS, announce_interval_ms=INTERVAL_MS)


async def test_the_room_count_is_the_sum_of_the_processes(
    redis: aioredis.Redis, namespace: str
) -> None:
    a, b = process(redis, namespace, "gw-a"), process(redis, namespace, "gw-b")
    assert (await a.report("r1", 3)).total == 3
    assert (await b.report("r1", 4)).total == 7
    assert await a.count("r1") == 7
    assert (await a.report("r1", 5)).total == 9  # a report replaces, never adds
    assert (await a.report("r1", 5)).total == 9
    assert (await b.report("r2", 1)).total == 1  # rooms are counted apart
    assert (await a.report("r1", 0)).total == 4  # a process without viewers drops out
    fields = await redis.hkeys(RoomKeys(namespace, "r1").presence)
    assert b"gw-a" not in fields and b"gw-b" in fields


async def test_a_stale_report_stops_counting(redis: aioredis.Redis, namespace: str) -> None:
    a, b = process(redis, namespace, "gw-a"), process(redis, namespace, "gw-b")
    await a.report("r1", 3)
    await b.report("r1", 4)
    await asyncio.sleep(TTL_MS / 2000)
    assert (await a.report("r1", 3)).total == 7  # b's report is still fresh
    await asyncio.sleep(TTL_MS / 2000 + 0.05)
    # b stopped reporting (its process died): its count expires, a's stays.
    assert (await a.report("r1", 3)).total == 3
    assert await b.count("r1") == 3
    assert set(await redis.hkeys(RoomKeys(namespace, "r1").presence)) == {b"gw-a", b"_announced_at"}
    await asyncio.sleep(TTL_MS / 1000 + 0.05)
    assert await a.count("r1") == 0


async def test_at_most_one_announcement_per_interval(redis: aioredis.Redis, namespace: str) -> None:
    a, b = process(redis, namespace, "gw-a"), process(redis, namespace, "gw-b")
    assert (await a.report("r1", 1)).announce
    assert not (await b.report("r1", 2)).announce
    assert not (await a.report("r1", 1)).announce
    assert await a.count("r1") == 3
    await asyncio.sleep(INTERVAL_MS / 1000 + 0.02)
    assert await b.count("r1") == 3  # reading neither announces nor takes the turn
    tallies = await asyncio.gather(a.report("r1", 1), b.report("r1", 2))
    assert sorted(t.announce for t in tallies) == [False, True]
    assert {t.total for t in tallies} <= {3}
    assert (await a.report("r2", 1)).announce  # each room has its own interval


def test_bad_arguments_are_refused(redis: aioredis.Redis, namespace: str) -> None:
    with pytest.raises(ValueError):
        Presence(redis, namespace, "")
    with pytest.raises(ValueError):
        Presence(redis, namespace, "_announced_at")
    with pytest.raises(ValueError):
        Presence(redis, namespace, "gw", report_ttl_ms=0)


async def test_a_negative_count_is_refused(redis: aioredis.Redis, namespace: str) -> None:
    with pytest.raises(ValueError):
        await process(redis, namespace, "gw-a").report("r1", -1)


async def test_the_snapshot_shows_the_viewer_count(
    server: str, settings: Settings, redis: aioredis.Redis
) -> None:
    tokens = Tokens(settings.jwt_secret)
    async with httpx.AsyncClient(base_url=server, timeout=10) as api:
        room = await create_room(api, tokens)
        # Two gateway processes of the default timing report into the app's namespace.
        await Presence(redis, settings.redis_prefix, "gw-a").report(room.id, 12)
        await Presence(redis, settings.redis_prefix, "gw-b").report(room.id, 30)
        view = await api.get(f"/api/rooms/{room.id}", headers=bearer(room.viewer))
        assert view.json()["viewers"] == 42
