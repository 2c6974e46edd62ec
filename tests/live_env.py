"""The environment of a `live` command run as its own process (serve, reconcile, migrate) on a
test's Redis, PostgreSQL schema, key prefix, secret and data dir."""

from __future__ import annotations

import os
from pathlib import Path

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
        LIVE_DATA_DIR=str(settings.data_dir),
        LIVE_LOG_LEVEL="warning",
        PYTHONPATH=str(REPO),
    )
    return env
