"""A room's live state against the real app, real Redis and real PostgreSQL: who may watch
anonymously, snapshots read from Redis with PostgreSQL behind them, and an ended room's state
expiring."""

from __future__ import annotations

import json

import httpx
import redis.asyncio as aioredis
from room_helpers import (
    Room,
    Tokens,
    api,
    assert_error,
    bearer,
    create_room,
    pg_pool,
    room,
    room_service,
    tokens,
)

from live.settings import Settings
from rooms.log import RoomLog

__all__ = ["api", "room", "tokens"]  # the fixtures, used by name


async def test_anonymous_watching_is_refused_when_the_room_disallows_it(
    api: httpx.AsyncClient, tokens: Tokens
) -> None:
    closed = await create_room(api, tokens, "r1", settings={"allow_anonymous": False})
    for path in ("/api/rooms/r1", "/api/rooms/r1/products"):
        assert_error(await api.get(path), 401, "token_required", path)
        assert (await api.get(path, headers=bearer(closed.viewer))).status_code == 200
    # Reopened by its host.
    reopened = await api.put("/api/rooms/r1", json={"title": "open"}, headers=bearer(closed.host))
    assert reopened.status_code == 200
    assert (await api.get("/api/rooms/r1")).status_code == 200


async def test_the_service_wide_switch_refuses_anonymous_watching_in_every_room(
    api: httpx.AsyncClient, room: Room, redis: aioredis.Redis, settings: Settings, db_schema: str
) -> None:
    """LIVE_ALLOW_ANONYMOUS=false: no room may allow anonymous watching."""
    async with pg_pool(settings.database_url, db_schema) as pg:
        closed = room_service(pg, redis, settings.redis_prefix, allow_anonymous=False)
        open_ = room_service(pg, redis, settings.redis_prefix)
        assert (await closed.settings("r1"))["allow_anonymous"] is False
        assert (await open_.settings("r1"))["allow_anonymous"] is True
        assert (await closed.settings("r1"))["blocked_words"] == []


async def test_snapshots_come_from_redis_and_a_lost_room_from_postgres(
    api: httpx.AsyncClient, room: Room, redis: aioredis.Redis, settings: Settings, db_schema: str
) -> None:
    """A viewer's join reads the room from its live state; PostgreSQL is asked only when Redis
    lost it, and the answer is put back."""
    updated = await api.put(
        "/api/rooms/r1",
        json={"title": "Renamed", "settings": {"blocked_words": ["spam"]}},
        headers=bearer(room.host),
    )
    assert updated.status_code == 200
    async with pg_pool(settings.database_url, db_schema) as pg:
        service = room_service(pg, redis, settings.redis_prefix)
    # The pool is closed now: any query would fail.
    snapshot = await service.snapshot("r1")
    assert snapshot["room"]["title"] == "Renamed" and snapshot["room"]["ended"] is False
    assert (await service.settings("r1"))["blocked_words"] == ["spam"]

    state = RoomLog(redis, settings.redis_prefix).keys("r1").state
    await redis.hdel(state, "room")
    async with pg_pool(settings.database_url, db_schema) as pg:
        service = room_service(pg, redis, settings.redis_prefix)
        assert (await service.snapshot("r1"))["room"]["title"] == "Renamed"
        restored = await redis.hget(state, "room")
        assert restored is not None and json.loads(restored)["title"] == "Renamed"  # put back
        ended = await api.post("/api/rooms/r1/end", headers=bearer(room.host))
        assert ended.status_code == 200
        assert (await service.snapshot("r1"))["room"]["ended"] is True


async def test_an_ended_rooms_live_state_expires(
    api: httpx.AsyncClient, room: Room, redis: aioredis.Redis, settings: Settings, db_schema: str
) -> None:
    keys = RoomLog(redis, settings.redis_prefix).keys("r1")
    await api.post("/api/rooms/r1/comments", json={"text": "hello"}, headers=bearer(room.viewer))
    assert await redis.ttl(keys.state) == -1  # a live room's state does not expire
    assert (await api.post("/api/rooms/r1/end", headers=bearer(room.host))).status_code == 200
    ttls = {key: await redis.ttl(key) for key in keys.live if await redis.exists(key)}
    assert {keys.state, keys.log, keys.seq, keys.epoch} <= set(ttls)
    assert all(0 < ttl <= settings.ended_room_ttl_s for ttl in ttls.values()), ttls
    # Redis lost it: a late visitor's snapshot restores the ended room, and it expires too.
    await redis.delete(*keys.live)
    async with pg_pool(settings.database_url, db_schema) as pg:
        service = room_service(pg, redis, settings.redis_prefix)
        assert (await service.snapshot("r1"))["room"]["ended"] is True
    assert 0 < await redis.ttl(keys.state) <= 86400
