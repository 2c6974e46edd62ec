"""Random bids (plain and with a hidden maximum, too low, the leader's own, replays of earlier
keys), steps of the clock around the deadline and the snipe window, and a stop, sent to the Lua
bid script on the real Redis and checked call by call against a pure Python model (bid_model),
with the auction and its whole log compared after every step.

The script decides by the server's clock. The clock steps put the deadline far outside the
window, well inside it or past it (seconds away from either edge), so the milliseconds a step
takes never change a decision; an extension's new deadline is checked against the server times
read just before and after the call."""

from __future__ import annotations

from typing import Any

from bid_model import ModelAuction
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, rule
from script_machine import ScriptMachine, run_machine

from flash_sales.auctions.book import AuctionBook, BidAnswer
from flash_sales.auctions.model import config_of

BIDDERS = ("ann", "bob", "cy")
KEYS = ("k1", "k2", "k3")
CONFIG = config_of(
    start_cents=100,
    increments=[[0, 10], [200, 50]],
    duration_s=60,
    snipe_window_s=10,
    max_extensions=3,
    reserve_cents=400,
)
# A bid's maximum: relative to its amount ("+": one below, equal, above) or one of a few prices
# (so that two bidders' maxima tie now and then).
TOPS = [("+", -1), ("+", 0), ("+", 5), ("+", 50), ("+", 1000), ("=", 300), ("=", 400), ("=", 600)]
# Where a clock step puts the deadline, from now (ms): far, inside the window, just past it.
LEFT_MS = (30_000, 5_000, -2_000)


def machine(redis_url: str, prefix: str) -> type[RuleBasedStateMachine]:
    class Bids(ScriptMachine):
        def __init__(self) -> None:
            super().__init__(redis_url)
            self.book = AuctionBook(self.client, prefix)
            self.auction = Bids.next_id = getattr(Bids, "next_id", 0) + 1
            live = self.run(self.book.open(self.auction, CONFIG, "epoch"))
            assert live.code == "opened"
            self.model = ModelAuction(CONFIG, ends_at=live.ends_at_ms)

        async def _now(self) -> int:
            seconds, micros = await self.client.time()
            return int(seconds) * 1000 + int(micros) // 1000

        async def _set_deadline(self, ends_at: int) -> None:
            await self.client.hset(self.book.keys(self.auction).state, "ends_at", ends_at)

        def teardown(self) -> None:
            self.run(self.book.drop(self.auction))
            super().teardown()

        @rule(
            bidder=st.sampled_from(BIDDERS),
            key=st.sampled_from(KEYS),
            offset=st.sampled_from([-1, 0, 1, 10, 60, 300]),
            top=st.none() | st.sampled_from(TOPS),
        )
        def bid(self, bidder: str, key: str, offset: int, top: tuple[str, int] | None) -> None:
            amount = max(1, self.model.min_next + offset)
            most = None if top is None else max(1, top[1] + (amount if top[0] == "+" else 0))
            before = self.run(self._now())
            got = self.run(self.book.bid(self.auction, bidder, "", amount, most, key))
            after = self.run(self._now())
            assert before >= self.model.ends_at or after < self.model.ends_at, "a step too close"
            # Whether a bid is in the snipe window can be a matter of the millisecond it ran
            # in (right after an extension, the edge is the last call's now): within [before,
            # after] the script's clock decides, and the model follows it.
            edge = self.model.ends_at - CONFIG.snipe_window_ms
            extended = got.live.extensions > self.model.extensions
            now = after if before <= edge < after and extended else before
            expected = self.model.bid(now, bidder, amount, most, key)
            self.check(got, expected, before, after)

        def check(self, got: BidAnswer, expected: dict[str, Any], before: int, after: int) -> None:
            assert got.live.code == expected["code"], (got, expected)
            if expected["code"] != "accepted":
                assert not got.accepted
                return
            assert got.accepted and got.replay == expected["replay"]
            assert got.live.price_cents == expected["price"]
            assert got.live.leader == expected["leader"]
            assert got.leading == expected["leading"] and got.outbid == expected["outbid"]
            entries = [(e.seq, e.bidder, e.amount_cents, e.proxy) for e in got.entries]
            assert entries == expected["entries"]
            assert got.live.extensions == expected["extensions"]
            if not expected["replay"]:
                assert all(before <= e.ts_ms <= after for e in got.entries)
                if got.live.ends_at_ms != expected["ends_at"]:  # extended: from the script's now
                    window = CONFIG.snipe_window_ms
                    assert before + window <= got.live.ends_at_ms <= after + window
                    self.model.ends_at = expected["ends_at"] = got.live.ends_at_ms

        @rule(left=st.sampled_from(LEFT_MS))
        def clock_step(self, left: int) -> None:
            """As if the clock jumped: the deadline `left` ms from now."""
            now = self.run(self._now())
            self.model.ends_at = now + left
            self.run(self._set_deadline(now + left))

        @rule()
        def stop(self) -> None:
            live = self.run(self.book.close(self.auction, now=True))
            assert live.code == "ended"
            self.model.open = False
            self.model.ends_at = live.ends_at_ms

        @invariant()
        def agrees(self) -> None:
            live = self.run(self.book.peek(self.auction))
            assert live.price_cents == self.model.price
            assert live.leader == self.model.leader
            assert live.bids == len(self.model.log)
            assert live.extensions == self.model.extensions <= CONFIG.max_extensions
            assert live.ends_at_ms == self.model.ends_at
            assert live.state == ("open" if self.model.open else "ended")
            logged = self.run(self.book.log(self.auction, 0, 10_000))
            assert [(b.seq, b.bidder, b.amount_cents, b.proxy) for b in logged] == [
                (e.seq, e.bidder, e.amount, e.proxy) for e in self.model.log
            ]
            amounts = [b.amount_cents for b in logged]
            assert amounts == sorted(amounts)  # the price never goes down

    return Bids


def test_the_bid_script_agrees_with_the_model(redis_url: str, namespace: str) -> None:
    run_machine(machine(redis_url, namespace))
