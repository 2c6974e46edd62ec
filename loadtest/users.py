"""The simulated people of a live shopping room: viewers and the host (buyers in buyer.py).

Every user talks to the service over its public protocols only: the WebSocket for the room, the
HTTP API for everything else. What they see that locust's request stats cannot hold (events
delivered, outcomes of reservations, how many items one buyer ever owned) goes into the
process's `pending` tally, which workers ship to the master with each report."""

from __future__ import annotations

import random
import time
import uuid
from collections.abc import Callable
from typing import Any

import gevent
from locust import User, constant, task

from loadtest import tokens
from loadtest.api import Api, Response, TransportError
from loadtest.feed import RoomFeed
from loadtest.params import Params
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

    def new_feed(self, sub: str, **listeners: Any) -> RoomFeed:
        token = tokens.viewer_token(self.secret, self.params.room, sub)
        return RoomFeed(self.base_url, self.params.room, token, self.fire, pending, **listeners)


def _ok(response: Response) -> bool:
    return response.ok


class Viewer(LiveUser):
    """Watches the room: connects, counts events and their lag, resumes after a drop; comments
    now and then when --live-comment-every is set."""

    weight = 4

    def on_start(self) -> None:
        super().on_start()
        self.feed = self.new_feed(f"viewer-{uuid.uuid4().hex[:12]}")
        self.chatter: Any = None
        if self.params.comment_every > 0:
            self.chatter = gevent.spawn(self._comment_loop)

    def on_stop(self) -> None:
        self.feed.closing = True
        if self.chatter is not None:
            self.chatter.kill(block=True, timeout=1)
        self.feed.close()

    def _comment_loop(self) -> None:
        every = self.params.comment_every
        gevent.sleep(random.uniform(0, every))
        while True:
            if self.feed.send({"type": "comment", "text": random.choice(COMMENTS)}):
                pending.add("comments_sent")
            gevent.sleep(every * random.uniform(0.8, 1.2))

    @task
    def watch(self) -> None:
        self.feed.run()


COMMENTS = ("so cute!", "what sizes?", "want!!", "is it waterproof?", "hi from Lyon", "ordered")


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
