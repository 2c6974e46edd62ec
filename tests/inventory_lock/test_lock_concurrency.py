"""Thousands of buyers at once, from several clients and several processes: never oversold."""

from __future__ import annotations

import asyncio
import multiprocessing
import random
import uuid
from collections.abc import Iterator
from concurrent.futures import ProcessPoolExecutor

import pytest
from lock_helpers import (
    Outcome,
    assert_consistent,
    hold,
    new_pool,
    open_client,
    reserve_worker,
    run_reservers,
    server_ms,
    start_when_ready,
    sweep_until,
    sweep_worker,
    warm_up,
)

from inventory_lock import (
    Hold,
    HoldState,
    InventoryLock,
    ReserveRequest,
    ReserveResult,
    TransitionReason,
)
from inventory_lock.scripts import Client

PROCESSES = 3
RESERVERS = 2000
STOCK = 100


@pytest.fixture(scope="module")
def processes(redis_url: str) -> Iterator[ProcessPoolExecutor]:
    """Worker processes, all started and with this test's modules imported."""
    context = multiprocessing.get_context("spawn")
    key = f"t{uuid.uuid4().hex[:12]}:warm-up"
    with ProcessPoolExecutor(max_workers=PROCESSES, mp_context=context) as executor:
        pids = [executor.submit(warm_up, redis_url, key, PROCESSES) for _ in range(PROCESSES)]
        assert len({future.result(timeout=120) for future in pids}) == PROCESSES
        yield executor


