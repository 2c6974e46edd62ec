"""What the group deal tests share: the group deals service on the session's real Redis and
PostgreSQL (a key namespace and a schema of the test's own), a room with a product, actors,
the room's logged events, a look at every figure that must not change, and waits."""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from dataclasses import dataclass
from typing import Any

import asyncpg
import pytest

from flash_sales.group_deals.reconcile import reconcile
from flash_sales.group_deals.service import GroupDeals
from live import db
from live.migrations import runner
from live.redis_client import RedisClient, open_redis
from live.settings import Settings
from rooms.actors import Actor, Role
from rooms.log import RoomLog

ROOM = "together"
OTHER_ROOM = "elsewhere"
HOST = Actor("host", Role.HOST, ROOM, "Host")
DEFAULTS: dict[str, Any] = {
    "price_cents": 1000,
    "group_price_cents": 600,
    "stock": 12,
    "limit_per_buyer": 2,
    "group_size": 3,
    "group_window_s": 60,
}


def viewer(user: str, room: str = ROOM) -> Actor:
    return Actor(user, Role.VIEWER, room, user.title())


@dataclass
class Kit:
    service: GroupDeals
    pg: asyncpg.Pool
    redis: RedisClient
    room_log: RoomLog
    product_id: int
    other_product_id: int

    async def open(self, room: str = ROOM, **config: Any) -> int:
        """A group deal, started: its sale id."""
        host = HOST if room == ROOM else Actor("host", Role.HOST, room, "Host")
        product = self.product_id if room == ROOM else self.other_product_id
        view = await self.service.create(room, host, product, **{**DEFAULTS, **config})
        await self.service.start_sale(view["id"], host)
        return int(view["id"])

    async def start(self, sale: int, user: str) -> int:
        view = await self.service.start_group(sale, viewer(user))
        return int(view["id"])

    async def join(self, group: object, user: str) -> dict[str, Any]:
        return await self.service.join(group, viewer(user))

    async def leave(self, group: object, user: str) -> dict[str, Any]:
        return await self.service.leave(group, viewer(user))

    async def close_window(self, sale: int, group: int) -> None:
        """The group's window closes now (as if its time came)."""
        keys = self.service.pool.keys(sale)
        raw = await self.redis.hget(keys.groups, str(group))
        assert raw is not None
        record = json.loads(raw)
        record["closes_at"] = 1000
        await self.redis.hset(keys.groups, str(group), json.dumps(record))
        await self.redis.zadd(keys.due, {str(group): 1000})
        await self.pg.execute(
            "UPDATE groups SET closes_at = now() - interval '1 hour' WHERE id = $1", group
        )

    async def events(self, *types: str) -> list[dict[str, Any]]:
        """The room's logged events of these types, in seq order."""
        epoch, seq = await self.room_log.position(ROOM)
        replay = await self.room_log.read_since(ROOM, epoch, 0, max(seq, 1))
        decoded = [json.loads(raw) for raw in replay.events]
        return [e for e in decoded if e["type"] in types]

    async def facts(self, sale: int) -> dict[str, Any]:
        """Everything a refused request must leave as it was, and the conservation checks."""
        figures = await self.service.pool.peek(sale)
        assert figures is not None
        assert figures.stock == (
            figures.remaining + figures.held + figures.filling + figures.sold
        ), figures
        async with self.pg.acquire() as conn:
            sold = await conn.fetchval("SELECT sold FROM sales WHERE id = $1", sale)
            stock = await conn.fetchval("SELECT stock FROM sales WHERE id = $1", sale)
            orders = await conn.fetchval("SELECT count(*) FROM orders WHERE sale_id = $1", sale)
            groups = await conn.fetch(
                """SELECT g.id, g.state, count(m.buyer_id) AS members,
                          (SELECT count(*) FROM orders o WHERE o.group_id = g.id) AS orders
                   FROM groups g LEFT JOIN group_members m ON m.group_id = g.id
                   WHERE g.sale_id = $1 GROUP BY g.id ORDER BY g.id""",
                sale,
            )
            outcomes = await conn.fetchval(
                "SELECT count(*) FROM hold_outcomes WHERE sale_id = $1", sale
            )
        assert sold == orders <= stock
        report = await reconcile(self.service.store, self.service.pool, sale)
        assert report.ok, report.problems
        for g in groups:  # never a partial group: all its orders or none
            expected = g["members"] if g["state"] == "formed" else 0
            assert g["orders"] == expected, dict(g)
            if g["state"] == "formed":
                assert g["members"] == figures.size
        return {
            "redis": (figures.remaining, figures.held, figures.filling, figures.sold),
            "buyers": await self.redis.hgetall(self.service.pool.keys(sale).buyers),
            "sold": sold,
            "orders": orders,
            "groups": [tuple(g) for g in groups],
            "outcomes": outcomes,
            "events": len(await self.events(*GROUP_EVENTS)),
        }


GROUP_EVENTS = ("group_started", "group_progress", "group_formed", "group_failed")


async def until(condition: Callable[[], Awaitable[bool]], within_s: float = 15) -> None:
    async with asyncio.timeout(within_s):
        while not await condition():  # noqa: ASYNC110
            await asyncio.sleep(0.02)


async def make_kit(settings: Settings) -> tuple[Kit, Callable[[], Awaitable[None]]]:
    """The service of one process, and how to close it. The first one of a test migrates the
    schema and makes the rooms and their products; another is a second process beside it."""
    await db.ensure_schema(settings)
    pg = await db.create_pool(settings)
    async with pg.acquire() as conn:
        await runner.migrate(conn)
        for room, sku in ((ROOM, "mug"), (OTHER_ROOM, "cup")):
            await conn.execute(
                "INSERT INTO rooms (id, title, host_id) VALUES ($1, 'Together', 'host') "
                "ON CONFLICT DO NOTHING",
                room,
            )
            await conn.execute(
                "INSERT INTO products (room_id, sku, title, price_cents) "
                "VALUES ($1, $2, 'Mug', 1000) ON CONFLICT DO NOTHING",
                room,
                sku,
            )
        product_id = await conn.fetchval("SELECT id FROM products WHERE room_id = $1", ROOM)
        other = await conn.fetchval("SELECT id FROM products WHERE room_id = $1", OTHER_ROOM)
    redis = open_redis(settings.redis_url, 10)
    room_log = RoomLog(redis, settings.redis_prefix)
    service = GroupDeals(pg, redis, settings.redis_prefix, room_log)
    kit = Kit(service, pg, redis, room_log, product_id, other)

    async def close() -> None:
        await redis.aclose()
        await pg.close()

    return kit, close


@pytest.fixture
async def kit(settings: Settings) -> AsyncIterator[Kit]:
    made, close = await make_kit(settings)
    yield made
    await close()


@contextlib.contextmanager
def store_away(kit: Kit, method: str) -> Iterator[None]:
    """Within the block, the group store's `method` fails as if PostgreSQL went away."""
    store = kit.service.store
    real = getattr(store, method)

    async def cut_off(*args: Any) -> Any:
        raise ConnectionResetError("PostgreSQL went away")

    setattr(store, method, cut_off)
    try:
        yield
    finally:
        setattr(store, method, real)
