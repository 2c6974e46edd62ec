"""Lua scripts of the rooms package, read from the files beside this module, and the Redis client
they run on: a plain `Redis` or a `RedisCluster` (every key a script touches carries its room's
hash tag, so each call stays on one slot)."""

from __future__ import annotations

from importlib import resources

import redis.asyncio as aioredis
from redis.asyncio.cluster import RedisCluster
from redis.commands.core import AsyncScript

Client = aioredis.Redis | RedisCluster


def load(client: Client, name: str) -> AsyncScript:
    """Register `lua/<name>.lua`; redis-py calls it by SHA and reloads it on NOSCRIPT."""
    source = resources.files(__package__).joinpath("lua", f"{name}.lua").read_text("utf-8")
    return client.register_script(source)


def sharded(client: Client) -> bool:
    """Whether room traffic uses sharded pub/sub (SPUBLISH/SSUBSCRIBE): on a cluster, so that a
    room's messages stay on its shard; a plain Redis keeps plain PUBLISH/SUBSCRIBE."""
    return isinstance(client, RedisCluster)
