"""Many holders cancel or let their holds expire while many buyers wait, sweepers run and late
buyers keep reserving: never oversold, and each freed unit goes to exactly one waiter, in the
order they joined (every waiter here is below the limit, so none is skipped)."""

from __future__ import annotations

import asyncio
import random

from lock_helpers import assert_consistent, hold, id_parts, new_pool, open_client

from inventory_lock import HoldRecord, HoldState, InventoryLock, Rejection
from inventory_lock.codec import text
from inventory_lock.scripts import Client

STOCK = 40
WAITERS = 160
CONFIRMED = 15  # offers the waiters take; the rest lapse and go on to the next waiter
HOLD_S = 0.15
CLIENTS = 4


async def test_freed_units_go_to_waiters_once_each_in_order(
    lock: InventoryLock, backend: tuple[str, str], namespace: str
) -> None:
    pool = new_pool("wr")
    assert (await lock.load(pool, STOCK, 1, HOLD_S)).ok
    holds = [hold(await lock.reserve(pool, f"h{i}", 1, "k")).id for i in range(STOCK)]
    waiters = [f"w{i}" for i in range(WAITERS)]
    for position, waiter in enumerate(waiters, 1):
        joined = await lock.waitlists.join(pool, waiter, WAITERS)
        assert (joined.ok, joined.position) == (True, position)
    clients: list[Client] = [await open_client(*backend) for _ in range(CLIENTS)]
    locks = [InventoryLock(c, prefix=namespace) for c in clients]
    offers: list[HoldRecord] = []
    confirmed: list[str] = []
    late_holds: list[str] = []
    done = asyncio.Event()

    async def cancel_half() -> None:  # the other half expires
        for i, hold_id in enumerate(holds[::2]):
            ended = await locks[i % CLIENTS].cancel(hold_id)  # unless it expired first
            assert ended.state in (HoldState.RELEASED, HoldState.EXPIRED), ended
            await asyncio.sleep(random.random() / 200)

    async def sweep(me: InventoryLock) -> None:
        while not done.is_set():
            await me.expire_due(pool, batch=7)
            await asyncio.sleep(0.003)

    async def late_buyers(me: InventoryLock, tag: int) -> None:
        n = 0
        while not done.is_set():
            n += 1
            result = await me.reserve(pool, f"late{tag}-{n}", 1, "k")
            if not isinstance(result, Rejection):
                late_holds.append(result.id)
            await asyncio.sleep(0.002)

    async def takers(me: InventoryLock) -> None:
        """Take offers as the service would; the first CONFIRMED taken are confirmed."""
        while not done.is_set():
            for offer in await me.waitlists.take_offers(pool, 5):
                offers.append(offer)
                if len(confirmed) < CONFIRMED:
                    confirmed.append(offer.id)  # before the await: the other taker counts it
                    if (await me.begin_confirm(offer.id)).ok:
                        assert (await me.finish_confirm(offer.id)).ok
                    else:  # it lapsed before the confirm (a slow machine)
                        confirmed.remove(offer.id)
            await asyncio.sleep(0.002)

    async def all_served() -> None:
        while True:
            snap = await lock.snapshot(pool)
            assert snap is not None
            if snap.waiting == 0 and snap.offered == 0:
                break
            report = await lock.check(pool)
            assert report is not None and report.ok, report  # mid-race, too
            await asyncio.sleep(0.01)
        done.set()

    try:
        async with asyncio.timeout(60), asyncio.TaskGroup() as tasks:  # a failure stops all
            for work in (
                cancel_half(),
                all_served(),
                *(sweep(me) for me in locks[:2]),
                *(late_buyers(me, i) for i, me in enumerate(locks)),
                *(takers(me) for me in locks[2:]),
            ):
                tasks.create_task(work)
    finally:
        for c in clients:
            await c.aclose()
    report = await lock.check(pool)
    assert report is not None and report.ok, report
    # every waiter got exactly one offer (some taken after they lapsed are left out of `offers`)
    made = await offered_holds(lock, pool)
    by_seq = sorted(made, key=lambda record: id_parts(record.id)[1])
    assert [record.buyer for record in by_seq] == waiters
    assert {record.id for record in offers} <= {record.id for record in made}
    assert sorted(r.id for r in made if r.state is HoldState.CONFIRMED) == sorted(confirmed)
    assert report.confirmed == len(confirmed)
    assert report.remaining + report.held == STOCK - len(confirmed)
    # a late buyer got a unit only once nobody waited: after the last offer
    last_offer = id_parts(by_seq[-1].id)[1]
    assert all(id_parts(hold_id)[1] > last_offer for hold_id in late_holds)
    await assert_consistent(lock, pool)


async def offered_holds(lock: InventoryLock, pool: str) -> list[HoldRecord]:
    """Every hold made for a waiter (buyers w<i>), whatever state it ended in."""
    client = lock._redis
    raw = await client.hgetall(lock.keys(pool).holds)
    records = [await lock.get_hold(text(key)) for key in raw]
    return [r for r in records if r is not None and r.buyer.startswith("w")]
