"""The buyer: a viewer who reserves the moment the sale opens, thinks, then confirms (a share of
its holds) or walks away and lets the hold expire.

Reservations and confirms go over the HTTP API and are reported as request types `reserve` and
`confirm`. The API's business answers (409 sold_out / limit / not_open, 409 expired on a late
confirm) are successes for locust: the service answered as promised. Only other answers and
transport errors count as failures. A call that got no answer is retried once with the same
Idempotency-Key (or on the same reservation): both are replay-safe."""

from __future__ import annotations

import random
import time
import uuid
from typing import Any

import gevent
from gevent.event import Event
from locust import task

from loadtest import tokens
from loadtest.api import Api, Response
from loadtest.users import LiveUser, pending

RESERVE_NAME = "/api/sales/[sale]/reservations"
CONFIRM_NAME = "/api/reservations/[id]/confirm"
REJECTIONS = frozenset({"sold_out", "limit", "not_open"})
CONFIRM_REFUSALS = frozenset({"expired", "sold_out"})
# A hold whose expiry is this close is no longer counted as owned (clock and sweep slack).
EXPIRY_GRACE_MS = 1000


class SaleWatch:
    """What a buyer knows of its sale from the room feed."""

    def __init__(self, sale: int) -> None:
        self.sale = sale
        self.opened = Event()
        self.stock_back = Event()
        self.ended = False

    def _mine(self, sale: Any) -> bool:
        return isinstance(sale, dict) and sale.get("id") == self.sale

    def _state(self, state: Any) -> None:
        if state == "open":
            self.opened.set()
            self.stock_back.set()
        elif state == "ended":
            self.ended = True
            self.opened.set()
            self.stock_back.set()

    def on_snapshot(self, snapshot: dict[str, Any]) -> None:
        if self._mine(snapshot.get("sale")):
            self._state(snapshot["sale"].get("state"))

    def on_event(self, event: dict[str, Any]) -> None:
        data = event.get("data") or {}
        if event.get("type") in ("sale_started", "sold_out", "sale_ended"):
            if self._mine(data.get("sale")):
                self._state(data["sale"].get("state"))
        elif event.get("type") == "stock" and data.get("sale_id") == self.sale:
            if int(data.get("remaining") or 0) > 0:
                self.stock_back.set()


class Buyer(LiveUser):
    weight = 1

    def on_start(self) -> None:
        super().on_start()
        self.sub = f"buyer-{uuid.uuid4().hex[:12]}"
        self.api = Api(self.base_url, tokens.viewer_token(self.secret, self.params.room, self.sub))
        self.watch = SaleWatch(self.params.sale)
        self.feed = self.new_feed(
            self.sub, on_event=self.watch.on_event, on_snapshot=self.watch.on_snapshot
        )
        self.reader = gevent.spawn(self.feed.run)
        self.orders = 0
        self.holds: dict[str, int] = {}  # held (not confirmed) hold id -> expires_at ms
        self.done = False
        self.confirming = False

    def on_stop(self) -> None:
        if self.confirming:  # stopped mid-confirm: the order may or may not exist
            pending.add("confirm_unknown")
        self.feed.closing = True
        self.reader.kill(block=True, timeout=1)
        self.feed.close()
        self.api.close()

    @task
    def shop(self) -> None:
        if self.done:  # stays in the room as a viewer until the test ends
            gevent.sleep(60)
            return
        self._await_opening()
        self._buy()
        self.done = True
        pending.add("buyers_done")

    def _await_opening(self) -> None:
        """Until sale_started (or the snapshot) says open; past the sale moment, try anyway."""
        deadline = self.params.sale_epoch_ms / 1000 + 1.5
        while not self.watch.opened.is_set() and time.time() < deadline:
            self.watch.opened.wait(timeout=min(1.0, max(0.05, deadline - time.time())))

    def _closing(self) -> bool:
        until = self.params.buy_until_epoch_ms
        return bool(until) and time.time() * 1000 >= until

    def _buy(self) -> None:
        while not self._closing():
            response = self._reserve()
            if response is None:
                gevent.sleep(random.uniform(0.5, 1.5))
                continue
            if response.status == 201:
                if not self._decide(response.body):
                    return
                continue
            code = response.error
            if code == "limit":
                pending.add("buyers_at_limit")
                return
            if self.watch.ended:
                return
            if code == "sold_out":
                self.watch.stock_back.clear()
                self.watch.stock_back.wait(timeout=random.uniform(2.0, 4.0))
            elif code == "not_open":  # early: wait for sale_started, poll again now and then
                pause = random.uniform(1.0, 2.0)
                if self.watch.opened.is_set():
                    gevent.sleep(pause)
                else:
                    self.watch.opened.wait(timeout=pause)
            else:
                gevent.sleep(random.uniform(0.5, 1.5))

    def _decide(self, hold: dict[str, Any]) -> bool:
        """After a hold: think, then confirm (True: keep buying) or abandon it (False)."""
        hold_id = str(hold["id"])
        now_ms = time.time() * 1000
        self.holds = {h: t for h, t in self.holds.items() if t > now_ms + EXPIRY_GRACE_MS}
        self.holds[hold_id] = int(hold.get("expires_at") or 0)
        pending.high("max_owned_per_buyer", self.orders + len(self.holds))
        gevent.sleep(random.uniform(*self.params.think_range()))
        if random.random() >= self.params.confirm_share or self._closing():
            pending.add("abandoned")
            return False
        self._confirm(hold_id)
        return True

    def _reserve(self) -> Response | None:
        key = uuid.uuid4().hex
        path = f"/api/sales/{self.params.sale}/reservations"
        for _ in range(2):
            pending.add("reserve")
            response = self.timed(
                "reserve",
                RESERVE_NAME,
                lambda: self.api.post(path, {"qty": 1}, headers={"Idempotency-Key": key}),
                _reserve_answer,
            )
            if response is not None:
                outcome = "hold" if response.status == 201 else response.error
                pending.add(f"reserve_{outcome}")
                return response
            pending.add("reserve_no_answer")
        return None

    def _confirm(self, hold_id: str) -> None:
        path = f"/api/reservations/{hold_id}/confirm"
        body = {"payment_ref": f"pay-{hold_id}"}
        for attempt in range(3):
            pending.add("confirm")
            self.confirming = True
            response = self.timed(
                "confirm", CONFIRM_NAME, lambda: self.api.post(path, body), _confirm_answer
            )
            self.confirming = False
            if response is None:
                pending.add("confirm_no_answer")
                continue
            if response.status == 201:
                self.orders += 1
                self.holds.pop(hold_id, None)
                pending.add("confirm_ok")
                pending.high("max_orders_per_buyer", self.orders)
                return
            pending.add(f"confirm_{response.error}")
            if response.status != 503:
                self.holds.pop(hold_id, None)
                return
            if attempt < 2:
                gevent.sleep(float(response.body.get("retry_after_s") or 1.0))
        pending.add("confirm_unknown")


def _reserve_answer(response: Response) -> bool:
    return response.status == 201 or (response.status == 409 and response.error in REJECTIONS)


def _confirm_answer(response: Response) -> bool:
    return response.status == 201 or (response.status == 409 and response.error in CONFIRM_REFUSALS)
