"""The opening burst of a flash sale at the edge: reservations and confirms over HTTP (wrk, a C
load generator) and over the WebSocket, against the same server's trivial GET and the usual
seckill endpoint, all in the same run.

    .venv/bin/python bench/burst.py [--redis-url URL] [--database-url URL] [--seconds S]
                                    [--connections N] [--ws-buyers N] [--buyers N] [--no-pin]

The server is `python -m live.cli serve` (one worker) on the given Redis and PostgreSQL, under a
prefix and schema of its own (removed afterwards), pinned to the first CPU this process may use
(bench/fanout/servers.py starts it); wrk (`-t1 -c<connections>`, bench/burst.lua) and the
WebSocket buyers (bench/burst_ws.py, a process of its own) run on the others, one at a time.
The sale has ample stock (MAX_STOCK), MAX_LIMIT per buyer and one-hour holds. Rows, each after
a one-second warm-up (wrk) then --seconds measured:
- `GET /healthz`: the same server's trivial route, the ceiling of its HTTP stack;
- `naive reserve`: bench/peers/naive_reserve.py, the usual seckill endpoint (PyJWT verify, JSON
  body, one EVALSHA of a decrement-if-positive script), one uvicorn worker on the same CPU;
- `HTTP reserve`: `POST /api/sales/{sale}/reservations`, each request one of --buyers buyers'
  tokens in turn and its own Idempotency-Key;
- `WS buy`: the protocol's `buy`, --ws-buyers connections (each its own buyer, in the room:
  they get its frames too), pipelined in bursts of 18 per connection and second (the protocol
  allows 20): the row is capped at 18 x --ws-buyers/s, flagged when near it;
- `HTTP confirm` and `WS confirm`: each a different hold made by the WS buy row, confirmed by
  its buyer (a PostgreSQL group commit per batch, and a `purchased` event to the room).
Prints req/s, p50/p99 (client side), the answers that were not 2xx/ok, the server-side mean
time of each route and command (from its /metrics), and the ratios the issue names.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import re
import subprocess
import sys
import tempfile
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import redis.asyncio as aioredis
from fanout.procstats import raise_fd_limit, split_cpus
from fanout.servers import (
    SECRET,
    Server,
    add_store_options,
    spawn,
    start_live,
    stop_server,
    wait_ready,
)

from flash_sales.model import MAX_HOLD_SECONDS, MAX_LIMIT, MAX_STOCK
from gateway.auth import mint
from live.embedded import free_port
from rooms.actors import Role

HERE = Path(__file__).resolve().parent
WARM_UP_S = 1.0
WRK_LINE = re.compile(rb"^BURST (\d+) (\d+) (\d+) (\d+) (\d+) (\d+)$", re.M)
SERVER_SERIES = re.compile(
    r"^live_(?:http_request|ws_command)_duration_seconds_(sum|count)\{(.*)\} (\S+)$", re.M
)
GOALS = (  # (row, over row, at least)
    ("HTTP reserve", "GET /healthz", 0.6),
    ("HTTP reserve", "naive reserve", 2.5),
    ("WS buy", "HTTP reserve", 2.0),
    ("WS confirm", "HTTP confirm", 2.0),
)


@dataclass
class Row:
    what: str
    answered: int = 0
    seconds: float = 0.0
    p50_ms: float = float("nan")
    p99_ms: float = float("nan")
    refused: dict[str, int] = field(default_factory=dict)  # not 2xx/ok, by code
    errors: int = 0  # socket errors, unanswered messages
    cap: float = float("inf")
    note: str = ""

    @property
    def rate(self) -> float:
        return self.answered / self.seconds if self.seconds else 0.0


class Burst:
    """The server under test, its sale, and the buyers' tokens."""

    def __init__(self, args: argparse.Namespace, server: Server, work: Path) -> None:
        self.args, self.server, self.work = args, server, work
        self.base = f"http://127.0.0.1:{server.port}"
        host = mint(SECRET, sub="bench-host", role=Role.HOST, room=server.room, ttl_s=7200)
        self.http = httpx.AsyncClient(
            base_url=self.base, headers={"authorization": f"Bearer {host}"}, timeout=30
        )
        count = max(args.buyers, args.ws_buyers)
        self.tokens = [
            mint(SECRET, sub=f"buyer-{i}", role=Role.VIEWER, room=server.room, ttl_s=7200)
            for i in range(count)
        ]
        self.sale = 0

    async def call(self, path: str, body: dict[str, Any]) -> dict[str, Any]:
        response = await self.http.post(path, json=body)
        if response.status_code not in (200, 201):
            raise RuntimeError(f"POST {path}: {response.status_code} {response.text}")
        data: dict[str, Any] = response.json()
        return data

    async def open_sale(self) -> None:
        room = self.server.room
        product = {"sku": "BURST", "title": "Burst lot", "price_cents": 1000}
        made = await self.call(f"/api/rooms/{room}/products", product)
        sale = {
            "product_id": made["id"],
            "price_cents": 1000,
            "stock": MAX_STOCK,
            "limit_per_buyer": MAX_LIMIT,
            "hold_seconds": MAX_HOLD_SECONDS,
        }
        self.sale = int((await self.call(f"/api/rooms/{room}/sales", sale))["id"])
        await self.call(f"/api/sales/{self.sale}/start", {})

    async def wrk(self, what: str, url: str, lines: list[str], unique: bool = False) -> Row:
        """A warm-up, then --seconds of wrk; `lines` are bench/burst.lua's requests, each to be
        sent once when `unique` (confirms of different holds)."""
        script_input = self.work / f"{uuid.uuid4().hex[:8]}.tsv"
        script_input.write_text("".join(f"{line}\n" for line in lines))
        row = Row(what)
        for seconds in (WARM_UP_S, self.args.seconds):
            run = uuid.uuid4().hex[:8]
            cmd = [*self.pin(), "wrk", "-t1", f"-c{self.args.connections}", f"-d{seconds:g}s"]
            cmd += ["--timeout", "10s", "-s", str(HERE / "burst.lua"), url, "--"]
            cmd += [str(script_input), run]
            done = await asyncio.to_thread(
                subprocess.run, cmd, capture_output=True, timeout=seconds + 30, check=True
            )
        found = WRK_LINE.search(done.stdout)
        if found is None:
            raise RuntimeError(f"wrk said: {done.stdout!r} {done.stderr!r}")
        requests, duration_us, p50, p99, status, errors = map(int, found.groups())
        row.answered, row.seconds = requests, duration_us / 1e6
        row.p50_ms, row.p99_ms, row.errors = p50 / 1000, p99 / 1000, errors
        if status:
            row.refused = {"non-2xx": status}
        if unique and requests > len(lines):
            row.note = f"{requests - len(lines)} requests repeated a line (ran out of lines)"
        return row

    async def ws(self, what: str, job: dict[str, Any]) -> Row:
        job = {
            "port": self.server.port,
            "room": self.server.room,
            "sale": self.sale,
            "tokens": self.tokens[: self.args.ws_buyers],
            "seconds": self.args.seconds,
            "max_ops": self.args.max_ops,
            **job,
        }
        path = self.work / f"ws-{uuid.uuid4().hex[:8]}.json"
        path.write_text(json.dumps(job))
        cmd = [*self.pin(), sys.executable, str(HERE / "burst_ws.py"), str(path)]
        budget = self.args.seconds + 120
        done = await asyncio.to_thread(
            subprocess.run, cmd, capture_output=True, timeout=budget, check=False
        )
        if done.returncode:
            raise RuntimeError(f"burst_ws.py failed: {done.stderr.decode()[-2000:]}")
        out = json.loads(done.stdout)
        codes = out["codes"]
        row = Row(what, out["answered"], out["seconds"], out["p50_ms"], out["p99_ms"])
        row.refused = {code: n for code, n in codes.items() if code != "ok"}
        row.errors = out["unanswered"]
        row.cap = len(job["tokens"]) * 18
        row.note = f"{out['frames'] / out['seconds']:,.0f} room frames/s to the buyers"
        return row

    def pin(self) -> list[str]:
        cpus = self.args.client_cpus
        return ["taskset", "-c", ",".join(map(str, cpus))] if cpus else []

    def reserve_lines(self) -> list[str]:
        path = f"/api/sales/{self.sale}/reservations"
        return [f'POST\t{path}\t{t}\t{{"qty":1}}' for t in self.tokens[: self.args.buyers]]

    async def server_means(self) -> dict[str, float]:
        """Mean server-side seconds per route and method, and per WebSocket command."""
        text = (await self.http.get("/metrics")).text
        sums: dict[str, dict[str, float]] = {}
        for kind, labels, value in SERVER_SERIES.findall(text):
            sums.setdefault(labels, {})[kind] = float(value)
        return {k: v["sum"] / v["count"] for k, v in sums.items() if v.get("count")}


