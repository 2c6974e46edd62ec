"""A book Redis lost or took back in time is rebuilt from PostgreSQL before it takes a bid:
price, leader, the leader's hidden maximum, deadline, seq (never given twice) and the answers
of acknowledged calls; meanwhile bids answer 503. A write of a replaced book is refused. An
ended book's keys expire. Settlement pools are repaired: a lost hold is made again, a confirm
stuck after its order is finished, a settled pool dropped. (Faults injected by hand here;
tests/auctions/test_auction_faults.py kills and rolls back a real redis-server.)"""

from __future__ import annotations

import asyncio

import pytest
from auction_kit import HOST, Kit, kit, make_kit, until, viewer

from flash_sales.auctions.ledger import BookReplaced
from flash_sales.auctions.model import pool_name
from inventory_lock import HoldState
from live.settings import Settings
from rooms.errors import Conflict, Unavailable

__all__ = ["kit"]


async def _lose_book(kit: Kit, auction: int) -> None:
    await kit.service.book.drop(auction)


async def _make_stale(kit: Kit, auction: int) -> None:
    """As after a restart: the book was brought up to date under another Redis run."""
    await kit.redis.hset(kit.service.book.keys(auction).state, "run_id", "an-earlier-run")


async def _rebuilt(kit: Kit, auction: int) -> None:
    async def taking_bids() -> bool:
        await kit.service.keeper.check_books()
        return (await kit.service.book.peek(auction)).book == "ok"

    await until(taking_bids)


@pytest.mark.parametrize("fault", [_lose_book, _make_stale])
async def test_a_lost_or_stale_book_is_rebuilt_before_it_bids(kit: Kit, fault: object) -> None:
    auction = await kit.open()
    first = await kit.bid(auction, "ann", 100, max_cents=300, key="ann-1")
    await kit.bid(auction, "bob", 150)  # ann's proxy answers: 160
    assert callable(fault)
    await fault(kit, auction)
    with pytest.raises(Unavailable) as refused:
        await kit.bid(auction, "cat", 200)
    assert refused.value.retry_after_s  # ... and the bid started a rebuild
    await _rebuilt(kit, auction)
    live = await kit.service.book.peek(auction)
    assert (live.book, live.price_cents, live.leader, live.bids) == ("ok", 160, "ann", 3)
    assert await kit.bid(auction, "ann", 100, max_cents=300, key="ann-1") == first  # replay
    cat = await kit.bid(auction, "cat", 200)  # below ann's hidden maximum: her proxy answers
    assert not cat["leading"] and cat["price_cents"] == 210 and cat["seqs"] == [4, 5]
    recorded = await kit.service.ledger.bids(auction)
    assert [b.seq for b in recorded] == [1, 2, 3, 4, 5]


async def test_a_bid_while_the_book_is_lost_starts_its_rebuild(kit: Kit) -> None:
    auction = await kit.open()
    await kit.bid(auction, "ann", 100)
    await _lose_book(kit, auction)
    with pytest.raises(Unavailable):
        await kit.bid(auction, "bob", 110)
    task = kit.service.keeper.rebuild.start(await kit.service.lifecycle.fixed(auction))
    assert await task
    assert (await kit.bid(auction, "bob", 110))["seqs"] == [2]


async def test_a_write_of_a_replaced_book_is_refused(kit: Kit) -> None:
    auction = await kit.open()
    book = kit.service.book
    answer = await book.bid(auction, "ann", "", 100, None, "k1")  # ... its write in flight
    await _make_stale(kit, auction)
    await kit.service.keeper.check_books()  # rebuilt: ann's bid was never recorded
    with pytest.raises(BookReplaced):
        await kit.service.ledger.record(auction, answer.live, answer.entries)
    assert await kit.service.ledger.recorded_seq(auction) == 0
    bob = await kit.bid(auction, "bob", 100)
    assert bob["seqs"] == [1] and bob["leading"]  # seq 1 was never given to anyone else


async def test_a_deadline_that_passed_while_redis_was_away_ends_with_postgres_bids(
    kit: Kit,
) -> None:
    auction = await kit.open(duration_s=1)
    await kit.bid(auction, "ann", 100)
    await kit.service.book.bid(auction, "bob", "", 110, None, "never-recorded")
    await _lose_book(kit, auction)
    await kit.finish(auction)  # the end loop rebuilds the book, already due, and ends it
    view = await kit.service.lifecycle.view(auction)
    assert (view["state"], view["price_cents"], view["bids"]) == ("ended", 100, 1)
    offers = await kit.service.store.offers(auction)
    assert [(o.bidder, o.price_cents) for o in offers] == [("ann", 100)]


