"""The Lua scripts of `lua/`, loaded as flash_sales/lua_scripts.py says."""

from __future__ import annotations

from typing import Literal

from redis.commands.core import AsyncScript

from flash_sales import lua_scripts
from rooms.scripts import Client

ScriptName = Literal["open", "bid", "close", "peek", "fence", "restore"]


def load(client: Client, name: ScriptName) -> AsyncScript:
    return lua_scripts.load(client, __package__, name)
