"""Concurrent buyers of one flash sale over real HTTP, who keep buying through a fault.

Each buyer reserves (with an Idempotency-Key), pays for a moment, then confirms (retrying on
503 and transport errors, honouring Retry-After, bounded), cancels, or lets the hold expire;
whoever fails or is released reserves again with a new key. A third of the buyers are greedy:
they keep trying past their limit, so a limit that Redis forgot shows as an extra order.
Every confirm answered 2xx is recorded, with what the client knows (reservation, buyer, qty).
"""

from __future__ import annotations

import asyncio
import collections
import random
import time
import uuid
from collections.abc import Callable, Coroutine
from dataclasses import dataclass, field
from typing import Any

import httpx

from gateway.auth import mint
from rooms.actors import Role

ROOM = "shop"


@dataclass(frozen=True)
class Plan:
    """The sale and the crowd. Sized for a 2-core machine shared with the service."""

    stock: int = 60
    limit: int = 1
    qty_max: int = 1
    buyers: int = 50
    hold_seconds: int = 3
    ramp_s: float = 3.0  # buyers arrive spread over this
    storm_s: float = 10.0  # no buyer starts a new attempt after this
    patience_s: float = 12.0  # how long a buyer retries one confirm (503, transport errors)
    seed: int = 7


@dataclass(frozen=True)
class Ack:
    """A confirm answered 2xx: what the client sent, and the order the answer named."""

    reservation: str
    buyer: str
    qty: int
    order_id: int
    body: dict[str, Any]


@dataclass(frozen=True)
class Held:
    id: str
    qty: int


@dataclass
class Tally:
    statuses: collections.Counter[str] = field(default_factory=collections.Counter)
    transport_errors: collections.Counter[str] = field(default_factory=collections.Counter)
    bad: list[str] = field(default_factory=list)  # 5xx other than 503, 503 without Retry-After

    def summary(self) -> str:
        codes = ", ".join(f"{k}: {v}" for k, v in sorted(self.statuses.items()))
        errors = ", ".join(f"{k}: {v}" for k, v in sorted(self.transport_errors.items()))
        return f"statuses {{{codes}}}; transport errors {{{errors}}}"


def auth(secret: str, sub: str, role: Role = Role.VIEWER) -> dict[str, str]:
    token = mint(secret, sub=sub, role=role, room=ROOM, ttl_s=900, name=sub)
    return {"authorization": f"Bearer {token}"}


