"""Redis key names of an auction. All share the hash tag `{auction:<id>}`, so each script call
stays on one Redis Cluster slot (the settlement's holds live in an inventory_lock pool of their
own: `{sale:auction-<id>}`, touched only by that package's scripts)."""

from __future__ import annotations

from dataclasses import dataclass

from inventory_lock.keys import check_prefix


@dataclass(frozen=True)
class AuctionKeys:
    state: str
    log: str
    idem: str

    @classmethod
    def of(cls, prefix: str, auction_id: int) -> AuctionKeys:
        base = f"{check_prefix(prefix)}{{auction:{auction_id}}}:"
        return cls(base + "state", base + "log", base + "idem")

    @property
    def all(self) -> list[str]:
        """In the order the scripts name them: KEYS[1..3]."""
        return [self.state, self.log, self.idem]
