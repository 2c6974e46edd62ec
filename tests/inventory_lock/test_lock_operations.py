"""Each operation of InventoryLock against real Redis, plain and cluster."""

from __future__ import annotations

import asyncio

import pytest
from lock_helpers import (
    LEASE_S,
    assert_consistent,
    hold,
    id_parts,
    new_pool,
    open_client,
    server_ms,
    wait_until_ms,
)

from inventory_lock import (
    Adopted,
    Hold,
    HoldState,
    InventoryLock,
    OrderFact,
    PoolChange,
    PoolReason,
    Rejection,
    RejectReason,
    ReserveRequest,
    ReserveResult,
    TransitionReason,
)
from inventory_lock.keys import MAX_RESERVE_BATCH
from inventory_lock.scripts import Client
from live.redis_client import open_redis


async def test_load_refuses_an_existing_pool(lock: InventoryLock) -> None:
    pool = new_pool()
    assert not await lock.exists(pool)
    assert await lock.load(pool, 10, 2, 30) == PoolChange(pool, True)
    assert await lock.load(pool, 99, 2, 30) == PoolChange(pool, False, PoolReason.EXISTS)
    assert await lock.exists(pool)
    snapshot = await lock.snapshot(pool)
    assert snapshot is not None
    assert (snapshot.stock, snapshot.remaining, snapshot.held, snapshot.buyers) == (10, 10, 0, 0)
    assert (snapshot.limit_per_buyer, snapshot.hold_ms, snapshot.closed) == (2, 30_000, False)
    assert await lock.snapshot(new_pool()) is None


async def test_reserve_holds_stock_until_sold_out(lock: InventoryLock, client: Client) -> None:
    pool = new_pool()
    await lock.load(pool, 3, 2, 30)
    before = await server_ms(client)
    first = hold(await lock.reserve(pool, "alice", 2, "k1"))
    assert (first.pool, first.buyer, first.qty, first.remaining) == (pool, "alice", 2, 1)
    assert first.state is HoldState.HELD and not first.replay
    assert before + 30_000 <= first.expires_at_ms <= await server_ms(client) + 30_000
    assert id_parts(first.id)[0] == pool
    assert await lock.reserve(pool, "bob", 2, "k1") == Rejection(RejectReason.SOLD_OUT)
    second = hold(await lock.reserve(pool, "bob", 1, "k1"))
    assert second.id != first.id and second.remaining == 0
    # a nonce per script call: the next call's ids differ in more than the counter
    (_, first_seq, first_nonce), (_, second_seq, second_nonce) = map(
        id_parts, (first.id, second.id)
    )
    assert second_seq == first_seq + 1 and first_nonce != second_nonce
    assert await lock.reserve(pool, "carol", 1, "k1") == Rejection(RejectReason.SOLD_OUT)
    # nothing left: sold_out comes before the limit (alice holds her 2 already)
    assert await lock.reserve(pool, "alice", 1, "k2") == Rejection(RejectReason.SOLD_OUT)
    snapshot = await lock.snapshot(pool)
    assert snapshot is not None
    assert (snapshot.held, snapshot.remaining, snapshot.buyers) == (3, 0, 2)
    await assert_consistent(lock, pool)


async def test_same_idempotency_key_returns_the_same_hold(lock: InventoryLock) -> None:
    pool = new_pool()
    await lock.load(pool, 10, 5, 30)
    first = hold(await lock.reserve(pool, "alice", 2, "key"))
    again = hold(await lock.reserve(pool, "alice", 2, "key"))
    assert again.id == first.id and again.replay and again.remaining == 8
    other_buyer = hold(await lock.reserve(pool, "bob", 1, "key"))
    assert other_buyer.id != first.id
    await lock.begin_confirm(first.id)
    await lock.finish_confirm(first.id)
    confirmed = hold(await lock.reserve(pool, "alice", 2, "key"))
    assert (confirmed.id, confirmed.state) == (first.id, HoldState.CONFIRMED)
    await lock.cancel(other_buyer.id)
    released = hold(await lock.reserve(pool, "bob", 1, "key"))
    assert (released.id, released.state) == (other_buyer.id, HoldState.RELEASED)
    snapshot = await lock.snapshot(pool)
    assert snapshot is not None and (snapshot.confirmed, snapshot.held) == (2, 0)
    await assert_consistent(lock, pool)


