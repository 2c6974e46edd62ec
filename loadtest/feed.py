"""What a viewer makes of the room's server frames (docs/protocol.md, "Server frames"): its place
in the room's log (`epoch`, `seq`) for a resume, the events told apart as live fan-out or replay,
the fan-out lag, and the stream's integrity.

A frame's lag is its oldest live event's (`now - ts`, the server's clock), one measurement per
frame as the server's own `live_gateway_fanout_lag_seconds` takes it; it is reported as a locust
request of type "WS event" named by that event's type, or "WS replay" when a resume replayed it
(catching up is not fan-out lag). An event at or below a seq already seen in the same epoch is
counted as `seq_regressions`: the stream went backwards.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from typing import Any

from loadtest.tally import Tally

Fire = Callable[..., None]  # environment.events.request.fire
Listener = Callable[[dict[str, Any]], None]

CONNECT = "WS connect"
DROP = "WS drop"
EVENT = "WS event"
REPLAY = "WS replay"
# Close codes after which retrying at once is pointless (bad token, forbidden, no such room).
REFUSALS = frozenset({4401, 4403, 4404})


class ServerClosed(Exception):
    def __init__(self, code: int, reason: str = "") -> None:
        super().__init__(f"closed by the server: {code} {reason}".strip())
        self.code = code


def decode(payload: bytes) -> dict[str, Any]:
    """A server frame's JSON; ValueError when it is not a JSON object."""
    frame = json.loads(payload)
    if not isinstance(frame, dict):
        raise ValueError("a frame is a JSON object")
    return frame


def report(fire: Fire, kind: str, name: str, started: float, exc: Exception | None) -> None:
    """A locust request of `kind` that began at `started` (time.perf_counter())."""
    fire(
        request_type=kind,
        name=name,
        response_time=(time.perf_counter() - started) * 1000,
        response_length=0,
        exception=exc,
        context={},
    )


class FeedState:
    """One viewer's position in the room's log and what it measures of the frames it reads."""

    def __init__(
        self,
        fire: Fire,
        tally: Tally,
        *,
        on_event: Listener | None = None,
        on_snapshot: Listener | None = None,
    ) -> None:
        self.fire = fire
        self.tally = tally
        self.on_event = on_event
        self.on_snapshot = on_snapshot
        self.epoch = ""
        self.seq = 0
        self._replay_upto = 0  # events up to this seq came from a resume, not live fan-out

    def welcome(self, welcome: dict[str, Any]) -> None:
        epoch, seq = str(welcome.get("epoch", "")), int(welcome.get("seq", 0))
        if welcome.get("resumed"):
            self._replay_upto = seq  # what follows up to `seq` is the replay
        else:
            self._replay_upto = 0
            self.seq = seq
        self.epoch = epoch

    def frame(self, frame: dict[str, Any], received_ms: float, *, measure: bool = True) -> None:
        """Take one decoded frame. Without `measure` only the position follows (a viewer that
        catches up on a frame it did not read when it came)."""
        kind = frame.get("type")
        if kind == "events":
            self._events(frame, received_ms, measure)
        elif kind == "snapshot":
            snapshot = frame.get("snapshot") or {}
            self.tally.add("snapshots")
            self.epoch = str(snapshot.get("epoch", self.epoch))
            self.seq = max(self.seq, int(snapshot.get("seq", 0)))
            if self.on_snapshot is not None:
                self.on_snapshot(snapshot)
        elif kind == "welcome":
            self.welcome(frame)
        elif kind == "error":
            self.tally.add(f"ws_error_{frame.get('error', 'unknown')}")
        elif kind == "reply":
            self.tally.add("ws_replies")

    def _events(self, frame: dict[str, Any], received_ms: float, measure: bool) -> None:
        epoch = str(frame.get("epoch", ""))  # once per frame (docs/protocol.md, Events)
        if epoch != self.epoch:  # the room's log was started anew: nothing is a replay
            self.epoch, self._replay_upto, self.seq = epoch, 0, 0
        oldest: tuple[bool, dict[str, Any]] | None = None
        live = replayed = 0
        for event in frame.get("events", []):
            seq = int(event.get("seq", 0))
            if seq <= self.seq:
                self.tally.add("seq_regressions")
            replay = seq <= self._replay_upto
            self.seq = max(self.seq, seq)
            if oldest is None:
                oldest = (replay, event)
            replayed += replay
            live += not replay
            if self.on_event is not None:
                self.on_event(event)
        if not measure or oldest is None or not self.tally.measuring:
            return
        skipped = int(frame.get("skipped") or 0)
        if skipped:
            self.tally.add("events_skipped", skipped)
        if replayed:
            self.tally.add("events_replayed", replayed)
        if live:
            self.tally.add("events", live)
        replay, event = oldest
        lag = max(0.0, received_ms - float(event.get("ts", received_ms)))
        if not replay:
            self.tally.lag_ms(lag)
        self.fire(
            request_type=REPLAY if replay else EVENT,
            name=str(event.get("type", "unknown")),
            response_time=lag,
            response_length=0,
            exception=None,
            context={},
        )
