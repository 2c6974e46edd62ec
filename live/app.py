"""The composition root: builds the clients and domain objects and returns the Starlette app."""

from __future__ import annotations

import asyncio
import gc
import logging
import os
import socket
import uuid
from collections.abc import AsyncIterator, Awaitable
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any

import asyncpg
import redis.asyncio as aioredis
from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route, WebSocketRoute

from flash_sales.commands import sale_commands
from flash_sales.orders import OrderWriter
from flash_sales.routes import SaleRoutes
from flash_sales.service import SaleService
from flash_sales.store import SaleStore
from gateway.connection import Backpressure
from gateway.server import Gateway, GatewayConfig
from gateway.wire import LiveWebSocketProtocol
from inventory_lock import InventoryLock
from live import db, pages
from live.errors import api_error, http_exception, unhandled_exception
from live.metrics import metrics_endpoint
from live.migrations import runner
from live.settings import Settings
from rooms.auth import Authenticator
from rooms.errors import ApiError
from rooms.log import RoomLog
from rooms.presence import Presence
from rooms.routes import RoomRoutes
from rooms.service import CommentPolicy, RoomService

log = logging.getLogger("live")
SHUTDOWN_STEP_S = 5.0


@dataclass
class Services:
    """What the lifespan opens and every route may use."""

    settings: Settings
    redis: aioredis.Redis
    pg: asyncpg.Pool
    rooms: RoomService
    gateway: Gateway
    sales: SaleService


def calm_garbage_collector() -> None:
    """Thousands of connections mean hundreds of thousands of tracked objects; with CPython's
    default thresholds a full collection then stops the loop for half a second, longer than the
    fan-out latency budget. Freeze what start-up made and collect the young generation rarely."""
    gc.collect()
    gc.freeze()
    gc.set_threshold(50_000, 50, 100)


def websocket_options(settings: Settings) -> dict[str, Any]:
    """uvicorn's WebSocket settings for this app (live serve and tests alike): the protocol
    that allows the gateway's direct writes, the message size limit, no compression."""
    return {
        "ws": LiveWebSocketProtocol,
        "ws_max_size": settings.max_message_bytes,
        "ws_per_message_deflate": False,
    }


def process_id() -> str:
    """Names this process in shared Redis state (presence), unique across restarts."""
    return f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:6]}"


def redis_client(settings: Settings) -> aioredis.Redis:
    # A burst waits for a free connection (up to the I/O timeout) instead of failing.
    pool = aioredis.BlockingConnectionPool.from_url(
        settings.redis_url,
        socket_timeout=settings.io_timeout_s,
        socket_connect_timeout=settings.io_timeout_s,
        health_check_interval=15,
        max_connections=512,
        timeout=settings.io_timeout_s,
    )
    return aioredis.Redis.from_pool(pool)


def services(app: Starlette) -> Services:
    """The services the lifespan opened (routes run only after it did)."""
    opened: Services = app.state.services
    return opened


async def healthz(request: Request) -> JSONResponse:
    return JSONResponse({"status": "ok"})


async def readyz(request: Request) -> JSONResponse:
    opened = services(request.app)
    timeout = opened.settings.io_timeout_s
    checks: dict[str, str] = {}
    try:
        await asyncio.wait_for(opened.redis.ping(), timeout)
        checks["redis"] = "ok"
    except Exception as exc:
        checks["redis"] = f"error: {type(exc).__name__}: {exc}"
    try:
        async with asyncio.timeout(timeout), opened.pg.acquire() as conn:
            version = await runner.applied_version(conn)
        latest = runner.latest_version()
        checks["postgres"] = "ok"
        checks["migrations"] = (
            "ok" if version == latest else f"error: at version {version}, expected {latest}"
        )
    except Exception as exc:
        checks["postgres"] = f"error: {type(exc).__name__}: {exc}"
        checks["migrations"] = "unknown"
    ready = all(value == "ok" for value in checks.values())
    return JSONResponse(
        {"status": "ready" if ready else "not_ready", "checks": checks},
        status_code=200 if ready else 503,
    )


async def _bounded(what: str, stopping: Awaitable[None]) -> bool:
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


def create_app(settings: Settings) -> Starlette:
    if not settings.redis_url or not settings.database_url:
        raise ValueError("create_app needs redis_url and database_url (live serve embeds servers)")

    @asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        await db.ensure_schema(settings)
        pg = await db.create_pool(settings)
        redis = redis_client(settings)
        try:
            async with pg.acquire() as conn:
                await runner.migrate(conn)
            log = RoomLog(redis, settings.redis_prefix)
            presence = Presence(redis, settings.redis_prefix, process_id())
            policy = CommentPolicy(settings.comment_max_chars, settings.comments_per_10s)
            room_service = RoomService(
                pg,
                redis,
                log,
                presence,
                policy,
                allow_anonymous=settings.allow_anonymous,
                ended_ttl_s=settings.ended_room_ttl_s,
            )
            sales = SaleService(
                SaleStore(pg),
                InventoryLock(redis, settings.redis_prefix),
                log,
                OrderWriter(pg, timeout_s=settings.io_timeout_s),
                # A confirm's caller waits up to twice the I/O timeout for its order.
                stuck_confirm_s=3 * settings.io_timeout_s,
            )
            gateway = Gateway(
                GatewayConfig(
                    tick_s=settings.tick_ms / 1000,
                    max_tick_s=settings.max_tick_ms / 1000,
                    lossy_per_tick=settings.lossy_per_tick,
                    backpressure=Backpressure(
                        high_water=settings.queue_high_water,
                        hard_limit=settings.queue_hard_limit,
                        grace_s=settings.slow_grace_s,
                    ),
                    allowed_origins=settings.origins,
                    allow_anonymous=settings.allow_anonymous,
                ),
                room_service,
                log,
                presence,
                auth,
                handlers=sale_commands(sales),
            )
            await sales.start()
            await gateway.start()
            app.state.services = Services(
                settings=settings,
                redis=redis,
                pg=pg,
                rooms=room_service,
                gateway=gateway,
                sales=sales,
            )
            calm_garbage_collector()
            try:
                yield
            finally:
                await _bounded("the gateway", gateway.stop())
                await _bounded("flash sales", sales.stop())
        finally:
            await _bounded("the Redis client", redis.aclose())
            if not await _bounded("the PostgreSQL pool", pg.close()):
                pg.terminate()  # close() waits for every connection to come back

    auth = Authenticator(settings.resolved_jwt_secret())
    room_routes = RoomRoutes(lambda: services(app).rooms, auth)
    routes = [
        *room_routes.routes(),
        *SaleRoutes(lambda: services(app).sales, auth).routes(),
        WebSocketRoute("/ws/rooms/{room}", lambda ws: services(app).gateway.endpoint(ws)),
        *pages.routes(),
        Route("/healthz", healthz),
        Route("/readyz", readyz),
        Route("/metrics", metrics_endpoint),
    ]
    app = Starlette(
        routes=routes,
        lifespan=lifespan,
        exception_handlers={
            HTTPException: http_exception,
            ApiError: api_error,
            Exception: unhandled_exception,
        },
    )
    return app


def app_from_env() -> Starlette:
    """uvicorn factory for worker processes: settings come from the environment."""
    return create_app(Settings.from_env())
