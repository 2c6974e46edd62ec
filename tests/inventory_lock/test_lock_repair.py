"""Repair from the system of record: fence, adopt every order, unfence; plain and cluster."""

from __future__ import annotations

from lock_helpers import (
    LEASE_S,
    assert_consistent,
    hold,
    id_parts,
    key_dump,
    new_pool,
    pool_state,
    server_ms,
    wait_until_ms,
)

from inventory_lock import (
    Adopted,
    HoldState,
    InventoryLock,
    OrderFact,
    PoolChange,
    PoolReason,
    Rejection,
    RejectReason,
    ReserveRequest,
)
from inventory_lock.codec import text
from inventory_lock.engine import MAX_ADOPT_BATCH
from inventory_lock.scripts import Client

NONCE = "00000000deadbeef"
OLD_RUN = "0" * 40  # a run id no server has: the pool was brought up to date under another run
FENCED = Rejection(RejectReason.FENCED)
STALE = Rejection(RejectReason.STALE)


async def _meta(client: Client, lock: InventoryLock, pool: str, field: str) -> str | None:
    value = await client.hget(lock.keys(pool).meta, field)
    return None if value is None else text(value)


async def test_a_missing_pool_is_made_fenced_and_sells_only_once_unfenced(
    lock: InventoryLock, client: Client
) -> None:
    pool = new_pool()
    before = await server_ms(client)
    created = await lock.fence(pool, 10, 2, 30, "repair-1", LEASE_S)
    after = await server_ms(client)
    assert created == PoolChange(pool, True, PoolReason.CREATED)
    assert await lock.exists(pool)
    # the fence names this run of Redis and the repair, and lasts the lease (server clock)
    run_id = await _meta(client, lock, pool, "run_id")
    assert run_id is not None and len(run_id) == 40
    assert await _meta(client, lock, pool, "fenced") == f"{run_id}:repair-1"
    fence_until = int(await _meta(client, lock, pool, "fence_until") or 0)
    assert before + LEASE_S * 1000 <= fence_until <= after + LEASE_S * 1000
    snapshot = await lock.snapshot(pool)
    assert snapshot is not None and snapshot.fenced and not snapshot.stale
    assert (snapshot.stock, snapshot.remaining, snapshot.held, snapshot.confirmed) == (10, 10, 0, 0)
    assert (snapshot.limit_per_buyer, snapshot.hold_ms, snapshot.closed) == (2, 30_000, False)
    assert await lock.reserve(pool, "ann", 1, "k") == FENCED
    requests = [ReserveRequest(pool, f"b{i}", 1, "k") for i in range(3)]
    invalid = ReserveRequest(pool, "b", 0, "k")
    assert await lock.reserve_many([*requests, invalid]) == [
        *[FENCED] * 3,
        Rejection(RejectReason.INVALID),
    ]
    assert await lock.load(pool, 10, 2, 30) == PoolChange(pool, False, PoolReason.EXISTS)
    await assert_consistent(lock, pool)

    assert await lock.unfence(pool, "repair-1") == PoolChange(pool, True)
    assert await pool_state(lock, pool) == "ok"
    assert await _meta(client, lock, pool, "fenced") is None
    assert await _meta(client, lock, pool, "fence_until") is None
    first = hold(await lock.reserve(pool, "ann", 1, "k"))
    assert first.remaining == 9
    # an unfenced pool is refused (no fence of this token to end), and sells on
    assert await lock.unfence(pool, "repair-1") == PoolChange(pool, False, PoolReason.STALE)
    assert await pool_state(lock, pool) == "ok"
    assert hold(await lock.reserve(pool, "bob", 1, "k")).remaining == 8
    await assert_consistent(lock, pool)


