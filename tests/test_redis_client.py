"""The Redis client a URL selects: a RedisCluster for redis+cluster:// (every listed node a
startup node, the credentials and options kept), a plain Redis otherwise."""

from __future__ import annotations

import asyncio
import socket
import struct
import sys

import pytest
import redis.asyncio as aioredis
from redis.asyncio.cluster import ClusterNode, RedisCluster
from redis.exceptions import ConnectionError as RedisConnectionError

from live.redis_client import (
    Cluster,
    Plain,
    _connection_errors,
    _Pipeline,
    _PlainPipeline,
    cluster_nodes,
    is_cluster,
    open_redis,
)


def test_a_cluster_url_names_every_startup_node() -> None:
    first, nodes = cluster_nodes(
        "rediss+cluster://u:pw@a:7000,[::1]:7001, b:7002/0?ssl_cert_reqs=none"
    )
    assert first == "rediss://u:pw@a:7000?ssl_cert_reqs=none"
    assert nodes == [("a", 7000), ("::1", 7001), ("b", 7002)]
    assert is_cluster("REDIS+CLUSTER://a:1") and not is_cluster("redis://a:1/0")


async def test_the_scheme_chooses_the_client() -> None:
    cluster = open_redis("redis+cluster://127.0.0.1:7000,127.0.0.1:7001", 1.0)
    plain = open_redis("redis://127.0.0.1:6379/0", 1.0)
    try:
        assert isinstance(cluster, RedisCluster)
        assert isinstance(plain, Plain) and isinstance(plain.pipeline(), _PlainPipeline)
        pipeline = plain.pipeline()
        pipeline.ping()
        assert await pipeline.execute() == [True]
    finally:
        await cluster.aclose()
        await plain.aclose()


async def test_a_slip_inside_the_cluster_client_is_a_connection_error() -> None:
    """During a failover redis-py's cluster client can raise AttributeError from its own code
    (redis/redis-py#3815, #3997): it must reach the service as the ConnectionError it stands for
    (a 503), while an AttributeError of ours stays what it is."""

    async def redis_slips() -> str:
        return ClusterNode.__repr__(None)  # type: ignore[arg-type]  # AttributeError in redis-py

    async def we_slip() -> str:
        return str(None.name)  # type: ignore[attr-defined]

    with pytest.raises(RedisConnectionError, match="connection lost"):
        await _connection_errors(redis_slips)
    with pytest.raises(AttributeError):
        await _connection_errors(we_slip)
    cluster = open_redis("redis+cluster://127.0.0.1:7000", 1.0)
    try:
        assert isinstance(cluster, Cluster)
        assert isinstance(cluster.pipeline(transaction=False), _Pipeline)
    finally:
        await cluster.aclose()


async def test_a_command_the_cluster_client_never_sent_is_sent_again() -> None:
    """A burst of first connections can leave a command on a connection another task has just
    disconnected, before a byte of it is written (redis/redis-py#3815): such a command is sent
    again (`resend` times), any other slip is a ConnectionError at once."""
    calls: list[str] = []

    async def unsent_once() -> str:
        calls.append("call")
        if len(calls) == 1:  # redis-py's own write on a connection with no writer
            await aioredis.Connection()._send_packed_command([b"PING\r\n"])
        return "PONG"

    async def unsent_always() -> str:
        calls.append("call")
        await aioredis.Connection()._send_packed_command([b"PING\r\n"])
        return "PONG"

    assert await _connection_errors(unsent_once, resend=2) == "PONG"
    assert len(calls) == 2
    calls.clear()
    with pytest.raises(RedisConnectionError, match="connection lost"):
        await _connection_errors(unsent_always, resend=2)
    assert len(calls) == 3
    calls.clear()
    with pytest.raises(RedisConnectionError):
        await _connection_errors(unsent_once)  # a pipeline's part may have been sent: no resend
    assert len(calls) == 1


async def test_a_write_on_a_connection_the_peer_reset_is_sent_again() -> None:
    """On CPython 3.12 to 3.13.9 and 3.14.0, asyncio's transport of a connection the peer reset
    raises a TypeError or AttributeError on the next write instead of an OSError
    (redis/redis-py#4287): a command redis-py so failed to send is sent again (elsewhere the
    OSError is redis-py's ConnectionError): never a 500."""

    async def reset(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        sock = writer.get_extra_info("socket")
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        writer.transport.abort()  # closed with no linger: an RST

    server = await asyncio.start_server(reset, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    try:
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        with pytest.raises(ConnectionResetError):
            await reader.read()
        for _ in range(1000):  # bounded: connection_lost comes a loop turn or two later
            if writer.transport.is_closing() and writer.transport.get_extra_info("socket") is None:
                break
            await asyncio.sleep(0)
        connection = aioredis.Connection(health_check_interval=0)
        connection._reader, connection._writer = reader, writer
        calls: list[str] = []

        async def write_then_answer() -> str:
            calls.append("call")
            if len(calls) == 1:
                await connection.send_packed_command([b"PING\r\n"])
            return "PONG"

        try:
            answer = await _connection_errors(write_then_answer, resend=1)
        except RedisConnectionError:
            answer = "ConnectionError"  # redis-py's own, from an OSError of the transport
        version = sys.version_info[:3]
        slips = (3, 12) <= version < (3, 13, 10) or version == (3, 14, 0)  # python/cpython#136234
        assert answer == "PONG" if slips else answer == "ConnectionError"
        writer.close()
    finally:
        server.close()
        await server.wait_closed()
