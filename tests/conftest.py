"""Real Redis and PostgreSQL for every test: embedded by default, external through LIVE_TEST_*.
On a Redis Cluster: `LIVE_TEST_REDIS_CLUSTER=1` starts one of the session's own (3 primaries, 3
replicas: live/embedded_cluster.py), `LIVE_TEST_REDIS_URL=redis+cluster://host:port,...` names one.

A session starts (or is given) one Redis and one PostgreSQL. Each test works in its own Redis
key namespace and its own PostgreSQL schema, removed afterwards, so a shared server is never
flushed and tests never see each other's data.
"""

from __future__ import annotations

import os
import shutil
import tempfile
import uuid
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from pathlib import Path

import asyncpg
import pytest
from serve_kit import TEST_SECRET, Served, serve_app

from live.embedded import EmbeddedServers
from live.embedded_cluster import LocalCluster
from live.redis_client import RedisClient, is_cluster, open_redis
from live.settings import Settings


@dataclass(frozen=True)
class ServerUrls:
    redis: str
    database: str


@pytest.fixture(scope="session")
def server_urls() -> Iterator[ServerUrls]:
    redis_url = os.environ.get("LIVE_TEST_REDIS_URL", "")
    database_url = os.environ.get("LIVE_TEST_DATABASE_URL", "")
    own_cluster = not redis_url and os.environ.get("LIVE_TEST_REDIS_CLUSTER") == "1"
    if redis_url and database_url:
        yield ServerUrls(redis_url, database_url)
        return
    # Outside pytest's own temp root, which a concurrent pytest run may make unreadable to the
    # PostgreSQL system user (or remove).
    data_dir = Path(tempfile.mkdtemp(prefix="live-test-servers-"))
    cluster = LocalCluster(data_dir / "cluster", appendonly=False) if own_cluster else None
    try:
        if cluster is not None:
            cluster.start()
            redis_url = cluster.url
        with EmbeddedServers(data_dir, redis=not redis_url, postgres=not database_url) as servers:
            yield ServerUrls(
                redis_url or (servers.redis.url if servers.redis else ""),
                database_url or (servers.postgres.url if servers.postgres else ""),
            )
    finally:
        if cluster is not None:
            cluster.stop()
        shutil.rmtree(data_dir, ignore_errors=True)


@pytest.fixture(scope="session")
def redis_url(server_urls: ServerUrls) -> str:
    return server_urls.redis


@pytest.fixture(scope="session")
def database_url(server_urls: ServerUrls) -> str:
    return server_urls.database


@pytest.fixture(scope="session")
def on_cluster(redis_url: str) -> bool:
    """Whether the session's Redis is a Redis Cluster (LIVE_TEST_REDIS_URL=redis+cluster://...)."""
    return is_cluster(redis_url)


@pytest.fixture
async def namespace(redis_url: str) -> AsyncIterator[str]:
    """A key prefix of this test's own; every key under it is deleted afterwards (on a cluster,
    scanned on every primary)."""
    prefix = f"t{uuid.uuid4().hex[:12]}:"
    yield prefix
    client = open_redis(redis_url, 10)
    try:
        batch: list[bytes] = []
        async for key in client.scan_iter(match=f"{prefix}*", count=1000):
            batch.append(key)
            if len(batch) >= 500:
                await client.unlink(*batch)
                batch.clear()
        if batch:
            await client.unlink(*batch)
    finally:
        await client.aclose()


@pytest.fixture
async def redis(redis_url: str, namespace: str) -> AsyncIterator[RedisClient]:
    """A client of the session's Redis, of the kind the service makes (a RedisCluster on a
    cluster: live/redis_client.py)."""
    client = open_redis(redis_url, 10)
    yield client
    await client.aclose()


@pytest.fixture
async def db_schema(database_url: str) -> AsyncIterator[str]:
    """A PostgreSQL schema of this test's own, dropped afterwards."""
    schema = f"t_{uuid.uuid4().hex[:12]}"
    conn = await asyncpg.connect(database_url, timeout=10)
    try:
        await conn.execute(f"CREATE SCHEMA {schema}")
        yield schema
        await conn.execute(f"DROP SCHEMA {schema} CASCADE")
    finally:
        await conn.close()


@pytest.fixture
def settings(
    redis_url: str, database_url: str, namespace: str, db_schema: str, tmp_path: Path
) -> Settings:
    return Settings(
        redis_url=redis_url,
        database_url=database_url,
        database_schema=db_schema,
        redis_prefix=namespace,
        data_dir=tmp_path / "data",
        jwt_secret=TEST_SECRET,
        drain_s=0.0,  # a `live serve` a test stops with SIGTERM stops at once
    )


@pytest.fixture
async def served(settings: Settings) -> AsyncIterator[Served]:
    """The real app served by uvicorn on a loopback port in this event loop."""
    async with serve_app(settings) as running:
        yield running


@pytest.fixture
async def server(served: Served) -> str:
    """The URL of the real app (see `served`)."""
    return served.url
