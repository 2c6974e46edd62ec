"""Lua scripts of the rooms package, read from the files beside this module."""

from __future__ import annotations

from importlib import resources

import redis.asyncio as aioredis
from redis.commands.core import AsyncScript


def load(client: aioredis.Redis, name: str) -> AsyncScript:
    """Register `lua/<name>.lua`; redis-py calls it by SHA and reloads it on NOSCRIPT."""
    source = resources.files(__package__).joinpath("lua", f"{name}.lua").read_text("utf-8")
    return client.register_script(source)
