"""The one Redis client of a process, chosen by `LIVE_REDIS_URL`: `redis://`, `rediss://` and
`unix://` give redis-py's asyncio `Redis`; `redis+cluster://host:port[,host:port...]` (and
`rediss+cluster://` for TLS) its asyncio `RedisCluster`, every listed node a startup node. The
service, the CLI and the tests all open Redis here, so every part runs on the same kind of
client: rooms, the gateway's pub/sub (sharded on a cluster), flash sales, inventory_lock.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from types import TracebackType
from typing import Any, TypeVar
from urllib.parse import urlsplit

import redis
import redis.asyncio as aioredis
from redis.asyncio.cluster import ClusterNode, ClusterPipeline, RedisCluster
from redis.exceptions import ConnectionError as RedisConnectionError

CLUSTER_SCHEMES = {"redis+cluster": "redis", "rediss+cluster": "rediss"}
MAX_CONNECTIONS = 512  # per node on a cluster
UNSENT_RESENDS = 2  # a single command the cluster client failed before sending it: sent again

RedisClient = aioredis.Redis | RedisCluster
_REDIS_PACKAGE = redis.__path__[0]
T = TypeVar("T")


def _raised_in_redis(traceback: TracebackType | None) -> bool:
    """Whether the innermost frame of `traceback` is redis-py's own code."""
    last = None
    while traceback is not None:
        last, traceback = traceback, traceback.tb_next
    return last is not None and last.tb_frame.f_code.co_filename.startswith(_REDIS_PACKAGE)


def _unsent(exc: AttributeError) -> bool:
    """Whether redis-py's last attempt at a command failed on a connection that another task had
    disconnected, before any byte of it was written (its writer gone: redis/redis-py#3815)."""
    return exc.name == "writelines" and exc.obj is None and _raised_in_redis(exc.__traceback__)


async def _connection_errors(call: Callable[[], Awaitable[T]], *, resend: int = 0) -> T:
    """`call()`, with an AttributeError raised inside redis-py re-raised as the ConnectionError it
    stands for: during a failover, or while a burst opens many connections at once, the cluster
    client can touch a connection or node that another task dropped meanwhile
    (redis/redis-py#3815, #3997), which would otherwise escape every `except RedisError` and
    answer 500 instead of 503. A command whose last attempt was not sent at all is sent again,
    up to `resend` times (redis-py reconnects the connection first). An earlier attempt of it may
    have reached Redis (redis-py retries timeouts itself), so only commands that may run twice
    (every write here is an idempotent script or a publish) go through a resending client."""
    resent = 0
    while True:
        try:
            return await call()
        except AttributeError as exc:
            if not _raised_in_redis(exc.__traceback__):
                raise
            if resent < resend and _unsent(exc):
                resent += 1
                continue
            raise RedisConnectionError(f"Redis Cluster connection lost: {exc}") from exc


class _Pipeline(ClusterPipeline):
    async def execute(self, raise_on_error: bool = True, allow_redirections: bool = True) -> Any:
        return await _connection_errors(
            lambda: super(_Pipeline, self).execute(raise_on_error, allow_redirections)
        )


class Cluster(RedisCluster):
    """redis-py's asyncio cluster client whose failover slips are ConnectionErrors."""

    async def execute_command(self, *args: Any, **kwargs: Any) -> Any:
        return await _connection_errors(
            lambda: super(Cluster, self).execute_command(*args, **kwargs), resend=UNSENT_RESENDS
        )

    def pipeline(self, transaction: Any | None = None, shard_hint: Any | None = None) -> _Pipeline:
        if shard_hint:  # refused by redis-py, with its own message
            super().pipeline(transaction, shard_hint)
        # redis-py builds its ClusterPipeline the same way (its stubs call the class abstract)
        return _Pipeline(self, transaction)  # type: ignore[abstract]


def is_cluster(url: str) -> bool:
    return url.partition("://")[0].lower() in CLUSTER_SCHEMES


def cluster_nodes(url: str) -> tuple[str, list[tuple[str, int]]]:
    """(`redis://` or `rediss://` URL of the first node with the same credentials and options,
    every node's (host, port)) of a `redis+cluster://` URL. ValueError when it names no node or
    a port is not a number."""
    parts = urlsplit(url)
    scheme = CLUSTER_SCHEMES.get(parts.scheme.lower())
    if scheme is None:
        raise ValueError(f"not a redis+cluster:// URL: {url!r}")
    credentials, _, hosts = parts.netloc.rpartition("@")
    nodes: list[tuple[str, int]] = []
    for item in hosts.split(","):
        host, _, port = item.strip().rpartition(":")
        if not host or not port.isdigit():
            raise ValueError(f"a cluster node must be host:port, not {item!r}")
        nodes.append((host.strip("[]"), int(port)))
    first = f"{scheme}://{credentials + '@' if credentials else ''}{nodes[0][0]}:{nodes[0][1]}"
    if parts.path not in ("", "/", "/0"):
        raise ValueError("a Redis Cluster has only database 0")
    return first + (f"?{parts.query}" if parts.query else ""), nodes


def open_redis(url: str, timeout_s: float, **options: Any) -> RedisClient:
    """A client of `url` whose every call is bounded by `timeout_s` (connecting included). On a
    plain Redis a burst waits for a free connection (up to the timeout) instead of failing;
    `options` go to the client (tests lower `max_connections`)."""
    options = {
        "socket_timeout": timeout_s,
        "socket_connect_timeout": timeout_s,
        "health_check_interval": 15,
        "max_connections": MAX_CONNECTIONS,
        **options,
    }
    if is_cluster(url):
        first, nodes = cluster_nodes(url)
        startup = [ClusterNode(host, port) for host, port in nodes[1:]]
        return Cluster.from_url(first, startup_nodes=startup, **options)
    pool = aioredis.BlockingConnectionPool.from_url(url, timeout=timeout_s, **options)
    return aioredis.Redis.from_pool(pool)
