"""The asyncpg pool of the service, bound to its schema, with timeouts on every call."""

from __future__ import annotations

import asyncpg

from live.settings import Settings


def application_name(settings: Settings) -> str:
    """How the service's connections show in pg_stat_activity (operators and fault tests find
    them by it): `live/<schema>`."""
    return f"live/{settings.database_schema}"[:63]


async def ensure_schema(settings: Settings) -> None:
    """Create the configured schema if it is missing (migrations then fill it)."""
    if settings.database_schema == "public":
        return
    conn = await asyncpg.connect(settings.database_url, timeout=settings.io_timeout_s)
    try:
        await conn.execute(f'CREATE SCHEMA IF NOT EXISTS "{settings.database_schema}"')
    finally:
        await conn.close(timeout=settings.io_timeout_s)


async def connect(settings: Settings) -> asyncpg.Connection:
    """One connection on the service's schema (CLI commands, migrations)."""
    return await asyncpg.connect(
        settings.database_url,
        timeout=settings.io_timeout_s,
        command_timeout=settings.io_timeout_s * 6,
        server_settings={"search_path": settings.database_schema},
    )


async def create_pool(settings: Settings) -> asyncpg.Pool:
    pool = await asyncpg.create_pool(
        settings.database_url,
        min_size=1,
        max_size=settings.db_pool_size,
        timeout=settings.io_timeout_s,
        command_timeout=settings.io_timeout_s,
        server_settings={
            "search_path": settings.database_schema,
            "application_name": application_name(settings),
        },
    )
    assert pool is not None
    return pool
