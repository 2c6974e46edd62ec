"""Comment policy on real Redis: length, blocked words, a rate limit shared by every process,
slow mode and mutes, over HTTP against two app servers and against RoomService directly."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import asyncpg
import httpx
import pytest
import redis.asyncio as aioredis
from room_helpers import (
    Room,
    Tokens,
    api,
    bearer,
    comment,
    create_room,
    pg_pool,
    room_log,
    room_service,
    serve,
    tokens,
)

from live.redis_client import open_redis
from live.settings import Settings
from rooms.actors import Actor, Role
from rooms.errors import Throttled
from rooms.log import RoomLog

__all__ = ["api", "room_log", "tokens"]  # the fixtures, used by name


@pytest.fixture
async def room(api: httpx.AsyncClient, tokens: Tokens) -> Room:
    return await create_room(api, tokens, settings={"blocked_words": ["spam", "Buy now"]})


def assert_refused(response: httpx.Response, status: int, code: str) -> None:
    assert response.status_code == status, response.text
    assert response.json()["error"] == code


def viewer(tokens: Tokens, n: int) -> str:
    return tokens(Role.VIEWER, "r1", f"viewer-{n}")


async def test_a_comment_is_published_with_its_author(
    api: httpx.AsyncClient, room: Room, tokens: Tokens, room_log: RoomLog
) -> None:
    token = tokens(Role.VIEWER, "r1", "u-42", name="Maya")
    posted = await comment(api, token, "  love it  ")
    assert posted.status_code == 201, posted.text
    epoch, seq = await room_log.position("r1")
    assert posted.json() == {"seq": seq, "epoch": epoch}
    [event] = await room_log.recent_comments("r1")
    assert (event["seq"], event["type"], event["lane"]) == (seq, "comment", "lossy")
    data = event["data"]
    assert set(data) == {"id", "user", "name", "text"}
    assert (data["user"], data["name"], data["text"]) == ("u-42", "Maya", "love it")


async def test_comment_length_is_limited(
    api: httpx.AsyncClient, room: Room, tokens: Tokens, settings: Settings, room_log: RoomLog
) -> None:
    limit = settings.comment_max_chars
    assert (await comment(api, viewer(tokens, 1), "é" * limit)).status_code == 201
    assert (await comment(api, viewer(tokens, 2), f"  {'x' * limit}  ")).status_code == 201
    position = await room_log.position("r1")
    assert_refused(await comment(api, viewer(tokens, 3), "x" * (limit + 1)), 422, "invalid")
    assert_refused(await comment(api, viewer(tokens, 3), " \n\t "), 422, "invalid")
    assert await room_log.position("r1") == position


async def test_blocked_words_are_refused_as_whole_words(
    api: httpx.AsyncClient, room: Room, tokens: Tokens, room_log: RoomLog
) -> None:
    position = await room_log.position("r1")
    for n, text in enumerate(["SPAM!", "get your spam here", "buy NOW", "ok, buy now."]):
        assert_refused(await comment(api, viewer(tokens, n), text), 422, "blocked_word")
    assert await room_log.position("r1") == position
    # Not within other words: blocking "spam" does not block "spammer".
    for n, text in enumerate(["no spammer here", "buy nowhere", "antispam"]):
        assert (await comment(api, viewer(tokens, 10 + n), text)).status_code == 201, text
    # A refused comment does not count against the rate limit.
    for _ in range(5):
        assert_refused(await comment(api, viewer(tokens, 20), "spam"), 422, "blocked_word")
    assert (await comment(api, viewer(tokens, 20), "fine")).status_code == 201


async def test_the_rate_limit_is_shared_by_two_app_servers(
    api: httpx.AsyncClient,
    room: Room,
    tokens: Tokens,
    settings: Settings,
    room_log: RoomLog,
) -> None:
    limit = settings.comments_per_10s
    fan = viewer(tokens, 1)
    async with serve(settings) as second_url, httpx.AsyncClient(base_url=second_url) as second:
        clients = [api, second]
        for i in range(limit):
            posted = await comment(clients[i % 2], fan, f"comment {i}")
            assert posted.status_code == 201, (i, posted.text)
        _, seq = await room_log.position("r1")
        for client in clients:
            refused = await comment(client, fan, "one more")
            assert_refused(refused, 429, "rate_limited")
            assert 1 <= int(refused.headers["retry-after"]) <= 10
        assert (await room_log.position("r1"))[1] == seq
        # Another user is not limited by the first one.
        assert (await comment(second, viewer(tokens, 2), "me too")).status_code == 201
    texts = [c["data"]["text"] for c in await room_log.recent_comments("r1")]
    assert texts == [*(f"comment {i}" for i in range(limit)), "me too"]


@pytest.fixture
async def pg(database_url: str, db_schema: str, server: str) -> AsyncIterator[asyncpg.Pool]:
    async with pg_pool(database_url, db_schema) as pool:
        yield pool


async def test_two_room_services_share_the_rate_limit(
    room: Room, pg: asyncpg.Pool, redis_url: str, settings: Settings
) -> None:
    first_client = open_redis(redis_url, 10)
    second_client = open_redis(redis_url, 10)
    try:
        services = [
            room_service(pg, first_client, settings.redis_prefix, per_window=3),
            room_service(pg, second_client, settings.redis_prefix, per_window=3),
        ]
        viewer = Actor("viewer-7", Role.VIEWER, "r1")
        for i in range(3):
            await services[i % 2].comment("r1", viewer, f"c{i}")
        for service in services:
            with pytest.raises(Throttled) as refused:
                await service.comment("r1", viewer, "too many")
            assert refused.value.code == "rate_limited"
            assert refused.value.retry_after_s is not None
            assert 0 < refused.value.retry_after_s <= 10
    finally:
        await first_client.aclose()
        await second_client.aclose()


async def test_a_retried_admission_is_counted_once(
    room: Room, pg: asyncpg.Pool, redis: aioredis.Redis, settings: Settings
) -> None:
    """redis-py replays a script after a timeout: the replay must not use up the limit."""
    service = room_service(pg, redis, settings.redis_prefix, per_window=2)
    await service.comment_gate.admit("r1", "u1", "c-1")
    await service.comment_gate.admit("r1", "u1", "c-1")  # the replay
    await service.comment_gate.admit("r1", "u1", "c-2")
    with pytest.raises(Throttled, match="too many"):
        await service.comment_gate.admit("r1", "u1", "c-3")
    await service.comment_gate.admit("r1", "u1", "c-2")  # a replay is still answered "ok"


async def test_slow_mode_spaces_each_users_comments(
    api: httpx.AsyncClient, room: Room, tokens: Tokens
) -> None:
    on = await api.put("/api/rooms/r1/slow-mode", json={"seconds": 1}, headers=bearer(room.host))
    assert on.status_code == 200
    assert (await comment(api, viewer(tokens, 1), "first")).status_code == 201
    refused = await comment(api, viewer(tokens, 1), "second")
    assert_refused(refused, 429, "slow_mode")
    assert refused.headers["retry-after"] == "1"
    assert (await comment(api, viewer(tokens, 2), "someone else")).status_code == 201
    await asyncio.sleep(1.05)
    assert (await comment(api, viewer(tokens, 1), "second, later")).status_code == 201
    # Turning slow mode off lets the next comment through at once.
    off = await api.put("/api/rooms/r1/slow-mode", json={"seconds": 0}, headers=bearer(room.host))
    assert off.status_code == 200
    assert (await comment(api, viewer(tokens, 1), "third")).status_code == 201


async def test_a_muted_user_is_refused_until_the_mute_ends(
    api: httpx.AsyncClient, room: Room, tokens: Tokens, room_log: RoomLog
) -> None:
    muted = await api.put(
        "/api/rooms/r1/mutes/viewer-1", json={"seconds": 1}, headers=bearer(room.host)
    )
    assert muted.status_code == 200
    position = await room_log.position("r1")
    refused = await comment(api, viewer(tokens, 1), "hello?")
    assert_refused(refused, 403, "muted")
    assert refused.headers["retry-after"] == "1"
    assert await room_log.position("r1") == position
    await asyncio.sleep(1.05)
    assert (await comment(api, viewer(tokens, 1), "I'm back")).status_code == 201


async def test_comments_need_a_token_of_the_room(
    api: httpx.AsyncClient, room: Room, tokens: Tokens
) -> None:
    await create_room(api, tokens, "r2")
    assert_refused(
        await api.post("/api/rooms/r1/comments", json={"text": "hi"}), 401, "token_required"
    )
    other_room = tokens(Role.VIEWER, "r2", "viewer-1")
    assert_refused(await comment(api, other_room, "hi"), 403, "forbidden")
    assert (await comment(api, other_room, "hi", room="r2")).status_code == 201
