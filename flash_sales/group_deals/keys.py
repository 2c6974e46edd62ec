"""Redis key names of a group sale's pool. All share the sale's hash tag `{sale:<id>}`, so each
script call stays on one Redis Cluster slot; the `gd:` part keeps them apart from the
inventory_lock pool a flash sale of that id would have."""

from __future__ import annotations

from dataclasses import dataclass

from inventory_lock.keys import check_prefix


@dataclass(frozen=True)
class GroupKeys:
    state: str
    groups: str
    buyers: str
    due: str
    filling: str

    @classmethod
    def of(cls, prefix: str, sale_id: int) -> GroupKeys:
        base = f"{check_prefix(prefix)}{{sale:{sale_id}}}:gd:"
        return cls(base + "state", base + "groups", base + "buyers", base + "due", base + "filling")

    @property
    def all(self) -> list[str]:
        """In the order the scripts name them: KEYS[1..5]."""
        return [self.state, self.groups, self.buyers, self.due, self.filling]