async def test_limit_counts_held_confirming_and_confirmed(lock: InventoryLock) -> None:
    pool = new_pool()
    await lock.load(pool, 10, 3, 30)
    confirmed = hold(await lock.reserve(pool, "alice", 1, "a"))
    await lock.begin_confirm(confirmed.id)
    await lock.finish_confirm(confirmed.id)
    confirming = hold(await lock.reserve(pool, "alice", 1, "b"))
    await lock.begin_confirm(confirming.id)
    held = hold(await lock.reserve(pool, "alice", 1, "c"))
    assert await lock.reserve(pool, "alice", 1, "d") == Rejection(RejectReason.LIMIT)
    assert await lock.reserve(pool, "bob", 4, "a") == Rejection(RejectReason.LIMIT)
    await lock.cancel(held.id)
    hold(await lock.reserve(pool, "alice", 1, "d"))
    await assert_consistent(lock, pool)


async def test_closed_and_unknown_pools_refuse(lock: InventoryLock) -> None:
    pool = new_pool()
    assert await lock.reserve(pool, "a", 1, "k") == Rejection(RejectReason.UNKNOWN_POOL)
    assert await lock.close(pool) == PoolChange(pool, False, PoolReason.UNKNOWN_POOL)
    await lock.load(pool, 5, 5, 30)
    early = hold(await lock.reserve(pool, "a", 1, "k"))
    assert await lock.close(pool) == PoolChange(pool, True)
    assert await lock.close(pool) == PoolChange(pool, True)
    assert await lock.reserve(pool, "b", 1, "k") == Rejection(RejectReason.CLOSED)
    assert hold(await lock.reserve(pool, "a", 1, "k")).id == early.id
    assert (await lock.begin_confirm(early.id)).ok
    snapshot = await lock.snapshot(pool)
    assert snapshot is not None and snapshot.closed


async def test_confirm_flow_and_its_replays(lock: InventoryLock) -> None:
    pool = new_pool()
    await lock.load(pool, 5, 5, 30)
    h = hold(await lock.reserve(pool, "a", 2, "k"))
    finish_early = await lock.finish_confirm(h.id)
    assert (finish_early.ok, finish_early.reason) == (False, TransitionReason.WRONG_STATE)
    for _ in range(2):
        begun = await lock.begin_confirm(h.id)
        assert begun.ok and begun.state is HoldState.CONFIRMING and begun.reason is None
    assert [r.id for r in await lock.confirming_holds(pool)] == [h.id]
    for _ in range(2):
        done = await lock.finish_confirm(h.id)
        assert done.ok and done.state is HoldState.CONFIRMED
    assert (await lock.begin_confirm(h.id)).ok  # a retried confirm flow finds its work done
    assert await lock.confirming_holds(pool) == []
    cancel = await lock.cancel(h.id)
    assert (cancel.ok, cancel.reason) == (False, TransitionReason.WRONG_STATE)
    abort = await lock.abort_confirm(h.id, release=True)
    assert (abort.ok, abort.reason) == (False, TransitionReason.WRONG_STATE)
    record = await lock.get_hold(h.id)
    assert record is not None
    assert (record.state, record.qty, record.buyer) == (HoldState.CONFIRMED, 2, "a")
    assert record.pool == pool
    snapshot = await lock.snapshot(pool)
    assert snapshot is not None and (snapshot.confirmed, snapshot.remaining) == (2, 3)
    await assert_consistent(lock, pool)


