"""Bids per second at the edge: one `live serve` process pinned to one core, bidders over HTTP
and over the WebSocket on the other core, beside a PostgreSQL row-lock bid, in the same run.

    .venv/bin/python bench/bids_edge.py [--redis-url URL] [--database-url URL] [--bidders N]
                                      [--seconds S] [--pg-clients N] [--no-pin]

The server is `python -m live.cli serve` (one worker) on the given Redis and PostgreSQL, under a
LIVE_REDIS_PREFIX and LIVE_DATABASE_SCHEMA of its own (removed afterwards), pinned to the first
CPU this process may use (bench/fanout/servers.py starts it); this process, the bidders, runs on
the others. Each bidder has its own viewer token and its own connection. Rows, each on a fresh
auction (start 100 cents, increment 1 cent), a warm-up then --seconds measured:
- `http`: `POST /api/auctions/{id}/bids` with an Idempotency-Key, one keep-alive connection per
  bidder, one bid in flight per bidder (raw HTTP/1.1, so the client stays cheap);
- `ws`: the protocol's `bid` message, one WebSocket per bidder, one bid in flight per bidder
  (the server runs a connection's messages one at a time). The protocol allows a client 20
  messages a second, so a WebSocket bidder sends at most one bid every 1/18 s: the rows are
  capped at 18 x --bidders bids/s (flagged when near it). These bidders watch the room too:
  the server writes each one the room's frames (the `auction` state, `outbid`), counted;
- `postgres`: `UPDATE t SET price = $1 WHERE id = 1 AND price < $1` on one row of a table in a
  schema of the run's own (dropped at the end), --pg-clients connections (asyncpg), this process.
Two workloads each:
- `rising`: every bid takes the next amount of one shared counter, so most are accepted (a bid
  overtaken by a higher one, or by the bidder's own lead, is refused);
- `at once`: rounds in which every bidder bids the same current minimum at the same moment: one
  is accepted, the rest refused (`too_low`), then the next round at the new minimum.
Each row prints bids/s (every bid answered, accepted or not; a call that got no answer, its
connection lost, is listed apart and not counted), accepted/s, the latency of a bid,
the CPU share of live (from /proc, pinned to one core), of Redis (INFO), of the local PostgreSQL
processes (/proc), of this process and of everything else on the machine (`other`: other work
sharing the cores, interrupts) over the window (Redis and PostgreSQL are the machine's,
not pinned: they take CPU on both cores, and PostgreSQL has the idle server core during its
rows); then the ratios: WebSocket / HTTP, and
each / the PostgreSQL row lock of the same workload. The in-process rows (the Lua script alone,
the service path) are bench/bids.py's. Everything is bounded: about a minute in all.
The bidders are in bench/bids_edge_clients.py; a row's drive and measurement, in
bench/bids_edge_rows.py.
"""

from __future__ import annotations

import argparse
import asyncio
import math
import os
import sys
import tempfile
import uuid
from pathlib import Path
from typing import Any

import asyncpg
import httpx
import redis.asyncio as aioredis
from bids_edge_clients import WS_MIN_GAP_S, HttpBidder, PgBidder, WsBidder
from bids_edge_rows import START_CENTS, WARM_UP_S, WORKLOADS, Race, Row, measure
from fanout.procstats import raise_fd_limit, split_cpus
from fanout.servers import SECRET, Server, add_store_options, start_live, stop_server

from gateway.auth import mint
from rooms.actors import Role


