"""Fixtures of the inventory_lock tests: a private 3-node Redis Cluster, a client that is
either the session's plain Redis or that cluster, and servers a test starts, restarts and kills.

The cluster is live's local cluster (live/embedded_cluster.py: the embedded Redis's
`valkey-server` on free loopback ports, data in a temporary directory), stopped at the end of
the session. When the session itself runs on a Redis Cluster (LIVE_TEST_REDIS_URL=
redis+cluster://...), that cluster is the one, and there is no plain backend to test.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path

import pytest
from lock_helpers import open_client
from own_redis import OwnRedis

from inventory_lock import InventoryLock
from inventory_lock.scripts import Client
from live.embedded import EmbeddedRedis
from live.embedded_cluster import LocalCluster
from live.redis_client import is_cluster


def _redis_server() -> Path:
    return EmbeddedRedis.binary()  # the embedded Redis's own valkey-server


@pytest.fixture(scope="session")
def cluster_url(redis_url: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A Redis Cluster's `redis+cluster://` URL: the session's, or 3 primaries of our own."""
    if is_cluster(redis_url):
        yield redis_url
        return
    cluster = LocalCluster(tmp_path_factory.mktemp("cluster"), replicas=0, appendonly=False)
    try:
        cluster.start()
        yield cluster.url
    finally:
        cluster.stop()


@pytest.fixture(params=["plain", "cluster"])
def backend(request: pytest.FixtureRequest) -> tuple[str, str]:
    """(kind, url) of the Redis a test runs against."""
    if request.param == "cluster":
        return "cluster", request.getfixturevalue("cluster_url")
    if request.getfixturevalue("on_cluster"):
        pytest.skip("the session runs on a Redis Cluster: no plain Redis to test")
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
