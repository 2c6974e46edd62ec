"""Helpers shared by the inventory_lock tests, and the worker functions that spawned processes
run (so they live in a plain importable module)."""

from __future__ import annotations

import asyncio
import itertools
import os
import random
import re
import threading
from collections.abc import Awaitable, Callable, Coroutine
from typing import Any, TypeVar

import redis.asyncio as aioredis
from hypothesis import HealthCheck, settings
from hypothesis.stateful import RuleBasedStateMachine, run_state_machine_as_test
from redis.asyncio.cluster import RedisCluster

from inventory_lock import Hold, InventoryLock, ReserveResult
from inventory_lock.scripts import Client
from live.redis_client import open_redis

_pools = itertools.count()
T = TypeVar("T")

MAX_CONNECTIONS = 500
IN_FLIGHT = 50  # calls per client at once in the 2,000-reserver burst

# (reserver index, first answer, retry answer): a hold id or a rejection reason.
Outcome = tuple[int, str, str]

LEASE_S = 600.0  # a repair's fence that no test outlives, unless it waits for the lease to pass

# What reserve hands out: "<pool>.<seq>-<nonce>", the nonce 16 lowercase hex digits per call.
HOLD_ID = re.compile(r"(?P<pool>[A-Za-z0-9_-]{1,64})\.(?P<seq>[0-9]{1,18})-(?P<nonce>[0-9a-f]{16})")


def id_parts(hold_id: str) -> tuple[str, int, str]:
    """(pool, seq, nonce) of a hold id made by reserve."""
    match = HOLD_ID.fullmatch(hold_id)
    assert match is not None, f"not a pool.seq-nonce hold id: {hold_id!r}"
    return match["pool"], int(match["seq"]), match["nonce"]


def new_pool(tag: str = "p") -> str:
    return f"{tag}{os.getpid()}x{next(_pools)}"


async def open_client(kind: str, url: str) -> Client:
    """A client of up to MAX_CONNECTIONS (per node): redis-py raises, rather than waits, when a
    call finds them all busy, and the tests run a few hundred calls at once."""
    if kind == "cluster":
        cluster = open_redis(url, 10, max_connections=MAX_CONNECTIONS)
        assert isinstance(cluster, RedisCluster), url
        await cluster.initialize()
        return cluster
    return aioredis.Redis.from_url(url, socket_timeout=10, max_connections=MAX_CONNECTIONS)


async def server_ms(client: Client) -> int:
    """The Redis server's clock in ms, the clock the scripts use."""
    reply: Any = await client.time()
    if isinstance(reply, dict):  # a cluster answers per node; they share this machine's clock
        reply = next(iter(reply.values()))
    seconds, micros = reply
    return int(seconds) * 1000 + int(micros) // 1000


async def poll(done: Callable[[], Awaitable[bool]], timeout_s: float = 60) -> None:
    """Waits for a condition kept in Redis (by the server clock or another process), which no
    asyncio.Event could signal."""
    async with asyncio.timeout(timeout_s):
        while not await done():  # noqa: ASYNC110
            await asyncio.sleep(0.001)


async def wait_until_ms(client: Client, at_ms: int) -> None:
    """Sleeps until the server clock reaches `at_ms`."""

    async def reached() -> bool:
        return await server_ms(client) >= at_ms

    await poll(reached)


async def key_dump(client: Client, namespace: str) -> dict[bytes, bytes | None]:
    """Every key of the namespace with its serialized value, to prove nothing changed."""
    keys = sorted([key async for key in client.scan_iter(match=f"{namespace}*", count=1000)])
    return {key: await client.dump(key) for key in keys}


async def pool_state(lock: InventoryLock, pool: str) -> str:
    """'ok', 'fenced' or 'stale', as the snapshot has it (never both flags at once)."""
    snapshot = await lock.snapshot(pool)
    assert snapshot is not None, pool
    assert not (snapshot.stale and snapshot.fenced), snapshot
    return "stale" if snapshot.stale else "fenced" if snapshot.fenced else "ok"


def hold(result: ReserveResult) -> Hold:
    assert isinstance(result, Hold), result
    return result


def answer(result: ReserveResult) -> str:
    return result.id if isinstance(result, Hold) else f"rejected:{result.reason}"


async def assert_consistent(lock: InventoryLock, pool: str) -> None:
    report = await lock.check(pool)
    assert report is not None and report.ok, report


async def start_line(client: Client, go_key: str) -> None:
    """Counts this party in at `<go_key>:ready`, then waits until `go_key` exists."""
    await client.incr(f"{go_key}:ready")

    async def go() -> bool:
        return bool(await client.exists(go_key))

    await poll(go)


