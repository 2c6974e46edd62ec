"""Several processes, and failures between PostgreSQL and Redis: two processes ending the same
auction at once end it once (one event, one offer); a start that died before Redis opened the
auction is finished by `check_books`; a confirm that stalled between Redis and PostgreSQL is
voided by the sweep and the runner-up gets the item; a bid is in PostgreSQL when it is
acknowledged, and the catch-up copy takes what a failed write left in Redis."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import pytest
from auction_kit import HOST, Kit, kit, make_kit, until, viewer

from flash_sales.auctions.model import pool_name
from inventory_lock import HoldState
from live.settings import Settings

__all__ = ["kit"]


@pytest.fixture
async def other(kit: Kit, settings: Settings) -> AsyncIterator[Kit]:
    """A second process beside `kit`'s, on the same Redis and PostgreSQL."""
    made, close = await make_kit(settings)
    yield made
    await close()


async def test_two_processes_end_an_auction_once(kit: Kit, other: Kit) -> None:
    auction = await kit.open(duration_s=1)
    await kit.bid(auction, "ann", 100)
    await other.bid(auction, "bob", 110)

    async def both_ending() -> bool:
        ends = (kit.service.lifecycle.end_due(), other.service.lifecycle.end_due())
        await asyncio.gather(*ends)
        return bool((await kit.service.lifecycle.view(auction))["state"] == "ended")

    await until(both_ending)
    await both_ending()
    assert len(await kit.events("auction_ended")) == 1
    offers = await kit.service.store.offers(auction)
    assert [(o.bidder, o.price_cents) for o in offers] == [("bob", 110)]
    recorded = await kit.service.ledger.bids(auction)
    assert [(b.seq, b.bidder) for b in recorded] == [(1, "ann"), (2, "bob")]


async def test_a_start_that_died_before_redis_is_finished(kit: Kit) -> None:
    auction = await kit.create()
    assert await kit.service.store.start(auction, "e0") is not None  # ... and the process died
    assert (await kit.service.book.peek(auction)).code == "unknown"
    await kit.service.keeper.check_books()
    assert (await kit.service.book.peek(auction)).state == "open"
    assert (await kit.bid(auction, "ann", 100))["leading"]
    assert len(await kit.events("auction_started")) == 1


async def test_an_acknowledged_bid_is_in_postgres(kit: Kit) -> None:
    auction = await kit.open()
    await kit.bid(auction, "ann", 100, max_cents=200)
    await kit.bid(auction, "bob", 150)
    assert await kit.service.ledger.recorded_seq(auction) == 3
    row = await kit.pg.fetchrow(
        "SELECT price_cents, leader_id, bid_count, leader_max_cents FROM auctions WHERE id = $1",
        auction,
    )
    assert row is not None and tuple(row) == (160, "ann", 3, 200)
    assert await kit.service.ledger.count_calls(auction) == 2


async def test_the_catch_up_copies_what_a_failed_write_left(kit: Kit) -> None:
    auction = await kit.open()
    book = kit.service.book
    for user, amount in (("ann", 100), ("bob", 110)):  # accepted by Redis, never recorded
        assert (await book.bid(auction, user, "", amount, None, f"k-{user}")).accepted
    assert await kit.service.ledger.recorded_seq(auction) == 0
    kit.service.keeper.mark_dirty(auction)
    await kit.service.keeper.flush_dirty()
    assert await kit.service.ledger.recorded_seq(auction) == 2
    assert await kit.service.ledger.count_calls(auction) == 2
    again = await kit.bid(auction, "bob", 110, key="k-bob")  # the retry: the same answer
    assert again["seqs"] == [2] and again["leading"]


async def test_a_stalled_confirm_is_voided_and_the_runner_up_offered(
    kit: Kit, settings: Settings
) -> None:
    stalls, close = await make_kit(settings, stuck_confirm_s=0.2)
    try:
        auction = await kit.open()
        await kit.bid(auction, "ann", 100)
        await kit.bid(auction, "bob", 200)
        await kit.service.lifecycle.stop(auction, HOST)
        offers = await kit.service.store.offers(auction)
        hold = offers[0].reservation_id
        assert hold is not None
        begun = await kit.lock.begin_confirm(hold)  # ... and the confirm's process died
        assert begun.ok

        async def runner_up_offered() -> bool:
            await stalls.service.settlement.sweep()
            offers = await kit.service.store.offers(auction)
            return len(offers) == 2 and offers[1].reservation_id is not None

        await until(runner_up_offered)
        record = await kit.lock.get_hold(hold)
        assert record is not None and record.state is HoldState.RELEASED
        second = (await kit.service.store.offers(auction))[1]
        assert second.reservation_id is not None
        order = await kit.service.confirm(second.reservation_id, viewer("ann"), "pay-ann")
        assert order["price_cents"] == 100 and order["buyer"] == "ann"
        late = await kit.pg.fetchval("SELECT count(*) FROM orders WHERE auction_id = $1", auction)
        assert late == 1
        report = await kit.lock.check(pool_name(auction))
        assert report is not None and report.ok and report.confirmed == 1
    finally:
        await close()
