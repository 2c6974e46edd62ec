"""`live loadtest auction`: one auction from start to verdict. The service (started here or
given), a room, a product and an auction made through the API, the crowd (auction_crowd.py)
until the auction has ended and its winner confirmed, then the verdict from the server's own
record (`GET /api/auctions/{id}/bids`, the auction, the bidders' offers) and `live reconcile
--auction` (auction_verdict.py)."""

from __future__ import annotations

import argparse
import asyncio
import json
import random
import subprocess
import sys
import time
from contextlib import ExitStack
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from loadtest import scenario, tokens
from loadtest.api import Api, Response
from loadtest.auction_crowd import Board, User, bidder, sniper
from loadtest.auction_verdict import Record, judge
from loadtest.service import EmbeddedService
from loadtest.verdict import Reconciled, Row

END_GRACE_S = 30.0  # past the longest possible deadline: the end, the offer, the confirm
POLL_S = 0.25


@dataclass(frozen=True)
class Made:
    room: str
    auction: int


def ok_body(response: Response, what: str) -> dict[str, Any]:
    """The answer's body, else SetupError naming the call."""
    if not response.ok:
        raise scenario.SetupError(f"{what}: {response.describe()}")
    return response.body


def create(api: Api, room: str, args: argparse.Namespace) -> Made:
    """The room, a product and a scheduled auction of it (`api` with a host token of `room`)."""
    ok_body(api.request("PUT", f"/api/rooms/{room}", {"title": "Auction load test"}), "room")
    product = ok_body(
        api.post(
            f"/api/rooms/{room}/products",
            {"title": "Load test watch", "price_cents": args.start_cents, "sku": "LT-A"},
        ),
        "product",
    )
    body = {
        "product_id": product["id"],
        "start_cents": args.start_cents,
        "increment_cents": args.increment_cents,
        "duration_s": args.duration,
        "snipe_window_s": args.snipe_window,
        "max_extensions": args.max_extensions,
    }
    return Made(room, int(ok_body(api.post(f"/api/rooms/{room}/auctions", body), "auction")["id"]))


async def until(check: Any, within_s: float, what: str) -> None:
    """Poll the service (in a thread: the client blocks) until `check()` holds."""
    deadline = time.monotonic() + within_s
    while not await asyncio.to_thread(check):
        if time.monotonic() > deadline:
            raise scenario.SetupError(f"{what} did not happen within {within_s:.0f} s")
        await asyncio.sleep(POLL_S)


async def run_crowd(
    args: argparse.Namespace, url: str, secret: str, made: Made, host: Api
) -> Record:
    """Connect everyone, start the auction, bid and snipe until it ended and settled."""
    names = [f"bidder-{n}" for n in range(args.bidders)]
    names += [f"sniper-{n}" for n in range(args.snipers)]
    board = Board(made.auction, 0, args.start_cents, args.increment_cents)
    users = [User(name, tokens.viewer_token(secret, made.room, name), board) for name in names]
    gate = asyncio.Semaphore(50)

    async def open_one(user: User) -> None:
        async with gate:
            await user.open(url.replace("http", "ws", 1), made.room)

    await asyncio.gather(*(open_one(user) for user in users))
    path = f"/api/auctions/{made.auction}"
    opened = ok_body(await asyncio.to_thread(host.post, f"{path}/start"), "start")
    board.take(opened)
    rng = random.Random(args.seed)
    pace = max(args.bidders / 20, 1.0)  # the bidders together: about 20 bids a second
    work = [bidder(u, random.Random(rng.random()), pace) for u in users[: args.bidders]]
    work += [sniper(u, random.Random(rng.random())) for u in users[args.bidders :]]
    longest_s = args.duration + args.snipe_window * (args.max_extensions + 1) + END_GRACE_S
    async with asyncio.timeout(longest_s):
        await asyncio.gather(*work)
    await until(lambda: host.get(path).body.get("state") == "ended", END_GRACE_S, "the end")
    final = ok_body(host.get(path), "auction")
    if final["bids"] and final["reserve_met"]:  # the winner is told, and confirms twice
        await until(lambda: len(board.orders) >= 2, END_GRACE_S, "the winner's confirm")
    ladder = ok_body(host.get(f"{path}/bids"), "bids")["bids"]
    offers = []
    for user in users:
        mine = Api(url, user.token)
        offers += [
            {"user": user.name, **o}
            for o in ok_body(mine.get(f"{path}/offers"), "offers")["offers"]
        ]
        mine.close()
    await asyncio.gather(*(user.close() for user in users))
    return Record(opened, final, ladder, offers, board.calls, board.orders, args.max_extensions)


def live_reconcile(flags: list[str], env: dict[str, str] | None) -> Reconciled:
    """`live reconcile FLAGS` against the service's stores (`env`: a service started here)."""
    command = [sys.executable, "-m", "live.cli", "reconcile", *flags]
    try:
        done = subprocess.run(command, env=env, capture_output=True, text=True, timeout=120)
    except subprocess.TimeoutExpired:
        return Reconciled(True, 1, "live reconcile did not finish in 120 s")
    return Reconciled(True, done.returncode, (done.stdout + done.stderr).strip())


def simulate(args: argparse.Namespace, out: Path) -> int:
    with ExitStack() as stack:
        env: dict[str, str] | None = None
        if args.url:
            url, secret = args.url, tokens.resolve_secret(args.jwt_secret)
        else:
            print("starting live serve with its own Redis and PostgreSQL ...", flush=True)
            service = EmbeddedService(out / "service.log", keep_data=args.keep_data)
            stack.enter_context(service)
            url, secret, env = service.url, service.secret, service.env()
        room = scenario.new_room_id()
        host = Api(url, tokens.host_token(secret, room))
        stack.callback(host.close)
        made = create(host, room, args)
        print(
            f"{url}: room {made.room}, auction {made.auction} ({args.duration} s, snipe window"
            f" {args.snipe_window} s, up to {args.max_extensions} extensions);"
            f" {args.bidders} bidders + {args.snipers} snipers; report in {out}",
            flush=True,
        )
        record = asyncio.run(run_crowd(args, url, secret, made, host))
        reconciled = (
            Reconciled(False, 0, "")
            if args.skip_reconcile
            else live_reconcile(["--auction", str(made.auction)], env)
        )
    (out / "calls.json").write_text(json.dumps([asdict(c) for c in record.calls], indent=1))
    return write_verdict(out, judge(record, reconciled), auction=record.final)


def write_verdict(out: Path, rows: list[Row], **record: Any) -> int:
    """Print the verdict table and write it to verdict.txt and (with `record`) verdict.json:
    the exit code, 0 when every row holds."""
    ok = all(row.ok for row in rows)
    width = max(len(row.name) for row in rows)
    lines = [f"  {'ok ' if row.ok else 'BAD'} {row.name:<{width}}  {row.detail}" for row in rows]
    text = "\n".join([*lines, f"verdict: {'PASS' if ok else 'FAIL'}"])
    print(text, flush=True)
    (out / "verdict.txt").write_text(text + "\n")
    verdict = {"ok": ok, "rows": [row.view() for row in rows], **record}
    (out / "verdict.json").write_text(json.dumps(verdict, indent=1))
    return 0 if ok else 1
