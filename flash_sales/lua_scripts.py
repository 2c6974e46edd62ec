"""The Lua scripts of flash_sales' sale kinds (auctions, group deals): each is loaded as
`flash_sales/lua/_common.lua` (argument checks, the server's clock and run id), then its
package's `lua/_prelude.lua` (its keys and state), then `lua/<name>.lua`, and called by SHA
(redis-py reloads a script on NOSCRIPT, on a `Redis` and a `RedisCluster` alike)."""

from __future__ import annotations

from importlib import resources

from redis.commands.core import AsyncScript

from rooms.scripts import Client


def load(client: Client, package: str, name: str) -> AsyncScript:
    common = resources.files(__package__).joinpath("lua", "_common.lua").read_text("utf-8")
    folder = resources.files(package).joinpath("lua")
    prelude = folder.joinpath("_prelude.lua").read_text("utf-8")
    script = folder.joinpath(f"{name}.lua").read_text("utf-8")
    return client.register_script("\n".join((common, prelude, script)))
