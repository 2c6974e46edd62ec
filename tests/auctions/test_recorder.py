"""Group commit of bids: bids of one auction accepted while a batch is being written share the
next transaction, each acknowledged only once written; a bid the recorder cannot take answers
503, stays in Redis, and its retry with the same key is acknowledged as first accepted."""

from __future__ import annotations

import asyncio

import pytest
from auction_kit import Kit, kit, until

from flash_sales.auctions.recorder import BidRecorder
from live import db
from live.settings import Settings
from rooms.errors import Unavailable

__all__ = ["kit"]

BIDDERS = 40


async def test_bids_accepted_during_a_commit_share_the_next(kit: Kit, settings: Settings) -> None:
    auction = await kit.open(start_cents=100, increment_cents=1)
    answers = [  # accepted by Redis, one after another, not recorded yet
        await kit.service.book.bid(auction, f"v{n}", "", 100 + n, None, "k") for n in range(BIDDERS)
    ]
    recorder = BidRecorder(kit.service.ledger, timeout_s=10)
    async with kit.pg.acquire() as conn, conn.transaction():  # the first commit waits
        await conn.execute("SELECT 1 FROM auctions WHERE id = $1 FOR UPDATE", auction)
        first = asyncio.create_task(recorder.record(auction, answers[0]))

        async def first_batch_waits() -> bool:
            waiting = await kit.pg.fetchval(  # (outside the lock's transaction: fresh stats)
                "SELECT count(*) FROM pg_stat_activity WHERE wait_event_type = 'Lock' "
                "AND application_name = $1",
                db.application_name(settings),
            )
            return bool(waiting)

        await until(first_batch_waits)
        rest = [asyncio.create_task(recorder.record(auction, a)) for a in answers[1:]]
    await asyncio.gather(first, *rest)
    assert recorder.batches == 2  # the first call, then the other 39 together
    assert [b.seq for b in await kit.service.ledger.bids(auction)] == list(range(1, BIDDERS + 1))
    assert await kit.service.ledger.count_calls(auction) == BIDDERS


async def test_a_bid_not_recorded_is_503_and_its_retry_is_acknowledged(kit: Kit) -> None:
    auction = await kit.open()
    bidding = kit.service.bidding
    recorder = bidding.recorder
    bidding.recorder = BidRecorder(kit.service.ledger, max_pending=0)  # takes nothing
    with pytest.raises(Unavailable):
        await kit.bid(auction, "ann", 100, key="a1")
    assert (await kit.service.book.peek(auction)).bids == 1  # accepted by Redis, unanswered
    assert await kit.service.ledger.recorded_seq(auction) == 0
    bidding.recorder = recorder
    answer = await kit.bid(auction, "ann", 100, key="a1")
    assert answer["seqs"] == [1] and answer["leading"]
    assert await kit.service.ledger.recorded_seq(auction) == 1
