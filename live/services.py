"""`build_services(settings)`: the one place the service's objects are made, from its settings;
the app, the demo and the tests all open them here."""

from __future__ import annotations

import asyncio
import logging
import os
import socket
import uuid
from collections.abc import AsyncIterator, Awaitable
from contextlib import asynccontextmanager
from dataclasses import dataclass

import asyncpg

from flash_sales.auctions.service import AuctionService
from flash_sales.group_deals.service import GroupDeals
from flash_sales.orders import OrderWriter
from flash_sales.referrals import Referrals
from flash_sales.service import SaleService
from flash_sales.store import SaleStore
from flash_sales.webhooks.deliveries import DeliveryStore
from flash_sales.webhooks.dispatcher import Dispatcher
from flash_sales.webhooks.rooms import RoomWebhooks
from gateway.auth import Authenticator
from gateway.commands import commands
from gateway.connection import Backpressure
from gateway.health import Check
from gateway.server import Gateway, GatewayConfig
from inventory_lock import InventoryLock
from live import db
from live.migrations import runner
from live.redis_client import RedisClient, open_redis
from live.settings import Settings
from rooms.log import RoomLog
from rooms.presence import Presence
from rooms.rules import CommentPolicy
from rooms.service import RoomService

log = logging.getLogger("live")
SHUTDOWN_STEP_S = 5.0


@dataclass
class Services:
    """The clients and every domain object of one process."""

    settings: Settings
    redis: RedisClient
    pg: asyncpg.Pool
    auth: Authenticator
    rooms: RoomService
    sales: SaleService
    gateway: Gateway
    webhooks: RoomWebhooks
    dispatcher: Dispatcher
    auctions: AuctionService
    groups: GroupDeals

    @property
    def readiness(self) -> dict[str, Check]:
        return {
            "redis": self._redis_ready,
            "postgres": self._postgres_ready,
            "migrations": self._migrations_ready,
        }

    async def _redis_ready(self) -> str | None:
        await self.redis.ping()
        return None

    async def _postgres_ready(self) -> str | None:
        await self.pg.fetchval("SELECT 1")
        return None

    async def _migrations_ready(self) -> str | None:
        async with self.pg.acquire() as conn:
            version = await runner.applied_version(conn)
        latest = runner.latest_version()
        return None if version == latest else f"at version {version}, expected {latest}"


def process_id() -> str:
    """Names this process in shared Redis state (presence), unique across restarts."""
    return f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:6]}"


def redis_client(settings: Settings) -> RedisClient:
    """A Redis or, for a redis+cluster:// URL, a RedisCluster client (live/redis_client.py)."""
    return open_redis(settings.redis_url, settings.io_timeout_s)


def gateway_config(settings: Settings) -> GatewayConfig:
    return GatewayConfig(
        tick_s=settings.tick_ms / 1000,
        max_tick_s=settings.max_tick_ms / 1000,
        lossy_per_tick=settings.lossy_per_tick,
        lossy_per_s=settings.lossy_per_second,
        backpressure=Backpressure(
            high_water=settings.queue_high_water,
            hard_limit=settings.queue_hard_limit,
            grace_s=settings.slow_grace_s,
        ),
        allowed_origins=settings.origins,
        allow_anonymous=settings.allow_anonymous,
    )


def room_service(
    settings: Settings, pg: asyncpg.Pool, redis: RedisClient, process: str
) -> RoomService:
    """The room service of process `process` on these clients, with its log and presence, as
    the settings say (comment policy, anonymous watching, the ended-room TTL)."""
    return RoomService(
        pg,
        redis,
        RoomLog(redis, settings.redis_prefix),
        Presence(redis, settings.redis_prefix, process),
        CommentPolicy(settings.comment_max_chars, settings.comments_per_10s),
        allow_anonymous=settings.allow_anonymous,
        ended_ttl_s=settings.ended_room_ttl_s,
    )


@asynccontextmanager
async def build_services(settings: Settings) -> AsyncIterator[Services]:
    """Open Redis and PostgreSQL (migrated), build every object on them; close both at exit,
    each close bounded so that a stuck peer cannot keep the process from stopping."""
    if not settings.redis_url or not settings.database_url:
        raise ValueError("the services need redis_url and database_url (live serve embeds them)")
    await db.ensure_schema(settings)
    pg = await db.create_pool(settings)
    redis = redis_client(settings)
    try:
        async with pg.acquire() as conn:
            await runner.migrate(conn)
        rooms = room_service(settings, pg, redis, process_id())
        room_log, presence = rooms.log, rooms.presence
        sales = SaleService(
            SaleStore(pg),
            InventoryLock(redis, settings.redis_prefix),
            room_log,
            OrderWriter(pg, timeout_s=settings.io_timeout_s),
            # A confirm's caller waits up to twice the I/O timeout for its order.
            stuck_confirm_s=3 * settings.io_timeout_s,
        )
        auctions = AuctionService(
            pg,
            sales.lock,  # the same InventoryLock: settlement pools are auction-<id>
            room_log,
            hold_s=settings.auction_hold_s,
            stuck_confirm_s=3 * settings.io_timeout_s,
            write_timeout_s=settings.io_timeout_s,  # a bid's PostgreSQL write, then 503
        )
        groups = GroupDeals(pg, redis, settings.redis_prefix, room_log)
        auth = Authenticator(settings.resolved_jwt_secret())
        gateway = Gateway(
            gateway_config(settings),
            rooms,
            room_log,
            presence,
            auth,
            commands(rooms, sales, auctions, groups),
            referrals=Referrals(pg, settings.io_timeout_s),  # share links (gateway.referrals)
        )
        dispatcher = Dispatcher(
            DeliveryStore(pg),
            settings.webhook_endpoints,
            settings.webhook_retry,
            timeout_s=settings.webhook_timeout_s,
            interval_s=settings.webhook_poll_ms / 1000,
            retention_s=settings.webhook_retention_s,
            allow_private=settings.webhook_allow_private,
        )
        try:
            yield Services(
                settings,
                redis,
                pg,
                auth,
                rooms,
                sales,
                gateway,
                RoomWebhooks(pg, settings.webhook_allow_private, settings.io_timeout_s),
                dispatcher,
                auctions=auctions,
                groups=groups,
            )
        finally:
            await bounded("the webhook client", dispatcher.aclose())
    finally:
        await bounded("the Redis client", redis.aclose())
        if not await bounded("the PostgreSQL pool", pg.close()):
            pg.terminate()  # close() waits for every connection to come back


async def bounded(what: str, stopping: Awaitable[None]) -> bool:
    """One shutdown step, given at most SHUTDOWN_STEP_S and never in the way of the next: a step
    stuck on a peer or failing must not keep the process from stopping. True if it finished."""
    try:
        async with asyncio.timeout(SHUTDOWN_STEP_S):
            await stopping
        return True
    except TimeoutError:
        log.warning("shutdown: stopping %s took over %.0f s; going on", what, SHUTDOWN_STEP_S)
    except Exception:
        log.exception("shutdown: stopping %s failed; going on", what)
    return False
