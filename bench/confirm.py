"""Confirm throughput: group commit against one transaction per order, and the outbox's cost.

Each confirm is what OrderWriter writes for it: the hold's outcome claimed in `hold_outcomes`,
the order INSERT, `sales.sold` on the one hot sale row and the buyer's `sale_buyers` row, each
guarded by its CHECK, and (with the outbox) its `order.created` event in the same statement (one
outbox entry per batch).
Rows, each in the same run on a fresh schema:
- a transaction per order (the usual way), with the outbox;
- group commit without the outbox (the statement of issue 12);
- group commit with the outbox and no dispatcher: what the outbox costs the confirm itself;
- group commit with the outbox and, in this process as in the service, a webhook dispatcher
  delivering every event to a receiver (a process of its own answering 200);
- the same with the receiver down (every delivery refused and retried).
Each mode runs `--rounds` times, interleaved in a rotating order; the medians are compared.
Prints orders/s and p50/p99 latency, how much the dispatcher did meanwhile, and the ratios. The
group-commit rows confirm `--orders` each (long enough for the dispatcher to work through them,
every 200 ms); the transaction per order, ten times slower, `--single-orders`.

    .venv/bin/python bench/confirm.py [--database-url URL] [--orders 20000]
        [--single-orders 4000] [--concurrency 200] [--rounds 5]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import socket
import statistics
import subprocess
import sys
import time
import uuid
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass

import asyncpg

from flash_sales.model import Order, OrderRequest
from flash_sales.orders import OrderWriter
from flash_sales.webhooks.deliveries import DeliveryStore
from flash_sales.webhooks.dispatcher import Dispatcher
from flash_sales.webhooks.endpoints import GLOBAL, Endpoint, RetryPolicy
from live.embedded import free_port
from live.migrations import runner

RECEIVER = """
import sys, uvicorn
async def app(scope, receive, send):
    if scope["type"] != "http":
        return
    while (await receive()).get("more_body"):
        pass
    await send({"type": "http.response.start", "status": 200, "headers": []})
    await send({"type": "http.response.body", "body": b""})
