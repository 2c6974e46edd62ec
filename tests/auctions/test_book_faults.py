"""Faults between a book in Redis and its record in PostgreSQL, each at its worst moment:
- a call accepted after the catch-up copy's peek, its own write lost, then Redis restarted:
  the rebuilt book never replays it (its bid is not there), so no seq is given twice and no
  acknowledged bid is dropped;
- a rebuild whose take-over stalls past its fence's lease: it names nothing, the later
  rebuild's book takes bids; and an `ok` book PostgreSQL does not name is rebuilt;
- a stop whose PostgreSQL write never happened (its request gave up after Redis ended the
  book): the auction is ended by the books' check, not reopened when the keys expire;
- a book taken back in time under the same Redis run id (a resync or failover that kept it):
  rebuilt before it gives a seq again;
- an end whose announcement died with its process: told by the sweep, once.
"""

from __future__ import annotations

import asyncio
import dataclasses
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import asyncpg
import pytest
from auction_kit import HOST, Kit, kit, make_kit, until

from flash_sales.auctions import rebuild as rebuild_module
from flash_sales.auctions.book import Live
from flash_sales.auctions.ledger import BookDiverged
from live.settings import Settings
from loadtest.faults import RedisServer
from rooms.errors import STORAGE_ERRORS, Unavailable

__all__ = ["kit"]


@pytest.fixture
async def own_redis(tmp_path: Path) -> AsyncIterator[RedisServer]:
    server = RedisServer(tmp_path / "redis")
    await asyncio.to_thread(server.start)
    try:
        yield server
    finally:
        await asyncio.to_thread(server.stop, kill=True)


@pytest.fixture
async def faulty(settings: Settings, own_redis: RedisServer) -> AsyncIterator[Kit]:
    made, close = await make_kit(dataclasses.replace(settings, redis_url=own_redis.url))
    yield made
    await close()


async def _recorded(kit: Kit, auction: int) -> set[tuple[int, str, int]]:
    return {(b.seq, b.bidder, b.amount_cents) for b in await kit.service.ledger.bids(auction)}


def _acked(answer: dict[str, Any], user: str, amount: int) -> set[tuple[int, str, int]]:
    """The bid rows an acknowledged plain bid (no proxy answered it) stands for."""
    return {(seq, user, amount) for seq in answer["seqs"]}


async def _checked_ok(kit: Kit, auction: int) -> bool:
    try:
        await kit.service.lifecycle.check_books()
        return (await kit.service.book.peek(auction)).book == "ok"
    except STORAGE_ERRORS:
        return False  # the client reconnects after a restart


