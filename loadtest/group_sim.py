"""`live loadtest group-deal`: one group deal from start to verdict. The service (started here
or given), a room, a product and a group deal with a short window made through the API, the
crowd (group_crowd.py) for --duration seconds, then the wait until every group is decided
(formed or failed), the deal stopped, and the verdict (group_verdict.py) from PostgreSQL, the
service's figures and `live reconcile`. With --url the verdict needs the service's PostgreSQL
(--database-url, --database-schema)."""

from __future__ import annotations

import argparse
import asyncio
import json
import random
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from contextlib import ExitStack
from dataclasses import asdict
from pathlib import Path
from typing import Any

from loadtest import progress, scenario, tokens
from loadtest.api import Api
from loadtest.auction_sim import live_reconcile, ok_body, until, write_verdict
from loadtest.group_crowd import Buyer, Outcomes, Socket, Terms, shop
from loadtest.group_verdict import judge, read_record
from loadtest.service import EmbeddedService
from loadtest.verdict import Reconciled

SETTLE_GRACE_S = 15.0  # past the last window: every group decided, the pool at rest
OPEN_AT_ONCE = 50  # WebSockets opened at the same time


def create(api: Api, room: str, args: argparse.Namespace) -> int:
    """The room, a product and a group deal of it (not started); the deal's id."""
    ok_body(api.request("PUT", f"/api/rooms/{room}", {"title": "Group deal load test"}), "room")
    product = ok_body(
        api.post(
            f"/api/rooms/{room}/products",
            {"title": "Load test blender", "price_cents": args.price_cents, "sku": "LT-G"},
        ),
        "product",
    )
    body = {
        "kind": "group",
        "product_id": product["id"],
        "price_cents": args.price_cents,
        "group_price_cents": args.group_price_cents,
        "stock": args.stock,
        "limit_per_buyer": args.limit,
        "group_size": args.group_size,
        "group_window_s": args.window,
    }
    return int(ok_body(api.post(f"/api/rooms/{room}/sales", body), "group deal")["id"])


def _settled(host: Api, sale: int) -> bool:
    """No group forming or being written: every hold decided."""
    figures = host.get(f"/api/sales/{sale}").body
    return figures.get("held") == 0 and figures.get("filling") == 0


async def run_crowd(
    args: argparse.Namespace, url: str, secret: str, room: str, sale: int, host: Api
) -> tuple[Outcomes, dict[str, Any]]:
    """Open the sockets, start the deal, shop for --duration s, wait until every group is
    decided, stop the deal: what the crowd did and the deal's final figures."""
    loop = asyncio.get_running_loop()
    loop.set_default_executor(ThreadPoolExecutor(max_workers=args.buyers + 4))
    outcomes = Outcomes()
    terms = Terms(sale, args.window, args.limit, args.join_share, args.leave_share)
    ws_base = url.replace("http", "ws", 1)
    watcher = Socket("loadtest-watcher", tokens.viewer_token(secret, room, "watcher"), outcomes)
    buyers = []
    for n in range(args.buyers):
        name = f"buyer-{n}"
        token = tokens.viewer_token(secret, room, name)
        over_ws = n < round(args.buyers * args.ws_share)
        socket = Socket(name, token, outcomes) if over_ws else None
        buyers.append(Buyer(name, Api(url, token), socket, outcomes, terms))
    sockets = [watcher, *(b.socket for b in buyers if b.socket is not None)]
    gate = asyncio.Semaphore(OPEN_AT_ONCE)

    async def open_one(socket: Socket) -> None:
        async with gate:
            await socket.open(ws_base, room)

    try:
        await asyncio.gather(*(open_one(s) for s in sockets))
        ok_body(await asyncio.to_thread(host.post, f"/api/sales/{sale}/start"), "start")
        rng = random.Random(args.seed)
        shop_until = time.monotonic() + args.duration
        work = [shop(b, random.Random(rng.random()), shop_until) for b in buyers]
        longest_s = args.duration + (args.window + SETTLE_GRACE_S) * 2
        async with asyncio.timeout(longest_s):
            await asyncio.gather(*work)
        await until(
            lambda: _settled(host, sale), args.window + SETTLE_GRACE_S, "every group decided"
        )
        final = ok_body(await asyncio.to_thread(host.post, f"/api/sales/{sale}/stop"), "stop")
    finally:
        await asyncio.gather(*(s.close() for s in sockets))
        for buyer in buyers:
            buyer.api.close()
    return outcomes, final


def _watch(url: str, token: str, sale: int, running: threading.Event, within_s: float) -> None:
    """The progress line of the flash sale's run (loadtest/progress.py: the deal's figures; no
    locust timeline here) on a client of its own, in a thread."""
    api = Api(url, token)
    try:
        progress.watch(api, sale, Path("no-timeline"), running.is_set, within_s)
    finally:
        api.close()


def simulate(args: argparse.Namespace, out: Path) -> int:
    with ExitStack() as stack:
        env: dict[str, str] | None = None
        database_url, schema = args.database_url, args.database_schema
        if args.url:
            url, secret = args.url, tokens.resolve_secret(args.jwt_secret)
        else:
            print("starting live serve with its own Redis and PostgreSQL ...", flush=True)
            service = EmbeddedService(out / "service.log", keep_data=args.keep_data)
            stack.enter_context(service)
            url, secret, env = service.url, service.secret, service.env()
            database_url, schema = service.database_url, "public"
        room = scenario.new_room_id()
        host_token = tokens.host_token(secret, room)
        host = Api(url, host_token)
        stack.callback(host.close)
        sale = create(host, room, args)
        print(
            f"{url}: room {room}, group deal {sale} (groups of {args.group_size} within"
            f" {args.window} s, stock {args.stock}, limit {args.limit}); {args.buyers} buyers"
            f" for {args.duration} s; report in {out}",
            flush=True,
        )
        running = threading.Event()
        running.set()
        longest_s = args.duration + (args.window + SETTLE_GRACE_S) * 3
        shown = threading.Thread(target=_watch, args=(url, host_token, sale, running, longest_s))
        shown.start()
        try:
            outcomes, final = asyncio.run(run_crowd(args, url, secret, room, sale, host))
        finally:
            running.clear()
            shown.join()
        record = asyncio.run(read_record(database_url, schema, sale, final, outcomes.calls))
        reconciled = (
            Reconciled(False, 0, "") if args.skip_reconcile else live_reconcile([str(sale)], env)
        )
    (out / "calls.json").write_text(json.dumps([asdict(c) for c in outcomes.calls], indent=1))
    return write_verdict(out, judge(record, reconciled), deal=final)
