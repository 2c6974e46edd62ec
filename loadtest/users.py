"""The simulated people of a live shopping room that are locust users: the host (buyers in
buyer.py; viewers, many per process, in viewers.py).

Every user talks to the service over its public protocols only: the WebSocket for the room, the
HTTP API for everything else. What they see that locust's request stats cannot hold (events
delivered, outcomes of reservations, how many items one buyer ever owned) goes into the
process's `pending` tally, which workers ship to the master with each report."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import gevent
from locust import User, constant, task

from loadtest import tokens
from loadtest.api import Api, Response, TransportError
from loadtest.params import Params
from loadtest.rawfeed import RawFeed, Wants
from loadtest.tally import Tally

pending = Tally()

HOST = "host"
# Request types whose every call is recorded with its times in chaos runs (tally.calls).
RECORDED = frozenset({"reserve", "confirm"})


class HttpFailure(Exception):
    """An HTTP answer that is not one of the answers the API promises for this call."""


class LiveUser(User):
    abstract = True
    wait_time = constant(0)

    def on_start(self) -> None:
        self.params = Params.from_options(self.environment.parsed_options)
        if not self.params.room or not self.params.sale:
            raise RuntimeError("no room or sale: the master sets them up at test start")
        self.secret = tokens.resolve_secret(self.params.jwt_secret)
        self.fire = self.environment.events.request.fire
        self.base_url = self.host or ""
        self.record_calls = bool(self.params.chaos)

    def timed(
        self,
        kind: str,
        name: str,
        call: Callable[[], Response],
        expected: Callable[[Response], bool],
    ) -> Response | None:
        """Run one HTTP call and report it; None when it got no answer."""
        began = time.time()
        started = time.perf_counter()
        exc: Exception | None = None
        response: Response | None = None
        try:
            response = call()
            if not expected(response):
                exc = HttpFailure(response.describe())
        except TransportError as error:
            exc = error
        self.fire(
            request_type=kind,
            name=name,
            response_time=(time.perf_counter() - started) * 1000,
            response_length=0,
            exception=exc,
            context={},
        )
        self._count(kind, response, began)
        return response

    def _count(self, kind: str, response: Response | None, began: float) -> None:
        """503s, other 5xx and calls without an answer, per second (for the chart and the
        faults' verdict); in chaos runs also the call itself with its times."""
        if response is None:
            pending.add("no_answer")
            status, code = 0, "no_answer"
        else:
            status, code = response.status, response.error
            if response.unavailable:
                pending.add("unavailable")
                pending.add(f"unavailable_{kind}")
            elif status >= 500:
                pending.add("server_errors")
                pending.add(f"server_error_{kind}_{status}")
        if self.record_calls and kind in RECORDED:
            pending.call(began, time.time(), kind, status, code)

    def new_feed(self, sub: str, wants: Wants, **listeners: Any) -> RawFeed:
        """The user's own feed of the room: not a probe, decoding the frames it `wants`."""
        token = tokens.viewer_token(self.secret, self.params.room, sub)
        return RawFeed(
            self.base_url,
            self.params.room,
            token,
            self.fire,
            pending,
            probe=False,
            wants=wants,
            **listeners,
        )


def _ok(response: Response) -> bool:
    return response.ok


class Host(LiveUser):
    """Runs the show: pins the product, talks, starts the sale at the set moment, then keeps
    posting host messages (critical-lane events whose fan-out lag the viewers measure)."""

    fixed_count = 1

    def on_start(self) -> None:
        super().on_start()
        self.api = Api(self.base_url, tokens.host_token(self.secret, self.params.room))

    def on_stop(self) -> None:
        self.api.close()

    def _act(self, name: str, method: str, path: str, body: dict[str, Any] | None = None) -> None:
        self.timed(HOST, name, lambda: self.api.request(method, path, body), _ok)

    @task
    def run_show(self) -> None:
        room, sale = self.params.room, self.params.sale
        self._act("pin", "POST", f"/api/rooms/{room}/pin", {"product_id": self.params.product})
        self._act("message", "POST", f"/api/rooms/{room}/messages", {"text": "Welcome!"})
        wait_s = self.params.sale_epoch_ms / 1000 - time.time()
        if wait_s > 0:
            gevent.sleep(wait_s)
        for _ in range(5):
            started = self.timed(
                HOST, "start sale", lambda: self.api.post(f"/api/sales/{sale}/start"), _ok
            )
            if started is not None and started.ok:
                pending.add("sale_started_by_host")
                break
            gevent.sleep(1)
        turn = 0
        while True:
            gevent.sleep(self.params.host_every)
            turn += 1
            figures = self.timed(HOST, "figures", lambda: self.api.get(f"/api/sales/{sale}"), _ok)
            left = figures.body.get("remaining", "?") if figures is not None else "?"
            text = f"Only {left} left, go go go! ({turn})"
            self._act("message", "POST", f"/api/rooms/{room}/messages", {"text": text})
            if turn % 2 == 0:
                self._act(
                    "pin", "POST", f"/api/rooms/{room}/pin", {"product_id": self.params.product}
                )
