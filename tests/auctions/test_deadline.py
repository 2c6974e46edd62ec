"""Many bidders racing the deadline on the real Redis and PostgreSQL: they bid as fast as they
can, some with a hidden maximum, until the auction refuses them as ended. Then, from the log of
every accepted bid: none was accepted at or after the deadline as it stood by the server's
clock, every bid in the snipe window extended the end until the cap and none after it, the
winner is the bidder with the highest maximum (the earliest of a tie), and PostgreSQL recorded
exactly what Redis accepted."""

from __future__ import annotations

import asyncio
import random

from auction_kit import HOST, Kit, kit, viewer

from rooms.errors import Conflict

__all__ = ["kit"]

BIDDERS = 16
MAX_ATTEMPTS = 5000  # per bidder: a bound on the loop, far above what 3 s of bidding takes
DURATION_MS, WINDOW_MS, MAX_EXTENSIONS = 1500, 600, 3


async def test_bidders_racing_the_deadline(kit: Kit) -> None:
    auction = await kit.open(
        duration_s=DURATION_MS / 1000,
        snipe_window_s=WINDOW_MS / 1000,
        max_extensions=MAX_EXTENSIONS,
        increment_cents=5,
    )
    tops: dict[str, tuple[int, int]] = {}  # bidder: (highest maximum, bids logged by then)
    refusals: dict[str, str] = {}

    async def bidder(n: int) -> None:
        user, rng = f"b{n}", random.Random(n)
        for attempt in range(MAX_ATTEMPTS):
            minimum = (await kit.service.book.peek(auction)).min_next_cents
            amount = minimum + 5 * rng.randrange(3)
            top = amount + 5 * rng.randrange(1, 20) if n % 4 == 0 else None
            try:
                answer = await kit.service.bidding.bid(
                    auction, viewer(user), amount, top, f"{user}-{attempt}"
                )
            except Conflict as refused:
                if refused.code == "ended":
                    refusals[user] = refused.code
                    return
                continue  # too_low (outbid meanwhile) or own_bid
            placed = max(amount, top or 0)  # a leader's raised maximum logs no bid
            if placed > tops.get(user, (0, 0))[0]:
                tops[user] = (placed, answer["bids"])
        raise AssertionError(f"{user} never saw the end")

    async with asyncio.timeout(60):
        await asyncio.gather(*(bidder(n) for n in range(BIDDERS)))
    assert set(refusals) == {f"b{n}" for n in range(BIDDERS)}
    live = await kit.service.book.peek(auction)
    logged = await kit.service.ledger.bids(auction)  # each one recorded before its answer
    assert [b.seq for b in logged] == list(range(1, live.bids + 1))
    assert live.bids > BIDDERS

    ends, extensions = live.started_at_ms + DURATION_MS, 0
    for entry in logged:  # the deadline as it stood when each bid was accepted
        assert entry.ts_ms < ends, f"bid {entry.seq} accepted at {entry.ts_ms}, deadline {ends}"
        if entry.ts_ms + WINDOW_MS > ends and extensions < MAX_EXTENSIONS:
            ends, extensions = entry.ts_ms + WINDOW_MS, extensions + 1
    assert (ends, extensions) == (live.ends_at_ms, live.extensions)
    assert extensions == MAX_EXTENSIONS  # they bid until the very end: every extension taken

    best = max(tops.values(), key=lambda placed: (placed[0], -placed[1]))
    winner = next(user for user, placed in tops.items() if placed == best)
    assert live.leader == winner
    assert live.price_cents == logged[-1].amount_cents == max(b.amount_cents for b in logged)
    assert logged[-1].bidder == winner

    await kit.finish(auction)
    recorded = (await kit.service.lifecycle.bids(auction, HOST))["bids"]
    assert [(b["seq"], b["bidder"], b["amount_cents"], b["proxy"]) for b in recorded] == [
        (b.seq, b.bidder, b.amount_cents, b.proxy) for b in logged
    ]
    offers = await kit.service.store.offers(auction)
    assert [(o.bidder, o.price_cents) for o in offers] == [(winner, live.price_cents)]


async def test_a_leader_raising_their_maximum_never_extends(kit: Kit) -> None:
    """Even when the raise lifts the price to the reserve: only a bid answering another does."""
    auction = await kit.open(duration_s=60, snipe_window_s=120, max_extensions=5, reserve_cents=500)
    first = await kit.bid(auction, "ann", 100)
    assert first["extensions"] == 1  # in the window: extended
    raised = await kit.bid(auction, "ann", 100, max_cents=600)
    assert raised["price_cents"] == 500 and raised["seqs"] == [2]  # lifted to the reserve
    assert (raised["extensions"], raised["ends_at"]) == (1, first["ends_at"])
    bob = await kit.bid(auction, "bob", 510)
    assert bob["extensions"] == 2 and not bob["leading"]
