"""The Lua scripts of `lua/`, each loaded with `lua/_prelude.lua` in front and called by SHA.

redis-py's registered scripts (EVALSHA, SCRIPT LOAD on NOSCRIPT) serve single calls on both
`Redis` and `RedisCluster`; batches go through a non-transactional pipeline, which on a cluster
does not load scripts by itself, so `call_many` reloads and re-sends what NOSCRIPT refused.
"""

from __future__ import annotations

from collections.abc import Sequence
from functools import cache
from importlib.resources import files
from typing import Any, Literal, get_args

from redis.asyncio import Redis, RedisCluster
from redis.commands.core import AsyncScript
from redis.exceptions import NoScriptError
from redis.typing import EncodableT

Client = Redis | RedisCluster
ScriptName = Literal[
    "load",
    "reserve",
    "begin_confirm",
    "finish_confirm",
    "abort_confirm",
    "cancel",
    "expire_due",
    "close",
    "snapshot",
    "dump",
    "confirming",
    "fence",
    "adopt",
    "unfence",
    "adjust_stock",
    "settle_stock",
    "wait",
    "take_offers",
]
SCRIPT_NAMES: tuple[ScriptName, ...] = get_args(ScriptName)
Call = tuple[Sequence[str], Sequence[EncodableT]]


@cache
def source(name: ScriptName) -> str:
    folder = files(__package__) / "lua"
    return (folder / "_prelude.lua").read_text() + "\n" + (folder / f"{name}.lua").read_text()


class Scripts:
    """Every script registered on one client."""

    def __init__(self, client: Client) -> None:
        self._client = client
        self._scripts: dict[ScriptName, AsyncScript] = {
            name: client.register_script(source(name)) for name in SCRIPT_NAMES
        }

    async def call(self, name: ScriptName, keys: Sequence[str], args: Sequence[EncodableT]) -> Any:
        return await self._scripts[name](keys=keys, args=args)

    async def call_many(self, name: ScriptName, calls: Sequence[Call]) -> list[Any]:
        """One pipeline of EVALSHA; safe to re-send a refused call since it never ran."""
        script = self._scripts[name]
        replies = await self._pipeline(script.sha, calls)
        missing = [i for i, reply in enumerate(replies) if isinstance(reply, NoScriptError)]
        if missing:
            await self._client.script_load(script.script)
            for i, reply in zip(
                missing, await self._pipeline(script.sha, [calls[i] for i in missing]), strict=True
            ):
                replies[i] = reply
        for reply in replies:
            if isinstance(reply, Exception):
                raise reply
        return replies

    async def _pipeline(self, sha: str, calls: Sequence[Call]) -> list[Any]:
        pipe = self._client.pipeline(transaction=False)
        for keys, args in calls:
            # execute_command: a cluster pipeline blocks its evalsha() helper, not the command.
            pipe.execute_command("EVALSHA", sha, len(keys), *keys, *args)
        return await pipe.execute(raise_on_error=False)