async def start_when_ready(client: Client, go_key: str, parties: int) -> None:

    async def ready() -> bool:
        return int(await client.get(f"{go_key}:ready") or 0) >= parties

    await poll(ready)
    await client.set(go_key, 1)


async def run_reservers(
    kind: str, url: str, prefix: str, pool: str, indexes: range, clients: int, go_key: str
) -> list[Outcome]:
    """Reserver i is buyer b<i> with key k<i>; it sends its request and, at the same time, a
    retry of it (as a client would after a timeout)."""
    connections = [await open_client(kind, url) for _ in range(clients)]
    try:
        locks = [InventoryLock(c, prefix=prefix) for c in connections]
        in_flight = [asyncio.Semaphore(IN_FLIGHT) for _ in connections]
        await start_line(connections[0], go_key)

        async def reserve(i: int) -> str:
            async with in_flight[i % clients]:
                return answer(await locks[i % clients].reserve(pool, f"b{i}", 1, f"k{i}"))

        async def reserver(i: int) -> Outcome:
            await asyncio.sleep(random.random() / 100)
            first, retry = await asyncio.gather(reserve(i), reserve(i))
            return i, first, retry

        return list(await asyncio.gather(*(reserver(i) for i in indexes)))
    finally:
        for c in connections:
            await c.aclose()


async def _warm_up(url: str, key: str, parties: int) -> int:
    client = open_redis(url, 10)  # the session's Redis, plain or a cluster
    try:
        await client.incr(key)
        await client.expire(key, 120)  # gone by itself after the test

        async def everyone() -> bool:
            return int(await client.get(key) or 0) >= parties

        await poll(everyone)
        return os.getpid()
    finally:
        await client.aclose()


def warm_up(url: str, key: str, parties: int) -> int:
    """Run once per worker process at the same time: each waits for all `parties` at a counter
    in Redis, so every process has started (a process runs one task at a time)."""
    return asyncio.run(_warm_up(url, key, parties))


def reserve_worker(
    kind: str, url: str, prefix: str, pool: str, indexes: range, go_key: str
) -> list[Outcome]:
    """Entry point of a spawned process."""
    return asyncio.run(run_reservers(kind, url, prefix, pool, indexes, 2, go_key))


async def sweep_until(client: Client, prefix: str, pool: str, until_ms: int) -> int:
    """Calls expire_due in a loop until the server clock passes `until_ms`; returns the stock
    it gave back."""
    lock = InventoryLock(client, prefix=prefix)
    returned = 0
    async with asyncio.timeout(60):
        while True:
            result = await lock.expire_due(pool, batch=10)
            assert result is not None
            returned += result.qty
            if await server_ms(client) > until_ms:
                return returned
            await asyncio.sleep(0.002)


async def _sweep_process(kind: str, url: str, prefix: str, pool: str, until_ms: int) -> int:
    client = await open_client(kind, url)
    try:
        return await sweep_until(client, prefix, pool, until_ms)
    finally:
        await client.aclose()


def sweep_worker(kind: str, url: str, prefix: str, pool: str, until_ms: int) -> int:
    """Entry point of a spawned process."""
    return asyncio.run(_sweep_process(kind, url, prefix, pool, until_ms))


async def gather(*coros: Coroutine[Any, Any, T]) -> list[T]:
    return list(await asyncio.gather(*coros))


class LoopThread:
    """An event loop running in its own thread; `run` waits for a coroutine on it."""

    def __init__(self) -> None:
        self.loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self._thread.start()

    def run(self, coro: Coroutine[Any, Any, T]) -> T:
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(timeout=30)

    def close(self) -> None:
        self.loop.call_soon_threadsafe(self.loop.stop)
        self._thread.join(timeout=30)
        self.loop.close()


def run_lock_machine(
    machine: type[RuleBasedStateMachine],
    backend: tuple[str, str],
    namespace: str,
    *,
    examples: int,
    steps: int,
) -> None:
    """Run `machine` against the backend's Redis, with its `runner` (a loop in a thread of its
    own), `client` and `lock` set on a subclass made for this run."""
    runner = LoopThread()
    client = runner.run(open_client(*backend))
    try:
        bound: Any = type(machine.__name__, (machine,), {})
        bound.runner, bound.client = runner, client
        bound.lock = InventoryLock(client, prefix=namespace)
        run_state_machine_as_test(
            bound,
            settings=settings(
                max_examples=examples,
                stateful_step_count=steps,
                deadline=None,
                suppress_health_check=[HealthCheck.too_slow],
            ),
        )
    finally:
        runner.run(client.aclose())
        runner.close()
