"""The waitlist of a pool: joining only when sold out, once, within bounds; a unit freed by a
cancel, an expiry or a rolled-back confirm goes to the next waiter as an offered hold of its own
in the same script; an offer is confirmed like a hold, and one that lapses or is declined goes
on to the next waiter; bad input changes nothing."""

from __future__ import annotations

from lock_helpers import assert_consistent, hold, key_dump, new_pool, poll, server_ms

from inventory_lock import (
    Adopted,
    HoldRecord,
    HoldState,
    InventoryLock,
    OrderFact,
    Rejection,
    RejectReason,
    Waiting,
    WaitReason,
)
from inventory_lock.scripts import Client

HOLD_S = 30.0
MAX_WAITING = 3


async def sold_out_pool(
    lock: InventoryLock, stock: int = 2, limit: int = 2
) -> tuple[str, list[str]]:
    """A pool whose stock is all held, one unit each by h0, h1, ...; their hold ids."""
    pool = new_pool("wl")
    assert (await lock.load(pool, stock, limit, HOLD_S)).ok
    holds = [hold(await lock.reserve(pool, f"h{i}", 1, "k")).id for i in range(stock)]
    return pool, holds


async def offers(lock: InventoryLock, pool: str) -> list[HoldRecord]:
    return await lock.waitlists.take_offers(pool)


async def test_join_only_when_sold_out_once_and_within_bounds(lock: InventoryLock) -> None:
    pool = new_pool("wl")
    assert (await lock.load(pool, 2, 1, HOLD_S)).ok
    waitlists = lock.waitlists
    assert await waitlists.join(pool, "ann", MAX_WAITING) == Waiting(
        False, 0, WaitReason.NOT_SOLD_OUT
    )
    hold(await lock.reserve(pool, "h0", 1, "k"))
    hold(await lock.reserve(pool, "h1", 1, "k"))
    assert await waitlists.join(pool, "ann", MAX_WAITING) == Waiting(True, 1)
    assert await waitlists.join(pool, "bob", MAX_WAITING) == Waiting(True, 2)
    assert await waitlists.join(pool, "ann", MAX_WAITING) == Waiting(
        False, 1, WaitReason.ALREADY_WAITING
    )
    assert await waitlists.join(pool, "h0", MAX_WAITING) == Waiting(False, 0, WaitReason.LIMIT)
    assert (await waitlists.join(pool, "cy", MAX_WAITING)).ok
    assert await waitlists.join(pool, "dee", MAX_WAITING) == Waiting(False, 0, WaitReason.FULL)
    assert await waitlists.position(pool, "bob") == 2
    assert await waitlists.leave(pool, "ann") is True
    assert await waitlists.leave(pool, "ann") is False
    assert await waitlists.position(pool, "bob") == 1
    assert await waitlists.position(pool, "ann") is None
    snap = await lock.snapshot(pool)
    assert snap is not None and snap.waiting == 2
    assert (await lock.close(pool)).ok
    assert await waitlists.join(pool, "dee", MAX_WAITING) == Waiting(False, 0, WaitReason.CLOSED)
    assert await waitlists.join(new_pool("none"), "ann", 3) == Waiting(
        False, 0, WaitReason.UNKNOWN_POOL
    )
    await assert_consistent(lock, pool)


async def test_bad_input_changes_nothing(
    lock: InventoryLock, client: Client, namespace: str
) -> None:
    pool, _ = await sold_out_pool(lock)
    before = await key_dump(client, namespace)
    invalid = Waiting(False, 0, WaitReason.INVALID)
    for pool_arg, buyer, bound in [
        (pool, "", 3),
        (pool, "x" * 201, 3),
        (pool, "ann", 0),
        (pool, "ann", -1),
        ("bad pool", "ann", 3),
        ("{x}", "ann", 3),
    ]:
        assert await lock.waitlists.join(pool_arg, buyer, bound) == invalid
        assert await lock.waitlists.leave(pool_arg, buyer) is False
    assert await lock.waitlists.take_offers("bad pool") == []
    assert await lock.waitlists.take_offers(pool, 0) == []
    assert await key_dump(client, namespace) == before