async def test_fence_stops_an_existing_pool_and_keeps_what_it_holds(lock: InventoryLock) -> None:
    pool = new_pool()
    await lock.load(pool, 5, 2, 30)
    held = hold(await lock.reserve(pool, "ann", 1, "a"))
    confirming = hold(await lock.reserve(pool, "bob", 1, "b"))
    assert (await lock.begin_confirm(confirming.id)).ok
    for _ in range(2):  # a replay fences what is fenced already
        # not a missing pool: its own figures stay, whatever figures the fence carries
        assert await lock.fence(pool, 99, 9, 1, "repair", LEASE_S) == PoolChange(pool, True)
        snapshot = await lock.snapshot(pool)
        assert snapshot is not None and snapshot.fenced and not snapshot.stale
        assert (snapshot.stock, snapshot.remaining, snapshot.limit_per_buyer) == (5, 3, 2)
        assert (snapshot.held, snapshot.confirming, snapshot.hold_ms) == (1, 1, 30_000)
    # nothing sells, not even a replay of a known idempotency key ...
    assert await lock.reserve(pool, "ann", 1, "a") == FENCED
    assert await lock.reserve(pool, "cy", 1, "c") == FENCED
    # ... while holds already made go on: confirm, cancel
    assert (await lock.finish_confirm(confirming.id)).ok
    assert (await lock.cancel(held.id)).ok
    await assert_consistent(lock, pool)
    assert await lock.unfence(pool, "repair") == PoolChange(pool, True)
    replay = hold(await lock.reserve(pool, "ann", 1, "a"))
    assert (replay.id, replay.state, replay.replay) == (held.id, HoldState.RELEASED, True)
    assert hold(await lock.reserve(pool, "cy", 1, "c")).remaining == 3
    await assert_consistent(lock, pool)


async def test_unfence_with_another_token_is_refused_and_the_pool_stays_fenced(
    lock: InventoryLock, client: Client, namespace: str
) -> None:
    pool = new_pool()
    await lock.load(pool, 5, 2, 30)
    held = hold(await lock.reserve(pool, "ann", 1, "a"))
    assert await lock.fence(pool, 5, 2, 30, "mine", LEASE_S) == PoolChange(pool, True)
    fenced = await _meta(client, lock, pool, "fenced")
    assert fenced is not None and fenced.endswith(":mine")
    before = await key_dump(client, namespace)
    # near misses too: a prefix, a suffix, another case, the whole field, text with the separator
    for token in ("theirs", "min", "mine ", "Mine", "mine:", ":mine", fenced, "x" * 200):
        assert await lock.unfence(pool, token) == PoolChange(pool, False, PoolReason.STALE), token
        assert await pool_state(lock, pool) == "fenced"
        assert await lock.reserve(pool, "ann", 1, "a") == FENCED
        assert await lock.reserve(pool, "bob", 1, "b") == FENCED
    assert await key_dump(client, namespace) == before  # refused: nothing changed
    assert await lock.unfence(pool, "mine") == PoolChange(pool, True)
    assert await pool_state(lock, pool) == "ok"
    replay = hold(await lock.reserve(pool, "ann", 1, "a"))
    assert (replay.id, replay.replay) == (held.id, True)
    assert hold(await lock.reserve(pool, "bob", 1, "b")).remaining == 3
    await assert_consistent(lock, pool)


async def test_a_second_fence_takes_the_pool_over_and_only_its_token_unfences(
    lock: InventoryLock, client: Client
) -> None:
    """Repair B fences while repair A's fence runs: B takes the pool over; A's unfence is
    refused (whatever A adopted, B adopts again), B's is not."""
    pool = new_pool()
    await lock.load(pool, 5, 2, 30)
    held = hold(await lock.reserve(pool, "ann", 1, "a"))
    assert await lock.fence(pool, 5, 2, 30, "repair-a", LEASE_S) == PoolChange(pool, True)
    first_until = int(await _meta(client, lock, pool, "fence_until") or 0)
    await wait_until_ms(client, first_until - int(LEASE_S * 1000) + 1)  # B's lease ends later
    assert await lock.fence(pool, 5, 2, 30, "repair-b", LEASE_S) == PoolChange(pool, True)
    run_id = await _meta(client, lock, pool, "run_id")
    assert await _meta(client, lock, pool, "fenced") == f"{run_id}:repair-b"
    assert int(await _meta(client, lock, pool, "fence_until") or 0) > first_until
    order = OrderFact(held.id, "ann", 1)
    assert await lock.adopt(pool, [order]) == Adopted(pool, 1, 1, 0, 4)  # by A, say

    assert await lock.unfence(pool, "repair-a") == PoolChange(pool, False, PoolReason.STALE)
    assert await pool_state(lock, pool) == "fenced"
    assert await lock.reserve(pool, "bob", 1, "b") == FENCED
    assert await lock.adopt(pool, [order]) == Adopted(pool, 0, 0, 0, 4)  # by B: done already
    assert await lock.unfence(pool, "repair-b") == PoolChange(pool, True)
    assert await pool_state(lock, pool) == "ok"
    # neither may unfence again: the pool is no longer fenced
    for token in ("repair-a", "repair-b"):
        assert await lock.unfence(pool, token) == PoolChange(pool, False, PoolReason.STALE)
    assert hold(await lock.reserve(pool, "bob", 1, "b")).remaining == 3
    await assert_consistent(lock, pool)


