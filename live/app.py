"""The composition root: builds the clients and domain objects and returns the Starlette app."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass

import asyncpg
import redis.asyncio as aioredis
from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from live import db
from live.errors import http_exception, unhandled_exception
from live.metrics import metrics_endpoint
from live.migrations import runner
from live.settings import Settings


@dataclass
class Services:
    """What the lifespan opens and every route may use."""

    settings: Settings
    redis: aioredis.Redis
    pg: asyncpg.Pool


def redis_client(settings: Settings) -> aioredis.Redis:
    return aioredis.Redis.from_url(
        settings.redis_url,
        socket_timeout=settings.io_timeout_s,
        socket_connect_timeout=settings.io_timeout_s,
        health_check_interval=15,
        max_connections=512,
    )


def _services(request: Request) -> Services:
    services: Services = request.app.state.services
    return services


async def healthz(request: Request) -> JSONResponse:
    return JSONResponse({"status": "ok"})


async def readyz(request: Request) -> JSONResponse:
    services = _services(request)
    timeout = services.settings.io_timeout_s
    checks: dict[str, str] = {}
    try:
        await asyncio.wait_for(services.redis.ping(), timeout)
        checks["redis"] = "ok"
    except Exception as exc:
        checks["redis"] = f"error: {type(exc).__name__}: {exc}"
    try:
        async with asyncio.timeout(timeout), services.pg.acquire() as conn:
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
            app.state.services = Services(settings=settings, redis=redis, pg=pg)
            yield
        finally:
            await redis.aclose()
            await pg.close()

    routes = [
        Route("/healthz", healthz),
        Route("/readyz", readyz),
        Route("/metrics", metrics_endpoint),
    ]
    return Starlette(
        routes=routes,
        lifespan=lifespan,
        exception_handlers={HTTPException: http_exception, Exception: unhandled_exception},
    )


def app_from_env() -> Starlette:
    """uvicorn factory for worker processes: settings come from the environment."""
    return create_app(Settings.from_env())
