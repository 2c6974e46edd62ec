"""ReserveBatcher: requests that arrive together share a script call, answered as singles."""

from __future__ import annotations

import asyncio
import socket
from collections.abc import Sequence

import pytest
import redis.asyncio as aioredis
from lock_helpers import answer, assert_consistent, hold, new_pool, open_client
from redis.exceptions import ConnectionError as RedisConnectionError

from inventory_lock import (
    BatcherFull,
    Hold,
    InventoryLock,
    Rejection,
    RejectReason,
    ReserveBatcher,
    ReserveRequest,
    ReserveResult,
)
from inventory_lock.scripts import Client

RESERVERS = 2000
STOCK = 100
CLIENTS = 4


class GatedLock(InventoryLock):
    """Each reserve_batch call runs its script, then waits at `gate` before it answers."""

    def __init__(self, client: Client, prefix: str) -> None:
        super().__init__(client, prefix=prefix)
        self.gate = asyncio.Event()
        self.entered = 0
        self.changed = asyncio.Event()

    async def reserve_batch(
        self, pool: str, requests: Sequence[ReserveRequest]
    ) -> list[ReserveResult]:
        results = await super().reserve_batch(pool, requests)
        self.entered += 1
        self.changed.set()
        await self.gate.wait()
        return results

    async def entered_calls(self, count: int) -> None:
        async with asyncio.timeout(10):
            while self.entered < count:
                self.changed.clear()
                await self.changed.wait()


async def test_two_thousand_reservers_through_batchers_never_oversell(
    backend: tuple[str, str], namespace: str
) -> None:
    """Reserver i sends its request and a retry of it at once through one of several clients'
    batchers: exactly the stock is held, each retry gets its first answer, and calls carried
    many requests each."""
    clients = [await open_client(*backend) for _ in range(CLIENTS)]
    try:
        locks = [InventoryLock(c, prefix=namespace) for c in clients]
        batchers = [ReserveBatcher(lock) for lock in locks]
        pool = new_pool()
        await locks[0].load(pool, STOCK, 1, 60)

        async def reserve(i: int) -> str:
            return answer(await batchers[i % CLIENTS].reserve(pool, f"b{i}", 1, f"k{i}"))

        async def reserver(i: int) -> tuple[str, str]:
            first, retry = await asyncio.gather(reserve(i), reserve(i))
            return first, retry

        burst = asyncio.gather(*(reserver(i) for i in range(RESERVERS)))
        looks = 0
        while not burst.done():
            snapshot = await locks[0].snapshot(pool)
            assert snapshot is not None
            assert snapshot.held <= STOCK and snapshot.remaining + snapshot.held == STOCK
            looks += 1
        outcomes = await burst
        assert looks > 0
        holds = {first for first, _ in outcomes if not first.startswith("rejected")}
        assert len(holds) == STOCK
        for first, retry in outcomes:
            assert first == retry
            assert first in holds or first == "rejected:sold_out"
        snapshot = await locks[0].snapshot(pool)
        assert snapshot is not None
        assert (snapshot.held, snapshot.remaining, snapshot.buyers) == (STOCK, 0, STOCK)
        await assert_consistent(locks[0], pool)
        calls, requests = sum(b.calls for b in batchers), sum(b.requests for b in batchers)
        assert requests == 2 * RESERVERS
        assert calls * 4 <= requests, (calls, requests)  # batched: several requests per call
    finally:
        for c in clients:
            await c.aclose()


async def test_a_lone_request_goes_at_once_and_a_crowd_goes_together(
    lock: InventoryLock,
) -> None:
    pool = new_pool()
    await lock.load(pool, 30, 30, 60)
    one_call = ReserveBatcher(lock, max_in_flight=1)
    hold(await one_call.reserve(pool, "a", 1, "k"))
    assert (one_call.calls, one_call.requests) == (1, 1)
    results = await asyncio.gather(*(one_call.reserve(pool, "a", 1, f"k{i}") for i in range(10)))
    assert (one_call.calls, one_call.requests) == (2, 11)
    assert [hold(r).remaining for r in results] == list(range(28, 18, -1))
    assert await one_call.reserve(pool, "a", 0, "k") == Rejection(RejectReason.INVALID)
    assert (one_call.calls, one_call.requests) == (2, 11)  # never sent

    two_calls = ReserveBatcher(lock)  # the crowd is shared by the two calls allowed
    results = await asyncio.gather(*(two_calls.reserve(pool, "b", 1, f"k{i}") for i in range(10)))
    assert (two_calls.calls, two_calls.requests) == (2, 10)
    assert sorted(hold(r).remaining for r in results) == list(range(9, 19))
    await assert_consistent(lock, pool)


async def test_a_failed_call_fails_every_request_of_its_batch() -> None:
    with socket.socket() as sock:  # a port nobody listens on
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    client = aioredis.Redis(host="127.0.0.1", port=port, socket_connect_timeout=1)
    try:
        batcher = ReserveBatcher(InventoryLock(client, prefix="t-broken:"))
        for _ in range(2):  # and the batcher is not stuck after it
            async with asyncio.timeout(30):  # a waiter left hanging fails here
                results = await asyncio.gather(
                    *(batcher.reserve("p", f"b{i}", 1, "k") for i in range(20)),
                    return_exceptions=True,
                )
            assert all(isinstance(r, RedisConnectionError) for r in results), results
        assert batcher.requests == 40 and batcher.calls < 40
    finally:
        await client.aclose()