async def test_a_fence_whose_lease_passed_makes_the_pool_stale_until_another_repair(
    lock: InventoryLock, client: Client
) -> None:
    """The repair that fenced died: once its lease passes (server clock) the pool is stale,
    for another repair to fence, adopt and unfence."""
    pool = new_pool()
    await lock.load(pool, 5, 2, 30)
    held = hold(await lock.reserve(pool, "ann", 1, "a"))
    before = await server_ms(client)
    assert await lock.fence(pool, 5, 2, 30, "dies", 0.2) == PoolChange(pool, True)
    after = await server_ms(client)
    fence_until = int(await _meta(client, lock, pool, "fence_until") or 0)
    assert before + 200 <= fence_until <= after + 200
    await wait_until_ms(client, fence_until)

    snapshot = await lock.snapshot(pool)
    assert snapshot is not None and snapshot.stale and not snapshot.fenced
    assert (snapshot.remaining, snapshot.held) == (4, 1)
    assert await lock.reserve(pool, "ann", 1, "a") == STALE  # a replay too
    assert await lock.reserve(pool, "bob", 1, "b") == STALE
    requests = [ReserveRequest(pool, f"b{i}", 1, "k") for i in range(3)]
    assert await lock.reserve_many(requests) == [STALE] * 3
    await assert_consistent(lock, pool)

    assert await lock.fence(pool, 5, 2, 30, "next", LEASE_S) == PoolChange(pool, True)
    assert await pool_state(lock, pool) == "fenced"
    assert await lock.reserve(pool, "bob", 1, "b") == FENCED
    assert await lock.unfence(pool, "dies") == PoolChange(pool, False, PoolReason.STALE)
    assert await lock.adopt(pool, [OrderFact(held.id, "ann", 1)]) == Adopted(pool, 1, 1, 0, 4)
    assert await lock.unfence(pool, "next") == PoolChange(pool, True)
    assert await pool_state(lock, pool) == "ok"
    replay = hold(await lock.reserve(pool, "ann", 1, "a"))
    assert (replay.id, replay.state, replay.replay) == (held.id, HoldState.CONFIRMED, True)
    assert hold(await lock.reserve(pool, "bob", 1, "b")).remaining == 3
    await assert_consistent(lock, pool)


