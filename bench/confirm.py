"""Confirm throughput: group commit against one transaction per order, in the same run.

Each confirm is what OrderWriter writes for it: the hold's outcome claimed in `hold_outcomes`,
the order INSERT, `sales.sold` on the one hot sale row and the buyer's `sale_buyers` row, each
guarded by its CHECK. Prints orders/s and p50/p99 latency for both writers and their ratio.

    .venv/bin/python bench/confirm.py [--database-url URL] [--orders 4000] [--concurrency 200]
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import time
import uuid

import asyncpg

from flash_sales.model import Order, OrderRequest
from flash_sales.orders import OrderWriter
from live.migrations import runner


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


async def _run(
    url: str, schema: str, orders: int, concurrency: int, batched: bool
) -> tuple[float, list[float], int]:
    sale = await _prepare(url, schema, orders)
    pool = await asyncpg.create_pool(
        url, min_size=4, max_size=10, server_settings={"search_path": schema}
    )
    assert pool is not None
    writer = OrderWriter(pool)
    latencies: list[float] = []
    queue = iter(range(orders))

    async def confirmer() -> None:
        for n in queue:
            request = OrderRequest(f"{sale}.{n}", sale, f"buyer{n}", 1, 100, 1, "bench")
            started = time.perf_counter()
            if batched:
                result = await writer.write(request)
            else:  # the usual way: each confirm its own transaction, concurrently from the pool
                (result,) = await writer._write([request])
            latencies.append((time.perf_counter() - started) * 1000)
            assert isinstance(result, Order), result

    began = time.perf_counter()
    await asyncio.gather(*(confirmer() for _ in range(concurrency)))
    elapsed = time.perf_counter() - began
    batches = writer.batches if batched else orders
    await writer.stop()
    async with pool.acquire() as conn:
        sold = await conn.fetchval("SELECT sold FROM sales WHERE id = $1", sale)
        assert sold == orders, (sold, orders)
    await pool.close()
    return orders / elapsed, latencies, batches


def _pct(values: list[float], q: float) -> float:
    return statistics.quantiles(values, n=100)[int(q) - 1] if len(values) > 1 else values[0]


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--database-url", default="postgresql://postgres@127.0.0.1:5432/test")
    parser.add_argument("--orders", type=int, default=4000)
    parser.add_argument("--concurrency", type=int, default=200)
    args = parser.parse_args()
    schemas = [f"bench_{uuid.uuid4().hex[:10]}" for _ in range(2)]
    try:
        single = await _run(args.database_url, schemas[0], args.orders, args.concurrency, False)
        grouped = await _run(args.database_url, schemas[1], args.orders, args.concurrency, True)
    finally:
        conn = await asyncpg.connect(args.database_url)
        for schema in schemas:
            await conn.execute(f"DROP SCHEMA IF EXISTS {schema} CASCADE")
        await conn.close()
    print(f"{args.orders} confirms, {args.concurrency} concurrent, one hot sale row")
    print(f"{'writer':<24}{'orders/s':>10}{'p50 ms':>9}{'p99 ms':>9}{'transactions':>14}")
    for name, (rate, latencies, batches) in (
        ("transaction per order", single),
        ("group commit", grouped),
    ):
        print(
            f"{name:<24}{rate:>10.0f}{_pct(latencies, 50):>9.1f}{_pct(latencies, 99):>9.1f}"
            f"{batches:>14}"
        )
    print(f"group commit / transaction per order: {grouped[0] / single[0]:.1f}x orders/s")


if __name__ == "__main__":
    asyncio.run(main())
