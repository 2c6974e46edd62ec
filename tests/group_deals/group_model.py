"""A pure Python model of the group pool's Lua scripts (flash_sales/group_deals/lua/), for the
state-machine test: the same codes, the same counters, the same groups and buyers' places.

Time is reduced to what the tests do with it: a group's window is far in the future until a
step closes it (`close_window`), so a group is due or not, never in between."""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass
class ModelGroup:
    state: str
    members: list[str]
    starter: str
    due: bool = False  # its window has closed


@dataclass
class ModelPool:
    stock: int
    size: int
    limit: int
    remaining: int = 0
    held: int = 0
    filling: int = 0
    sold: int = 0
    open: bool = True
    groups: dict[int, ModelGroup] = field(default_factory=dict)
    buyers: dict[str, int] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.remaining = self.stock - self.sold

    def _buyer(self, buyer: str, n: int) -> None:
        left = self.buyers.get(buyer, 0) + n
        if left <= 0:
            self.buyers.pop(buyer, None)
        else:
            self.buyers[buyer] = left

    def _fail_forming(self, g: ModelGroup) -> None:
        for m in g.members:
            self._buyer(m, -1)
        self.remaining += len(g.members)
        self.held -= len(g.members)
        g.state = "failed"

    def join(self, gid: int, buyer: str, start: bool) -> str:
        g = self.groups.get(gid)
        if start:
            if g is not None:
                return "member" if buyer in g.members else "exists"
        else:
            if g is None:
                return "unknown"
            if g.state == "forming" and g.due:
                self._fail_forming(g)
            if g.state == "failed":
                return "failed"
            if buyer in g.members:
                return "member"
            if g.state != "forming":
                return "full"
        if not self.open:
            return "not_open"
        if self.remaining < 1:
            return "sold_out"
        if self.buyers.get(buyer, 0) + 1 > self.limit:
            return "limit"
        self._buyer(buyer, 1)
        self.remaining -= 1
        self.held += 1
        if g is None:
            g = self.groups[gid] = ModelGroup("forming", [], buyer)
        g.members.append(buyer)
        if len(g.members) >= self.size:
            g.state = "filling"
            self.held -= len(g.members)
            self.filling += len(g.members)
            return "filled"
        return "joined"

    def leave(self, gid: int, buyer: str) -> str:
        g = self.groups.get(gid)
        if g is None:
            return "unknown"
        if g.state == "forming" and g.due:
            self._fail_forming(g)
        if g.state == "failed":
            return "failed"
        if g.state != "forming":
            return "full"
        if buyer not in g.members:
            return "not_member"
        g.members.remove(buyer)
        self._buyer(buyer, -1)
        self.remaining += 1
        self.held -= 1
        if not g.members:
            g.state = "failed"
        return "left"

    def settle(self, gid: int, outcome: str) -> str:
        g = self.groups.get(gid)
        if g is None:
            return "unknown"
        if g.state == outcome:
            return "settled"
        if g.state != "filling":
            return "not_filling"
        n = len(g.members)
        self.filling -= n
        if outcome == "formed":
            self.sold += n
        else:
            self.remaining += n
            for m in g.members:
                self._buyer(m, -1)
        g.state = outcome
        return "settled"

    def expire_due(self) -> set[int]:
        failed = set()
        for gid, g in self.groups.items():
            if g.state == "forming" and g.due:
                self._fail_forming(g)
                failed.add(gid)
        return failed

    def close(self) -> set[int]:
        failed = set()
        for gid, g in self.groups.items():
            if g.state == "forming":
                self._fail_forming(g)
                failed.add(gid)
        self.open = False
        return failed