async def test_adopt_makes_every_order_a_confirmed_hold(
    lock: InventoryLock, client: Client, namespace: str
) -> None:
    """Orders whose holds Redis has held, confirming, confirmed, released, expired or not at
    all (a new id, and an id of an older release) all end confirmed, counted once."""
    pool = new_pool()
    await lock.load(pool, 12, 3, 2)
    expired = hold(await lock.reserve(pool, "dee", 1, "k"))
    await wait_until_ms(client, expired.expires_at_ms)
    expiry = await lock.expire_due(pool)
    assert expiry is not None and expiry.holds == 1
    held = hold(await lock.reserve(pool, "ann", 1, "k"))
    confirming = hold(await lock.reserve(pool, "bob", 2, "k"))
    assert (await lock.begin_confirm(confirming.id)).ok
    confirmed = hold(await lock.reserve(pool, "gus", 1, "k"))
    assert (await lock.begin_confirm(confirmed.id)).ok
    assert (await lock.finish_confirm(confirmed.id)).ok
    released = hold(await lock.reserve(pool, "cy", 1, "k"))
    assert (await lock.cancel(released.id)).ok
    not_ordered = hold(await lock.reserve(pool, "hal", 1, "k"))  # stays held
    _, seq, _ = id_parts(not_ordered.id)
    missing = f"{pool}.{seq + 1000}-{NONCE}"
    legacy = f"{pool}.42"
    orders = [
        OrderFact(held.id, "ann", 1),
        OrderFact(confirming.id, "bob", 2),
        OrderFact(confirmed.id, "gus", 1),
        OrderFact(released.id, "cy", 1),
        OrderFact(expired.id, "dee", 1),
        OrderFact(missing, "erin", 2),
        OrderFact(legacy, "fay", 1),
        OrderFact(held.id, "ann", 1),  # the same order twice: counted once
    ]
    assert await lock.fence(pool, 12, 3, 2, "repair", LEASE_S) == PoolChange(pool, True)
    # before: held 1 + 1, confirming 2, confirmed 1: remaining 7; adopted anew: cy, dee, erin, fay
    assert await lock.adopt(pool, orders) == Adopted(pool, 6, 8, 0, 2)
    for fact in orders:
        record = await lock.get_hold(fact.hold_id)
        assert record is not None and record.state is HoldState.CONFIRMED, fact
        assert (record.buyer, record.qty, record.pool) == (fact.buyer, fact.qty, pool)
    left = await lock.get_hold(not_ordered.id)
    assert left is not None and left.state is HoldState.HELD
    snapshot = await lock.snapshot(pool)
    assert snapshot is not None and snapshot.fenced
    assert (snapshot.remaining, snapshot.held, snapshot.confirming) == (2, 1, 0)
    assert (snapshot.confirmed, snapshot.buyers) == (9, 8)
    assert await lock.confirming_holds(pool) == []
    await assert_consistent(lock, pool)

    before = await key_dump(client, namespace)
    assert await lock.adopt(pool, orders) == Adopted(pool, 0, 0, 0, 2)  # idempotent
    assert await lock.adopt(pool, []) == Adopted(pool, 0, 0, 0, 2)
    assert await key_dump(client, namespace) == before

    assert await lock.unfence(pool, "repair") == PoolChange(pool, True)
    await lock.cancel(not_ordered.id)  # released, or expired if it was due: 3 left either way
    assert await lock.reserve(pool, "ann", 3, "more") == Rejection(RejectReason.LIMIT)
    assert hold(await lock.reserve(pool, "ann", 2, "more")).remaining == 1
    assert await lock.reserve(pool, "zed", 2, "k") == Rejection(RejectReason.SOLD_OUT)
    await assert_consistent(lock, pool)


async def test_adopt_takes_what_redis_over_promised_below_zero(lock: InventoryLock) -> None:
    """Redis forgot an order and sold its stock again: the order is recorded, remaining goes
    below zero, check says so, and nothing sells until holds give stock back."""
    pool = new_pool()
    await lock.load(pool, 3, 5, 30)
    resold = hold(await lock.reserve(pool, "ann", 3, "k"))
    order = OrderFact(f"{pool}.1-{NONCE}", "bob", 2)
    assert await lock.adopt(pool, [order]) == Adopted(pool, 1, 2, 0, -2)
    report = await lock.check(pool)
    assert report is not None and not report.ok
    assert report.problems == ("remaining is negative",)
    assert (report.remaining, report.held, report.confirmed) == (-2, 3, 2)
    assert await lock.reserve(pool, "cy", 1, "k") == Rejection(RejectReason.SOLD_OUT)
    assert await lock.adopt(pool, [order]) == Adopted(pool, 0, 0, 0, -2)
    assert (await lock.cancel(resold.id)).ok
    snapshot = await lock.snapshot(pool)
    assert snapshot is not None and (snapshot.remaining, snapshot.confirmed) == (1, 2)
    await assert_consistent(lock, pool)
    assert hold(await lock.reserve(pool, "cy", 1, "k")).remaining == 0