async def test_begin_confirm_again_stamps_a_confirming_hold_anew(
    lock: InventoryLock, client: Client
) -> None:
    """A retried confirm tells the recovery sweep it is still alive: the hold's updated_at_ms
    and its place among the confirming holds (oldest first) move to the server's now."""
    pool = new_pool()
    await lock.load(pool, 5, 5, 30)
    first, second = [hold(await lock.reserve(pool, "a", 1, f"k{i}")) for i in range(2)]
    begun = (await lock.begin_confirm(first.id)).hold
    assert begun is not None
    await wait_until_ms(client, begun.updated_at_ms + 1)
    assert (await lock.begin_confirm(second.id)).ok
    assert [r.id for r in await lock.confirming_holds(pool)] == [first.id, second.id]
    seconds_stamp = await lock.get_hold(second.id)
    assert seconds_stamp is not None
    await wait_until_ms(client, seconds_stamp.updated_at_ms + 1)
    before = await server_ms(client)
    again = await lock.begin_confirm(first.id)
    assert again.ok and again.reason is None and again.hold is not None
    assert again.state is HoldState.CONFIRMING
    assert again.hold.updated_at_ms >= before > seconds_stamp.updated_at_ms
    assert again.hold.expires_at_ms == begun.expires_at_ms == first.expires_at_ms
    assert await lock.get_hold(first.id) == again.hold
    assert [r.id for r in await lock.confirming_holds(pool)] == [second.id, first.id]
    snapshot = await lock.snapshot(pool)
    assert snapshot is not None and (snapshot.confirming, snapshot.remaining) == (2, 3)
    await assert_consistent(lock, pool)
    # confirmed, it is answered as it is, not stamped again
    done = (await lock.finish_confirm(first.id)).hold
    assert done is not None
    await wait_until_ms(client, done.updated_at_ms + 1)
    assert (await lock.begin_confirm(first.id)).hold == done


async def test_abort_confirm_back_to_held_or_to_stock(lock: InventoryLock) -> None:
    pool = new_pool()
    await lock.load(pool, 5, 5, 30)
    h = hold(await lock.reserve(pool, "a", 2, "k1"))
    await lock.begin_confirm(h.id)
    for _ in range(2):
        back = await lock.abort_confirm(h.id, release=False)
        assert back.ok and back.state is HoldState.HELD
        assert back.hold is not None and back.hold.expires_at_ms == h.expires_at_ms
    await lock.begin_confirm(h.id)
    for _ in range(2):
        released = await lock.abort_confirm(h.id, release=True)
        assert released.ok and released.state is HoldState.RELEASED
    wrong = await lock.abort_confirm(h.id, release=False)
    assert (wrong.ok, wrong.reason) == (False, TransitionReason.WRONG_STATE)
    assert (await lock.cancel(h.id)).ok  # released is what cancel wants: a replay
    snapshot = await lock.snapshot(pool)
    assert snapshot is not None and (snapshot.remaining, snapshot.buyers) == (5, 0)
    await assert_consistent(lock, pool)


async def test_cancel_returns_stock_once(lock: InventoryLock) -> None:
    pool = new_pool()
    await lock.load(pool, 2, 2, 30)
    h = hold(await lock.reserve(pool, "a", 2, "k"))
    for _ in range(3):
        cancelled = await lock.cancel(h.id)
        assert cancelled.ok and cancelled.state is HoldState.RELEASED
    begun = await lock.begin_confirm(h.id)
    assert (begun.ok, begun.reason) == (False, TransitionReason.WRONG_STATE)
    snapshot = await lock.snapshot(pool)
    assert snapshot is not None and snapshot.remaining == 2
    await assert_consistent(lock, pool)


async def test_unknown_and_malformed_hold_ids(lock: InventoryLock) -> None:
    pool = new_pool()
    await lock.load(pool, 2, 2, 30)
    for hold_id, reason in [
        (f"{pool}.999", TransitionReason.NOT_FOUND),
        (f"{pool}.999-0123456789abcdef", TransitionReason.NOT_FOUND),
        ("nopool.1", TransitionReason.NOT_FOUND),
        ("nopool.1-0123456789abcdef", TransitionReason.NOT_FOUND),
        (f"{pool}.1-0123456789ABCDEF", TransitionReason.INVALID),
        (f"{pool}.1-0123456789abcde", TransitionReason.INVALID),
        ("no-dot", TransitionReason.INVALID),
        (f"{pool}.1x", TransitionReason.INVALID),
        ("", TransitionReason.INVALID),
    ]:
        for result in [
            await lock.begin_confirm(hold_id),
            await lock.finish_confirm(hold_id),
            await lock.abort_confirm(hold_id, release=True),
            await lock.cancel(hold_id),
        ]:
            assert (result.ok, result.reason, result.hold) == (False, reason, None)
        assert await lock.get_hold(hold_id) is None


