"""The service under a fault: a redis-server of the test's own, the session's PostgreSQL in the
test's schema, and the app served in-process (or `live serve --workers 2` as a subprocess)."""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
from collections.abc import AsyncIterator, Callable, Coroutine
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
from chaos_checks import judge
from chaos_workload import Plan, Workload
from live_env import live_serve
from serve_kit import serve_app

from live.settings import Settings
from loadtest.faults import RedisServer

IO_TIMEOUT_S = 1.0


@dataclass(frozen=True)
class Chaos:
    """What a fault may act on."""

    settings: Settings
    redis: RedisServer
    pid: int | None = None  # the `live serve` supervisor, when the service is a subprocess
    port: int = 0  # the service's port


def chaos_settings(settings: Settings, redis: RedisServer) -> Settings:
    return dataclasses.replace(settings, redis_url=redis.url, io_timeout_s=IO_TIMEOUT_S)


@contextlib.asynccontextmanager
async def redis_server(tmp_path: Path) -> AsyncIterator[RedisServer]:
    server = RedisServer(tmp_path / "redis")
    await asyncio.to_thread(server.start)
    try:
        yield server
    finally:
        await asyncio.to_thread(server.stop, kill=True)


Fault = Callable[["Chaos", Workload], Coroutine[Any, Any, None]]


async def run_under_fault(
    settings: Settings, tmp_path: Path, plan: Plan, fault: Fault, *, workers: int = 0
) -> list[str]:
    """Open a sale, let the buyers storm it while `fault` strikes, settle, and judge: the
    problems found (empty if every invariant holds)."""
    async with redis_server(tmp_path) as redis:
        settings = chaos_settings(settings, redis)
        async with contextlib.AsyncExitStack() as stack:
            pid: int | None = None
            if workers:
                url, process = await stack.enter_async_context(live_serve(settings, workers))
                pid = process.pid
            else:
                url = (await stack.enter_async_context(serve_app(settings))).url
            limits = httpx.Limits(max_connections=64, max_keepalive_connections=64)
            client = await stack.enter_async_context(
                httpx.AsyncClient(base_url=url, timeout=15, limits=limits)
            )
            work = Workload(client, settings.jwt_secret, plan)
            await work.open_sale()
            chaos = Chaos(settings, redis, pid, int(url.rsplit(":", 1)[1]))
            await work.run(lambda w: fault(chaos, w))
            return await judge(work, settings)
