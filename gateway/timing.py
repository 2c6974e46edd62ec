"""Server-side timing for /metrics (gateway/metrics.py): the duration of each HTTP request by
route template and method, of each WebSocket command, and the fan-out lag of each frame. The
label sets are bounded: a route is its template (`/api/sales/{sale}/reservations`, never the
raw path), every path no route matches is UNMATCHED, an unknown method is OTHER.
Each observation costs a couple of microseconds: the labelled children are looked up once."""

from __future__ import annotations

import time

from prometheus_client import Histogram
from starlette.types import Scope

from gateway.metrics import FANOUT_LAG, HTTP_DURATION, WS_COMMAND_DURATION

UNMATCHED = "unmatched"
OTHER = "other"
METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"})
TS = b'"ts":'

_children: dict[tuple[Histogram, tuple[str, ...]], Histogram] = {}


def _child(histogram: Histogram, *labels: str) -> Histogram:
    key = (histogram, labels)
    child = _children.get(key)
    if child is None:
        child = _children[key] = histogram.labels(*labels)
    return child


def http_done(scope: Scope, started: float) -> None:
    """An HTTP request answered (refused ones too: the error handlers answer before this);
    `started`: time.perf_counter() when it came. Its route is the template of the route that
    matched (`scope["route"]`, set by Starlette's router or gateway/fast_lane.py)."""
    route = getattr(scope.get("route"), "path", UNMATCHED)
    method = scope["method"] if scope["method"] in METHODS else OTHER
    _child(HTTP_DURATION, route, method).observe(time.perf_counter() - started)


def command_done(command: str, started: float) -> None:
    """A WebSocket command answered; `started`: time.perf_counter() when it was parsed. The
    command is a type gateway.protocol.parse knows (a bounded set)."""
    _child(WS_COMMAND_DURATION, command).observe(time.perf_counter() - started)


def frame_written(events: tuple[tuple[int, bytes], ...]) -> None:
    """A frame of these (seq, event) was written to a group of viewers: the lag of its oldest
    event since its publish time (the envelope's `ts`, ms of Redis' clock: one machine's clock
    against another's across hosts, so clamped at 0)."""
    if not events:
        return
    raw = events[0][1]
    at = raw.find(TS)
    if at < 0:
        return
    end = at + len(TS)
    while end < len(raw) and 48 <= raw[end] <= 57:
        end += 1
    if end == at + len(TS):
        return
    lag = time.time() - int(raw[at + len(TS) : end]) / 1000
    FANOUT_LAG.observe(max(0.0, lag))
