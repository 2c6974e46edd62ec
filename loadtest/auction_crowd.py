"""The crowd of `live loadtest auction`: bidders who bid all along and snipers who fire in the
last second of the deadline, every one over a WebSocket of its own (the protocol's `bid`),
in one asyncio process: what a sniping burst needs is many bids in flight at the same instant,
not many machines.

Every user follows the room's events (the `auction` state, `auction_extended`,
`auction_ended`) into one shared `Board`, and times its snipes by the server's clock (a `ping`
after connecting: `ts` plus half the round trip). A sniper fires once per deadline, a random
moment in its last second, and again after each extension; once the final deadline has passed
it sends one more bid, which must be refused. The user told `auction_offer` confirms it (twice:
the retry must return the same order). Every call is recorded for the verdict."""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import json
import random
import time
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlencode

from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed

ANSWER_TIMEOUT_S = 15.0
LAST_SECOND_MS = (50, 950)  # how long before the deadline a sniper fires
LATE_MS = (20, 300)  # how long after the final deadline the refused bid goes


@dataclass
class Call:
    """One bid as its bidder saw it; `at_ms` by the server's clock (estimated)."""

    user: str
    kind: str  # "bid", "snipe" or "late"
    amount_cents: int
    max_cents: int | None
    at_ms: int
    answer: str = "no_answer"  # "accepted", or the error code
    leading: bool | None = None


@dataclass
class Board:
    """The auction as the room's events show it, and what the crowd did."""

    auction_id: int
    ends_at: int
    min_next: int
    step: int
    bids: int = 0
    ended: bool = False
    clock_offset_ms: float = 0.0
    best_rtt_ms: float = float("inf")
    calls: list[Call] = field(default_factory=list)
    orders: list[dict[str, Any]] = field(default_factory=list)  # each confirm's answer
    offers: list[dict[str, Any]] = field(default_factory=list)
    changed: asyncio.Event = field(default_factory=asyncio.Event)

    def now_ms(self) -> float:
        return time.time() * 1000 + self.clock_offset_ms

    def take(self, view: dict[str, Any]) -> None:
        """A newer state of the auction (an older one, delivered late to one user, is not)."""
        if view.get("id") != self.auction_id or view.get("bids", 0) < self.bids:
            return
        self.bids = view["bids"]
        self.ends_at = max(self.ends_at, int(view.get("ends_at") or 0))
        if view.get("min_next_cents"):
            self.min_next = view["min_next_cents"]
        if view.get("state") == "ended":
            self.ended = True
        self.changed.set()


