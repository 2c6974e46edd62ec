"""Real faults on a Redis of the test's own: a restart that keeps every write (AOF, fsync
always), and a rollback to an older snapshot after a SIGKILL. Either way the pool must not sell
until it was repaired, and no hold id is ever handed out twice."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import replace
from pathlib import Path

from lock_helpers import LEASE_S, assert_consistent, hold, id_parts, open_client
from own_redis import OwnRedis

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
    Snapshot,
)
from inventory_lock.codec import text

PREFIX = "t:"  # the server is this test's alone
POOL = "sale-1"
FENCED = Rejection(RejectReason.FENCED)
STALE = Rejection(RejectReason.STALE)


@asynccontextmanager
async def connected(server: OwnRedis) -> AsyncIterator[InventoryLock]:
    """A fresh client for each run of the server (a restart kills the old connections)."""
    client = await open_client("plain", server.url)
    try:
        yield InventoryLock(client, prefix=PREFIX)
    finally:
        await client.aclose()


async def _snapshot(lock: InventoryLock) -> Snapshot:
    snapshot = await lock.snapshot(POOL)
    assert snapshot is not None
    return snapshot


async def _meta(server: OwnRedis, field: str) -> str | None:
    """A field of the pool's META, e.g. `fenced`: "<run id>:<token>" of the last repair to
    fence, while it is fenced."""
    client = await open_client("plain", server.url)
    try:
        value = await client.hget(InventoryLock(client, prefix=PREFIX).keys(POOL).meta, field)
    finally:
        await client.aclose()
    return None if value is None else text(value)


async def test_a_restarted_redis_keeps_its_pools_stale_until_repaired(
    own_redis: Callable[[bool], OwnRedis],
) -> None:
    server = own_redis(True)
    async with connected(server) as lock:
        assert await lock.load(POOL, 10, 3, 30) == PoolChange(POOL, True)
        held = hold(await lock.reserve(POOL, "ann", 1, "k"))
        confirmed = hold(await lock.reserve(POOL, "bob", 2, "k"))
        assert (await lock.begin_confirm(confirmed.id)).ok
        assert (await lock.finish_confirm(confirmed.id)).ok
        confirming = hold(await lock.reserve(POOL, "cy", 1, "k"))
        assert (await lock.begin_confirm(confirming.id)).ok
        before = await _snapshot(lock)
        assert not before.stale and (before.remaining, before.confirmed) == (6, 2)
    first_run = server.run_id()

    server.restart()
    assert server.run_id() != first_run
    async with connected(server) as lock:
        # every write came back (AOF), and yet the pool does not sell: Redis restarted
        after = await _snapshot(lock)
        assert after == replace(before, stale=True)
        assert await lock.reserve(POOL, "dan", 1, "k") == STALE
        assert await lock.reserve(POOL, "ann", 1, "k") == STALE
        assert await lock.unfence(POOL, "first") == PoolChange(POOL, False, PoolReason.STALE)
        assert await lock.fence(POOL, 10, 3, 30, "first", LEASE_S) == PoolChange(POOL, True)
        assert (await _snapshot(lock)).fenced

    server.restart()  # again, in the middle of the repair
    async with connected(server) as lock:
        # what the first repair wrote may be lost: its unfence is refused
        assert await lock.unfence(POOL, "first") == PoolChange(POOL, False, PoolReason.STALE)
        # Its fence came back, made under the run before: no unfence can end it any more, so
        # the pool is stale at once, for another repair to take.
        assert (await _snapshot(lock)).stale
        assert await lock.reserve(POOL, "dan", 1, "k") == STALE
        assert await lock.fence(POOL, 10, 3, 30, "second", LEASE_S) == PoolChange(POOL, True)
        orders = [OrderFact(confirmed.id, "bob", 2), OrderFact(confirming.id, "cy", 1)]
        assert await lock.adopt(POOL, orders) == Adopted(POOL, 1, 1, 0, 6)
        assert await lock.reserve(POOL, "dan", 1, "k") == FENCED
        assert await lock.unfence(POOL, "second") == PoolChange(POOL, True)

        repaired = await _snapshot(lock)
        assert not repaired.stale
        assert (repaired.held, repaired.confirming, repaired.confirmed) == (1, 0, 3)
        sold = hold(await lock.reserve(POOL, "dan", 1, "k"))
        assert sold.remaining == 5 and sold.id not in {held.id, confirmed.id, confirming.id}
        replay = hold(await lock.reserve(POOL, "ann", 1, "k"))
        assert (replay.id, replay.state, replay.replay) == (held.id, HoldState.HELD, True)
        await assert_consistent(lock, POOL)


async def _reserve_round(lock: InventoryLock, tag: str, count: int) -> list[str]:
    """`count` single reserves, then one batch of `count` (one script call, one nonce)."""
    singles = [hold(await lock.reserve(POOL, f"{tag}{i}", 1, "k")).id for i in range(count)]
    batch = await lock.reserve_many(
        [ReserveRequest(POOL, f"{tag}{count + i}", 1, "k") for i in range(count)]
    )
    return singles + [hold(result).id for result in batch]


async def test_ids_are_never_issued_again_after_a_rollback(
    own_redis: Callable[[bool], OwnRedis], tmp_path: Path
) -> None:
    """The server comes back from an older snapshot, so its counters went back in time: the
    sequence numbers repeat, the ids do not."""
    server = own_redis(False)  # no AOF: what the restored RDB file holds is all there is
    count = 5
    async with connected(server) as lock:
        assert await lock.load(POOL, 100, 1, 30) == PoolChange(POOL, True)
        kept = await _reserve_round(lock, "old", count)
        server.save_snapshot(tmp_path / "snapshot.rdb")
        forgotten = await _reserve_round(lock, "new", count)
        assert (await _snapshot(lock)).remaining == 100 - 4 * count

    server.kill()
    server.restore_snapshot(tmp_path / "snapshot.rdb")
    server.start()
    async with connected(server) as lock:
        restored = await _snapshot(lock)
        assert restored.stale and restored.remaining == 100 - 2 * count
        assert await lock.get_hold(forgotten[0]) is None
        assert await lock.reserve(POOL, "new0", 1, "k") == STALE

        # one forgotten hold had become an order meanwhile: the system of record says so
        assert await lock.fence(POOL, 100, 1, 30, "repair", LEASE_S) == PoolChange(POOL, True)
        order = OrderFact(forgotten[0], "new0", 1)
        assert await lock.adopt(POOL, [order]) == Adopted(POOL, 1, 1, 0, 100 - 2 * count - 1)
        assert await lock.unfence(POOL, "repair") == PoolChange(POOL, True)

        # the same requests again, Redis knowing none of them (new0 has its order already)
        assert await lock.reserve(POOL, "new0", 1, "k") == Rejection(RejectReason.LIMIT)
        again = [hold(await lock.reserve(POOL, f"new{i}", 1, "k")).id for i in range(1, count)]
        batch = await lock.reserve_many(
            [ReserveRequest(POOL, f"new{count + i}", 1, "k") for i in range(count)]
        )
        again += [hold(result).id for result in batch]

        assert not set(again) & (set(kept) | set(forgotten))
        # what made a reissue possible before ids had a nonce: the counter went back
        assert [id_parts(i)[1] for i in again] == [id_parts(i)[1] for i in forgotten[:-1]]
        snapshot = await _snapshot(lock)
        assert (snapshot.held, snapshot.confirmed) == (4 * count - 1, 1)
        await assert_consistent(lock, POOL)


async def test_a_repair_fenced_before_a_restart_cannot_unfence_after_it(
    own_redis: Callable[[bool], OwnRedis],
) -> None:
    """The reviewer's interleaving: repair A fences under run R1; Redis restarts (R2), so what
    A adopted may be lost; repair B fences under R2. A's unfence is refused, B's is not."""
    server = own_redis(True)
    async with connected(server) as lock:
        assert await lock.load(POOL, 10, 3, 30) == PoolChange(POOL, True)
        held = hold(await lock.reserve(POOL, "ann", 1, "k"))
        assert await lock.fence(POOL, 10, 3, 30, "repair-a", LEASE_S) == PoolChange(POOL, True)
        assert await lock.adopt(POOL, [OrderFact(held.id, "ann", 1)]) == Adopted(POOL, 1, 1, 0, 9)
    r1 = server.run_id()
    assert await _meta(server, "fenced") == f"{r1}:repair-a"

    server.restart()
    r2 = server.run_id()
    assert r2 != r1
    assert await _meta(server, "fenced") == f"{r1}:repair-a"  # kept (AOF), of the run before
    async with connected(server) as lock:
        assert await lock.reserve(POOL, "bob", 1, "k") == STALE  # A's fence is of the run before
        assert await lock.fence(POOL, 10, 3, 30, "repair-b", LEASE_S) == PoolChange(POOL, True)
        assert await _meta(server, "fenced") == f"{r2}:repair-b"
        assert await lock.unfence(POOL, "repair-a") == PoolChange(POOL, False, PoolReason.STALE)
        snapshot = await _snapshot(lock)
        assert snapshot.fenced and not snapshot.stale
        assert await lock.reserve(POOL, "bob", 1, "k") == FENCED
        assert await lock.adopt(POOL, [OrderFact(held.id, "ann", 1)]) == Adopted(POOL, 0, 0, 0, 9)
        assert await lock.unfence(POOL, "repair-b") == PoolChange(POOL, True)
        assert await _meta(server, "fenced") is None
        assert await _meta(server, "run_id") == r2
        repaired = await _snapshot(lock)
        assert not repaired.stale and not repaired.fenced
        assert (repaired.remaining, repaired.confirmed) == (9, 1)
        assert await lock.unfence(POOL, "repair-a") == PoolChange(POOL, False, PoolReason.STALE)
        assert hold(await lock.reserve(POOL, "bob", 1, "k")).remaining == 8
        await assert_consistent(lock, POOL)