def confirm_lines(burst: Burst, holds: list[tuple[int, str]]) -> list[str]:
    return [
        f"POST\t/api/reservations/{hold}/confirm\t{burst.tokens[buyer]}\t"
        f'{{"payment_ref":"p-{hold}"}}'
        for buyer, hold in holds
    ]


async def start_naive(args: argparse.Namespace, redis_url: str, work: Path) -> Server:
    port, key = free_port(), f"bench-naive-{uuid.uuid4().hex[:10]}:stock"
    env = {**os.environ, "NAIVE_JWT_SECRET": SECRET}
    cmd = [sys.executable, str(HERE / "peers" / "naive_reserve.py"), str(port), redis_url, key]
    proc = spawn(cmd, env, work / "naive.log", args, HERE.parent)
    redis = aioredis.Redis.from_url(redis_url, socket_timeout=10)
    await redis.set(key, 10**12)

    async def drop() -> None:
        await redis.delete(key)
        await redis.aclose()

    await wait_ready(proc, f"http://127.0.0.1:{port}/reserve", 30, any_status=True)
    server = Server("naive", port, proc, work / "naive.log", "", "/reserve", _no_publish)
    server.cleanup.append(drop)
    return server


async def _no_publish(kind: str, i: int, data: dict[str, Any]) -> None:
    raise NotImplementedError


