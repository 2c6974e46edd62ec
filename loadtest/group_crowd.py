"""The crowd of `live loadtest group-deal`: buyers who look at the deal's open groups, join one
or start their own, some leave before the window closes, and wait for their group's outcome;
some over HTTP, some over a WebSocket of their own (the protocol's `group_start`, `group_join`,
`group_leave`), all in one asyncio process. Every call and its answer is recorded for the
verdict; the outcomes come from the room's `group_formed` and `group_failed` events (the
group's view over HTTP when an event is late). Every loop is bounded in time and in count."""

from __future__ import annotations

import asyncio
import random
import time
from dataclasses import dataclass, field
from typing import Any

from websockets.exceptions import ConnectionClosed

from loadtest.api import Api, Response, TransportError
from loadtest.auction_crowd import Board as Clock
from loadtest.auction_crowd import User

MAX_ROUNDS = 200  # a buyer's looks at the open groups, whatever happens
PAUSE_S = (0.1, 0.6)  # between a buyer's rounds
OUTCOME_GRACE_S = 5.0  # past a group's window: the sweep fails it, the event comes
GIVE_UP = ("sold_out", "limit", "not_open")  # the buyer is done


@dataclass
class Call:
    """One start, join or leave as its buyer saw it; `at_ms` by the buyer's clock."""

    user: str
    kind: str  # "start", "join" or "leave"
    via: str  # "http" or "ws"
    group: int | None
    at_ms: int
    answer: str = "no_answer"  # "ok", or the error code
    state: str | None = None  # the group's state in the answer


@dataclass
class Outcomes:
    """Groups as the room's events decided them: id -> "formed" or "failed"."""

    decided: dict[int, str] = field(default_factory=dict)
    waiting: dict[int, asyncio.Event] = field(default_factory=dict)
    calls: list[Call] = field(default_factory=list)

    def decide(self, group: int, state: str) -> None:
        self.decided[group] = state
        self.waiting.setdefault(group, asyncio.Event()).set()

    async def outcome(self, group: int, within_s: float) -> str | None:
        arrived = self.waiting.setdefault(group, asyncio.Event())
        try:
            await asyncio.wait_for(arrived.wait(), max(within_s, 0.0))
        except TimeoutError:
            return None
        return self.decided.get(group)


class Socket(User):
    """The auction crowd's WebSocket user, following group events instead (its Board only
    keeps the server's clock)."""

    def __init__(self, name: str, token: str, outcomes: Outcomes) -> None:
        super().__init__(name, token, Clock(0, 0, 0, 0))
        self.outcomes = outcomes

    def _event(self, kind: str, data: dict[str, Any]) -> None:
        if kind in ("group_formed", "group_failed"):
            self.outcomes.decide(int(data["group"]["id"]), data["group"]["state"])


@dataclass(frozen=True)
class Terms:
    sale: int
    window_s: float
    limit: int
    join_share: float  # of rounds with an open group to join: join rather than start
    leave_share: float  # of joins: leave before the window closes


class Buyer:
    def __init__(
        self, name: str, api: Api, socket: Socket | None, outcomes: Outcomes, terms: Terms
    ) -> None:
        self.name = name
        self.api = api
        self.socket = socket  # None: over HTTP
        self.outcomes = outcomes
        self.terms = terms
        self.bought = 0
        self.seen: set[int] = set()  # groups it was in: never again

    async def _http(self, method: str, path: str, key: str = "") -> Response:
        headers = {"Idempotency-Key": key} if key else None
        body: dict[str, Any] | None = {} if method == "POST" else None
        return await asyncio.to_thread(self.api.request, method, path, body, headers=headers)

    async def call(self, kind: str, group: int | None) -> Call:
        call = Call(
            self.name, kind, "ws" if self.socket else "http", group, int(time.time() * 1000)
        )
        self.outcomes.calls.append(call)
        try:
            answer = await (
                self._over_ws(kind, group) if self.socket else self._over_http(kind, group)
            )
        except (TimeoutError, TransportError, ConnectionClosed):
            return call
        ok, view = answer
        call.answer = "ok" if ok else str(view.get("error"))
        if ok:
            call.group, call.state = int(view["id"]), str(view["state"])
        return call

    async def _over_http(self, kind: str, group: int | None) -> tuple[bool, dict[str, Any]]:
        if kind == "start":
            key = f"{self.name}-{len(self.seen)}"
            response = await self._http("POST", f"/api/sales/{self.terms.sale}/groups", key)
        else:
            response = await self._http("POST", f"/api/groups/{group}/{kind}")
        return response.ok, response.body

    async def _over_ws(self, kind: str, group: int | None) -> tuple[bool, dict[str, Any]]:
        assert self.socket is not None
        if kind == "start":
            key = f"{self.name}-{len(self.seen)}"
            message = {"type": "group_start", "sale_id": self.terms.sale, "idempotency_key": key}
        else:
            message = {"type": f"group_{kind}", "group_id": group}
        frame = await self.socket.ask(message)
        return bool(frame.get("ok")), frame["data"] if frame.get("ok") else frame

    async def open_groups(self) -> list[dict[str, Any]]:
        try:
            response = await self._http("GET", f"/api/sales/{self.terms.sale}/groups")
        except TransportError:
            return []
        return list(response.body.get("groups", [])) if response.ok else []

    async def outcome(self, group: int, closes_in_s: float) -> str | None:
        """Formed or failed, by its event or else by the group's view; None if still open."""
        state = await self.outcomes.outcome(group, closes_in_s + OUTCOME_GRACE_S)
        if state is None:
            try:
                response = await self._http("GET", f"/api/groups/{group}")
            except TransportError:
                return None
            state = response.body.get("state") if response.ok else None
        return state if state in ("formed", "failed") else None


async def shop(buyer: Buyer, rng: random.Random, until: float) -> None:
    """Rounds until `until` (monotonic), the limit, or a refusal that ends the deal for it."""
    terms = buyer.terms
    for _ in range(MAX_ROUNDS):
        await asyncio.sleep(rng.uniform(*PAUSE_S))
        if time.monotonic() >= until or buyer.bought >= terms.limit:
            return
        choices = [g for g in await buyer.open_groups() if g["id"] not in buyer.seen]
        if choices and rng.random() < terms.join_share:
            joined = await buyer.call("join", rng.choice(choices)["id"])
        else:
            joined = await buyer.call("start", None)
        if joined.answer in GIVE_UP:
            return
        if joined.answer != "ok" or joined.group is None:
            continue
        buyer.seen.add(joined.group)
        if joined.state == "formed":
            buyer.bought += 1
            continue
        if rng.random() < terms.leave_share:
            await asyncio.sleep(rng.uniform(0.0, terms.window_s * 0.5))
            left = await buyer.call("leave", joined.group)
            if left.answer == "ok":
                continue
        if await buyer.outcome(joined.group, terms.window_s) == "formed":
            buyer.bought += 1
