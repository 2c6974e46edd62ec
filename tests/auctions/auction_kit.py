"""What the auction tests share: the auction service on the session's real Redis and
PostgreSQL (a key namespace and a schema of the test's own), a room with a product, actors, the
room's logged events, and waits on conditions."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from typing import Any

import asyncpg
import pytest

from flash_sales.auctions.service import AuctionService
from inventory_lock import InventoryLock
from live import db
from live.migrations import runner
from live.redis_client import RedisClient, open_redis
from live.settings import Settings
from rooms.actors import Actor, Role
from rooms.log import RoomLog

ROOM = "bids"
HOST = Actor("host", Role.HOST, ROOM, "Host")
DEFAULTS: dict[str, Any] = {"start_cents": 100, "increment_cents": 10, "duration_s": 60}


def viewer(user: str) -> Actor:
    return Actor(user, Role.VIEWER, ROOM, user.title())


@dataclass
class Kit:
    service: AuctionService
    pg: asyncpg.Pool
    redis: RedisClient
    lock: InventoryLock
    room_log: RoomLog
    product_id: int

    async def create(self, **config: Any) -> int:
        view = await self.service.lifecycle.create(
            ROOM, HOST, self.product_id, **{**DEFAULTS, **config}
        )
        return int(view["id"])

    async def open(self, **config: Any) -> int:
        auction_id = await self.create(**config)
        await self.service.lifecycle.start(auction_id, HOST)
        return auction_id

    async def bid(
        self,
        auction_id: int,
        user: str,
        amount: object,
        max_cents: object = None,
        key: str | None = None,
        show_name: bool = False,
    ) -> dict[str, Any]:
        return await self.service.bidding.bid(
            auction_id,
            viewer(user),
            amount,
            max_cents,
            key or f"{user}-{amount}-{max_cents}",
            show_name=show_name,
        )

    async def move_deadline(self, auction_id: int, by_ms: int) -> None:
        """The deadline `by_ms` later (earlier when negative): as the clock stepping back (on)."""
        await self.redis.hincrby(self.service.book.keys(auction_id).state, "ends_at", by_ms)

    async def server_ms(self) -> int:
        return await self.lock.server_ms()

    async def events(self, *types: str) -> list[dict[str, Any]]:
        """The room's logged events of these types, in seq order."""
        epoch, seq = await self.room_log.position(ROOM)
        replay = await self.room_log.read_since(ROOM, epoch, 0, max(seq, 1))
        decoded = [json.loads(raw) for raw in replay.events]
        return [e for e in decoded if e["type"] in types]

    async def finish(self, auction_id: int) -> None:
        """Until the end loop has ended the auction (its deadline must be near)."""

        async def ended() -> bool:
            await self.service.lifecycle.end_due()
            view = await self.service.lifecycle.view(auction_id)
            return bool(view["state"] == "ended")

        await until(ended)


async def until(condition: Callable[[], Awaitable[bool]], within_s: float = 15) -> None:
    """Until `condition()` holds; the state it waits for is in Redis or PostgreSQL (no event
    to wait on), so it polls."""
    async with asyncio.timeout(within_s):
        while not await condition():  # noqa: ASYNC110
            await asyncio.sleep(0.02)


async def make_kit(
    settings: Settings,
    *,
    hold_s: float = 600,
    stuck_confirm_s: float = 5,
    write_timeout_s: float = 5,
) -> tuple[Kit, Callable[[], Awaitable[None]]]:
    """The service of one process, and how to close it. The first one of a test migrates the
    schema and makes the room and its product; another is a second process beside it."""
    await db.ensure_schema(settings)
    pg = await db.create_pool(settings)
    async with pg.acquire() as conn:
        await runner.migrate(conn)
        await conn.execute(
            "INSERT INTO rooms (id, title, host_id) VALUES ($1, 'Bids', 'host') "
            "ON CONFLICT DO NOTHING",
            ROOM,
        )
        await conn.execute(
            "INSERT INTO products (room_id, sku, title, price_cents) "
            "VALUES ($1, 'vase', 'Vase', 5000) ON CONFLICT DO NOTHING",
            ROOM,
        )
        product_id = await conn.fetchval("SELECT id FROM products WHERE room_id = $1", ROOM)
    redis = open_redis(settings.redis_url, 10)
    room_log = RoomLog(redis, settings.redis_prefix)
    lock = InventoryLock(redis, settings.redis_prefix)
    service = AuctionService(
        pg,
        lock,
        room_log,
        hold_s=hold_s,
        stuck_confirm_s=stuck_confirm_s,
        write_timeout_s=write_timeout_s,
    )
    kit = Kit(service, pg, redis, lock, room_log, product_id)

    async def close() -> None:
        await redis.aclose()
        await pg.close()

    return kit, close


@pytest.fixture
async def kit(settings: Settings) -> AsyncIterator[Kit]:
    made, close = await make_kit(settings)
    yield made
    await close()


@pytest.fixture
async def short_hold_kit(settings: Settings) -> AsyncIterator[Kit]:
    """Offers whose holds last half a second."""
    made, close = await make_kit(settings, hold_s=0.5)
    yield made
    await close()
