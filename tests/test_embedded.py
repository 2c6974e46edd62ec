import os
from pathlib import Path

import asyncpg
import pytest
import redis

from live.embedded import EmbeddedError, EmbeddedServers


async def _pg_rows(url: str) -> list[str]:
    conn = await asyncpg.connect(url, timeout=10)
    try:
        await conn.execute("CREATE TABLE IF NOT EXISTS kept (v text)")
        return [r["v"] for r in await conn.fetch("SELECT v FROM kept ORDER BY v")]
    finally:
        await conn.close()


async def _pg_insert(url: str, value: str) -> None:
    conn = await asyncpg.connect(url, timeout=10)
    try:
        await conn.execute("INSERT INTO kept VALUES ($1)", value)
    finally:
        await conn.close()


async def test_servers_stop_and_restart_keeping_their_data(tmp_path: Path) -> None:
    with EmbeddedServers(tmp_path, redis=True, postgres=True) as servers:
        assert servers.redis is not None and servers.postgres is not None
        assert servers.redis.url.startswith("redis://127.0.0.1:")
        assert servers.postgres.url.startswith("postgresql://postgres@127.0.0.1:")
        redis.Redis.from_url(servers.redis.url).set("kept", "yes")
        assert await _pg_rows(servers.postgres.url) == []
        await _pg_insert(servers.postgres.url, "row")
        redis_pid = int((tmp_path / "redis" / "redis.pid").read_text())
    assert not (tmp_path / "postgres" / "postmaster.pid").exists()
    with pytest.raises(ProcessLookupError):
        os.kill(redis_pid, 0)
    assert "appendonly yes" in (tmp_path / "redis" / "redis.conf").read_text()

    with EmbeddedServers(tmp_path, redis=True, postgres=True) as again:
        assert again.redis is not None and again.postgres is not None
        assert redis.Redis.from_url(again.redis.url).get("kept") == b"yes"
        assert await _pg_rows(again.postgres.url) == ["row"]


def test_second_owner_of_a_data_dir_is_refused(tmp_path: Path) -> None:
    with EmbeddedServers(tmp_path, redis=True, postgres=False):
        with pytest.raises(EmbeddedError, match="is in use by live serve"):
            with EmbeddedServers(tmp_path, redis=True, postgres=False):
                pass


def test_redis_listens_on_loopback_only(tmp_path: Path) -> None:
    with EmbeddedServers(tmp_path, redis=True, postgres=False) as servers:
        assert servers.redis is not None
        client = redis.Redis.from_url(servers.redis.url)
        assert client.config_get("bind")["bind"] == "127.0.0.1"
        assert client.config_get("appendonly")["appendonly"] == "yes"
        assert client.config_get("dir")["dir"] == str((tmp_path / "redis").resolve())
