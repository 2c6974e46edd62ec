"""The rooms' pub/sub in one process, multiplexing every room that has a local viewer: one
connection on a plain Redis (`Subscriber`), one per shard on a Redis Cluster (`ShardedSubscriber`
in gateway/sharded.py: rooms publish with SPUBLISH there). `subscriber_for` picks by client.

When Redis drops, the subscriber reconnects by itself, subscribes again to every room and asks
each hub to fill what it missed from the room's log, so no critical event is lost. redis-py may
also reconnect the pub/sub connection on its own (its retries, resubscribing in its connect
callback); a callback of ours on that connection reports those reconnects too.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable

from redis.asyncio.client import PubSub
from redis.asyncio.cluster import RedisCluster
from redis.asyncio.connection import AbstractConnection

from rooms.scripts import Client

log = logging.getLogger("live.gateway")

Deliver = Callable[[str, bytes], None]  # (channel, event)
Reconnected = Callable[[], None]


class Subscriber:
    """Plain pub/sub (SUBSCRIBE) on one connection; the reconnect loop every subscriber shares:
    `run` connects, reads until the connection fails, drops it and connects again (with
    backoff), telling the hubs after every reconnect."""

    def __init__(self, client: Client, deliver: Deliver, reconnected: Reconnected) -> None:
        self._client = client
        self._deliver = deliver
        self._reconnected = reconnected
        self._channels: set[str] = set()
        self._pubsub: PubSub | None = None
        self._lock = asyncio.Lock()
        self._watched: AbstractConnection | None = None
        self.connected = asyncio.Event()
        self.reconnects = 0

    async def subscribe(self, *channels: str) -> None:
        """Subscribe a room's channels (its events and its direct messages) together."""
        async with self._lock:
            self._channels.update(channels)
            if self._pubsub is not None and self.connected.is_set():
                with contextlib.suppress(Exception):  # the reader resubscribes after a reconnect
                    await self._pubsub.subscribe(*channels)

    async def unsubscribe(self, *channels: str) -> None:
        async with self._lock:
            self._channels.difference_update(channels)
            if self._pubsub is not None and self.connected.is_set():
                with contextlib.suppress(Exception):
                    await self._pubsub.unsubscribe(*channels)

    async def run(self) -> None:
        """Hold the subscription until cancelled (the service's background task group runs
        this): reconnect with backoff whenever the connection is lost, and close it at the end."""
        backoff = 0.05
        first = True
        try:
            while True:
                try:
                    await self._connect()
                    if not first:
                        self._report_reconnect()
                    first = False
                    backoff = 0.05
                    await self._read()
                except Exception as exc:
                    log.warning("pub/sub connection lost (%s); reconnecting", exc)
                await self._drop()
                await asyncio.sleep(backoff)
                backoff = min(backoff * 2, 2.0)
        finally:
            await self._drop()

    async def _drop(self) -> None:
        """Forget the connection (after a failure, or at the end)."""
        self.connected.clear()
        self._unwatch()
        pubsub, self._pubsub = self._pubsub, None
        if pubsub is not None:
            with contextlib.suppress(Exception):  # it is gone either way
                await pubsub.aclose()  # type: ignore[no-untyped-call]

    async def _connect(self) -> None:
        async with self._lock:
            pubsub = self._client.pubsub(ignore_subscribe_messages=True)
            await pubsub.ping()
            if self._channels:
                await pubsub.subscribe(*self._channels)
            self._pubsub = pubsub
            self._watch(pubsub)
            self.connected.set()

    def _watch(self, pubsub: PubSub) -> None:
        connection = pubsub.connection
        if connection is not None:
            connection.register_connect_callback(self._connection_made)
            self._watched = connection

    def _unwatch(self) -> None:
        if self._watched is not None:
            self._watched.deregister_connect_callback(self._connection_made)  # type: ignore[no-untyped-call]
            self._watched = None

    def _connection_made(self, connection: AbstractConnection) -> None:
        """redis-py reconnected the pub/sub connection (and resubscribed) by itself."""
        asyncio.get_running_loop().call_soon(self._report_reconnect)

    def _report_reconnect(self) -> None:
        self.reconnects += 1
        log.info("pub/sub reconnected; filling gaps from the room logs")
        self._reconnected()

    async def _read(self) -> None:
        assert self._pubsub is not None
        pubsub = self._pubsub
        while True:
            message = await pubsub.get_message(timeout=1.0)
            if message is None:
                continue
            if message["type"] == "message":
                self._take(message)

    def _take(self, message: dict[str, object]) -> None:
        channel, data = message["channel"], message["data"]
        name = channel.decode() if isinstance(channel, bytes) else str(channel)
        self._deliver(name, data if isinstance(data, bytes) else str(data).encode())


def subscriber_for(client: Client, deliver: Deliver, reconnected: Reconnected) -> Subscriber:
    """Sharded pub/sub on a cluster (where rooms SPUBLISH), plain pub/sub on a plain Redis."""
    if isinstance(client, RedisCluster):
        from gateway.sharded import ShardedSubscriber

        return ShardedSubscriber(client, deliver, reconnected)
    return Subscriber(client, deliver, reconnected)
