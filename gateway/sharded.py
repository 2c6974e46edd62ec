"""Sharded pub/sub on a Redis Cluster: rooms publish with SPUBLISH on a channel that carries the
room's hash tag, so a room's messages stay on the shard that holds its log, and this process
reads them with SSUBSCRIBE on one connection per shard that holds a room with a local viewer.

It runs on redis-py 8's asyncio `ClusterPubSub`: `ssubscribe` sends each channel to the primary
serving its slot and keeps one PubSub (one connection) per node; each node's connection is read
by a task of its own (`get_sharded_message(target_node=...)`), so a quiet shard never delays a
busy one. The reconnect loop, the channel set and the gap fill are `Subscriber`'s.

The topology changes under it in three ways, each ending in a gap fill from the room logs (the
log is the truth: pub/sub only says "something new"): the primary of a shard dies (its reader
fails: the whole subscription is rebuilt on a refreshed slots map once the replica took over);
a slot moves away (the server sends an `sunsubscribe` nobody asked for: rebuilt likewise);
redis-py moves a subscription by itself after refreshing its slots map (a shard's connection
comes or goes: the hubs fill what the move may have cost).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging

from redis.asyncio.cluster import ClusterPubSub, RedisCluster

from gateway.subscriber import Deliver, Reconnected, Subscriber

log = logging.getLogger("live.gateway")

WAIT_S = 1.0  # a shard reader's longest wait for a message, and the supervisor's for a change


class TopologyChanged(Exception):
    """A shard's subscription no longer reaches the node that serves it."""


class ShardedSubscriber(Subscriber):
    def __init__(self, client: RedisCluster, deliver: Deliver, reconnected: Reconnected) -> None:
        super().__init__(client, deliver, reconnected)
        self._cluster = client
        self._sharded: ClusterPubSub | None = None
        self._shards_changed = asyncio.Event()
        self._attempts = 0

    @property
    def shards(self) -> list[str]:
        """The nodes ("host:port") this process holds a shard subscription on."""
        return sorted(self._sharded.node_pubsub_mapping) if self._sharded else []

    async def subscribe(self, *channels: str) -> None:
        """A room's channels share its hash tag, so they go to one shard in one SSUBSCRIBE."""
        async with self._lock:
            self._channels.update(channels)
            if self._sharded is not None and self.connected.is_set():
                with contextlib.suppress(Exception):  # the reader resubscribes after a rebuild
                    await self._sharded.ssubscribe(*channels)
                self._shards_changed.set()

    async def unsubscribe(self, *channels: str) -> None:
        async with self._lock:
            self._channels.difference_update(channels)
            if self._sharded is not None and self.connected.is_set():
                with contextlib.suppress(Exception):
                    await self._sharded.sunsubscribe(*channels)

    async def _connect(self) -> None:
        async with self._lock:
            self._attempts += 1
            if self._attempts > 1:  # after a failover: ask the cluster who serves what now
                await self._cluster.nodes_manager.initialize()
            else:
                await self._cluster.initialize()  # the slots map ssubscribe routes by
            pubsub = self._cluster.pubsub()
            try:
                for channel in sorted(self._channels):  # one by one: their slots differ
                    await pubsub.ssubscribe(channel)
            except BaseException:
                with contextlib.suppress(Exception):
                    await pubsub.aclose()
                raise
            self._sharded = pubsub
            self.connected.set()

    async def _drop(self) -> None:
        self.connected.clear()
        pubsub, self._sharded = self._sharded, None
        if pubsub is not None:
            with contextlib.suppress(Exception):  # its nodes may be gone
                await pubsub.aclose()

    async def _read(self) -> None:
        """A reader per shard connection, started as connections appear; returns never, raises
        when a reader fails or a shard's subscription moved."""
        assert self._sharded is not None
        pubsub = self._sharded
        readers: dict[str, asyncio.Task[None]] = {}
        try:
            while True:
                nodes = set(pubsub.node_pubsub_mapping)
                gone = [name for name in readers if name not in nodes]
                for name in gone:
                    readers.pop(name).cancel()
                for name in nodes - readers.keys():
                    readers[name] = asyncio.create_task(
                        self._read_shard(pubsub, name), name=f"shard-reader-{name}"
                    )
                if gone:  # redis-py moved or dropped a shard's subscription
                    log.info("shard subscriptions changed (%s gone); filling gaps", gone)
                    self._report_reconnect()
                self._shards_changed.clear()
                changed = asyncio.create_task(self._shards_changed.wait())
                done, _ = await asyncio.wait(
                    {*readers.values(), changed}, timeout=WAIT_S, return_when="FIRST_COMPLETED"
                )
                changed.cancel()
                for task in done - {changed}:
                    task.result()  # a failed reader ends the subscription: it is rebuilt
        finally:
            for task in readers.values():
                task.cancel()
            await asyncio.gather(*readers.values(), return_exceptions=True)

    async def _read_shard(self, pubsub: ClusterPubSub, name: str) -> None:
        """Deliver one node's shard messages, while redis-py keeps a subscription there."""
        node = self._cluster.get_node(node_name=name)
        if node is None:
            raise TopologyChanged(f"node {name} left the cluster")
        while name in pubsub.node_pubsub_mapping:
            message = await pubsub.get_sharded_message(target_node=node, timeout=WAIT_S)
            if message is None:
                continue
            kind = message["type"]
            if kind == "smessage":
                self._take(message)
            elif kind == "sunsubscribe" and _text(message["channel"]) in self._channels:
                # Nobody asked: the node no longer serves that slot (a failover, a migration).
                raise TopologyChanged(f"{name} dropped {_text(message['channel'])}")


def _text(value: object) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)