async def test_a_pool_made_again_never_reuses_hold_ids(lock: InventoryLock) -> None:
    """Dropped (Redis lost it) and made again by a repair: new ids, and the counter, seeded
    with the server time, moved on."""
    pool = new_pool()
    await lock.load(pool, 5, 5, 30)
    before = [hold(await lock.reserve(pool, "a", 1, f"k{i}")).id for i in range(3)]
    await lock.drop(pool)
    created = await lock.fence(pool, 5, 5, 30, "repair", LEASE_S)
    assert created == PoolChange(pool, True, PoolReason.CREATED)
    adopted = await lock.adopt(pool, [OrderFact(i, "a", 1) for i in before])
    assert adopted == Adopted(pool, 3, 3, 0, 2)
    assert await lock.unfence(pool, "repair") == PoolChange(pool, True)
    after = [hold(await lock.reserve(pool, "b", 1, f"k{i}")).id for i in range(2)]
    assert not set(before) & set(after)
    assert min(id_parts(i)[1] for i in after) > max(id_parts(i)[1] for i in before)
    await assert_consistent(lock, pool)


async def test_drop_and_sweep_many(lock: InventoryLock) -> None:
    pools = [new_pool(), new_pool()]
    for pool in pools:
        await lock.load(pool, 1, 1, 30)
    assert await lock.drop(pools[0]) == PoolChange(pools[0], True)
    assert await lock.drop(pools[0]) == PoolChange(pools[0], False, PoolReason.UNKNOWN_POOL)
    assert not await lock.exists(pools[0])
    assert await lock.exists(pools[1])
    # A dropped (or unknown) pool among those swept is skipped.
    assert [r.pool for r in await lock.expire_due_many([*pools, new_pool()])] == [pools[1]]


async def test_check_finds_a_tampered_counter(lock: InventoryLock, client: Client) -> None:
    pool = new_pool()
    await lock.load(pool, 5, 5, 30)
    hold(await lock.reserve(pool, "a", 2, "k"))
    await assert_consistent(lock, pool)
    await client.hincrby(lock.keys(pool).meta, "remaining", 1)
    report = await lock.check(pool)
    assert report is not None and not report.ok and report.problems
    assert await lock.check(new_pool()) is None


async def test_reserve_many_in_one_pipeline(lock: InventoryLock) -> None:
    pools = [new_pool(), new_pool()]
    for pool in pools:
        await lock.load(pool, 3, 1, 30)
    requests = [ReserveRequest(pools[i % 2], f"b{i}", 1, "k") for i in range(8)]
    requests.append(ReserveRequest(pools[0], "b0", 0, "bad"))
    results = await lock.reserve_many(requests)
    assert results[-1] == Rejection(RejectReason.INVALID)
    assert sum(1 for r in results[:-1] if not isinstance(r, Rejection)) == 6
    assert results[6:8] == [Rejection(RejectReason.SOLD_OUT)] * 2
    again = await lock.reserve_many(requests[:2])
    assert [hold(r).id for r in again] == [hold(r).id for r in results[:2]]
    assert await lock.reserve_many([]) == []
    for pool in pools:
        await assert_consistent(lock, pool)


def _shape(result: ReserveResult) -> tuple[object, ...]:
    """An answer without its hold id and expiry, to compare two pools' answers."""
    if isinstance(result, Rejection):
        return (result.reason,)
    return (result.buyer, result.qty, result.remaining, result.replay)


