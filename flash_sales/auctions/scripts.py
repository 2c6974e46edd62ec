"""The Lua scripts of `lua/`, each loaded with `lua/_prelude.lua` in front and called by SHA
(redis-py reloads a script on NOSCRIPT, on a `Redis` and a `RedisCluster` alike)."""

from __future__ import annotations

from importlib import resources
from typing import Literal

from redis.commands.core import AsyncScript

from rooms.scripts import Client

ScriptName = Literal["open", "bid", "close", "peek", "fence", "restore"]


def load(client: Client, name: ScriptName) -> AsyncScript:
    folder = resources.files(__package__).joinpath("lua")
    prelude = folder.joinpath("_prelude.lua").read_text("utf-8")
    return client.register_script(
        prelude + "\n" + folder.joinpath(f"{name}.lua").read_text("utf-8")
    )