async def rows(args: argparse.Namespace, work: Path) -> tuple[list[Row], dict[str, float]]:
    redis = aioredis.Redis.from_url(args.redis_url, socket_timeout=10)
    server = await start_live(args, redis, work)
    naive = await start_naive(args, args.redis_url, work)
    burst = Burst(args, server, work)
    try:
        await burst.open_sale()
        naive_lines = [f'POST\t/reserve\t{t}\t{{"qty":1}}' for t in burst.tokens[: args.buyers]]
        measured = [
            await burst.wrk("GET /healthz", f"{burst.base}/healthz", ["GET\t/healthz\t-\t-"]),
            await burst.wrk("naive reserve", f"http://127.0.0.1:{naive.port}", naive_lines),
            await burst.wrk("HTTP reserve", burst.base, burst.reserve_lines()),
        ]
        holds_path = work / "holds.tsv"
        measured.append(await burst.ws("WS buy", {"mode": "buy", "holds_out": str(holds_path)}))
        holds = [
            (int(buyer), hold)
            for buyer, hold in (line.split("\t") for line in holds_path.read_text().splitlines())
        ]
        http_holds, ws_holds = holds[: len(holds) // 2], holds[len(holds) // 2 :]
        measured.append(
            await burst.wrk("HTTP confirm", burst.base, confirm_lines(burst, http_holds), True)
        )
        by_buyer: dict[str, list[str]] = {}
        for buyer, hold in ws_holds:
            by_buyer.setdefault(str(buyer), []).append(hold)
        measured.append(await burst.ws("WS confirm", {"mode": "confirm", "holds": by_buyer}))
        return measured, await burst.server_means()
    finally:
        await burst.http.aclose()
        await stop_server(naive)
        await stop_server(server)
        await redis.aclose()
        if server.proc.returncode not in (0, -15):
            print(
                f"live exited with {server.proc.returncode}:\n{server.log_tail()}", file=sys.stderr
            )


def report(args: argparse.Namespace, measured: list[Row], means: dict[str, float]) -> None:
    pinned = f"CPU {args.server_cpus[0]}" if args.server_cpus else "any CPU (--no-pin)"
    clients = ",".join(map(str, args.client_cpus)) or "any CPU"
    print(
        f"\nlive serve and the naive peer (one worker each) on {pinned}; wrk -t1 "
        f"-c{args.connections} and the WebSocket buyers ({args.ws_buyers} connections) on "
        f"{clients}; {args.seconds:g} s per row; latency client-side\n"
    )
    print(f"{'row':<14} {'req/s':>8} {'p50 ms':>7} {'p99 ms':>7} {'errors':>6}  refused")
    for row in measured:
        refused = ", ".join(f"{code} {n}" for code, n in row.refused.items()) or "-"
        print(
            f"{row.what:<14} {row.rate:8,.0f} {row.p50_ms:7.2f} {row.p99_ms:7.2f} "
            f"{row.errors:>6}  {refused}"
        )
    for row in measured:
        flag = " (near the WebSocket pacing cap)" if row.rate > 0.9 * row.cap else ""
        if row.note or flag:
            print(f"  {row.what}: {row.note}{flag}")
    if means:
        print("\nserver-side mean per route / command (its /metrics):")
        for labels, mean in sorted(means.items()):
            print(f"  {labels:<60} {mean * 1e3:7.3f} ms")
    by = {row.what: row for row in measured}
    print()
    for ours, peer, goal in GOALS:
        ratio = by[ours].rate / by[peer].rate if by[peer].rate else float("nan")
        verdict = "met" if ratio >= goal else "NOT met"
        print(f"{ours} / {peer}: {ratio:5.2f}x (goal >= {goal:g}x: {verdict})")


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="bench/burst.py", description=(__doc__ or "").split("\n\n")[0]
    )
    add_store_options(parser)
    parser.add_argument("--seconds", type=float, default=5.0, help="per row (1..60)")
    parser.add_argument("--connections", type=int, default=128, help="wrk's (1..1000)")
    parser.add_argument("--ws-buyers", type=int, default=1500, help="WebSocket connections")
    parser.add_argument("--buyers", type=int, default=2000, help="HTTP buyers' tokens")
    parser.add_argument("--max-ops", type=int, default=500_000, help="messages per WS row")
    parser.add_argument("--budget", type=float, default=300.0, help="stop after this many s")
    parser.add_argument("--no-pin", action="store_true", help="do not pin server and clients")
    args = parser.parse_args(argv)
    if not (1 <= args.seconds <= 60 and 1 <= args.connections <= 1000):
        parser.error("--seconds or --connections out of range")
    if not (1 <= args.ws_buyers <= 5000 and 1 <= args.buyers <= 100_000 and args.max_ops > 0):
        parser.error("--ws-buyers, --buyers or --max-ops out of range")
    args.server_cpus, args.client_cpus = split_cpus(args.no_pin)
    args.nice, args.tick_ms, args.live_module = 0, 0, "live.cli"  # bench/fanout/servers.py's
    return args


async def run(args: argparse.Namespace) -> tuple[list[Row], dict[str, float]]:
    with tempfile.TemporaryDirectory(prefix="bench-burst-") as work:
        async with asyncio.timeout(args.budget):
            return await rows(args, Path(work))


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    raise_fd_limit()
    if args.client_cpus:
        os.sched_setaffinity(0, args.client_cpus)
    started = time.perf_counter()
    measured, means = asyncio.run(run(args))
    report(args, measured, means)
    print(f"\n({time.perf_counter() - started:.0f} s in all)")


if __name__ == "__main__":
    main()