async def test_two_thousand_reservers_never_oversell(
    lock: InventoryLock,
    client: Client,
    backend: tuple[str, str],
    namespace: str,
    processes: ProcessPoolExecutor,
) -> None:
    pool, go_key = new_pool(), f"{namespace}go"
    await lock.load(pool, STOCK, 1, 60)
    loop = asyncio.get_running_loop()
    per_process = RESERVERS // (PROCESSES + 1)
    ranges = [range(i * per_process, (i + 1) * per_process) for i in range(PROCESSES)]
    remote = [
        loop.run_in_executor(processes, reserve_worker, *backend, namespace, pool, indexes, go_key)
        for indexes in ranges
    ]
    local = asyncio.ensure_future(
        run_reservers(
            *backend, namespace, pool, range(PROCESSES * per_process, RESERVERS), 4, go_key
        )
    )
    await start_when_ready(client, go_key, PROCESSES + 1)
    watching = asyncio.ensure_future(_watch(lock, pool, local))
    outcomes: list[Outcome] = [o for part in await asyncio.gather(local, *remote) for o in part]
    assert await watching > 0

    assert len(outcomes) == RESERVERS
    holds = {first for _, first, _ in outcomes if not first.startswith("rejected")}
    assert len(holds) == STOCK
    for i, first, retry in outcomes:
        assert first == retry, (i, first, retry)  # a retry never makes a second hold
        assert first in holds or first == "rejected:sold_out"
    snapshot = await lock.snapshot(pool)
    assert snapshot is not None
    assert (snapshot.held, snapshot.remaining, snapshot.buyers) == (STOCK, 0, STOCK)
    await assert_consistent(lock, pool)

    ids = sorted(holds)
    confirmed = await asyncio.gather(*(_confirm(lock, i) for i in ids[: STOCK // 2]))
    assert all(confirmed)
    await asyncio.gather(*(lock.cancel(i) for i in ids[STOCK // 2 :]))
    again = await lock.reserve_many(
        [ReserveRequest(pool, f"late{i}", 1, "k") for i in range(STOCK)]
    )
    assert sum(1 for r in again if isinstance(r, Hold)) == STOCK // 2
    snapshot = await lock.snapshot(pool)
    assert snapshot is not None
    assert (snapshot.confirmed, snapshot.held, snapshot.remaining) == (STOCK // 2, STOCK // 2, 0)
    await assert_consistent(lock, pool)


async def _watch(lock: InventoryLock, pool: str, until: asyncio.Future[list[Outcome]]) -> int:
    """Snapshots taken during the burst: never more than the stock out, and the sum holds."""
    looks = 0
    while not until.done():
        snapshot = await lock.snapshot(pool)
        assert snapshot is not None
        assert snapshot.held + snapshot.confirming + snapshot.confirmed <= STOCK
        assert snapshot.remaining + snapshot.held == STOCK and snapshot.remaining >= 0
        looks += 1
    return looks


async def _confirm(lock: InventoryLock, hold_id: str) -> bool:
    begun = await lock.begin_confirm(hold_id)
    return begun.ok and (await lock.finish_confirm(hold_id)).ok


async def test_expiry_racing_confirms(
    lock: InventoryLock,
    client: Client,
    backend: tuple[str, str],
    namespace: str,
    processes: ProcessPoolExecutor,
) -> None:
    """Confirms arrive around the expiry time while sweepers in other processes and in this
    one reclaim due holds and new buyers take returned stock: an item ends up confirmed or
    returned, never both, and the counts always add up."""
    pool, hold_ms = new_pool(), 500
    await lock.load(pool, STOCK, 2, hold_ms / 1000)
    first = [
        hold(r)
        for r in await lock.reserve_many(
            [ReserveRequest(pool, f"b{i}", 1, "k") for i in range(STOCK)]
        )
    ]
    deadline = max(h.expires_at_ms for h in first) + hold_ms
    loop = asyncio.get_running_loop()
    sweepers = [
        loop.run_in_executor(processes, sweep_worker, *backend, namespace, pool, deadline)
        for _ in range(PROCESSES)
    ]
    sweepers += [asyncio.ensure_future(sweep_until(client, namespace, pool, deadline))]

    async def confirm_late(h: Hold, delay_s: float) -> bool:
        """Confirms; the outcome must agree with the server clock read around the call."""
        await asyncio.sleep(delay_s)
        before = await server_ms(client)
        begun = await lock.begin_confirm(h.id)
        after = await server_ms(client)
        if begun.ok:
            assert h.expires_at_ms > before, "confirmed a hold that was already due"
            assert (await lock.finish_confirm(h.id)).ok
        else:
            assert begun.reason is TransitionReason.EXPIRED, begun
            assert h.expires_at_ms <= after, "refused a hold that was not due yet"
        return begun.ok

    async def newcomer(i: int, delay_s: float) -> ReserveResult:
        await asyncio.sleep(delay_s)
        return await lock.reserve(pool, f"new{i}", 1, "k")

    # Confirms and newcomers spread over twice the time left: about half of them land before
    # the holds expire, half after, even if this loop is slowed down.
    spread_s = 2 * (first[0].expires_at_ms - await server_ms(client)) / 1000
    confirms = asyncio.gather(*(confirm_late(h, random.uniform(0, spread_s)) for h in first))
    late = await asyncio.gather(*(newcomer(i, random.uniform(0, spread_s)) for i in range(STOCK)))
    results = await confirms
    returned = sum(await asyncio.gather(*sweepers))

    ids = [h.id for h in first] + [r.id for r in late if isinstance(r, Hold)]
    states = {i: await lock.get_hold(i) for i in ids}
    confirmed = 0
    for h, ok in zip(first, results, strict=True):
        record = states[h.id]
        assert record is not None
        assert record.state is (HoldState.CONFIRMED if ok else HoldState.EXPIRED)
        confirmed += ok
    assert confirmed < STOCK, "no confirm came after the expiry"
    expired = sum(1 for r in states.values() if r is not None and r.state is HoldState.EXPIRED)
    assert returned <= expired  # the sweepers gave back only what expired, each once
    snapshot = await lock.snapshot(pool)
    assert snapshot is not None
    assert snapshot.confirmed == confirmed
    assert snapshot.remaining + snapshot.held + snapshot.confirming + confirmed == STOCK
    await assert_consistent(lock, pool)


async def test_retried_reserves_from_many_clients_make_one_hold(
    backend: tuple[str, str], namespace: str
) -> None:
    clients = [await open_client(*backend) for _ in range(4)]
    try:
        locks = [InventoryLock(c, prefix=namespace) for c in clients]
        pool = new_pool()
        await locks[0].load(pool, 10, 3, 60)
        results = await asyncio.gather(
            *(locks[i % 4].reserve(pool, "same", 1, f"k{i % 2}") for i in range(80))
        )
        assert len({hold(r).id for r in results}) == 2
        snapshot = await locks[0].snapshot(pool)
        assert snapshot is not None and (snapshot.held, snapshot.remaining) == (2, 8)
        await assert_consistent(locks[0], pool)
    finally:
        for c in clients:
            await c.aclose()
