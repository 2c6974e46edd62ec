"""Bids per second through the auction's Lua script, the service's bid path (the script, then
the bid recorded in PostgreSQL with group commit before it is acknowledged), and a PostgreSQL
row-lock bid, in the same run.

    .venv/bin/python bench/bids.py [--redis-url URL] [--database-url URL] [--clients N]
                                   [--seconds S]

Both rows race --clients concurrent bidders on one auction for --seconds:
- `lua bid`: AuctionBook.bid, one EVALSHA of flash_sales/auctions/lua/bid.lua per bid (the
  server's clock, the increment, the snipe window, proxy maxima and the idempotency record
  included), each bidder bidding the minimum its last answer named;
- `service`: AuctionService.bidding.bid, as a viewer's HTTP or WebSocket bid runs it after the
  edge: the Lua script, then BidRecorder (one PostgreSQL transaction per batch of the bids
  accepted meanwhile: bids, the calls' answers, the auction's figures), then the room's
  events; on a schema of the run's own (migrated, dropped at the end). A refused bid costs it
  a peek for the next minimum (a refusal names it in its text only);
- `postgres`: `UPDATE auctions SET price = $1 WHERE id = $2 AND price < $1` on one row of a
  table of the run's own (asyncpg pool of --clients connections), the amounts from one counter.
`accepted` counts the bids that moved the price (the rest were outbid meanwhile). The ratio is
of bids per second (every bid answered, accepted or not). Keys live under a unique prefix and
the table and schema have unique names; all are removed at the end. Bids over HTTP and the
WebSocket against a `live serve` pinned to one core: bench/bids_edge.py.
"""

from __future__ import annotations

import argparse
import asyncio
import itertools
import time
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

import asyncpg
import redis.asyncio as aioredis

from flash_sales.auctions.book import AuctionBook
from flash_sales.auctions.model import config_of
from flash_sales.auctions.service import AuctionService
from inventory_lock import InventoryLock
from live.migrations import runner
from rooms.actors import Actor, Role
from rooms.errors import Conflict
from rooms.log import RoomLog

Bid = Callable[[int], Awaitable[bool]]  # (bidder) -> accepted


@dataclass
class Row:
    what: str
    bids: int = 0
    accepted: int = 0
    seconds: float = 0.0
    batches: int = 0  # PostgreSQL transactions of the service's group commit

    @property
    def rate(self) -> float:
        return self.bids / self.seconds if self.seconds else 0.0


async def drive(row: Row, clients: int, seconds: float, bid: Bid) -> Row:
    deadline = time.perf_counter() + seconds
    started = time.perf_counter()

    async def client(index: int) -> None:
        while time.perf_counter() < deadline:
            accepted = await bid(index)  # then count: `+= await` would lose others' counts
            row.bids += 1
            row.accepted += accepted

    await asyncio.gather(*(client(i) for i in range(clients)))
    row.seconds = time.perf_counter() - started
    return row


async def lua_row(url: str, clients: int, seconds: float) -> Row:
    client = aioredis.Redis.from_url(url, max_connections=clients, socket_timeout=10)
    book = AuctionBook(client, f"bench-bids-{uuid.uuid4().hex[:8]}:")
    config = config_of(
        start_cents=100, increment_cents=1, duration_s=3600, snipe_window_s=10, max_extensions=5
    )
    await book.open(1, config, "bench")
    keys = itertools.count()
    minimum = [config.start_cents] * clients

    async def bid(index: int) -> bool:
        answer = await book.bid(1, f"bidder-{index}", "", minimum[index], None, f"k{next(keys)}")
        minimum[index] = answer.live.min_next_cents
        return answer.accepted

    try:
        return await drive(Row("lua bid"), clients, seconds, bid)
    finally:
        await book.drop(1)
        await client.aclose()