async def test_one_batch_answers_as_the_same_singles_in_order(lock: InventoryLock) -> None:
    batched, single = new_pool(), new_pool()
    for pool in (batched, single):
        await lock.load(pool, 5, 3, 30)
    sequence = [
        ("ann", 2, "k1"),  # hold, 3 left
        ("ann", 2, "k2"),  # over ann's limit
        ("ann", 1, "k1"),  # the first hold again (qty ignored)
        ("bob", 0, "k"),  # invalid, alone
        ("bob", 3, "k"),  # hold, 0 left
        ("bob", 3, "k"),  # the same hold again
        ("cy", 1, "k"),  # sold out
        ("ann", 1, "k3"),  # sold out before the limit is looked at
    ]
    results = await lock.reserve_many([ReserveRequest(batched, *r) for r in sequence])
    singles = [await lock.reserve(single, *r) for r in sequence]
    assert [_shape(r) for r in results] == [_shape(r) for r in singles]
    assert [_shape(r) for r in results] == [
        ("ann", 2, 3, False),
        (RejectReason.LIMIT,),
        ("ann", 2, 3, True),
        (RejectReason.INVALID,),
        ("bob", 3, 0, False),
        ("bob", 3, 0, True),
        (RejectReason.SOLD_OUT,),
        (RejectReason.SOLD_OUT,),
    ]
    assert hold(results[0]).id == hold(results[2]).id != hold(results[4]).id
    assert hold(results[4]).id == hold(results[5]).id
    again = await lock.reserve_many([ReserveRequest(batched, *r) for r in sequence])
    assert [r.id for r in again if isinstance(r, Hold)] == [
        hold(results[i]).id for i in (0, 0, 4, 4)
    ]
    for pool in (batched, single):
        await assert_consistent(lock, pool)


async def test_more_than_one_call_of_requests_for_a_pool_keeps_their_order(
    lock: InventoryLock,
) -> None:
    pool, count = new_pool(), MAX_RESERVE_BATCH * 2 + 100
    await lock.load(pool, MAX_RESERVE_BATCH + 50, 1, 30)
    results = await lock.reserve_many([ReserveRequest(pool, f"b{i}", 1, "k") for i in range(count)])
    remaining = [r.remaining for r in results if isinstance(r, Hold)]
    assert remaining == list(range(MAX_RESERVE_BATCH + 49, -1, -1))
    assert results[MAX_RESERVE_BATCH + 50 :] == [Rejection(RejectReason.SOLD_OUT)] * (
        count - MAX_RESERVE_BATCH - 50
    )
    await assert_consistent(lock, pool)


async def test_scripts_reload_after_script_flush(cluster_url: str, namespace: str) -> None:
    """NOSCRIPT is answered by loading the script again, single calls and pipelines alike.
    Only on the private cluster: a shared Redis keeps its script cache."""
    client = await open_client("cluster", cluster_url)
    try:
        lock = InventoryLock(client, prefix=namespace)
        pool = new_pool()
        await lock.load(pool, 5, 5, 30)
        await client.script_flush()
        hold(await lock.reserve(pool, "a", 1, "k1"))
        await client.script_flush()
        results = await lock.reserve_many([ReserveRequest(pool, "a", 1, f"m{i}") for i in range(3)])
        assert all(not isinstance(r, Rejection) for r in results)
    finally:
        await client.aclose()


async def test_works_with_decoded_responses(redis_url: str, namespace: str) -> None:
    client = open_redis(redis_url, 10, decode_responses=True)  # plain or a cluster
    try:
        lock = InventoryLock(client, prefix=namespace)
        pool = new_pool()
        await lock.load(pool, 2, 2, 30)
        h = hold(await lock.reserve(pool, "ä-buyer", 1, "k"))
        assert h.buyer == "ä-buyer"
        assert (await lock.begin_confirm(h.id)).ok
        assert [r.id for r in await lock.confirming_holds(pool)] == [h.id]
        assert [r.pool for r in await lock.expire_due_many([pool])] == [pool]
        await assert_consistent(lock, pool)
    finally:
        await client.aclose()


async def test_many_buyers_one_pool_at_once(lock: InventoryLock) -> None:
    pool = new_pool()
    await lock.load(pool, 50, 1, 30)
    results = await asyncio.gather(*(lock.reserve(pool, f"b{i}", 1, "k") for i in range(100)))
    assert sum(1 for r in results if not isinstance(r, Rejection)) == 50
    await assert_consistent(lock, pool)


@pytest.mark.parametrize("prefix", ["bad{tag}:", "x}"])
def test_prefix_with_braces_is_refused(client: Client, prefix: str) -> None:
    with pytest.raises(ValueError):
        InventoryLock(client, prefix=prefix)
