"""Numbered SQL migrations, applied in order under an advisory lock and recorded in a table.

Each `NNNN_name.sql` file beside this module runs in its own transaction together with the row
that records it, so a crash leaves either both or neither. Several processes starting at once
serialize on a PostgreSQL advisory lock keyed by the schema; the losers find nothing left to do.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from importlib import resources
from typing import TypeAlias

import asyncpg
from asyncpg.pool import PoolConnectionProxy

Conn: TypeAlias = "asyncpg.Connection[asyncpg.Record] | PoolConnectionProxy[asyncpg.Record]"

_FILE = re.compile(r"^(\d{4})_([a-z0-9_]+)\.sql$")
_LOCK_NAMESPACE = "live.migrations"


@dataclass(frozen=True)
class Migration:
    version: int
    name: str
    sql: str


def available() -> list[Migration]:
    found = []
    for entry in resources.files(__package__).iterdir():
        match = _FILE.match(entry.name)
        if match:
            found.append(Migration(int(match[1]), match[2], entry.read_text(encoding="utf-8")))
    return sorted(found, key=lambda m: m.version)


def latest_version() -> int:
    return available()[-1].version


async def applied_version(conn: Conn) -> int:
    """The highest version recorded, 0 if none (or no version table yet)."""
    exists = await conn.fetchval("SELECT to_regclass('schema_migrations') IS NOT NULL")
    if not exists:
        return 0
    version = await conn.fetchval("SELECT coalesce(max(version), 0) FROM schema_migrations")
    return int(version)


async def migrate(conn: Conn) -> list[Migration]:
    """Apply every pending migration to the connection's current schema; return those applied."""
    schema = await conn.fetchval("SELECT current_schema()")
    if schema is None:
        raise RuntimeError("no current schema: create it or fix LIVE_DATABASE_SCHEMA")
    await conn.execute(
        "SELECT pg_advisory_lock(hashtext($1), hashtext($2))", _LOCK_NAMESPACE, schema
    )
    try:
        await conn.execute(
            """CREATE TABLE IF NOT EXISTS schema_migrations (
                   version    integer PRIMARY KEY,
                   name       text NOT NULL,
                   applied_at timestamptz NOT NULL DEFAULT now())"""
        )
        done = await applied_version(conn)
        applied = []
        for migration in available():
            if migration.version <= done:
                continue
            async with conn.transaction():
                await conn.execute(migration.sql)
                await conn.execute(
                    "INSERT INTO schema_migrations (version, name) VALUES ($1, $2)",
                    migration.version,
                    migration.name,
                )
            applied.append(migration)
        return applied
    finally:
        await conn.execute(
            "SELECT pg_advisory_unlock(hashtext($1), hashtext($2))", _LOCK_NAMESPACE, schema
        )