async def test_an_ended_books_keys_expire(kit: Kit) -> None:
    auction = await kit.open()
    await kit.bid(auction, "ann", 100)
    await kit.service.lifecycle.stop(auction, HOST)
    for key in kit.service.book.keys(auction).all:
        assert 0 < await kit.redis.pttl(key) <= 600_000


async def _stopped_with_offer(kit: Kit) -> tuple[int, str]:
    auction = await kit.open()
    await kit.bid(auction, "ann", 100)
    await kit.service.lifecycle.stop(auction, HOST)
    offer = (await kit.service.store.offers(auction))[0]
    assert offer.reservation_id is not None
    return auction, offer.reservation_id


async def test_a_settlement_hold_redis_lost_is_made_again(kit: Kit) -> None:
    auction, hold = await _stopped_with_offer(kit)
    await kit.lock.drop(pool_name(auction))  # Redis lost the pool
    await kit.service.settlement.sweep()
    offer = (await kit.service.store.offers(auction))[0]
    assert offer.state.value == "offered" and offer.reservation_id not in (None, hold)
    assert offer.reservation_id is not None
    with pytest.raises(Conflict) as old:
        await kit.service.confirm(hold, viewer("ann"), "pay")
    assert old.value.code == "conflict"
    order = await kit.service.confirm(offer.reservation_id, viewer("ann"), "pay")
    assert order["buyer"] == "ann"
    report = await kit.lock.check(pool_name(auction))
    assert report is not None and report.ok and report.confirmed == 1


async def test_a_confirm_stuck_after_its_order_is_finished(kit: Kit) -> None:
    auction, hold = await _stopped_with_offer(kit)
    assert (await kit.lock.begin_confirm(hold)).ok
    offer = (await kit.service.store.offers(auction))[0]
    await kit.service.store.place_order(offer, "pay")  # ... and the process died
    await kit.redis.hset(kit.lock.keys(pool_name(auction)).meta, "run_id", "earlier")  # stale
    await kit.service.settlement.pools.recover_orders()
    record = await kit.lock.get_hold(hold)
    assert record is not None and record.state is HoldState.CONFIRMED
    snap = await kit.lock.snapshot(pool_name(auction))
    assert snap is not None and not snap.stale and snap.confirmed == 1
    await kit.service.settlement.pools.drop_settled(after_s=0)
    assert await kit.lock.snapshot(pool_name(auction)) is None
    dropped = await kit.pg.fetchval(
        "SELECT pool_dropped_at IS NOT NULL FROM auctions WHERE id = $1", auction
    )
    assert dropped


async def test_two_processes_rebuild_a_book_once(kit: Kit, settings: Settings) -> None:
    other, close = await make_kit(settings)
    try:
        auction = await kit.open()
        await kit.bid(auction, "ann", 100)
        await _make_stale(kit, auction)
        fixed = await kit.service.lifecycle.fixed(auction)
        done = await asyncio.gather(
            kit.service.keeper.rebuild.rebuild(fixed), other.service.keeper.rebuild.rebuild(fixed)
        )
        # One process rebuilds; the other finds the book fenced (`busy`: False) or, if it comes
        # later, rebuilt already (True).
        assert True in done
        rebuilds = kit.service.keeper.rebuild.rebuilt + other.service.keeper.rebuild.rebuilt
        assert rebuilds == 1
        epoch = await kit.pg.fetchval("SELECT book_epoch FROM auctions WHERE id = $1", auction)
        live = await kit.service.book.peek(auction)
        assert (live.book, live.epoch, live.bids) == ("ok", epoch, 1)
        assert (await other.bid(auction, "bob", 110))["seqs"] == [2]
    finally:
        await close()


async def test_a_raised_maximum_survives_a_lost_book(kit: Kit) -> None:
    auction = await kit.open(start_cents=100, increment_cents=10)
    await kit.bid(auction, "ann", 100)
    raised = await kit.bid(auction, "ann", 100, max_cents=500)  # no bid logged: only her max
    assert raised["seqs"] == [] and raised["leading"]
    await _lose_book(kit, auction)
    await _rebuilt(kit, auction)
    bob = await kit.bid(auction, "bob", 200)
    assert not bob["leading"] and bob["price_cents"] == 210  # her hidden maximum answered
