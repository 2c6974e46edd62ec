"""The environment of a `live` command run as its own process (serve, reconcile, migrate) on a
test's Redis, PostgreSQL schema, key prefix, secret, data dir and webhook settings; and `live
serve` run that way."""

from __future__ import annotations

import asyncio
import contextlib
import os
import sys
import time
from collections.abc import AsyncIterator
from pathlib import Path

import httpx

from live.embedded import free_port
from live.settings import Settings

REPO = Path(__file__).resolve().parents[1]


def live_env(settings: Settings) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("LIVE_")}
    env.update(
        LIVE_REDIS_URL=settings.redis_url,
        LIVE_DATABASE_URL=settings.database_url,
        LIVE_DATABASE_SCHEMA=settings.database_schema,
        LIVE_REDIS_PREFIX=settings.redis_prefix,
        LIVE_JWT_SECRET=settings.jwt_secret,
        LIVE_TICK_MS=str(settings.tick_ms),
        LIVE_IO_TIMEOUT_S=str(settings.io_timeout_s),
        LIVE_DRAIN_S=str(settings.drain_s),
        LIVE_DATA_DIR=str(settings.data_dir),
        LIVE_LOG_LEVEL="warning",
        PYTHONPATH=str(REPO),
    )
    env.update(
        {
            f"LIVE_{name.upper()}": str(getattr(settings, name))
            for name in (
                "webhook_url",
                "webhook_secret",
                "webhook_timeout_s",
                "webhook_retry_s",
                "webhook_retry_max_s",
                "webhook_max_age_s",
                "webhook_poll_ms",
            )
        }
    )
    return env


@contextlib.asynccontextmanager
async def live_serve(
    settings: Settings, workers: int = 1
) -> AsyncIterator[tuple[str, asyncio.subprocess.Process]]:
    """`live serve --workers N` on the test's servers, until /readyz answers 200; yields its
    URL and process (the supervisor, or with one worker the server itself)."""
    port = free_port()
    env = live_env(settings) | {"LIVE_PORT": str(port), "LIVE_WORKERS": str(workers)}
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "live.cli",
        "serve",
        env=env,
        cwd=REPO,
        stdout=asyncio.subprocess.DEVNULL,
        stderr=asyncio.subprocess.DEVNULL,
    )
    url = f"http://127.0.0.1:{port}"
    try:
        async with httpx.AsyncClient(timeout=2) as client:
            deadline = time.monotonic() + 60
            while True:
                assert process.returncode is None, "live serve exited at start"
                with contextlib.suppress(httpx.HTTPError):
                    if (await client.get(f"{url}/readyz")).status_code == 200:
                        break
                assert time.monotonic() < deadline, "live serve never became ready"
                await asyncio.sleep(0.1)  # polling, bounded by the deadline
        yield url, process
    finally:
        if process.returncode is None:
            with contextlib.suppress(ProcessLookupError):
                process.terminate()
            try:
                await asyncio.wait_for(process.wait(), 30)
            except TimeoutError:
                process.kill()
                await process.wait()
