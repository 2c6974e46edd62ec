"""Reservations per second against one pool, beside the ceilings measured in the same run.

    .venv/bin/python bench/reserve.py [--redis-url URL] [--database-url URL] [--clients N]

Rows, each for the same number of concurrent clients, in three modes: unpipelined (one
operation per client at a time), pipelined (--batch operations per client and round trip) and
batched (one operation per client at a time through ReserveBatcher, as the flash-sale service
reserves: requests that meet in the same moment share one script call).
- `reserve`: InventoryLock.reserve (unpipelined), reserve_many of --batch requests, one script
  call (pipelined), ReserveBatcher.reserve (batched), on one pool that never sells out;
- `sold out`: the same on a pool with nothing left, where most of a real burst lands;
- `raw evalsha`: a trivial script (`return 1`) on the same server, the Redis ceiling: one
  EVALSHA per operation, --batch of them per pipeline when pipelined;
- `postgres`: `UPDATE ... SET stock = stock - n WHERE stock >= n` on one row (asyncpg pool),
  n = 1 unpipelined and n = batch when pipelined (group commit).
`redis us/op` is Redis' own time (INFO commandstats, EVALSHA) per operation, `ops/call` the
operations per EVALSHA actually seen. Every row stops after --seconds or --max-ops, whichever
comes first. Keys live under a unique prefix and the table has a unique name; both are removed
at the end.
"""

from __future__ import annotations

import argparse
import asyncio
import itertools
import statistics
import time
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field

import asyncpg
import redis.asyncio as aioredis

from inventory_lock import InventoryLock, ReserveBatcher, ReserveRequest
from inventory_lock.batcher import DEFAULT_MAX_IN_FLIGHT

Call = Callable[[int], Awaitable[int]]  # (client) -> operations done
MAX_COUNT = 1_000_000_000
WARM_UP_S = 0.3
MODES = ("unpipelined", "pipelined", "batched")
OURS = ("reserve", "sold out")
_keys = itertools.count()  # idempotency keys: every reservation of the run is a new one


@dataclass
class Row:
    mode: str
    what: str
    ops: int = 0
    seconds: float = 0.0
    latencies: list[float] = field(default_factory=list)
    server_us: float | None = None  # Redis' own time per operation (INFO commandstats)
    per_call: float | None = None  # operations per EVALSHA

    @property
    def rate(self) -> float:
        return self.ops / self.seconds if self.seconds else 0.0

    def percentile_ms(self, q: int) -> float:
        if len(self.latencies) < 2:
            return float("nan")
        return statistics.quantiles(self.latencies, n=100)[q - 1] * 1000


async def drive(row: Row, clients: int, seconds: float, max_calls: int, call: Call) -> Row:
    """`clients` tasks call `call` in a loop until `seconds` pass or `max_calls` were made."""
    deadline = time.perf_counter() + seconds
    calls = 0

    async def client(index: int) -> None:
        nonlocal calls
        while calls < max_calls and time.perf_counter() < deadline:
            calls += 1
            started = time.perf_counter()
            done = await call(index)
            row.latencies.append(time.perf_counter() - started)
            row.ops += done

    started = time.perf_counter()
    await asyncio.gather(*(client(i) for i in range(clients)))
    row.seconds = time.perf_counter() - started
    return row


