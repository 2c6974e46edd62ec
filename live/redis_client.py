"""The one Redis client of a process, chosen by `LIVE_REDIS_URL`: `redis://`, `rediss://` and
`unix://` give redis-py's asyncio `Redis`; `redis+cluster://host:port[,host:port...]` (and
`rediss+cluster://` for TLS) its asyncio `RedisCluster`, every listed node a startup node. The
service, the CLI and the tests all open Redis here, so every part runs on the same kind of
client: rooms, the gateway's pub/sub (sharded on a cluster), flash sales, inventory_lock.
"""

from __future__ import annotations

import asyncio
import linecache
from collections.abc import Awaitable, Callable
from types import TracebackType
from typing import Any, TypeVar
from urllib.parse import urlsplit

import redis
import redis.asyncio as aioredis
from redis.asyncio.client import Pipeline
from redis.asyncio.cluster import ClusterNode, ClusterPipeline, RedisCluster
from redis.exceptions import ConnectionError as RedisConnectionError

CLUSTER_SCHEMES = {"redis+cluster": "redis", "rediss+cluster": "rediss"}
MAX_CONNECTIONS = 512  # per node on a cluster
UNSENT_RESENDS = 2  # a single command redis-py failed before sending it: sent again

RedisClient = aioredis.Redis | RedisCluster
_REDIS_PACKAGE = redis.__path__[0]
_ASYNCIO_PACKAGE = asyncio.__path__[0]
T = TypeVar("T")


def _frames(traceback: TracebackType | None) -> list[TracebackType]:
    frames = []
    while traceback is not None:
        frames.append(traceback)
        traceback = traceback.tb_next
    return frames


def _in(frame: TracebackType, package: str) -> bool:
    return frame.tb_frame.f_code.co_filename.startswith(package)


def _slipped(exc: Exception) -> bool:
    """Whether `exc` (an AttributeError or TypeError) is redis-py's or asyncio's transport's,
    under a call of redis-py: their own code touching a connection that another task or the
    peer closed, not a bug of ours."""
    frames = _frames(exc.__traceback__)
    return (
        bool(frames)
        and any(_in(f, _REDIS_PACKAGE) for f in frames)
        and (_in(frames[-1], _REDIS_PACKAGE) or _in(frames[-1], _ASYNCIO_PACKAGE))
    )


def _unsent(exc: Exception) -> bool:
    """Whether redis-py's last attempt at a command failed where it hands the command to the
    socket, on a connection already gone (its writer None, redis/redis-py#3815, or its transport
    torn down by the peer's close, #4287): nothing of it was written, and redis-py dropped that
    connection, so the next attempt connects afresh."""
    inner = [f for f in _frames(exc.__traceback__) if _in(f, _REDIS_PACKAGE)]
    if not inner:
        return False
    code = inner[-1].tb_frame.f_code
    return "writelines" in linecache.getline(code.co_filename, inner[-1].tb_lineno)


async def _connection_errors(call: Callable[[], Awaitable[T]], *, resend: int = 0) -> T:
    """`call()`, with an AttributeError or TypeError that redis-py or asyncio's transport raised
    under it re-raised as the ConnectionError it stands for: during a failover, after the peer
    closed a pooled connection, or while a burst opens many connections at once, redis-py can
    touch a connection or node that is gone (redis/redis-py#3815, #3997, #4287), which would
    otherwise escape every `except RedisError` and answer 500 instead of 503. A command whose
    last attempt was not sent at all is sent again, up to `resend` times. An earlier attempt of
    it may have reached Redis (redis-py retries timeouts itself), so only commands that may run
    twice (every write here is an idempotent script or a publish) go through a resending client."""
    resent = 0
    while True:
        try:
            return await call()
        except (AttributeError, TypeError) as exc:
            if not _slipped(exc):
                raise
            if resent < resend and _unsent(exc):
                resent += 1
                continue
            raise RedisConnectionError(f"Redis connection lost: {exc!r}") from exc


class _Pipeline(ClusterPipeline):
    async def execute(self, raise_on_error: bool = True, allow_redirections: bool = True) -> Any:
        return await _connection_errors(
            lambda: super(_Pipeline, self).execute(raise_on_error, allow_redirections)
        )


class Cluster(RedisCluster):
    """redis-py's asyncio cluster client whose slips (a failover, a closed connection) are
    ConnectionErrors."""

    async def execute_command(self, *args: Any, **kwargs: Any) -> Any:
        return await _connection_errors(
            lambda: super(Cluster, self).execute_command(*args, **kwargs), resend=UNSENT_RESENDS
        )

    def pipeline(self, transaction: Any | None = None, shard_hint: Any | None = None) -> _Pipeline:
        if shard_hint:  # refused by redis-py, with its own message
            super().pipeline(transaction, shard_hint)
        # redis-py builds its ClusterPipeline the same way (its stubs call the class abstract)
        return _Pipeline(self, transaction)  # type: ignore[abstract]


class _PlainPipeline(Pipeline):
    async def execute(self, raise_on_error: bool = True) -> Any:
        return await _connection_errors(lambda: super(_PlainPipeline, self).execute(raise_on_error))


class Plain(aioredis.Redis):
    """redis-py's asyncio client whose slips on a closed connection are ConnectionErrors."""

    def pipeline(self, transaction: bool = True, shard_hint: str | None = None) -> _PlainPipeline:
        # as redis-py builds its Pipeline
        return _PlainPipeline(
            self.connection_pool, self.response_callbacks, transaction, shard_hint
        )

    async def execute_command(self, *args: Any, **options: Any) -> Any:
        send = super().execute_command  # untyped in redis-py
        return await _connection_errors(
            lambda: send(*args, **options),  # type: ignore[no-untyped-call]
            resend=UNSENT_RESENDS,
        )


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
    return Plain.from_pool(pool)
