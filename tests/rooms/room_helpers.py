"""Helpers of the rooms tests: tokens, a room created through the API, the fixtures and checks of
the API tests, and a second app server on the same Redis and PostgreSQL. (Not a conftest.py: mypy
and pytest's default import mode would see two top-level modules named `conftest`.)"""

from __future__ import annotations

import contextlib
import json
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from typing import Any, cast

import asyncpg
import httpx
import jwt
import pytest
import redis.asyncio as aioredis
from redis.asyncio.cluster import RedisCluster
from serve_kit import serve_app

from gateway.auth import mint
from live import services
from live.redis_client import RedisClient, open_redis
from live.settings import Settings
from rooms.actors import Role
from rooms.log import RoomLog
from rooms.service import RoomService


@dataclass(frozen=True)
class Tokens:
    """Mints tokens signed with the test server's secret."""

    secret: str

    def __call__(
        self, role: Role, room: str, sub: str = "", *, ttl_s: int = 600, name: str = ""
    ) -> str:
        sub = sub or f"{role.value}-1"
        return mint(self.secret, sub=sub, role=role, room=room, ttl_s=ttl_s, name=name)

    def expired(self, role: Role, room: str, sub: str = "host-1") -> str:
        payload = {"sub": sub, "role": role.value, "room": room, "exp": int(time.time()) - 60}
        return jwt.encode(payload, self.secret, algorithm="HS256")


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


@dataclass(frozen=True)
class Room:
    """A room created through the API by its host, with one product."""

    id: str
    host: str  # host token
    viewer: str  # viewer token (sub "viewer-1")
    product: dict[str, Any]


async def create_room(
    api: httpx.AsyncClient,
    tokens: Tokens,
    room: str = "r1",
    settings: dict[str, Any] | None = None,
) -> Room:
    host = tokens(Role.HOST, room, "host-1")
    body: dict[str, Any] = {"title": f"Room {room}"}
    if settings is not None:
        body["settings"] = settings
    created = await api.put(f"/api/rooms/{room}", json=body, headers=bearer(host))
    assert created.status_code == 200, created.text
    product = await api.post(
        f"/api/rooms/{room}/products",
        json={"sku": "mug-1", "title": "Mug", "price_cents": 1299},
        headers=bearer(host),
    )
    assert product.status_code == 201, product.text
    return Room(room, host, tokens(Role.VIEWER, room, "viewer-1"), product.json())


@pytest.fixture
def tokens(settings: Settings) -> Tokens:
    return Tokens(settings.jwt_secret)


@pytest.fixture
async def api(server: str) -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(base_url=server, timeout=10) as client:
        yield client


@pytest.fixture
async def room(api: httpx.AsyncClient, tokens: Tokens) -> Room:
    return await create_room(api, tokens)


@pytest.fixture
def room_log(redis: aioredis.Redis, settings: Settings) -> RoomLog:
    return RoomLog(redis, settings.redis_prefix)


async def snapshot(api: httpx.AsyncClient, room: Room) -> dict[str, Any]:
    response = await api.get(f"/api/rooms/{room.id}", headers=bearer(room.viewer))
    assert response.status_code == 200, response.text
    body: dict[str, Any] = response.json()
    return body


async def last_event(room_log: RoomLog, room: str) -> dict[str, Any]:
    raw = await room_log.client.xrevrange(room_log.keys(room).log, count=1)
    entries = cast(list[tuple[bytes, dict[bytes, bytes]]], raw)
    event: dict[str, Any] = json.loads(entries[0][1][b"e"])
    return event


async def comment(
    api: httpx.AsyncClient, token: str, text: str, room: str = "r1"
) -> httpx.Response:
    return await api.post(f"/api/rooms/{room}/comments", json={"text": text}, headers=bearer(token))


def assert_error(response: httpx.Response, status: int, code: str, context: str = "") -> None:
    assert response.status_code == status, f"{context}: {response.status_code} {response.text}"
    body = response.json()
    assert set(body) == {"error", "detail"}, context
    assert body["error"] == code, f"{context}: {body}"
    assert isinstance(body["detail"], str) and body["detail"], context


@contextlib.asynccontextmanager
async def serve(settings: Settings) -> AsyncIterator[str]:
    """Another real app process-alike (its own clients and services) on the same Redis and
    PostgreSQL schema; yields its URL."""
    async with serve_app(settings) as served:
        yield served.url


@contextlib.asynccontextmanager
async def pg_pool(database_url: str, schema: str) -> AsyncIterator[asyncpg.Pool]:
    """A small pool on a test's schema (the app's lifespan applied the migrations)."""
    pool = await asyncpg.create_pool(
        database_url, min_size=1, max_size=2, server_settings={"search_path": schema}
    )
    assert pool is not None
    try:
        yield pool
    finally:
        await pool.close()


def room_service(
    pg: asyncpg.Pool,
    client: RedisClient,
    prefix: str,
    *,
    per_window: int = 5,
    allow_anonymous: bool = True,
) -> RoomService:
    """A RoomService of its own on these clients, as another process's build_services makes it."""
    settings = Settings(
        redis_prefix=prefix, comments_per_10s=per_window, allow_anonymous=allow_anonymous
    )
    return services.room_service(settings, pg, client, "test-process")


@contextlib.asynccontextmanager
async def room_channel(
    redis_url: str, channel: str
) -> AsyncIterator[Callable[[float], Awaitable[bytes | None]]]:
    """A subscription to a room's channel as the gateway holds it (SSUBSCRIBE on a cluster,
    SUBSCRIBE on a plain Redis); yields `next(timeout_s)`: the next message's data, or None."""
    client = open_redis(redis_url, 10)
    try:
        if isinstance(client, RedisCluster):
            await client.initialize()  # the slots map ssubscribe routes by
            sharded = client.pubsub()
            await sharded.ssubscribe(channel)

            async def next_sharded(timeout_s: float) -> bytes | None:
                deadline = time.monotonic() + timeout_s
                while time.monotonic() < deadline:
                    message = await sharded.get_sharded_message(timeout=0.05)
                    if message is not None and message["type"] == "smessage":
                        return bytes(message["data"])
                return None

            try:
                yield next_sharded
            finally:
                await sharded.aclose()
        else:
            plain = client.pubsub(ignore_subscribe_messages=True)
            await plain.subscribe(channel)

            async def next_plain(timeout_s: float) -> bytes | None:
                message = await plain.get_message(timeout=timeout_s)
                return None if message is None else bytes(message["data"])

            try:
                yield next_plain
            finally:
                await plain.aclose()  # type: ignore[no-untyped-call]
    finally:
        await client.aclose()