class Workload:
    def __init__(self, client: httpx.AsyncClient, secret: str, plan: Plan) -> None:
        self.client = client
        self.secret = secret
        self.plan = plan
        self.sale_id = 0
        self.acks: list[Ack] = []
        self.tally = Tally()
        self.faults: list[tuple[str, int, float]] = []  # what, acks before it, when
        self.in_flight: collections.Counter[str] = collections.Counter()  # requests per op
        self._acked = asyncio.Condition()
        self._started = 0.0
        self._storm_end = 0.0

    @property
    def host(self) -> dict[str, str]:
        return auth(self.secret, "host", Role.HOST)

    async def open_sale(self) -> int:
        """Room, product, sale; opened. Returns the sale id."""
        room = await self.client.put(
            f"/api/rooms/{ROOM}", json={"title": "Shop"}, headers=self.host
        )
        assert room.status_code == 200, room.text
        product = await self.client.post(
            f"/api/rooms/{ROOM}/products",
            json={"sku": "mug", "title": "Mug", "price_cents": 900},
            headers=self.host,
        )
        assert product.status_code == 201, product.text
        sale = await self.client.post(
            f"/api/rooms/{ROOM}/sales",
            json={
                "product_id": product.json()["id"],
                "stock": self.plan.stock,
                "price_cents": 500,
                "limit_per_buyer": self.plan.limit,
                "hold_seconds": self.plan.hold_seconds,
            },
            headers=self.host,
        )
        assert sale.status_code == 201, sale.text
        self.sale_id = sale.json()["id"]
        started = await self.client.post(f"/api/sales/{self.sale_id}/start", headers=self.host)
        assert started.status_code == 200 and started.json()["state"] == "open", started.text
        return self.sale_id

    # -- the storm ---------------------------------------------------------------------------

    async def run(self, fault: Callable[[Workload], Coroutine[Any, Any, None]]) -> None:
        """All buyers, and `fault` beside them (it waits for its moment with `acks_reached`)."""
        self._started = time.monotonic()
        self._storm_end = self._started + self.plan.storm_s
        async with asyncio.timeout(self.plan.storm_s + self.plan.patience_s + 30):
            async with asyncio.TaskGroup() as group:
                for n in range(self.plan.buyers):
                    group.create_task(self._buyer(n))
                group.create_task(fault(self))

    async def acks_reached(self, count: int, within: float = 20.0) -> None:
        """Until `count` confirms have been answered 2xx (the moment a fault strikes)."""
        async with asyncio.timeout(within), self._acked:
            await self._acked.wait_for(lambda: len(self.acks) >= count)

    async def in_flight_reached(self, op: str, count: int, within: float = 5.0) -> bool:
        """Until `count` requests of `op` are in flight at once (False if that never happened
        within the time: the fault then strikes anyway)."""
        deadline = time.monotonic() + within
        while self.in_flight[op] < count:
            if time.monotonic() > deadline:
                return False
            await asyncio.sleep(0.002)  # polling, bounded by the deadline
        return True

    def mark(self, what: str) -> None:
        """Note that a fault struck now (for the report)."""
        self.faults.append((what, len(self.acks), time.monotonic() - self._started))

    async def _buyer(self, n: int) -> None:
        plan = self.plan
        rng = random.Random(plan.seed * 100_003 + n)
        name, greedy = f"b{n}", n % 3 == 0
        await asyncio.sleep(plan.ramp_s * n / plan.buyers)  # arrival, spread over the ramp
        bought = attempt = 0
        while time.monotonic() < self._storm_end and (greedy or bought < plan.limit):
            attempt += 1
            left = plan.limit - bought
            qty = rng.randint(1, min(plan.qty_max, left)) if left > 0 else 1
            held = await self.reserve(name, qty)
            if not isinstance(held, Held):
                await asyncio.sleep(rng.uniform(0.3, 0.8))  # think, then try again
                continue
            await asyncio.sleep(rng.uniform(0.1, 1.0))  # paying
            action = rng.choices(("confirm", "cancel", "abandon"), (6, 2, 2))[0]
            if attempt > 2 or left <= 0:
                action = "confirm"
            if action == "confirm":
                ack = await self.confirm(name, held)
                bought += ack.qty if ack else 0
            elif action == "cancel":
                await self.cancel(name, held)
            # "abandon": the hold expires; the limit keeps this buyer out until it does

    # -- one request each, retried where a buyer would retry ---------------------------------

    async def reserve(self, buyer: str, qty: int, patience_s: float = 6.0) -> Held | str:
        """A hold, or the error code of the answer (`gave_up` after 503s / transport errors)."""
        key, deadline = uuid.uuid4().hex, time.monotonic() + patience_s
        while True:
            response = await self._call(
                "reserve",
                "POST",
                f"/api/sales/{self.sale_id}/reservations",
                json={"qty": qty},
                headers={**auth(self.secret, buyer), "idempotency-key": key},
            )
            if response is not None and response.status_code == 201:
                body = response.json()
                return Held(body["id"], body["qty"])
            if response is not None and response.status_code != 503:
                return str(_error(response))
            if time.monotonic() > deadline:
                return "gave_up"
            await asyncio.sleep(_retry_after(response))

    async def confirm(self, buyer: str, held: Held, patience_s: float | None = None) -> Ack | None:
        deadline = time.monotonic() + (patience_s or self.plan.patience_s)
        while True:
            response = await self._call(
                "confirm",
                "POST",
                f"/api/reservations/{held.id}/confirm",
                json={"payment_ref": f"pay-{buyer}-{held.id}"},
                headers=auth(self.secret, buyer),
            )
            if response is not None and response.is_success:
                body = response.json()
                ack = Ack(held.id, buyer, held.qty, int(body["id"]), body)
                async with self._acked:
                    self.acks.append(ack)
                    self._acked.notify_all()
                return ack
            if response is not None and response.status_code != 503:
                return None  # expired, conflict, sold out, gone with a flushed Redis
            if time.monotonic() > deadline:
                return None
            await asyncio.sleep(_retry_after(response))

    async def cancel(self, buyer: str, held: Held, patience_s: float = 5.0) -> None:
        deadline = time.monotonic() + patience_s
        while True:
            response = await self._call(
                "cancel", "DELETE", f"/api/reservations/{held.id}", headers=auth(self.secret, buyer)
            )
            if response is not None and response.status_code != 503:
                return
            if time.monotonic() > deadline:
                return
            await asyncio.sleep(_retry_after(response))

    async def figures(self) -> dict[str, Any] | None:
        """The sale's live figures, or None while the service cannot tell."""
        response = await self._call("figures", "GET", f"/api/sales/{self.sale_id}", self.host)
        return response.json() if response is not None and response.status_code == 200 else None

    async def _call(
        self, op: str, method: str, path: str, headers: dict[str, str], **kwargs: Any
    ) -> httpx.Response | None:
        self.in_flight[op] += 1
        try:
            response = await self.client.request(method, path, headers=headers, **kwargs)
        except httpx.TransportError as exc:
            self.tally.transport_errors[f"{op} {type(exc).__name__}"] += 1
            return None
        finally:
            self.in_flight[op] -= 1
        status = response.status_code
        self.tally.statuses[f"{op} {status}"] += 1
        if status >= 500 and status != 503:
            self.tally.bad.append(f"{method} {path} -> {status} {response.text[:200]}")
        elif status == 503 and "retry-after" not in response.headers:
            self.tally.bad.append(f"{method} {path} -> 503 without Retry-After")
        return response


def _error(response: httpx.Response) -> str:
    try:
        return str(response.json().get("error", response.status_code))
    except ValueError:
        return str(response.status_code)


def _retry_after(response: httpx.Response | None) -> float:
    """How long to wait before a retry: the server's Retry-After (capped), else a moment."""
    if response is None:
        return 0.2
    try:
        return min(max(float(response.headers.get("retry-after", "0.5")), 0.1), 2.0)
    except ValueError:
        return 0.5
