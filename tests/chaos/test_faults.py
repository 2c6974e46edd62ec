"""Each fault injector of loadtest.faults works on its own, on real servers."""

from __future__ import annotations

import asyncio
import os
import socket
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import asyncpg
import pytest
import redis

from loadtest.faults import RedisServer, SaleRowStall, cut_connections
from loadtest.processes import child_pids, established_connections, kill, worker_pids


@pytest.fixture
def redis_server(tmp_path: Path) -> Iterator[RedisServer]:
    with RedisServer(tmp_path / "redis") as server:
        yield server


def _client(server: RedisServer) -> redis.Redis:
    return redis.Redis.from_url(server.url, socket_timeout=5)


async def test_restart_after_sigkill_keeps_data_and_port(redis_server: RedisServer) -> None:
    port, pid = redis_server.port, redis_server.pid
    with _client(redis_server) as client:
        client.mset({f"k{n}": n for n in range(100)})
        await asyncio.to_thread(redis_server.restart, kill=True)
        assert (redis_server.port, redis_server.url.endswith(f":{port}/0")) == (port, True)
        assert redis_server.pid not in (None, pid)
        assert client.get("k99") == b"99" and client.dbsize() == 100


async def test_clean_stop_and_start_keep_data(redis_server: RedisServer) -> None:
    with _client(redis_server) as client:
        client.set("kept", "yes")
        await asyncio.to_thread(redis_server.stop)
        assert redis_server.pid is None
        await asyncio.to_thread(redis_server.start)
        assert client.get("kept") == b"yes"


async def test_rollback_goes_back_to_the_snapshot(redis_server: RedisServer) -> None:
    with _client(redis_server) as client:
        client.set("before", "1")
        client.incr("counter")
        snapshot = await asyncio.to_thread(redis_server.snapshot)
        client.set("after", "1")
        client.incr("counter")
        await asyncio.to_thread(redis_server.rollback, snapshot)
        assert client.get("before") == b"1"
        assert client.get("after") is None
        assert client.get("counter") == b"1"  # counters go back in time: ids get reissued
        # AOF is on again after a rollback: what is written now survives a SIGKILL.
        assert redis_server.info()["aof_enabled"] == 1
        client.set("later", "1")
        await asyncio.to_thread(redis_server.restart, kill=True)
        assert (client.get("before"), client.get("after"), client.get("later")) == (
            b"1",
            None,
            b"1",
        )


async def test_flush_empties_the_server(redis_server: RedisServer) -> None:
    with _client(redis_server) as client:
        client.mset({"a": 1, "b": 2})
        await asyncio.to_thread(redis_server.flush)
        assert client.dbsize() == 0


async def _sales_table(database_url: str, schema: str) -> asyncpg.Connection:
    conn = await asyncpg.connect(database_url, timeout=10)
    await conn.execute(f"CREATE TABLE {schema}.sales (id bigint PRIMARY KEY, sold int NOT NULL)")
    await conn.execute(f"INSERT INTO {schema}.sales VALUES (1, 0), (2, 0)")
    return conn


async def test_stall_blocks_updates_of_that_row_until_it_ends(
    database_url: str, db_schema: str
) -> None:
    conn = await _sales_table(database_url, db_schema)
    other = await asyncpg.connect(database_url, timeout=10)
    try:
        stall = SaleRowStall(database_url, db_schema, sale_id=1, seconds=1.5)
        await asyncio.to_thread(stall.start)
        started = time.monotonic()
        update = asyncio.create_task(
            conn.execute(f"UPDATE {db_schema}.sales SET sold = sold + 1 WHERE id = 1", timeout=20)
        )
        # Another sale's row is not locked.
        await other.execute(f"UPDATE {db_schema}.sales SET sold = 1 WHERE id = 2", timeout=5)
        done, _ = await asyncio.wait({update}, timeout=0.5)
        assert not done, "the UPDATE went through while the row was locked"
        await asyncio.to_thread(stall.join, 10)
        await asyncio.wait_for(update, 10)
        assert time.monotonic() - started >= 1.2
        assert await conn.fetchval(f"SELECT sold FROM {db_schema}.sales WHERE id = 1") == 1
    finally:
        await conn.close()
        await other.close()


async def test_stall_of_a_missing_sale_fails_at_start(database_url: str, db_schema: str) -> None:
    conn = await _sales_table(database_url, db_schema)
    await conn.close()
    stall = SaleRowStall(database_url, db_schema, sale_id=99, seconds=5)
    with pytest.raises(RuntimeError, match="sale 99"):
        await asyncio.to_thread(stall.start)


async def test_cut_connections_terminates_only_that_application(
    database_url: str, db_schema: str
) -> None:
    name = f"live/{db_schema}"
    target = await asyncpg.connect(
        database_url, timeout=10, server_settings={"application_name": name}
    )
    bystander = await asyncpg.connect(
        database_url, timeout=10, server_settings={"application_name": f"{name}-other"}
    )
    try:
        assert await asyncio.to_thread(cut_connections, database_url, name) == 1
        with pytest.raises(
            (asyncpg.PostgresError, asyncpg.InterfaceError, asyncpg.InternalClientError, OSError)
        ):
            await target.fetchval("SELECT 1", timeout=5)
        assert await bystander.fetchval("SELECT 1", timeout=5) == 1
        assert await asyncio.to_thread(cut_connections, database_url, name) == 0
    finally:
        target.terminate()
        await bystander.close()


def _alive(pid: int) -> bool:
    """Running, as opposed to gone or a zombie not yet reaped."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat[stat.rfind(")") + 2] != "Z"


def test_child_pids_finds_children_and_kill_ends_one() -> None:
    parent = subprocess.Popen(["sh", "-c", "sleep 60 & sleep 60 & wait"])
    try:
        deadline = time.monotonic() + 10
        while len(children := child_pids(parent.pid)) < 2:
            assert time.monotonic() < deadline, "the children never appeared"
            time.sleep(0.02)  # polling, bounded by the deadline
        assert len(children) == 2 and parent.pid not in children
        kill(children[0])
        deadline = time.monotonic() + 10
        while _alive(children[0]):
            assert time.monotonic() < deadline, "SIGKILL did not end the child"
            time.sleep(0.02)  # polling, bounded by the deadline
        assert _alive(children[1])
        kill(children[0])  # already gone: nothing happens
    finally:
        for pid in child_pids(parent.pid):
            kill(pid)
        parent.kill()
        parent.wait(10)


def test_worker_pids_and_established_connections() -> None:
    parent = subprocess.Popen(["sh", "-c", "sleep 60 & wait"])
    try:
        deadline = time.monotonic() + 10
        while not worker_pids(parent.pid):
            assert time.monotonic() < deadline, "the child never appeared"
            time.sleep(0.02)  # polling, bounded by the deadline
    finally:
        for pid in child_pids(parent.pid):
            kill(pid)
        parent.kill()
        parent.wait(10)
    with socket.create_server(("127.0.0.1", 0)) as server:
        port = server.getsockname()[1]
        assert established_connections(os.getpid(), port) == 0  # listening only
        with socket.create_connection(("127.0.0.1", port), timeout=5) as client:
            accepted, _ = server.accept()
            with accepted:
                assert established_connections(os.getpid(), port) == 1
                assert established_connections(os.getpid(), client.getsockname()[1]) == 1