async def test_a_call_accepted_after_the_copys_peek_is_not_replayed_after_a_rebuild(
    faulty: Kit, own_redis: RedisServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    kit = faulty
    auction = await kit.open()
    for user, amount in (("ann", 100), ("bob", 110), ("ann", 120)):
        await kit.bid(auction, user, amount)
    book = kit.service.book
    peek = book.peek

    async def peek_then_zed_bids(auction_id: int) -> Live:
        live = await peek(auction_id)  # rev 3, seq 3
        await book.bid(auction_id, "zed", "", 200, None, "zed-1")  # its write never lands
        return live

    monkeypatch.setattr(book, "peek", peek_then_zed_bids)
    await kit.service.keeper.flush(auction)  # copies what the peek saw, not zed's call
    monkeypatch.undo()
    await asyncio.to_thread(own_redis.restart, kill=False)  # the book is stale: rebuilt
    await until(lambda: _checked_ok(kit, auction))
    zed = await kit.bid(auction, "zed", 200, key="zed-1")  # zed retries (it got 503)
    wes = await kit.bid(auction, "wes", 300)
    recorded = await _recorded(kit, auction)
    assert _acked(zed, "zed", 200) <= recorded and _acked(wes, "wes", 300) <= recorded
    assert wes["leading"] and (await book.peek(auction)).leader == "wes"
    assert sorted(s for s, _, _ in recorded) == list(range(1, len(recorded) + 1))


async def test_a_seq_given_to_another_bid_is_refused_not_dropped(kit: Kit) -> None:
    auction = await kit.open()
    await kit.bid(auction, "ann", 100)
    answer = await kit.service.book.bid(auction, "bob", "", 110, None, "bob-1")
    clash = dataclasses.replace(answer.entries[0], seq=1)  # seq 1 is ann's
    with pytest.raises(BookDiverged):
        await kit.service.ledger.record(auction, answer.live, [clash])
    await kit.service.ledger.record(auction, answer.live, answer.entries)  # idempotent
    await kit.service.ledger.record(auction, answer.live, answer.entries)
    assert await _recorded(kit, auction) == {(1, "ann", 100), (2, "bob", 110)}


async def test_a_take_over_that_outlived_its_fence_names_nothing(
    kit: Kit, settings: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    other, close = await make_kit(settings)
    try:
        monkeypatch.setattr(rebuild_module, "FENCE_LEASE_MS", 300)
        auction = await kit.open()
        await kit.bid(auction, "ann", 100)
        await kit.redis.hset(kit.service.book.keys(auction).state, "run_id", "an-earlier-run")
        reached, go = asyncio.Event(), asyncio.Event()
        take_over = kit.service.ledger.take_over

        async def stalled(*args: Any) -> Any:
            reached.set()
            await go.wait()  # the stall: past its lease, another rebuild runs meanwhile
            return await take_over(*args)

        monkeypatch.setattr(kit.service.ledger, "take_over", stalled)
        fixed = await kit.service.lifecycle.fixed(auction)
        late = asyncio.create_task(kit.service.keeper.rebuild.rebuild(fixed))
        await asyncio.wait_for(reached.wait(), 5)
        await until(lambda: other.service.keeper.rebuild.rebuild(fixed), within_s=5)
        go.set()
        await asyncio.wait_for(late, 5)
        live = await kit.service.book.peek(auction)
        epoch = await kit.pg.fetchval("SELECT book_epoch FROM auctions WHERE id = $1", auction)
        assert (live.book, live.epoch) == ("ok", epoch)
        bob = await other.bid(auction, "bob", 110)  # taken and recorded, not 503
        assert bob["seqs"] == [2] and (2, "bob", 110) in await _recorded(kit, auction)
    finally:
        await close()


async def test_an_ok_book_postgres_does_not_name_is_rebuilt(kit: Kit) -> None:
    auction = await kit.open()
    await kit.bid(auction, "ann", 100)
    await kit.pg.execute("UPDATE auctions SET book_epoch = 'orphaned' WHERE id = $1", auction)
    with pytest.raises(Unavailable):
        await kit.bid(auction, "bob", 110)  # its write is refused: 503, the bid is in Redis
    await kit.service.lifecycle.check_books()
    live = await kit.service.book.peek(auction)
    epoch = await kit.pg.fetchval("SELECT book_epoch FROM auctions WHERE id = $1", auction)
    assert (live.book, live.epoch, live.bids) == ("ok", epoch, 1)
    bob = await kit.bid(auction, "bob", 110)
    assert bob["seqs"] == [2] and (2, "bob", 110) in await _recorded(kit, auction)


async def test_a_stop_whose_postgres_write_never_came_is_finished(
    kit: Kit, settings: Settings
) -> None:
    auction = await kit.open(duration_s=600)
    await kit.bid(auction, "ann", 100)
    conn = await asyncpg.connect(settings.database_url, timeout=10)
    try:
        async with conn.transaction():  # the auction's row locked: the stop's end waits
            await conn.execute(
                f"SELECT 1 FROM {settings.database_schema}.auctions WHERE id = $1 FOR UPDATE",
                auction,
            )
            with pytest.raises(TimeoutError):  # the request gives up after Redis ended it
                async with asyncio.timeout(1):
                    await kit.service.lifecycle.stop(auction, HOST)
    finally:
        await conn.close()
    assert (await kit.service.book.peek(auction)).state == "ended"
    still = await kit.service.store.get(auction)
    assert still is not None and still.state.value == "open"
    await kit.service.lifecycle.check_books()
    ended = await kit.service.store.get(auction)
    assert ended is not None and (ended.state.value, ended.price_cents) == ("ended", 100)
    offers = await kit.service.store.offers(auction)
    assert [(o.bidder, o.price_cents) for o in offers] == [("ann", 100)]


async def test_a_book_back_in_time_under_the_same_run_is_rebuilt(kit: Kit) -> None:
    auction = await kit.open()
    await kit.bid(auction, "ann", 100)
    keys = kit.service.book.keys(auction).all
    dumps = {key: await kit.redis.dump(key) for key in keys}
    await kit.bid(auction, "bob", 110)
    await kit.bid(auction, "ann", 120)
    for key, dump in dumps.items():  # back to one bid, on the same server (same run id)
        assert dump is not None
        await kit.redis.restore(key, 0, dump, replace=True)
    assert (await kit.service.book.peek(auction)).book == "ok"
    await kit.service.lifecycle.check_books()
    live = await kit.service.book.peek(auction)
    assert (live.book, live.bids, live.price_cents, live.leader) == ("ok", 3, 120, "ann")
    cat = await kit.bid(auction, "cat", 200)
    assert cat["seqs"] == [4]
    assert await _recorded(kit, auction) == {
        (1, "ann", 100),
        (2, "bob", 110),
        (3, "ann", 120),
        (4, "cat", 200),
    }


async def test_an_end_whose_announcement_died_is_announced(
    kit: Kit, monkeypatch: pytest.MonkeyPatch
) -> None:
    auction = await kit.open()
    await kit.bid(auction, "ann", 100)
    announcer = kit.service.announcer

    async def dies(*args: Any) -> None:
        raise OSError("the process died here")

    monkeypatch.setattr(announcer, "lifecycle", dies)
    with pytest.raises(OSError):
        await kit.service.lifecycle.stop(auction, HOST)
    monkeypatch.undo()
    assert await kit.events("auction_ended") == []
    await kit.service.lifecycle.announce_ended(grace_s=0)
    ended = await kit.events("auction_ended")
    assert [(e["data"]["price_cents"], e["data"]["auction"]["id"]) for e in ended] == [
        (100, auction)
    ]
    await kit.service.lifecycle.announce_ended(grace_s=0)  # told once
    assert len(await kit.events("auction_ended")) == 1