class User:
    def __init__(self, name: str, token: str, board: Board) -> None:
        self.name = name
        self.token = token
        self.board = board
        self.ws: ClientConnection | None = None
        self._refs = itertools.count(1)
        self._waiting: dict[str, asyncio.Future[dict[str, Any]]] = {}
        self._reader: asyncio.Task[None] | None = None
        self.confirming: set[asyncio.Task[None]] = set()

    async def open(self, ws_base: str, room: str) -> None:
        query = urlencode({"token": self.token})
        self.ws = await connect(f"{ws_base}/ws/rooms/{room}?{query}", open_timeout=30)
        self._reader = asyncio.create_task(self._read())
        sent = time.time() * 1000
        ts = (await self.ask({"type": "ping"}))["data"]["ts"]
        received = time.time() * 1000
        if received - sent < self.board.best_rtt_ms:  # the tightest ping sets the clock
            self.board.best_rtt_ms = received - sent
            self.board.clock_offset_ms = ts + (received - sent) / 2 - received

    async def close(self) -> None:
        if self.ws is not None:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self.ws.close(), 5)
        if self._reader is not None:
            self._reader.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await self._reader

    async def ask(self, message: dict[str, Any]) -> dict[str, Any]:
        """Send a command; its reply or error frame."""
        assert self.ws is not None
        ref = str(next(self._refs))
        waiting = asyncio.get_running_loop().create_future()
        self._waiting[ref] = waiting
        try:
            await self.ws.send(json.dumps({**message, "ref": ref}))
            return await asyncio.wait_for(waiting, ANSWER_TIMEOUT_S)
        finally:
            self._waiting.pop(ref, None)

    async def _read(self) -> None:
        assert self.ws is not None
        with contextlib.suppress(ConnectionClosed):
            async for raw in self.ws:
                self._frame(json.loads(raw))

    def _frame(self, frame: dict[str, Any]) -> None:
        kind = frame.get("type")
        if kind in ("reply", "error"):
            waiting = self._waiting.get(str(frame.get("ref")))
            if waiting is not None and not waiting.done():
                waiting.set_result(frame)
        elif kind == "snapshot":
            self.board.take(frame["snapshot"].get("auction") or {})
        elif kind == "events":
            for event in frame["events"]:
                self._event(event["type"], event["data"])
        elif kind == "direct" and frame.get("kind") == "auction_offer":
            self.board.offers.append({"user": self.name, **frame["data"]})
            task = asyncio.get_running_loop().create_task(self._confirm(frame["data"]))
            self.confirming.add(task)
            task.add_done_callback(self.confirming.discard)

    def _event(self, kind: str, data: dict[str, Any]) -> None:
        if kind == "auction":
            self.board.take(data)
        elif kind in ("auction_started", "auction_ended"):
            self.board.take(data["auction"])
        elif kind == "auction_extended" and data.get("auction_id") == self.board.auction_id:
            self.board.ends_at = max(self.board.ends_at, int(data["ends_at"]))
            self.board.changed.set()

    async def bid(self, kind: str, amount: int, max_cents: int | None = None) -> Call:
        call = Call(self.name, kind, amount, max_cents, int(self.board.now_ms()))
        self.board.calls.append(call)
        message = {
            "type": "bid",
            "auction_id": self.board.auction_id,
            "amount_cents": amount,
            "max_cents": max_cents,
            "idempotency_key": f"{self.name}-{len(self.board.calls)}",
        }
        with contextlib.suppress(TimeoutError, ConnectionClosed):
            answer = await self.ask(message)
            call.answer = "accepted" if answer["ok"] else str(answer.get("error"))
            if answer["ok"]:
                call.leading = bool(answer["data"]["leading"])
                self.board.take({"id": self.board.auction_id, **answer["data"]})
        return call

    async def _confirm(self, offer: dict[str, Any]) -> None:
        """The winner pays, and retries as a client would after a lost answer: one order."""
        for attempt in (1, 2):
            message = {
                "type": "confirm",
                "reservation_id": offer["reservation_id"],
                "payment_ref": f"loadtest-{self.name}",
            }
            with contextlib.suppress(TimeoutError, ConnectionClosed):
                answer = await self.ask(message)
                self.board.orders.append({"user": self.name, "attempt": attempt, **answer})


async def bidder(user: User, rng: random.Random, pace_s: float) -> None:
    """Bids the minimum or a step or two above, some with a hidden maximum, until the end."""
    board = user.board
    while not board.ended and board.now_ms() < board.ends_at:
        await asyncio.sleep(rng.uniform(0.2, 1.8) * pace_s)
        if board.ended or board.now_ms() >= board.ends_at:
            return
        amount = board.min_next + rng.randint(0, 2) * board.step
        top = amount + rng.randint(1, 20) * board.step if rng.random() < 0.3 else None
        await user.bid("bid", amount, top)


async def sniper(user: User, rng: random.Random) -> None:
    """One bid in the last second of each deadline; one more just after the final one."""
    board = user.board
    while not board.ended:
        deadline = board.ends_at
        fire_at = deadline - rng.uniform(*LAST_SECOND_MS)
        while board.now_ms() < fire_at and board.ends_at == deadline and not board.ended:
            board.changed.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(board.changed.wait(), (fire_at - board.now_ms()) / 1000)
        if board.ends_at != deadline:
            continue  # extended meanwhile: aim at the new deadline
        if board.ended or board.now_ms() >= deadline:
            break
        await user.bid("snipe", board.min_next + rng.randint(0, 1) * board.step)
        while board.ends_at == deadline and board.now_ms() < deadline and not board.ended:
            board.changed.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(board.changed.wait(), (deadline - board.now_ms()) / 1000)
    await asyncio.sleep(max(0.0, (board.ends_at + rng.uniform(*LATE_MS) - board.now_ms()) / 1000))
    await user.bid("late", board.min_next + board.step)