async def test_a_cancelled_unit_goes_to_the_first_waiter_as_an_offer(
    lock: InventoryLock, client: Client
) -> None:
    pool, holds = await sold_out_pool(lock)
    for buyer in ("ann", "bob"):
        assert (await lock.waitlists.join(pool, buyer, MAX_WAITING)).ok
    before = await server_ms(client)
    assert (await lock.cancel(holds[0])).ok
    [offer] = await offers(lock, pool)
    assert (offer.buyer, offer.qty, offer.state) == ("ann", 1, HoldState.OFFERED)
    assert offer.expires_at_ms >= before + HOLD_S * 1000
    assert await offers(lock, pool) == []  # taken once
    snap = await lock.snapshot(pool)
    assert snap is not None and (snap.remaining, snap.held, snap.offered) == (0, 1, 1)
    assert snap.waiting == 1 and await lock.waitlists.position(pool, "bob") == 1
    await assert_consistent(lock, pool)
    # ann confirms the offer like a hold
    assert (await lock.begin_confirm(offer.id)).state is HoldState.CONFIRMING
    assert (await lock.finish_confirm(offer.id)).state is HoldState.CONFIRMED
    # bob's turn comes when the other hold is released: he declines, and nobody waits
    assert (await lock.cancel(holds[1])).ok
    [second] = await offers(lock, pool)
    assert second.buyer == "bob"
    assert (await lock.cancel(second.id)).state is HoldState.RELEASED
    snap = await lock.snapshot(pool)
    assert snap is not None and (snap.remaining, snap.offered, snap.waiting) == (1, 0, 0)
    await assert_consistent(lock, pool)


async def test_a_lapsed_offer_goes_to_the_next_waiter(lock: InventoryLock) -> None:
    pool = new_pool("wl")
    assert (await lock.load(pool, 1, 1, 0.05)).ok
    first = hold(await lock.reserve(pool, "h0", 1, "k"))
    for buyer in ("ann", "bob"):
        assert (await lock.waitlists.join(pool, buyer, MAX_WAITING)).ok

    async def offered_to(buyer: str) -> bool:
        await lock.expire_due(pool)
        taken = await offers(lock, pool)
        return any(offer.buyer == buyer for offer in taken)

    await poll(lambda: offered_to("ann"))
    record = await lock.get_hold(first.id)
    assert record is not None and record.state is HoldState.EXPIRED
    await poll(lambda: offered_to("bob"))  # ann let hers lapse
    await assert_consistent(lock, pool)

    async def back_in_stock() -> bool:
        await lock.expire_due(pool)
        snap = await lock.snapshot(pool)
        return snap is not None and snap.remaining == 1

    await poll(back_in_stock)  # bob's lapsed too, and nobody waits
    await assert_consistent(lock, pool)


async def test_reserve_reclaims_into_offers_and_sells_nothing_a_waiter_gets(
    lock: InventoryLock, client: Client
) -> None:
    """An expiry that reserve reclaims goes to the waiter, not to the reserving buyer."""
    pool = new_pool("wl")
    assert (await lock.load(pool, 1, 1, 0.02)).ok
    hold(await lock.reserve(pool, "h0", 1, "k"))
    assert (await lock.waitlists.join(pool, "ann", MAX_WAITING)).ok
    now = await server_ms(client)

    async def due() -> bool:
        return await server_ms(client) > now + 40

    await poll(due)
    assert await lock.reserve(pool, "late", 1, "k") == Rejection(RejectReason.SOLD_OUT)
    [offer] = await offers(lock, pool)
    assert offer.buyer == "ann"
    await assert_consistent(lock, pool)


