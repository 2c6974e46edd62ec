"""Real faults during a bid storm (in the first, by two processes' services): a redis-server of
the test's own killed and restarted with its data (appendfsync everysec: the last writes may be
lost), rolled back to an older snapshot, flushed; PostgreSQL stalled (the auction's row locked
past the write timeout) or cut off (its connections terminated). After each (storm.judge):
every acknowledged bid is in PostgreSQL, no seq was given twice, the winner is the highest bid,
the auction took bids again within seconds, and every bid got an answer or 503, never an error.
Then settlement: a rollback that lost the winner's hold and pool, and a restart that left the
pool stale: the hold is made again, the pool repaired, and the winner's confirm is the one
order. And a deadline that passed while Redis was down stands: the auction ends with the bids
PostgreSQL has."""

from __future__ import annotations

import asyncio
import dataclasses
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path

import asyncpg
import pytest
from auction_kit import HOST, Kit, make_kit, until, viewer
from storm import Storm, judge

from flash_sales.auctions.model import pool_name
from live import db
from live.settings import Settings
from loadtest.faults import RedisServer, cut_connections
from rooms.errors import STORAGE_ERRORS


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
    """The service of one process on the test's own Redis (PostgreSQL writes time out fast)."""
    made, close = await make_kit(
        dataclasses.replace(settings, redis_url=own_redis.url), write_timeout_s=0.5
    )
    yield made
    await close()


@pytest.fixture
async def second(settings: Settings, own_redis: RedisServer) -> AsyncIterator[Kit]:
    """Another process's service beside `faulty`'s."""
    made, close = await make_kit(
        dataclasses.replace(settings, redis_url=own_redis.url), write_timeout_s=0.5
    )
    yield made
    await close()


async def _storm(kit: Kit, seed: int, *others: Kit) -> Storm:
    auction = await kit.open(duration_s=600)
    return Storm(kit, auction, seed=seed, others=list(others))


async def test_redis_killed_and_restarted_mid_storm_of_two_processes(
    faulty: Kit, second: Kit, own_redis: RedisServer
) -> None:
    storm = await _storm(faulty, 1, second)

    async def fault(storm: Storm) -> None:
        await storm.acks_reached(30)
        await asyncio.to_thread(own_redis.restart, kill=True, down_s=0.5)

    await storm.run(fault)
    assert storm.unavailable > 0  # the outage was seen
    rebuilt = [kit.service.keeper.rebuild.rebuilt for kit in (faulty, second)]
    assert sum(rebuilt) >= 1
    problems = await judge(storm)
    assert not problems, "\n".join(problems)


async def test_redis_rolled_back_mid_storm(faulty: Kit, own_redis: RedisServer) -> None:
    storm = await _storm(faulty, 2)

    async def fault(storm: Storm) -> None:
        await storm.acks_reached(10)
        snapshot = await asyncio.to_thread(own_redis.snapshot)
        await storm.acks_reached(40)  # then Redis forgets these 30 and more
        await asyncio.to_thread(own_redis.rollback, snapshot)

    await storm.run(fault)
    assert faulty.service.keeper.rebuild.rebuilt >= 1
    problems = await judge(storm)
    assert not problems, "\n".join(problems)


async def test_redis_flushed_mid_storm(faulty: Kit, own_redis: RedisServer) -> None:
    storm = await _storm(faulty, 5)

    async def fault(storm: Storm) -> None:
        await storm.acks_reached(30)
        await asyncio.to_thread(own_redis.flush)  # every key gone: the book is missing

    await storm.run(fault)
    assert faulty.service.keeper.rebuild.rebuilt >= 1
    problems = await judge(storm)
    assert not problems, "\n".join(problems)


