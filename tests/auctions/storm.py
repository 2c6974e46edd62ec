"""A bid storm on one auction while a fault strikes, and its verdict: every acknowledged bid
is in PostgreSQL, no seq was given to two calls, the winner is the highest bid recorded (and
no acknowledged price is above it), the auction took bids again soon after the fault, and no
bid got anything but an answer or 503."""

from __future__ import annotations

import asyncio
import json
import random
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field

from auction_kit import HOST, Kit, viewer

from rooms.errors import STORAGE_ERRORS, Conflict, Unavailable

BIDDERS = 6
RETRY_S = 0.05  # a bidder's pause before retrying a 503 (a client's backoff)
MAX_ATTEMPTS = 400


@dataclass(frozen=True)
class Ack:
    user: str
    key: str
    seqs: tuple[int, ...]
    price_cents: int
    at: float


@dataclass
class Storm:
    """Bidders on `kit`'s process and on each of `others` (more processes, the same servers)."""

    kit: Kit
    auction: int
    seed: int = 1
    others: list[Kit] = field(default_factory=list)
    acks: list[Ack] = field(default_factory=list)
    unavailable: int = 0
    errors: list[str] = field(default_factory=list)
    fault_over_at: float = 0.0
    _stop: asyncio.Event = field(default_factory=asyncio.Event)
    _acked: asyncio.Condition = field(default_factory=asyncio.Condition)

    async def acks_reached(self, count: int, within_s: float = 15) -> None:
        async with asyncio.timeout(within_s), self._acked:
            await self._acked.wait_for(lambda: len(self.acks) >= count)

    async def run(self, fault: Callable[[Storm], Awaitable[None]], after: int = 40) -> None:
        """Bidders and the keeper's loops run while `fault` strikes, then until `after` more
        bids were acknowledged."""
        kits = [self.kit, *self.others]
        tasks = [
            asyncio.create_task(self._bidder(kits[n % len(kits)], f"b{n}")) for n in range(BIDDERS)
        ]
        tasks += [asyncio.create_task(self._keeper(kit)) for kit in kits]
        try:
            await fault(self)
            self.fault_over_at = time.monotonic()
            await self.acks_reached(len(self.acks) + after)
        finally:
            self._stop.set()
            await asyncio.gather(*tasks)

    async def _keeper(self, kit: Kit) -> None:
        """The service's background loops that matter here (as AuctionService.loops)."""
        keeper = kit.service.keeper
        while not self._stop.is_set():
            try:
                await keeper.check_books()
                await keeper.flush_dirty()
            except STORAGE_ERRORS:
                pass
            await asyncio.sleep(0.1)

    async def _bidder(self, kit: Kit, user: str) -> None:
        """Bids the minimum its last answer named (plus a step or two); after a refusal, the
        minimum the book shows now."""
        rng = random.Random(f"{self.seed}-{user}")
        minimum: int | None = 100
        for n in range(100_000):
            if self._stop.is_set():
                return
            if minimum is None:
                try:
                    minimum = (await kit.service.book.peek(self.auction)).min_next_cents or 100
                except STORAGE_ERRORS:
                    await asyncio.sleep(RETRY_S)
                    continue
            amount = minimum + 10 * rng.randrange(0, 3)
            minimum = await self._bid(kit, user, f"{user}-{n}", amount)

    async def _bid(self, kit: Kit, user: str, key: str, amount: int) -> int | None:
        """One bid, retried with its key while it answers 503; the next minimum it named."""
        for _ in range(MAX_ATTEMPTS):
            try:
                answer = await kit.service.bidding.bid(
                    self.auction, viewer(user), amount, None, key
                )
            except Unavailable:
                self.unavailable += 1
                if self._stop.is_set():
                    return None
                await asyncio.sleep(RETRY_S)
                continue
            except Conflict:
                return None  # outbid meanwhile, or leading already
            except Exception as exc:  # anything else would be a 500
                self.errors.append(f"{user} {key}: {exc!r}")
                return None
            seqs = tuple(answer["seqs"])
            async with self._acked:
                self.acks.append(Ack(user, key, seqs, answer["price_cents"], time.monotonic()))
                self._acked.notify_all()
            return int(answer["min_next_cents"])
        return None


async def judge(storm: Storm) -> list[str]:
    """The auction stopped, and what went wrong (nothing, if every invariant holds)."""
    kit, auction = storm.kit, storm.auction
    problems = list(storm.errors)
    async with asyncio.timeout(15):
        while True:  # the stop answers 503 until the book is rebuilt
            try:
                await kit.service.lifecycle.stop(auction, HOST)
                break
            except Unavailable:
                await kit.service.keeper.check_books()
                await asyncio.sleep(RETRY_S)
    recorded = {b.seq: b for b in await kit.service.ledger.bids(auction)}
    if sorted(recorded) != list(range(1, len(recorded) + 1)):
        problems.append(f"recorded seqs are not 1..{len(recorded)}")
    owner: dict[int, str] = {}
    for ack in storm.acks:
        for seq in ack.seqs:
            if seq not in recorded:
                problems.append(f"acknowledged bid {ack.key} (seq {seq}) is not in PostgreSQL")
            elif owner.setdefault(seq, ack.key) != ack.key:
                problems.append(f"seq {seq} given to {owner[seq]} and {ack.key}")
        if ack.seqs and not any(
            recorded.get(s, None) and recorded[s].bidder == ack.user for s in ack.seqs
        ):
            problems.append(f"acknowledged bid {ack.key}: none of its seqs is {ack.user}'s")
    for answer in await kit.pg.fetch(
        "SELECT answer FROM auction_calls WHERE auction_id = $1", auction
    ):  # a call is recorded with its bids, or not at all
        entries = json.loads(answer["answer"]).get("entries") or []
        if any(e["seq"] not in recorded for e in entries):
            problems.append(f"a recorded call lacks its bids: {answer['answer']}")
    best = max(recorded.values(), key=lambda b: (b.amount_cents, -b.seq))
    if max(a.price_cents for a in storm.acks) > best.amount_cents:
        problems.append("an acknowledged price is above every recorded bid")
    offers = await kit.service.store.offers(auction)
    if [(o.bidder, o.price_cents) for o in offers] != [(best.bidder, best.amount_cents)]:
        problems.append(f"offers {offers} are not to the highest bid {best}")
    row = await kit.pg.fetchrow(
        "SELECT bid_count, price_cents FROM auctions WHERE id = $1", auction
    )
    if row is None or (row["bid_count"], row["price_cents"]) != (len(recorded), best.amount_cents):
        problems.append(f"the auction's figures {row} are not its bids'")
    after = [a.at for a in storm.acks if a.at >= storm.fault_over_at]
    if not after or after[0] - storm.fault_over_at > 10:
        problems.append("no bid was acknowledged within 10 s of the fault")
    return problems