async def measure(
    args: argparse.Namespace,
    mode: str,
    what: str,
    call: Call,
    started: Callable[[], Awaitable[None]] | None = None,
) -> Row:
    """A warm-up, then `started` (if any), then the measured row."""
    await drive(Row(mode, what), args.clients, WARM_UP_S, args.max_ops, call)
    if started is not None:
        await started()
    batch = args.batch if mode == "pipelined" else 1
    return await drive(Row(mode, what), args.clients, args.seconds, args.max_ops // batch, call)


async def redis_rows(args: argparse.Namespace, prefix: str) -> list[Row]:
    client = aioredis.Redis.from_url(args.redis_url, max_connections=args.clients + 8)
    lock = InventoryLock(client, prefix=prefix)
    batcher = ReserveBatcher(lock, max_in_flight=args.in_flight)
    pool, batch = "bench", int(args.batch)
    await lock.load(pool, MAX_COUNT, MAX_COUNT, 600)
    await lock.load("soldout", 0, 1, 600)
    trivial = client.register_script("return 1")
    key = f"{prefix}{{sale:{pool}}}:trivial"

    def reserve(target: str) -> Call:
        async def one(c: int) -> int:
            await lock.reserve(target, f"c{c}", 1, str(next(_keys)))
            return 1

        return one

    def reserve_many(target: str) -> Call:
        async def many(c: int) -> int:
            requests = [ReserveRequest(target, f"c{c}", 1, str(next(_keys))) for _ in range(batch)]
            return len(await lock.reserve_many(requests))

        return many

    def reserve_batched(target: str) -> Call:
        async def one(c: int) -> int:
            await batcher.reserve(target, f"c{c}", 1, str(next(_keys)))
            return 1

        return one

    async def raw(c: int) -> int:
        await trivial(keys=[key])
        return 1

    async def raw_many(c: int) -> int:
        pipe = client.pipeline(transaction=False)
        for _ in range(batch):
            pipe.evalsha(trivial.sha, 1, key)
        return len(await pipe.execute())

    async def evalsha_stats() -> tuple[int, int]:
        stats = (await client.info("commandstats")).get("cmdstat_evalsha", {})
        return int(stats.get("calls", 0)), int(stats.get("usec", 0))

    async def timed(mode: str, what: str, call: Call) -> Row:
        before = (0, 0)

        async def started() -> None:
            nonlocal before
            before = await evalsha_stats()

        row = await measure(args, mode, what, call, started)
        calls_after, usec_after = await evalsha_stats()
        calls, usec = calls_after - before[0], usec_after - before[1]
        row.server_us = usec / max(row.ops, 1)
        row.per_call = row.ops / max(calls, 1)
        return row

    try:
        rows = [
            await timed("unpipelined", "reserve", reserve(pool)),
            await timed("unpipelined", "sold out", reserve("soldout")),
            await timed("unpipelined", "raw evalsha", raw),
            await timed("pipelined", "reserve", reserve_many(pool)),
            await timed("pipelined", "sold out", reserve_many("soldout")),
            await timed("pipelined", "raw evalsha", raw_many),
            await timed("batched", "reserve", reserve_batched(pool)),
            await timed("batched", "sold out", reserve_batched("soldout")),
        ]
        for checked in (pool, "soldout"):
            report = await lock.check(checked)
            assert report is not None and report.ok, report
        return rows
    finally:
        for dropped in (pool, "soldout"):
            await lock.drop(dropped)
        await client.aclose()


async def postgres_rows(args: argparse.Namespace) -> list[Row]:
    table, batch = f"bench_stock_{uuid.uuid4().hex[:12]}", int(args.batch)
    db = await asyncpg.create_pool(args.database_url, min_size=args.clients, max_size=args.clients)
    update = f"UPDATE {table} SET stock = stock - $1 WHERE id = 1 AND stock >= $1"

    async def one(c: int) -> int:
        await db.execute(update, 1)
        return 1

    async def many(c: int) -> int:
        await db.execute(update, batch)
        return batch

    try:
        await db.execute(f"CREATE TABLE {table} (id int PRIMARY KEY, stock bigint NOT NULL)")
        await db.execute(f"INSERT INTO {table} VALUES (1, $1)", 10**15)
        return [
            await measure(args, "unpipelined", "postgres", one),
            await measure(args, "pipelined", "postgres", many),
        ]
    finally:
        await db.execute(f"DROP TABLE IF EXISTS {table}")
        await db.close()


def report(args: argparse.Namespace, rows: list[Row]) -> None:
    by = {(row.mode, row.what): row for row in rows}
    print(
        f"\n{args.clients} concurrent clients, {args.seconds:g} s per row, batch {args.batch} "
        f"when pipelined, up to {args.in_flight} call(s) in flight per pool when batched; "
        "latency is per call (a whole batch when pipelined)\n"
    )
    print(
        f"{'mode':<12} {'what':<12} {'ops/s':>10} {'p50 ms':>8} {'p99 ms':>8} {'calls':>8} "
        f"{'redis us/op':>11} {'ops/call':>8}"
    )
    for row in rows:
        server = f"{row.server_us:>11.1f}" if row.server_us is not None else f"{'-':>11}"
        per_call = f"{row.per_call:>8.1f}" if row.per_call is not None else f"{'-':>8}"
        print(
            f"{row.mode:<12} {row.what:<12} {row.rate:>10,.0f} {row.percentile_ms(50):>8.2f} "
            f"{row.percentile_ms(99):>8.2f} {len(row.latencies):>8} {server} {per_call}"
        )
    print(
        "\nRatios of ops/s. vs raw: unpipelined rows against unpipelined raw evalsha, pipelined "
        "and batched rows against pipelined raw evalsha.\nvs postgres: every row against the "
        "unpipelined postgres row (one UPDATE per reservation).\n"
    )
    postgres = by.get(("unpipelined", "postgres"))
    for mode in MODES:
        raw = by[("unpipelined" if mode == "unpipelined" else "pipelined", "raw evalsha")]
        for ours in OURS:
            row = by[(mode, ours)]
            line = f"{mode:<12} {ours:>8}: {row.rate / raw.rate:6.2f}x {raw.mode} raw"
            if postgres is not None and postgres.rate:
                line += f", {row.rate / postgres.rate:7.2f}x unpipelined postgres"
            print(line)


async def main(args: argparse.Namespace) -> None:
    rows = await redis_rows(args, f"bench{uuid.uuid4().hex[:8]}:")
    try:
        rows += await postgres_rows(args)
    except (OSError, asyncpg.PostgresError) as error:
        print(f"postgres rows skipped: {error}")
    report(args, rows)


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--redis-url", default="redis://127.0.0.1:6379/0")
    parser.add_argument("--database-url", default="postgresql://postgres@127.0.0.1:5432/test")
    parser.add_argument("--clients", type=int, default=64, help="concurrent callers (1..90)")
    parser.add_argument("--batch", type=int, default=32, help="operations per pipeline (1..500)")
    parser.add_argument(
        "--in-flight",
        type=int,
        default=DEFAULT_MAX_IN_FLIGHT,
        help="calls in flight per pool when batched (1..4)",
    )
    parser.add_argument("--seconds", type=float, default=3.0, help="time per row (0.1..60)")
    parser.add_argument("--max-ops", type=int, default=200_000, help="operations per row")
    args = parser.parse_args()
    if not (1 <= args.clients <= 90 and 1 <= args.batch <= 500 and 0.1 <= args.seconds <= 60):
        parser.error("--clients, --batch or --seconds out of range")
    if not 1 <= args.in_flight <= 4:
        parser.error("--in-flight out of range")
    if args.max_ops < 1:
        parser.error("--max-ops must be positive")
    return args


if __name__ == "__main__":
    asyncio.run(main(parse_args()))