async def test_waiters_at_the_limit_are_skipped(lock: InventoryLock, client: Client) -> None:
    pool, holds = await sold_out_pool(lock, stock=3, limit=1)
    assert (await lock.waitlists.join(pool, "ann", MAX_WAITING)).ok
    assert (await lock.waitlists.join(pool, "bob", MAX_WAITING)).ok
    assert (await lock.cancel(holds[0])).ok  # -> offered to ann
    [offer] = await offers(lock, pool)
    assert offer.buyer == "ann"
    assert (await lock.waitlists.join(pool, "ann", MAX_WAITING)).reason is WaitReason.LIMIT
    assert (await lock.waitlists.join(pool, "cy", MAX_WAITING)).ok
    await client.zadd(lock.keys(pool).waiters, {"h1": 0})  # at the limit, first in line
    assert (await lock.cancel(holds[2])).ok
    [second] = await offers(lock, pool)
    assert second.buyer == "bob"  # h1 holds the limit: skipped, and out of the queue
    assert await lock.waitlists.position(pool, "h1") is None
    assert await lock.waitlists.position(pool, "cy") == 1
    await assert_consistent(lock, pool)


async def test_a_rolled_back_confirm_and_a_stock_increase_feed_the_waitlist(
    lock: InventoryLock,
) -> None:
    pool, holds = await sold_out_pool(lock, stock=1, limit=1)
    for buyer in ("ann", "bob"):
        assert (await lock.waitlists.join(pool, buyer, MAX_WAITING)).ok
    assert (await lock.begin_confirm(holds[0])).ok
    assert (await lock.abort_confirm(holds[0], release=True)).ok
    [offer] = await offers(lock, pool)
    assert offer.buyer == "ann"
    assert (await lock.adjust_stock(pool, "more", 1)).ok
    assert (await lock.settle_stock(pool, "more", applied=True)).ok
    [second] = await offers(lock, pool)
    assert second.buyer == "bob"
    snap = await lock.snapshot(pool)
    assert snap is not None and (snap.stock, snap.remaining, snap.offered) == (2, 0, 2)
    await assert_consistent(lock, pool)


async def test_a_closed_pool_offers_nothing(lock: InventoryLock) -> None:
    pool, holds = await sold_out_pool(lock)
    assert (await lock.waitlists.join(pool, "ann", MAX_WAITING)).ok
    assert (await lock.close(pool)).ok
    assert (await lock.cancel(holds[0])).ok
    assert await offers(lock, pool) == []
    snap = await lock.snapshot(pool)
    assert snap is not None and (snap.remaining, snap.offered) == (1, 0)
    await assert_consistent(lock, pool)


async def test_adopt_makes_an_offer_an_order(lock: InventoryLock) -> None:
    pool, holds = await sold_out_pool(lock, stock=1, limit=1)
    assert (await lock.waitlists.join(pool, "ann", MAX_WAITING)).ok
    assert (await lock.cancel(holds[0])).ok
    [offer] = await offers(lock, pool)
    adopted = await lock.adopt(pool, [OrderFact(offer.id, "ann", 1)])
    assert isinstance(adopted, Adopted) and adopted.holds == 1
    snap = await lock.snapshot(pool)
    assert snap is not None and (snap.offered, snap.confirmed) == (0, 1)
    await assert_consistent(lock, pool)


async def test_units_owed_to_an_over_promised_pool_are_not_offered(lock: InventoryLock) -> None:
    """After a repair adopted more orders than the stock (remaining below zero), a freed unit
    first makes up for that; only what is left over is offered."""
    pool, holds = await sold_out_pool(lock, stock=2, limit=2)
    assert (await lock.waitlists.join(pool, "ann", MAX_WAITING)).ok
    extra = OrderFact(f"{pool}.1-{1:016x}", "x", 1)  # an order Redis never saw
    assert isinstance(await lock.adopt(pool, [extra]), Adopted)
    assert (await lock.cancel(holds[0])).ok  # pays back what was owed
    assert await offers(lock, pool) == []
    assert (await lock.cancel(holds[1])).ok
    [offer] = await offers(lock, pool)
    assert offer.buyer == "ann"
    snap = await lock.snapshot(pool)
    assert snap is not None and (snap.remaining, snap.offered, snap.confirmed) == (0, 1, 1)
    await assert_consistent(lock, pool)