async def test_adopt_lets_a_buyer_end_above_the_limit(lock: InventoryLock) -> None:
    pool = new_pool()
    await lock.load(pool, 10, 2, 30)
    held = [hold(await lock.reserve(pool, "ann", 1, f"k{i}")) for i in range(2)]
    orders = [OrderFact(h.id, "ann", 1) for h in held] + [OrderFact(f"{pool}.9-{NONCE}", "ann", 1)]
    assert await lock.adopt(pool, orders) == Adopted(pool, 3, 3, 0, 7)
    report = await lock.check(pool)
    assert report is not None and report.problems == ("buyer 'ann' has 3 > limit 2",)
    snapshot = await lock.snapshot(pool)
    assert snapshot is not None and (snapshot.confirmed, snapshot.remaining) == (3, 7)
    assert await lock.reserve(pool, "ann", 1, "more") == Rejection(RejectReason.LIMIT)
    assert hold(await lock.reserve(pool, "bob", 2, "k")).remaining == 5


async def test_adopt_counts_and_replaces_records_of_another_order(
    lock: InventoryLock, client: Client, namespace: str
) -> None:
    """An id Redis has for another buyer or quantity (reissued before ids had nonces): the
    record found is uncounted, whatever its state, and the order recorded instead."""
    pool = new_pool()
    await lock.load(pool, 10, 5, 30)
    held = hold(await lock.reserve(pool, "ann", 1, "a"))
    confirming = hold(await lock.reserve(pool, "bob", 1, "b"))
    assert (await lock.begin_confirm(confirming.id)).ok
    confirmed = hold(await lock.reserve(pool, "cy", 1, "c"))
    assert (await lock.begin_confirm(confirmed.id)).ok
    assert (await lock.finish_confirm(confirmed.id)).ok
    released = hold(await lock.reserve(pool, "dee", 1, "d"))
    assert (await lock.cancel(released.id)).ok
    orders = [
        OrderFact(held.id, "zoe", 2),  # another buyer and quantity
        OrderFact(confirming.id, "bob", 3),  # another quantity
        OrderFact(confirmed.id, "yan", 1),  # another buyer
        OrderFact(released.id, "xia", 1),  # another buyer, of a hold that no longer counts
    ]
    assert await lock.adopt(pool, orders) == Adopted(pool, 4, 7, 4, 3)
    for fact in orders:
        record = await lock.get_hold(fact.hold_id)
        assert record is not None and record.state is HoldState.CONFIRMED
        assert (record.buyer, record.qty) == (fact.buyer, fact.qty)
    snapshot = await lock.snapshot(pool)
    assert snapshot is not None
    assert (snapshot.held, snapshot.confirming, snapshot.confirmed) == (0, 0, 7)
    assert snapshot.buyers == 4  # zoe, bob, yan, xia; ann and cy hold nothing now
    assert await lock.confirming_holds(pool) == []
    await assert_consistent(lock, pool)
    before = await key_dump(client, namespace)
    assert await lock.adopt(pool, orders) == Adopted(pool, 0, 0, 0, 3)
    assert await key_dump(client, namespace) == before
    assert hold(await lock.reserve(pool, "ann", 3, "new")).remaining == 0


async def test_a_pool_of_another_run_is_stale_until_fenced_and_unfenced_under_this_one(
    lock: InventoryLock, client: Client
) -> None:
    """A pool that records no run (made before run ids) or another run than the server's is
    stale; unfence refuses it until a fence under this run."""
    pool = new_pool()
    await lock.load(pool, 5, 5, 30)
    meta = lock.keys(pool).meta
    for forged in (OLD_RUN, None):
        if forged is None:
            await client.hdel(meta, "run_id")
        else:
            await client.hset(meta, "run_id", forged)
        assert await pool_state(lock, pool) == "stale"
        assert await lock.reserve(pool, "ann", 1, "k") == STALE
        assert await lock.unfence(pool, "repair") == PoolChange(pool, False, PoolReason.STALE)
        assert await lock.fence(pool, 5, 5, 30, "repair", LEASE_S) == PoolChange(pool, True)
        assert await pool_state(lock, pool) == "fenced"  # fenced, whatever run it was of
        assert await lock.reserve(pool, "ann", 1, "k") == FENCED
        assert await lock.unfence(pool, "repair") == PoolChange(pool, True)
        assert await pool_state(lock, pool) == "ok"
        assert await _meta(client, lock, pool, "run_id") not in (OLD_RUN, None)
    await assert_consistent(lock, pool)