async def test_postgres_stalled_answers_503_and_writes_nothing_half(
    faulty: Kit, settings: Settings
) -> None:
    storm = await _storm(faulty, 3)

    async def fault(storm: Storm) -> None:
        await storm.acks_reached(10)
        conn = await asyncpg.connect(settings.database_url, timeout=10)
        try:
            async with conn.transaction():  # the auction's row locked past the write timeout
                await conn.execute(
                    f"SELECT 1 FROM {settings.database_schema}.auctions WHERE id = $1 FOR UPDATE",
                    storm.auction,
                )
                refused = storm.unavailable
                async with asyncio.timeout(15):
                    while storm.unavailable < refused + 12:  # noqa: ASYNC110 (a count, no event)
                        await asyncio.sleep(0.05)
        finally:
            await conn.close()

    await storm.run(fault)
    problems = await judge(storm)
    assert not problems, "\n".join(problems)


async def test_postgres_connections_cut_answers_503(faulty: Kit, settings: Settings) -> None:
    storm = await _storm(faulty, 4)

    async def fault(storm: Storm) -> None:
        for round_ in range(3):
            await storm.acks_reached(10 * (round_ + 1))
            name = db.application_name(settings)
            await asyncio.to_thread(cut_connections, settings.database_url, name)

    await storm.run(fault)
    problems = await judge(storm)
    assert not problems, "\n".join(problems)


async def test_settlement_survives_a_redis_rollback_then_a_restart(
    faulty: Kit, own_redis: RedisServer
) -> None:
    kit = faulty
    auction = await kit.open()
    await kit.bid(auction, "ann", 100)
    await kit.bid(auction, "bob", 110)
    snapshot = await asyncio.to_thread(own_redis.snapshot)
    await kit.service.lifecycle.stop(auction, HOST)
    lost = (await kit.service.store.offers(auction))[0].reservation_id
    await asyncio.to_thread(own_redis.rollback, snapshot)  # the pool and bob's hold are gone
    renewed: list[str] = []

    async def swept(check: Callable[[], Awaitable[bool]]) -> bool:
        try:
            await kit.service.settlement.sweep()
            return await check()
        except STORAGE_ERRORS:
            return False  # the client reconnects

    async def hold_renewed() -> bool:
        offer = (await kit.service.store.offers(auction))[0]
        renewed[:] = [offer.reservation_id] if offer.reservation_id not in (None, lost) else []
        return bool(renewed) and await kit.lock.get_hold(renewed[0]) is not None

    await until(lambda: swept(hold_renewed))
    await asyncio.to_thread(own_redis.restart, kill=False)  # with its data: the pool is stale

    async def pool_repaired() -> bool:
        snap = await kit.lock.snapshot(pool_name(auction))
        return snap is not None and not snap.stale and not snap.fenced

    await until(lambda: swept(pool_repaired))
    order = await kit.service.confirm(renewed[0], viewer("bob"), "pay-bob")
    assert (order["buyer"], order["price_cents"]) == ("bob", 110)
    report = await kit.lock.check(pool_name(auction))
    assert report is not None and report.ok and report.confirmed == 1


async def test_a_deadline_that_passes_while_redis_is_down_stands(
    faulty: Kit, own_redis: RedisServer
) -> None:
    kit = faulty
    auction = await kit.open(duration_s=1.5, snipe_window_s=0)
    await kit.bid(auction, "ann", 100)
    last = await kit.bid(auction, "bob", 110)
    await asyncio.to_thread(own_redis.stop, kill=True)
    server_ms = await kit.pg.fetchval("SELECT (extract(epoch FROM now()) * 1000)::bigint")
    async with asyncio.timeout(10):  # down until the deadline has passed, by the clocks' time
        while server_ms < last["ends_at"] + 200:
            await asyncio.sleep(0.1)
            server_ms = await kit.pg.fetchval("SELECT (extract(epoch FROM now()) * 1000)::bigint")
    await asyncio.to_thread(own_redis.start)  # the book is stale, its deadline past

    async def ended() -> bool:
        try:
            await kit.service.lifecycle.end_due()
            return bool((await kit.service.lifecycle.view(auction))["state"] == "ended")
        except STORAGE_ERRORS:
            return False  # the client reconnects

    await until(ended)
    view = await kit.service.lifecycle.view(auction)
    assert (view["price_cents"], view["bids"], view["ends_at"]) == (110, 2, last["ends_at"])
    offers = await kit.service.store.offers(auction)
    assert [(o.bidder, o.price_cents) for o in offers] == [("bob", 110)]