async def service_row(redis_url: str, database_url: str, clients: int, seconds: float) -> Row:
    schema = f"bench_bids_{uuid.uuid4().hex[:8]}"
    prefix = f"bench-bids-{uuid.uuid4().hex[:8]}:"
    async with asyncpg.create_pool(database_url, min_size=1, max_size=1) as setup:
        async with setup.acquire() as conn:
            await conn.execute(f"CREATE SCHEMA {schema}")
            await conn.execute(f"SET search_path TO {schema}")
            await runner.migrate(conn)
            await conn.execute("INSERT INTO rooms (id, title, host_id) VALUES ('r', 'R', 'h')")
            await conn.execute(
                "INSERT INTO products (room_id, sku, title, price_cents) "
                "VALUES ('r', 'p', 'P', 100)"
            )
    pg = await asyncpg.create_pool(
        database_url, min_size=2, max_size=10, server_settings={"search_path": schema}
    )
    client = aioredis.Redis.from_url(redis_url, max_connections=clients, socket_timeout=10)
    room_log = RoomLog(client, prefix)
    service = AuctionService(pg, InventoryLock(client, prefix), room_log, stuck_confirm_s=5)
    host = Actor("h", Role.HOST, "r", "Host")
    keys = itertools.count()
    try:
        config = {"start_cents": 100, "increment_cents": 1, "duration_s": 3600}
        view = await service.lifecycle.create("r", host, 1, **config)
        auction = int(view["id"])
        await service.lifecycle.start(auction, host)
        bidders = [Actor(f"bidder-{i}", Role.VIEWER, "r", f"B{i}") for i in range(clients)]
        minimum = [100] * clients

        async def bid(index: int) -> bool:
            try:
                answer = await service.bidding.bid(
                    auction, bidders[index], minimum[index], None, f"k{next(keys)}"
                )
            except Conflict:  # outbid meanwhile, or leading already
                minimum[index] = (await service.book.peek(auction)).min_next_cents
                return False
            minimum[index] = answer["min_next_cents"]
            return True

        row = await drive(Row("service"), clients, seconds, bid)
        row.batches = service.recorder.batches
        return row
    finally:
        await pg.close()
        async for key in client.scan_iter(match=f"{prefix}*", count=1000):
            await client.unlink(key)
        await client.aclose()
        async with asyncpg.create_pool(database_url, min_size=1, max_size=1) as cleanup:
            await cleanup.execute(f"DROP SCHEMA IF EXISTS {schema} CASCADE")


async def postgres_row(url: str, clients: int, seconds: float) -> Row:
    table = f"bench_auctions_{uuid.uuid4().hex[:8]}"
    pool = await asyncpg.create_pool(url, min_size=clients, max_size=clients, timeout=10)
    assert pool is not None
    amounts = itertools.count(101)
    try:
        await pool.execute(f"CREATE TABLE {table} (id int PRIMARY KEY, price int NOT NULL)")
        await pool.execute(f"INSERT INTO {table} VALUES (1, 100)")
        statement = f"UPDATE {table} SET price = $1 WHERE id = $2 AND price < $1"

        async def bid(index: int) -> bool:
            status = await pool.execute(statement, next(amounts), 1, timeout=10)
            return bool(status == "UPDATE 1")

        return await drive(Row("postgres"), clients, seconds, bid)
    finally:
        await pool.execute(f"DROP TABLE IF EXISTS {table}")
        await pool.close()


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--redis-url", default="redis://127.0.0.1:6379/0")
    parser.add_argument("--database-url", default="postgresql://postgres@127.0.0.1:5432/test")
    parser.add_argument("--clients", type=int, default=50)
    parser.add_argument("--seconds", type=float, default=5.0)
    args = parser.parse_args()
    rows = [
        await lua_row(args.redis_url, args.clients, args.seconds),
        await service_row(args.redis_url, args.database_url, args.clients, args.seconds),
        await postgres_row(args.database_url, args.clients, args.seconds),
    ]
    print(f"{args.clients} concurrent bidders, {args.seconds:g} s each, one auction")
    print(f"{'':10} {'bids/s':>10} {'accepted/s':>11} {'bids':>8} {'pg commits':>11}")
    for row in rows:
        accepted = row.accepted / row.seconds if row.seconds else 0.0
        commits = str(row.batches) if row.batches else "-"
        print(f"{row.what:10} {row.rate:10.0f} {accepted:11.0f} {row.bids:8d} {commits:>11}")
    lua, service, pg = rows
    if pg.rate:
        print(f"lua bid / postgres row lock: {lua.rate / pg.rate:.1f}x")
        print(f"service (lua + group commit) / postgres row lock: {service.rate / pg.rate:.1f}x")
    print(f"service / lua bid: {service.rate / lua.rate:.2f}" if lua.rate else "no lua")


if __name__ == "__main__":
    asyncio.run(main())
