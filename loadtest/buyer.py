"""The buyer: a viewer who reserves the moment the sale opens, thinks, then confirms (a share of
its holds) or walks away and lets the hold expire.

Reservations and confirms go over the HTTP API on FastHttpUser's client (geventhttpclient, see
fast_api.py) and are reported as request types `reserve` and `confirm`. The buyer's feed of the
room (rawfeed.py) decodes only the frames that can tell it about its sale. The API's business
answers (409 sold_out / limit / not_open, 409 expired or conflict on a confirm) are successes
for locust: the service answered as promised. Only other answers and transport errors count as
failures; in chaos runs a 503 (a store away, with Retry-After) is a
promised answer too. A call that got no answer or a 5xx is retried with the same Idempotency-Key
(or on the same reservation), both replay-safe, after Retry-After or a short backoff: a reserve
for up to RESERVE_PATIENCE_S, a confirm for up to CONFIRM_PATIENCE_S (a stalled database answers
after the service's io timeout). A confirm never answered is counted as `confirm_unknown`: the
order may or may not exist."""

from __future__ import annotations

import random
import time
import uuid
from typing import Any

import gevent
from gevent.event import Event
from geventhttpclient.url import URL
from locust import FastHttpUser, task

from loadtest import tokens
from loadtest.api import Response
from loadtest.fast_api import FastApi
from loadtest.users import LiveUser, pending

RESERVE_NAME = "/api/sales/[sale]/reservations"
CONFIRM_NAME = "/api/reservations/[id]/confirm"
REJECTIONS = frozenset({"sold_out", "limit", "not_open"})
CONFIRM_REFUSALS = frozenset({"expired", "sold_out", "conflict"})
# The events of a sale, as the server writes them (compact JSON): a buyer's feed decodes a frame
# that holds one of these, and one with a stock change while it waits for stock to come back.
SALE_NEWS = (b'"type":"sale_started"', b'"type":"sold_out"', b'"type":"sale_ended"')
STOCK_NEWS = b'"type":"stock"'
# A hold whose expiry is this close is no longer counted as owned (clock and sweep slack).
EXPIRY_GRACE_MS = 1000
RESERVE_ATTEMPTS, RESERVE_PATIENCE_S = 4, 10.0
CONFIRM_ATTEMPTS, CONFIRM_PATIENCE_S = 8, 40.0
BACKOFF_S = (0.5, 1.0, 2.0, 3.0)  # after a call without an answer
MAX_PAUSE_S = 5.0  # a Retry-After above this is shortened


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

    def wants(self, frame: bytes) -> bool:
        """Whether an undecoded events frame may say something about the sale."""
        if any(news in frame for news in SALE_NEWS):
            return True
        return not self.stock_back.is_set() and STOCK_NEWS in frame

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