class Edge:
    """The server under test, its room and product, and auctions made through the API."""

    def __init__(self, server: Server) -> None:
        self.server = server
        token = mint(SECRET, sub="bench-host", role=Role.HOST, room=server.room, ttl_s=3600)
        self.http = httpx.AsyncClient(
            base_url=f"http://127.0.0.1:{server.port}",
            headers={"authorization": f"Bearer {token}"},
            timeout=30,
        )
        self.product = 0

    async def call(self, path: str, body: dict[str, Any] | None = None) -> dict[str, Any]:
        response = await self.http.post(path, json=body)
        if response.status_code not in (200, 201):
            raise RuntimeError(f"POST {path}: {response.status_code} {response.text}")
        data: dict[str, Any] = response.json()
        return data

    async def auction(self) -> Race:
        room = self.server.room
        if not self.product:
            body = {"sku": "BID", "title": "Bench lot", "price_cents": START_CENTS}
            self.product = int((await self.call(f"/api/rooms/{room}/products", body))["id"])
        config = {"product_id": self.product, "start_cents": START_CENTS, "increment_cents": 1}
        made = await self.call(f"/api/rooms/{room}/auctions", {**config, "duration_s": 3600})
        await self.call(f"/api/auctions/{made['id']}/start")
        return Race(int(made["id"]))


async def edge_rows(args: argparse.Namespace, redis: aioredis.Redis, logs: Path) -> list[Row]:
    server = await start_live(args, redis, logs)
    edge = Edge(server)
    rows: list[Row] = []
    names = [f"bidder-{i}" for i in range(args.bidders)]
    tokens = [
        mint(SECRET, sub=n, role=Role.VIEWER, room=server.room, ttl_s=3600, name=n) for n in names
    ]
    try:
        for what in ("http", "ws"):
            bidders: list[HttpBidder | WsBidder]
            if what == "http":
                bidders = [
                    HttpBidder(server.port, n, t) for n, t in zip(names, tokens, strict=True)
                ]
            else:
                bidders = [
                    WsBidder(server.port, server.room, n, t)
                    for n, t in zip(names, tokens, strict=True)
                ]
            try:
                await asyncio.wait_for(asyncio.gather(*(b.open() for b in bidders)), 60)
                for workload in WORKLOADS:
                    row = Row(what, workload)
                    if what == "ws":
                        row.cap = args.bidders / WS_MIN_GAP_S
                    race = await edge.auction()
                    await measure(row, bidders, race, args.seconds, redis, server.proc.pid)
                    rows.append(row)
            finally:
                await asyncio.gather(*(b.close() for b in bidders))
        return rows
    finally:
        await edge.http.aclose()
        await stop_server(server)
        if server.proc.returncode not in (0, -15):
            print(
                f"live exited with {server.proc.returncode}:\n{server.log_tail()}", file=sys.stderr
            )


async def postgres_rows(args: argparse.Namespace, redis: aioredis.Redis) -> list[Row]:
    schema = f"bench_bids_edge_{uuid.uuid4().hex[:10]}"
    table = f"{schema}.auctions"
    setup = await asyncpg.connect(args.database_url, timeout=10)
    try:
        await setup.execute(f"CREATE SCHEMA {schema}")
        await setup.execute(f"CREATE TABLE {table} (id int PRIMARY KEY, price int NOT NULL)")
        rows = []
        async with asyncpg.create_pool(
            args.database_url, min_size=args.pg_clients, max_size=args.pg_clients, timeout=10
        ) as pool:
            bidders = [PgBidder(pool, table)] * args.pg_clients
            for workload in WORKLOADS:
                await setup.execute(f"TRUNCATE {table}")
                await setup.execute(f"INSERT INTO {table} VALUES (1, {START_CENTS - 1})")
                row = Row("postgres", workload)
                rows.append(await measure(row, bidders, Race(1), args.seconds, redis, None))
        return rows
    finally:
        await setup.execute(f"DROP SCHEMA IF EXISTS {schema} CASCADE")
        await setup.close()