uvicorn.run(app, host="127.0.0.1", port=int(sys.argv[1]), log_level="warning", lifespan="off")
"""
SECRET = "bench-secret-0123456789abcdef"
SINGLE = "transaction per order"
PLAIN = "group commit, no outbox"
QUIET = "group commit + outbox, no dispatcher"
UP = "group commit + outbox, receiver up"
DOWN = "group commit + outbox, receiver down"


@dataclass
class Run:
    rate: float
    latencies: list[float]
    transactions: int
    delivered: int  # events the dispatcher delivered while the confirms ran
    attempts: int  # and the attempts it made (delivered or not)


async def _prepare(url: str, schema: str, stock: int) -> int:
    conn = await asyncpg.connect(url)
    try:
        await conn.execute(f"CREATE SCHEMA {schema}")
        await conn.execute(f"SET search_path TO {schema}")
        await runner.migrate(conn)
        await conn.execute("INSERT INTO rooms (id, title, host_id) VALUES ('b', 'Bench', 'h')")
        product = await conn.fetchval(
            "INSERT INTO products (room_id, sku, title, price_cents) "
            "VALUES ('b', 's', 'Thing', 100) RETURNING id"
        )
        sale: int = await conn.fetchval(
            "INSERT INTO sales (room_id, product_id, price_cents, stock, limit_per_buyer, "
            "hold_seconds, state) VALUES ('b', $1, 100, $2, 1, 60, 'open') RETURNING id",
            product,
            stock,
        )
        return sale
    finally:
        await conn.close()


@contextlib.asynccontextmanager
async def _dispatching(
    pool: asyncpg.Pool, receiver: str | None
) -> AsyncIterator[Dispatcher | None]:
    """A dispatcher at work in this process (every 200 ms, as the service's default); none
    without a receiver."""
    if receiver is None:
        yield None
        return
    endpoint = Endpoint(GLOBAL, receiver, (SECRET,))
    dispatcher = Dispatcher(
        DeliveryStore(pool),
        [endpoint],
        RetryPolicy(1.0, 3600.0, 86400.0),
        timeout_s=5.0,
        interval_s=0.2,
        retention_s=86400.0,
    )

    async def every_interval() -> None:
        while True:
            await dispatcher.fan_out()
            await dispatcher.dispatch()
            await asyncio.sleep(dispatcher.interval_s)

    task = asyncio.create_task(every_interval())
    try:
        yield dispatcher
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
        await dispatcher.aclose()


async def _run(url: str, orders: int, concurrency: int, mode: str, receiver: str | None) -> Run:
    schema = f"bench_{uuid.uuid4().hex[:10]}"
    try:
        sale = await _prepare(url, schema, orders)
        pool = await asyncpg.create_pool(
            url, min_size=4, max_size=10, server_settings={"search_path": schema}
        )
        assert pool is not None
        writer = OrderWriter(pool, outbox=mode != PLAIN)
        latencies: list[float] = []
        queue = iter(range(orders))

        async def confirmer() -> None:
            for n in queue:
                request = OrderRequest(f"{sale}.{n}", sale, f"buyer{n}", 1, 100, 1, "bench")
                started = time.perf_counter()
                if mode == SINGLE:  # each confirm its own transaction, concurrently
                    (result,) = await writer._write([request])
                else:
                    result = await writer.write(request)
                latencies.append((time.perf_counter() - started) * 1000)
                assert isinstance(result, Order), result

        async with _dispatching(pool, receiver if mode in (UP, DOWN) else None):
            began = time.perf_counter()
            await asyncio.gather(*(confirmer() for _ in range(concurrency)))
            elapsed = time.perf_counter() - began
            done = await pool.fetchrow(
                "SELECT count(*) FILTER (WHERE delivered_at IS NOT NULL) AS delivered, "
                "coalesce(sum(attempts), 0) AS attempts FROM deliveries"
            )
            assert done is not None
        await writer.stop()
        sold = await pool.fetchval("SELECT sold FROM sales WHERE id = $1", sale)
        assert sold == orders, (sold, orders)
        if mode != PLAIN:
            events = await pool.fetchval("SELECT sum(cardinality(order_ids)) FROM outbox")
            assert events == orders, (events, orders)
        await pool.close()
        transactions = orders if mode == SINGLE else writer.batches
        return Run(orders / elapsed, latencies, transactions, done["delivered"], done["attempts"])
    finally:
        conn = await asyncpg.connect(url)
        await conn.execute(f"DROP SCHEMA IF EXISTS {schema} CASCADE")
        await conn.close()


def _pct(values: list[float], q: float) -> float:
    return statistics.quantiles(values, n=100)[int(q) - 1] if len(values) > 1 else values[0]


@contextlib.contextmanager
def _receiver() -> Iterator[str]:
    port = free_port()
    process = subprocess.Popen([sys.executable, "-c", RECEIVER, str(port)])
    try:
        deadline = time.monotonic() + 20
        while True:
            with contextlib.suppress(OSError):
                socket.create_connection(("127.0.0.1", port), timeout=1).close()
                break
            assert time.monotonic() < deadline, "the receiver did not start"
            time.sleep(0.05)
        yield f"http://127.0.0.1:{port}/hook"
    finally:
        process.terminate()
        process.wait(10)


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--database-url", default="postgresql://postgres@127.0.0.1:5432/test")
    parser.add_argument("--orders", type=int, default=20000)
    parser.add_argument("--single-orders", type=int, default=4000)
    parser.add_argument("--concurrency", type=int, default=200)
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args()
    down = f"http://127.0.0.1:{free_port()}/hook"  # nothing listens there
    runs: dict[str, list[Run]] = {mode: [] for mode in (SINGLE, PLAIN, QUIET, UP, DOWN)}
    with _receiver() as up:
        grouped = [(PLAIN, None), (QUIET, None), (UP, up), (DOWN, down)]
        for round_ in range(args.rounds):
            # Each round in another order, so that no mode always runs after the same one.
            shift = round_ % len(grouped)
            for mode, receiver in [*grouped[shift:], *grouped[:shift], (SINGLE, None)]:
                orders = args.single_orders if mode == SINGLE else args.orders
                runs[mode].append(
                    await _run(args.database_url, orders, args.concurrency, mode, receiver)
                )
    print(
        f"{args.orders} confirms ({args.single_orders} one transaction each), "
        f"{args.concurrency} concurrent, one hot sale row, median of {args.rounds} rounds"
    )
    print(f"{'writer':<38}{'orders/s':>10}{'p50 ms':>9}{'p99 ms':>9}{'transactions':>14}")
    rate = {}
    for mode, done in runs.items():
        best = sorted(done, key=lambda run: run.rate)[len(done) // 2]
        rate[mode] = best.rate
        latencies = [ms for run in done for ms in run.latencies]
        print(
            f"{mode:<38}{best.rate:>10.0f}{_pct(latencies, 50):>9.1f}{_pct(latencies, 99):>9.1f}"
            f"{best.transactions:>14}"
        )
    for mode in (UP, DOWN):
        delivered = statistics.median(run.delivered for run in runs[mode])
        attempts = statistics.median(run.attempts for run in runs[mode])
        print(
            f"dispatcher during a run, {mode.rsplit(', ', 1)[1]}: {delivered:.0f} events "
            f"delivered, {attempts:.0f} attempts (median)"
        )
    print(f"group commit / transaction per order: {rate[PLAIN] / rate[SINGLE]:.1f}x orders/s")
    print(f"outbox, no dispatcher / no outbox: {rate[QUIET] / rate[PLAIN]:.2f}x orders/s")
    print(f"outbox, receiver up / no outbox:   {rate[UP] / rate[PLAIN]:.2f}x orders/s")
    print(f"outbox, receiver down / no outbox: {rate[DOWN] / rate[PLAIN]:.2f}x orders/s")


if __name__ == "__main__":
    asyncio.run(main())