class Buyer(FastHttpUser, LiveUser):
    weight = 1
    concurrency = 1  # one call at a time: one keep-alive connection per buyer
    network_timeout = connection_timeout = 10.0

    def on_start(self) -> None:
        super().on_start()
        self.sub = f"buyer-{uuid.uuid4().hex[:12]}"
        http = self.client.client.clientpool.get_client(URL(self.base_url))
        self.api = FastApi(http, tokens.viewer_token(self.secret, self.params.room, self.sub))
        self.watch = SaleWatch(self.params.sale)
        self.feed = self.new_feed(
            self.sub,
            self.watch.wants,
            on_event=self.watch.on_event,
            on_snapshot=self.watch.on_snapshot,
        )
        self.feed.start()
        self.orders = 0
        self.holds: dict[str, int] = {}  # held (not confirmed) hold id -> expires_at ms
        self.done = False
        self.confirming = False

    def on_stop(self) -> None:
        if self.confirming:  # stopped mid-confirm: the order may or may not exist
            pending.add("confirm_unknown")
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
        """One reservation: retried with the same key after no answer or a 5xx."""
        key = uuid.uuid4().hex
        path = f"/api/sales/{self.params.sale}/reservations"
        deadline = time.monotonic() + RESERVE_PATIENCE_S
        response: Response | None = None
        for attempt in range(RESERVE_ATTEMPTS):
            pending.add("reserve")
            response = self.timed(
                "reserve",
                RESERVE_NAME,
                lambda: self.api.post(path, {"qty": 1}, headers={"Idempotency-Key": key}),
                self._reserve_answer,
            )
            if response is None:
                pending.add("reserve_no_answer")
            else:
                outcome = "hold" if response.status == 201 else response.error
                pending.add(f"reserve_{outcome}")
                if response.status < 500:
                    return response
            if attempt + 1 == RESERVE_ATTEMPTS or not _pause(attempt, response, deadline):
                break
        return response

    def _confirm(self, hold_id: str) -> None:
        """Confirm one hold; retried (same reservation, idempotent) after no answer or a 5xx
        until an answer that settles it, CONFIRM_ATTEMPTS or CONFIRM_PATIENCE_S. While it
        lasts the outcome is open (`confirming`: a user stopped then counts it as unknown;
        not reset in a `finally`, since locust's stop unwinds through here before on_stop)."""
        self.confirming = True
        settled = self._confirm_attempts(hold_id)
        self.confirming = False
        if not settled:
            pending.add("confirm_unknown")

    def _confirm_attempts(self, hold_id: str) -> bool:
        """True once an answer settled the confirm (an order, or a refusal)."""
        path = f"/api/reservations/{hold_id}/confirm"
        body = {"payment_ref": f"pay-{hold_id}"}
        deadline = time.monotonic() + CONFIRM_PATIENCE_S
        for attempt in range(CONFIRM_ATTEMPTS):
            pending.add("confirm")
            response = self.timed(
                "confirm", CONFIRM_NAME, lambda: self.api.post(path, body), self._confirm_answer
            )
            if response is None:
                pending.add("confirm_no_answer")
            elif response.status == 201:
                self._ordered(hold_id, response.body)
                return True
            else:
                pending.add(f"confirm_{response.error}")
                if response.status < 500:
                    self.holds.pop(hold_id, None)
                    return True
            if attempt + 1 == CONFIRM_ATTEMPTS or not _pause(attempt, response, deadline):
                break
        return False

    def _ordered(self, hold_id: str, order: dict[str, Any]) -> None:
        """A confirm answered 201: an acknowledged order, which must be this buyer's own."""
        self.orders += 1
        self.holds.pop(hold_id, None)
        pending.add("confirm_ok")
        pending.high("max_orders_per_buyer", self.orders)
        mine = (order.get("buyer"), str(order.get("reservation_id")), order.get("qty")) == (
            self.sub,
            hold_id,
            1,
        )
        if not mine or order.get("payment_ref") != f"pay-{hold_id}":
            pending.add("confirm_foreign")

    def _reserve_answer(self, response: Response) -> bool:
        promised = response.status == 201 or (
            response.status == 409 and response.error in REJECTIONS
        )
        return promised or (response.unavailable and self.record_calls)

    def _confirm_answer(self, response: Response) -> bool:
        promised = response.status == 201 or (
            response.status == 409 and response.error in CONFIRM_REFUSALS
        )
        return promised or (response.unavailable and self.record_calls)


def _pause(attempt: int, response: Response | None, deadline: float) -> bool:
    """Wait before the next attempt (Retry-After, else a backoff); False when there is no time
    left for one."""
    if response is not None and response.retry_after_s is not None:
        pause = min(response.retry_after_s, MAX_PAUSE_S)
    else:
        pause = BACKOFF_S[min(attempt, len(BACKOFF_S) - 1)]
    pause *= random.uniform(1.0, 1.3)  # spread the retries of many buyers
    if time.monotonic() + pause >= deadline:
        return False
    gevent.sleep(pause)
    return True