async def test_a_cancelled_caller_does_not_cancel_its_batch(client: Client, namespace: str) -> None:
    """Cancelled while its call is out, the hold is made and a retry returns it; cancelled
    while it waits, it is never sent."""
    lock = GatedLock(client, namespace)
    pool = new_pool()
    await lock.load(pool, 10, 10, 60)
    batcher = ReserveBatcher(lock, max_in_flight=1)
    out = asyncio.ensure_future(batcher.reserve(pool, "a", 1, "out"))
    await lock.entered_calls(1)
    waiting = asyncio.ensure_future(batcher.reserve(pool, "b", 1, "waiting"))
    kept = asyncio.ensure_future(batcher.reserve(pool, "c", 1, "kept"))
    await asyncio.sleep(0)
    out.cancel()
    waiting.cancel()
    lock.gate.set()
    assert hold(await kept).remaining == 8
    for cancelled in (out, waiting):
        with pytest.raises(asyncio.CancelledError):
            await cancelled
    assert (batcher.calls, batcher.requests) == (2, 2)
    assert hold(await batcher.reserve(pool, "a", 1, "out")).replay
    assert not hold(await batcher.reserve(pool, "b", 1, "waiting")).replay
    await assert_consistent(lock, pool)


async def test_a_full_queue_is_refused_at_once(client: Client, namespace: str) -> None:
    lock = GatedLock(client, namespace)
    pool = new_pool()
    await lock.load(pool, 10, 10, 60)
    batcher = ReserveBatcher(lock, max_pending=3, max_in_flight=1)
    first = asyncio.ensure_future(batcher.reserve(pool, "a", 1, "k0"))
    await lock.entered_calls(1)
    queued = [asyncio.ensure_future(batcher.reserve(pool, "a", 1, f"k{i}")) for i in (1, 2, 3)]
    await asyncio.sleep(0)
    with pytest.raises(BatcherFull):
        await batcher.reserve(pool, "a", 1, "k4")
    lock.gate.set()
    results = [await first, *await asyncio.gather(*queued)]
    assert [hold(r).remaining for r in results] == [9, 8, 7, 6]
    assert (batcher.calls, batcher.requests) == (2, 4)


async def test_more_calls_in_flight_when_allowed(client: Client, namespace: str) -> None:
    lock = GatedLock(client, namespace)
    pool = new_pool()
    await lock.load(pool, 10, 10, 60)
    batcher = ReserveBatcher(lock, max_in_flight=2)
    first = asyncio.ensure_future(batcher.reserve(pool, "a", 1, "k0"))
    await lock.entered_calls(1)
    second = asyncio.ensure_future(batcher.reserve(pool, "a", 1, "k1"))
    await lock.entered_calls(2)  # sent while the first call is still out
    third = asyncio.ensure_future(batcher.reserve(pool, "a", 1, "k2"))
    await asyncio.sleep(0.01)
    assert lock.entered == 2 and not third.done()  # both calls out: it waits
    lock.gate.set()
    assert [hold(r).remaining for r in await asyncio.gather(first, second, third)] == [9, 8, 7]
    assert isinstance(await batcher.reserve(pool, "a", 1, "k0"), Hold)
    assert (batcher.calls, batcher.requests) == (4, 4)
    await assert_consistent(lock, pool)


async def test_callers_who_gave_up_do_not_fill_the_queue(client: Client, namespace: str) -> None:
    lock = GatedLock(client, namespace)
    pool = new_pool()
    await lock.load(pool, 10, 10, 60)
    batcher = ReserveBatcher(lock, max_pending=2, max_in_flight=1)
    first = asyncio.ensure_future(batcher.reserve(pool, "a", 1, "k0"))
    await lock.entered_calls(1)
    gave_up = [asyncio.ensure_future(batcher.reserve(pool, "a", 1, f"g{i}")) for i in (1, 2)]
    await asyncio.sleep(0)
    for waiter in gave_up:
        waiter.cancel()
    await asyncio.sleep(0)
    late = asyncio.ensure_future(batcher.reserve(pool, "a", 1, "late"))  # room again
    await asyncio.sleep(0)
    lock.gate.set()
    assert [hold(r).remaining for r in (await first, await late)] == [9, 8]
    assert (batcher.calls, batcher.requests) == (2, 2)


async def test_a_sender_cancelled_before_it_ran_does_not_stall_the_pool(
    client: Client, namespace: str
) -> None:
    """Senders cancelled before their first step (a loop being torn down) never counted
    down; the pool's next reserve must still find a sender."""
    lock = InventoryLock(client, prefix=namespace)
    pool = new_pool()
    await lock.load(pool, 10, 10, 60)
    batcher = ReserveBatcher(lock, max_in_flight=1)
    stranded = asyncio.ensure_future(batcher.reserve(pool, "a", 1, "k0"))
    await asyncio.sleep(0)  # the caller waits; its sender is created but has not run
    for sender in list(batcher._senders):
        sender.cancel()
    await asyncio.sleep(0)
    async with asyncio.timeout(5):
        assert hold(await batcher.reserve(pool, "b", 1, "k1")).qty == 1
        assert hold(await stranded).qty == 1  # served by the new sender
    await assert_consistent(lock, pool)