def report(args: argparse.Namespace, rows: list[Row]) -> None:
    pinned = f"CPU {args.server_cpus[0]}" if args.server_cpus else "any CPU (--no-pin)"
    print(
        f"\nlive serve (one process) on {pinned}, bidders on CPU "
        f"{','.join(map(str, args.client_cpus)) or 'any'}; {args.bidders} bidders over HTTP and "
        f"over the WebSocket (each its own token and connection), {args.pg_clients} PostgreSQL "
        f"connections; {args.seconds:g} s per row after a {WARM_UP_S:g} s warm-up; CPU in % "
        "of one core over the window\n"
    )
    print(
        f"{'row':<20} {'bids/s':>8} {'accepted/s':>10} {'p50 ms':>7} {'p99 ms':>7} "
        f"{'live':>5} {'redis':>5} {'pg':>5} {'bench':>5} {'other':>5} {'frames/s':>9}"
    )
    for row in rows:
        cpu = " ".join(
            f"{'-':>5}" if math.isnan(row.cpu[k]) else f"{row.cpu[k] * 100:5.0f}"
            for k in ("live", "redis", "pg", "us", "other")
        )
        frames = f"{row.frames / row.seconds:9,.0f}" if row.what == "ws" else f"{'-':>9}"
        print(
            f"{row.what + ' ' + row.workload:<20} {row.rate:8,.0f} "
            f"{row.accepted / row.seconds:10,.0f} {row.ms(50):7.1f} {row.ms(99):7.1f} "
            f"{cpu} {frames}"
        )
    print()
    for row in rows:
        calls = sum(row.codes.values())
        codes = ", ".join(f"{c} {n / calls:.1%}" for c, n in row.codes.most_common())
        flag = " (near the WebSocket pacing cap)" if row.rate > 0.9 * row.cap else ""
        server = "pg" if row.what == "postgres" else "live"
        per_core = ""
        if row.cpu[server] > 0:
            per_core = f"; {row.rate / row.cpu[server]:,.0f} bids per CPU-second of {server}"
        print(f"{row.what + ' ' + row.workload:<20} {codes}{per_core}{flag}")
    by = {(row.what, row.workload): row for row in rows}
    print()
    for workload in WORKLOADS:
        http, ws = by.get(("http", workload)), by.get(("ws", workload))
        pg = by.get(("postgres", workload))
        parts = []
        if http and ws and http.rate:
            parts.append(f"WebSocket / HTTP {ws.rate / http.rate:.2f}x")
        if pg and pg.rate:
            parts += [
                f"{r.what} / postgres row lock {r.rate / pg.rate:.2f}x" for r in (http, ws) if r
            ]
        if pg and pg.accepted and workload == "rising":
            pg_accepted = pg.accepted / pg.seconds
            parts += [
                f"accepted/s {r.what} / postgres {r.accepted / r.seconds / pg_accepted:.2f}x"
                for r in (http, ws)
                if r
            ]
        print(f"{workload} (bids/s): {', '.join(parts)}")


async def run(args: argparse.Namespace) -> list[Row]:
    redis = aioredis.Redis.from_url(args.redis_url, socket_timeout=10)
    try:
        with tempfile.TemporaryDirectory(prefix="bench-bids-") as logs:
            async with asyncio.timeout(args.budget):
                rows = await edge_rows(args, redis, Path(logs))
                rows += await postgres_rows(args, redis)
        return rows
    finally:
        await redis.aclose()


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="bench/bids_edge.py", description=(__doc__ or "").split("\n\n")[0]
    )
    add_store_options(parser)
    parser.add_argument("--bidders", type=int, default=400, help="HTTP and WebSocket (1..2000)")
    parser.add_argument("--pg-clients", type=int, default=50, help="PostgreSQL connections")
    parser.add_argument("--seconds", type=float, default=5.0, help="per row (0.5..20)")
    parser.add_argument("--budget", type=float, default=150.0, help="stop after this many s")
    parser.add_argument("--no-pin", action="store_true", help="do not pin server and bidders")
    args = parser.parse_args(argv)
    if not (1 <= args.bidders <= 2000 and 1 <= args.pg_clients <= 90):
        parser.error("--bidders or --pg-clients out of range")
    if not 0.5 <= args.seconds <= 20:
        parser.error("--seconds out of range")
    args.server_cpus, args.client_cpus = split_cpus(args.no_pin)
    # what bench/fanout/servers.py reads
    args.nice, args.tick_ms, args.live_module = 0, 0, "live.cli"
    return args


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    raise_fd_limit()
    if args.client_cpus:
        os.sched_setaffinity(0, args.client_cpus)
    report(args, asyncio.run(run(args)))


if __name__ == "__main__":
    main()
