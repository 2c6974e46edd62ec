"""A pure Python model of one auction's bids (the rules of flash_sales/auctions/lua/bid.lua,
written again plainly) for the stateful test to check the script against. Time is the caller's:
`bid` takes the server time the script ran at."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from flash_sales.auctions.model import AuctionConfig, increment_at, min_next_bid


@dataclass
class Entry:
    seq: int
    bidder: str
    amount: int
    proxy: bool


@dataclass
class ModelAuction:
    config: AuctionConfig
    ends_at: int
    open: bool = True
    price: int | None = None
    leader: str | None = None
    leader_max: int = 0
    extensions: int = 0
    log: list[Entry] = field(default_factory=list)
    answers: dict[tuple[str, str], dict[str, Any]] = field(default_factory=dict)

    @property
    def min_next(self) -> int:
        return min_next_bid(self.config, self.price)

    def step(self, price: int) -> int:
        return increment_at(self.config.bands, price)

    def bid(
        self, now: int, bidder: str, amount: int, top_arg: int | None, key: str
    ) -> dict[str, Any]:
        """The answer: `code`, and for an accepted bid what it logged and changed."""
        if top_arg is not None and top_arg < amount:
            return {"code": "invalid"}
        if (bidder, key) in self.answers:
            return {**self.answers[(bidder, key)], "replay": True}
        if not self.open or now >= self.ends_at:
            return {"code": "ended"}
        top = max(amount, top_arg or 0)
        entries: list[Entry] = []
        outbid = None

        def log(who: str, cents: int, proxy: bool) -> None:
            entries.append(Entry(len(self.log) + len(entries) + 1, who, cents, proxy))

        own = bidder == self.leader
        if own:
            if top <= self.leader_max:
                return {"code": "own_bid"}
            self.leader_max = top
        elif amount < self.min_next:
            return {"code": "too_low"}
        elif self.leader is None:
            log(bidder, amount, False)
            self.price, self.leader, self.leader_max = amount, bidder, top
        elif top > self.leader_max:
            assert self.price is not None
            if self.leader_max > self.price:
                log(self.leader, self.leader_max, True)
            price = max(amount, min(top, self.leader_max + self.step(self.leader_max)))
            log(bidder, price, price != amount)
            outbid = self.leader
            self.price, self.leader, self.leader_max = price, bidder, top
        else:
            log(bidder, top, top != amount)
            self.price = min(self.leader_max, top + self.step(top))
            log(self.leader, self.price, True)
        reserve = self.config.reserve_cents
        assert self.price is not None and self.leader is not None
        if reserve is not None and reserve > self.price and self.leader_max >= reserve:
            self.price = reserve
            log(self.leader, reserve, True)
        window = self.config.snipe_window_ms
        # The leader raising their own maximum never extends, even when it lifts the price to
        # the reserve (a leader must not be able to keep an auction going alone).
        extended = bool(entries) and not own and now + window > self.ends_at
        extended = extended and self.extensions < self.config.max_extensions
        if extended:
            self.ends_at, self.extensions = now + window, self.extensions + 1
        self.log += entries
        answer = {
            "code": "accepted",
            "price": self.price,
            "leader": self.leader,
            "leading": bidder == self.leader,
            "outbid": outbid,
            "entries": [(e.seq, e.bidder, e.amount, e.proxy) for e in entries],
            "extensions": self.extensions,
            "ends_at": self.ends_at,
            "replay": False,
        }
        self.answers[(bidder, key)] = answer
        return answer
