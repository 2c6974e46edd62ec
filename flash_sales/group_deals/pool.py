"""`GroupPool`: the live side of group deals in Redis, one atomic Lua call per change (lua/),
each timed by the Redis server's clock and replay-safe: open, join (and start), leave, settle a
full group as PostgreSQL decided it, fail the groups whose window closed, close, peek, and the
fence and restore of a rebuild from PostgreSQL (rebuild.py).

A pool takes changes only under the Redis run id it was opened or rebuilt under: after a
restart, a restored snapshot or a failover it is `stale` until rebuilt."""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from flash_sales.group_deals.keys import GroupKeys
from flash_sales.group_deals.model import Group, GroupState
from flash_sales.group_deals.scripts import NAMES, ScriptName, load
from rooms.scripts import Client

CLOSED_KEYS_TTL_MS = 600_000
EXPIRE_BATCH = 100


@dataclass(frozen=True)
class Answer:
    """What a script answered. `code`: what it did or why not (see each script); `group` when
    the call named one that exists."""

    code: str
    epoch: str = ""
    remaining: int = 0
    size: int = 0
    group: Group | None = None


@dataclass(frozen=True)
class Figures:
    """A peek: the pool's state (`open`, `closed`) and status (`ok`, `stale`, `fenced`)."""

    state: str
    status: str
    epoch: str
    stock: int
    remaining: int
    held: int
    filling: int
    sold: int
    size: int
    limit: int
    window_ms: int
    groups: tuple[Group, ...]
    filling_ids: tuple[int, ...]


class GroupPool:
    def __init__(self, client: Client, prefix: str) -> None:
        self.client = client
        self.prefix = prefix
        self._scripts = {name: load(client, name) for name in NAMES}

    def keys(self, sale_id: int) -> GroupKeys:
        return GroupKeys.of(self.prefix, sale_id)

    async def _call(self, name: ScriptName, sale_id: int, args: Sequence[str | int]) -> Any:
        raw = await self._scripts[name](keys=self.keys(sale_id).all, args=list(args))
        return json.loads(raw)

    async def open(
        self, sale_id: int, stock: int, size: int, window_ms: int, limit: int, epoch: str, sold: int
    ) -> Answer:
        reply = await self._call("open", sale_id, [stock, size, window_ms, limit, epoch, sold])
        return _answer(sale_id, reply)

    async def join(self, sale_id: int, group_id: int, buyer: str, *, start: bool) -> Answer:
        reply = await self._call("join", sale_id, [group_id, buyer, "1" if start else "0"])
        return _answer(sale_id, reply)

    async def leave(self, sale_id: int, group_id: int, buyer: str) -> Answer:
        return _answer(sale_id, await self._call("leave", sale_id, [group_id, buyer]))

    async def settle(self, sale_id: int, group_id: int, outcome: GroupState) -> Answer:
        reply = await self._call("settle", sale_id, [group_id, outcome.value])
        return _answer(sale_id, reply)

    async def expire_due(
        self, sale_id: int, most: int = EXPIRE_BATCH
    ) -> tuple[str, list[tuple[int, tuple[str, ...]]]]:
        """The pool's status code (`ok`, `unknown`, `stale`, `fenced`) and the groups it failed
        (id, members)."""
        reply = await self._call("expire_due", sale_id, [most])
        return reply["code"], _failed(reply)

    async def close(
        self, sale_id: int, grace_ms: int = CLOSED_KEYS_TTL_MS
    ) -> tuple[str, list[tuple[int, tuple[str, ...]]]]:
        reply = await self._call("close", sale_id, [grace_ms])
        return reply["code"], _failed(reply)

    async def peek(self, sale_id: int, group_ids: Sequence[int] | None = None) -> Figures | None:
        """The pool's figures and the named groups (None: the forming and filling ones); None
        when the pool is not in Redis."""
        args: list[str | int] = ["*"] if group_ids is None else list(group_ids)
        reply = await self._call("peek", sale_id, args)
        if reply["code"] == "unknown":
            return None
        groups = tuple(
            _group(sale_id, int(gid), json.loads(raw), int(reply["size"]))
            for gid, raw in reply.get("groups") or []
        )
        return Figures(
            state=reply["code"],
            status=reply["pool"],
            epoch=reply["epoch"],
            stock=int(reply["stock"]),
            remaining=int(reply["remaining"]),
            held=int(reply["held"]),
            filling=int(reply["filling"]),
            sold=int(reply["sold"]),
            size=int(reply["size"]),
            limit=int(reply["limit"]),
            window_ms=int(reply["window"]),
            groups=groups,
            filling_ids=tuple(int(g) for g in reply.get("filling_ids") or []),
        )

    async def group(self, sale_id: int, group_id: int) -> tuple[Figures | None, Group | None]:
        figures = await self.peek(sale_id, [group_id])
        if figures is None or not figures.groups:
            return figures, None
        return figures, figures.groups[0]

    async def fence(self, sale_id: int, token: str, lease_ms: int) -> str:
        """`fenced`, `busy` (another rebuild's) or `ok` (up to date: nothing to do)."""
        reply = await self._call("fence", sale_id, [token, lease_ms])
        return str(reply["code"])

    async def holds_fence(self, sale_id: int, token: str) -> bool:
        raw = await self.client.hmget(self.keys(sale_id).state, ["fence"])
        fence = raw[0]
        if isinstance(fence, bytes):
            fence = fence.decode()
        return isinstance(fence, str) and fence.endswith(":" + token)

    async def restore(
        self,
        sale_id: int,
        token: str,
        state: Mapping[str, str],
        buyers: Mapping[str, int],
        groups: Sequence[Group],
    ) -> str:
        """`restored`, or `lost` (the fence is no longer this rebuild's)."""
        args: list[str | int] = [token, json.dumps(dict(state)), json.dumps(dict(buyers) or {})]
        for g in groups:
            record = {
                "state": g.state.value,
                "members": list(g.members),
                "closes_at": g.closes_at_ms,
                "starter": g.starter,
            }
            args += [g.id, json.dumps(record)]
        reply = await self._call("restore", sale_id, args)
        return str(reply["code"])


def _group(sale_id: int, group_id: int, record: Mapping[str, Any], size: int) -> Group:
    members = record.get("members") or []  # cjson writes an empty list as {}
    return Group(
        id=group_id,
        sale_id=sale_id,
        size=size,
        state=GroupState(record["state"]),
        members=tuple(str(m) for m in members),
        closes_at_ms=int(record["closes_at"]),
        starter=str(record.get("starter", "")),
    )


def _answer(sale_id: int, reply: Mapping[str, Any]) -> Answer:
    group = None
    if reply.get("group") is not None and reply.get("state"):
        group = _group(sale_id, int(reply["group"]), reply, int(reply.get("size") or 0))
    return Answer(
        code=str(reply["code"]),
        epoch=str(reply.get("epoch") or ""),
        remaining=int(reply.get("remaining") or 0),
        size=int(reply.get("size") or 0),
        group=group,
    )


def _failed(reply: Mapping[str, Any]) -> list[tuple[int, tuple[str, ...]]]:
    return [
        (int(entry[0]), tuple(str(m) for m in entry[1:])) for entry in reply.get("failed") or []
    ]