async def test_a_fence_of_another_run_or_release_is_refused_to_unfence(
    lock: InventoryLock, client: Client
) -> None:
    """Fenced under another run (Redis restarted since), the repair's unfence is refused and
    the pool is stale at once (that repair's writes may be lost); so is a fence an older
    release left (the run id alone, no lease)."""
    pool = new_pool()
    await lock.load(pool, 5, 5, 30)
    meta = lock.keys(pool).meta
    far = await server_ms(client) + int(LEASE_S * 1000)
    await client.hset(meta, mapping={"fenced": f"{OLD_RUN}:repair", "fence_until": far})
    assert await lock.unfence(pool, "repair") == PoolChange(pool, False, PoolReason.STALE)
    assert await lock.reserve(pool, "ann", 1, "k") == STALE  # whatever its lease says
    await client.hset(meta, "fenced", OLD_RUN)
    await client.hdel(meta, "fence_until")
    assert await pool_state(lock, pool) == "stale"
    assert await lock.reserve(pool, "ann", 1, "k") == STALE
    for token in ("repair", OLD_RUN):
        assert await lock.unfence(pool, token) == PoolChange(pool, False, PoolReason.STALE)
    assert await lock.fence(pool, 5, 5, 30, "repair", LEASE_S) == PoolChange(pool, True)
    assert await lock.unfence(pool, "repair") == PoolChange(pool, True)
    h = hold(await lock.reserve(pool, "ann", 1, "k"))
    assert h.expires_at_ms >= await server_ms(client)
    await assert_consistent(lock, pool)


async def test_adopt_of_more_orders_than_one_call_takes(lock: InventoryLock) -> None:
    count = MAX_ADOPT_BATCH + 500
    pool = new_pool()
    await lock.load(pool, count + 100, count, 30)
    orders = [OrderFact(f"{pool}.{i}-{NONCE}", f"b{i % 7}", 1) for i in range(count)]
    orders += orders[:10]  # seen again in the second call: counted once
    assert await lock.adopt(pool, orders) == Adopted(pool, count, count, 0, 100)
    assert await lock.adopt(pool, orders) == Adopted(pool, 0, 0, 0, 100)
    snapshot = await lock.snapshot(pool)
    assert snapshot is not None and (snapshot.confirmed, snapshot.buyers) == (count, 7)
    await assert_consistent(lock, pool)


async def test_a_key_whose_hold_is_another_buyers_or_gone_is_a_new_request(
    lock: InventoryLock, client: Client
) -> None:
    """Adopt replaced the hold an idempotency key led to with another buyer's order (an id
    reissued before ids had nonces), or the record is gone: no replay of it, a new hold."""
    pool = new_pool()
    await lock.load(pool, 5, 5, 30)
    mine = hold(await lock.reserve(pool, "ann", 1, "k"))
    assert await lock.adopt(pool, [OrderFact(mine.id, "zoe", 2)]) == Adopted(pool, 1, 2, 1, 3)
    again = hold(await lock.reserve(pool, "ann", 1, "k"))
    assert (again.buyer, again.replay, again.remaining) == ("ann", False, 2)
    assert again.id != mine.id and again.state is HoldState.HELD
    replay = hold(await lock.reserve(pool, "ann", 1, "k"))  # the key now leads to the new hold
    assert (replay.id, replay.replay) == (again.id, True)
    record = await lock.get_hold(mine.id)
    assert record is not None and (record.buyer, record.qty) == ("zoe", 2)
    # within one batch: the first request makes the hold, the second replays it
    gone = hold(await lock.reserve(pool, "bob", 1, "k"))
    assert (await lock.cancel(gone.id)).ok
    await client.hdel(lock.keys(pool).holds, gone.id)  # released, so nothing counts it
    batch = await lock.reserve_many([ReserveRequest(pool, "bob", 1, "k")] * 2)
    made, replayed = (hold(result) for result in batch)
    assert (made.replay, made.remaining, made.buyer) == (False, 1, "bob")
    assert made.id != gone.id and (replayed.id, replayed.replay) == (made.id, True)
    await assert_consistent(lock, pool)
