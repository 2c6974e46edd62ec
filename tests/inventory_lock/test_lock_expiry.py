"""Holds end by server time, and their stock comes back exactly once."""

from __future__ import annotations

import asyncio

from lock_helpers import (
    assert_consistent,
    hold,
    new_pool,
    open_client,
    server_ms,
    wait_until_ms,
)

from inventory_lock import (
    ExpiryResult,
    HoldState,
    InventoryLock,
    Rejection,
    RejectReason,
    ReserveRequest,
    TransitionReason,
)
from inventory_lock.scripts import Client

HOLD_S = 0.3


async def test_hold_expires_on_server_time(lock: InventoryLock, client: Client) -> None:
    pool = new_pool()
    await lock.load(pool, 3, 3, HOLD_S)
    h = hold(await lock.reserve(pool, "a", 2, "k"))
    while True:
        before = await server_ms(client)
        result = await lock.expire_due(pool)
        after = await server_ms(client)
        assert result is not None
        if result.holds:
            assert after >= h.expires_at_ms, "expired early"
            assert (result.qty, result.remaining) == (2, 3)
            break
        assert before < h.expires_at_ms, "not expired although due"
        await asyncio.sleep(0.01)
    record = await lock.get_hold(h.id)
    assert record is not None and record.state is HoldState.EXPIRED
    assert await lock.expire_due(pool) == ExpiryResult(pool, 0, 0, 3)
    await assert_consistent(lock, pool)


async def test_reserve_reclaims_due_holds_itself(lock: InventoryLock, client: Client) -> None:
    pool = new_pool()
    await lock.load(pool, 2, 2, HOLD_S)
    first = hold(await lock.reserve(pool, "a", 2, "k"))
    assert await lock.reserve(pool, "b", 1, "k") == Rejection(RejectReason.SOLD_OUT)
    await wait_until_ms(client, first.expires_at_ms)
    second = hold(await lock.reserve(pool, "b", 2, "k"))  # no sweeper ran
    assert second.remaining == 0
    record = await lock.get_hold(first.id)
    assert record is not None and record.state is HoldState.EXPIRED
    replay = hold(await lock.reserve(pool, "a", 2, "k"))
    assert (replay.id, replay.state) == (first.id, HoldState.EXPIRED)
    await assert_consistent(lock, pool)


async def test_due_hold_cannot_be_confirmed_or_cancelled(
    lock: InventoryLock, client: Client
) -> None:
    pool = new_pool()
    await lock.load(pool, 4, 4, HOLD_S)
    to_confirm = hold(await lock.reserve(pool, "a", 1, "k1"))
    to_cancel = hold(await lock.reserve(pool, "a", 1, "k2"))
    await wait_until_ms(client, max(to_confirm.expires_at_ms, to_cancel.expires_at_ms))
    for transition in [await lock.begin_confirm(to_confirm.id), await lock.cancel(to_cancel.id)]:
        assert (transition.ok, transition.reason) == (False, TransitionReason.EXPIRED)
        assert transition.state is HoldState.EXPIRED
    assert (await lock.finish_confirm(to_confirm.id)).reason is TransitionReason.EXPIRED
    snapshot = await lock.snapshot(pool)
    assert snapshot is not None and (snapshot.remaining, snapshot.held) == (4, 0)
    await assert_consistent(lock, pool)


async def test_confirming_hold_does_not_expire_until_aborted(
    lock: InventoryLock, client: Client
) -> None:
    pool = new_pool()
    await lock.load(pool, 2, 2, HOLD_S)
    h = hold(await lock.reserve(pool, "a", 2, "k"))
    assert (await lock.begin_confirm(h.id)).ok
    await wait_until_ms(client, h.expires_at_ms + 1)
    assert await lock.expire_due(pool) == ExpiryResult(pool, 0, 0, 0)
    assert (await lock.abort_confirm(h.id, release=False)).state is HoldState.HELD
    result = await lock.expire_due(pool)
    assert result is not None and (result.holds, result.remaining) == (1, 2)
    await assert_consistent(lock, pool)


async def test_concurrent_sweepers_return_stock_once(
    lock: InventoryLock, client: Client, backend: tuple[str, str], namespace: str
) -> None:
    pool = new_pool()
    await lock.load(pool, 300, 300, HOLD_S)
    holds = [
        hold(result)
        for result in await lock.reserve_many(
            [ReserveRequest(pool, f"b{i % 7}", 1, f"k{i}") for i in range(300)]
        )
    ]
    clients = [await open_client(*backend) for _ in range(4)]
    try:
        sweepers = [InventoryLock(c, prefix=namespace) for c in clients]
        await wait_until_ms(client, max(h.expires_at_ms for h in holds))

        async def sweep(sweeper: InventoryLock) -> int:
            returned = 0
            for _ in range(50):
                result = await sweeper.expire_due(pool, batch=20)
                assert result is not None
                returned += result.qty
                await asyncio.sleep(0)
            return returned

        totals = await asyncio.gather(*(sweep(s) for s in sweepers for _ in range(3)))
        assert sum(totals) == 300
        assert sum(1 for t in totals if t) > 1, "the sweepers did not overlap"
    finally:
        for c in clients:
            await c.aclose()
    snapshot = await lock.snapshot(pool)
    assert snapshot is not None and (snapshot.remaining, snapshot.held, snapshot.buyers) == (
        300,
        0,
        0,
    )
    await assert_consistent(lock, pool)


async def test_a_hold_aborted_back_to_held_after_its_expiry_is_reclaimed_by_reserve(
    lock: InventoryLock, client: Client
) -> None:
    """Reserve skips its reclaim until the pool's next_due bound; a hold that abort_confirm puts
    back into the expiry index with its old expiry must lower that bound, or it would block its
    stock until the other holds are due."""
    pool = new_pool()
    await lock.load(pool, 2, 2, 1.0)
    first = hold(await lock.reserve(pool, "a", 1, "k"))
    assert (await lock.begin_confirm(first.id)).ok
    await wait_until_ms(client, first.expires_at_ms + 1)
    second = hold(await lock.reserve(pool, "b", 1, "k"))  # reclaims, next due = its expiry
    assert (await lock.abort_confirm(first.id, release=False)).ok
    third = hold(await lock.reserve(pool, "c", 1, "k"))
    assert await server_ms(client) < second.expires_at_ms, "too slow to prove anything"
    record = await lock.get_hold(first.id)
    assert record is not None and record.state is HoldState.EXPIRED
    assert third.remaining == 0
    await assert_consistent(lock, pool)


async def test_a_batch_reclaims_as_much_as_its_singles_would(
    client: Client, namespace: str
) -> None:
    """More holds due than one reclaim batch: a batch of n requests reclaims up to n of them,
    as n single reserves would, instead of answering sold_out."""
    lock = InventoryLock(client, prefix=namespace, reclaim_batch=2)
    pool = new_pool()
    await lock.load(pool, 6, 6, HOLD_S)
    old = [hold(await lock.reserve(pool, f"old{i}", 1, "k")) for i in range(6)]
    await wait_until_ms(client, max(h.expires_at_ms for h in old))
    results = await lock.reserve_many([ReserveRequest(pool, f"new{i}", 1, "k") for i in range(6)])
    assert [hold(r).remaining for r in results] == [5, 4, 3, 2, 1, 0]
    await assert_consistent(lock, pool)
