"""What a frame keeps of the events that came since a viewer's previous frame, under the lanes'
rules: every critical event; the latest state event per merge key; the most recent lossy events
up to a cap, the rest counted as skipped. Before that, a room's lossy events are sampled as they
come (`Sampler`: about `per_s` a second, once for all the room's viewers); the ones sampled away
are counted as skipped too.

The rules read only the envelope (rooms/events.py): `lane`, and `key` for the state lane, set by
whoever published the event. They never look at an event's type or data. An event without a
known lane is critical (never dropped); a state event without a key is kept as it is (never
conflated), so nothing is lost to an envelope the rules cannot read.

Pure: no I/O, no asyncio. `Lanes` is the buffer of a room's hub (incremental: events go in one
by one, readers at different positions take what they have not had); `select` applies the same
rules once to a list of events (what a resuming viewer missed).
"""

from __future__ import annotations

import bisect
import json
from collections import deque
from collections.abc import Iterable, Mapping
from dataclasses import dataclass

CRITICAL, STATE, LOSSY = "critical", "state", "lossy"


@dataclass(frozen=True, slots=True)
class Event:
    seq: int
    raw: bytes


@dataclass(frozen=True, slots=True)
class Selection:
    """What one frame carries: `kept` (critical and state events) and `lossy` events, each in
    seq order, and how many lossy events were left out (`skipped`)."""

    kept: list[Event]
    lossy: list[Event]
    skipped: int
    critical: int = 0  # how many of `kept` are critical

    @property
    def events(self) -> list[Event]:
        """Every kept event, lossy ones included, in seq order."""
        if not self.lossy:
            return self.kept
        return sorted([*self.kept, *self.lossy], key=lambda e: e.seq)


def route(event: Mapping[str, object]) -> tuple[str, str]:
    """The event's lane and, in the state lane, what it conflates on ("" elsewhere); a keyless
    state event conflates on its own seq (never with another)."""
    lane = event.get("lane")
    if lane == STATE:
        key = event.get("key")
        return STATE, key if isinstance(key, str) and key else f"#{event.get('seq')}"
    if lane == LOSSY:
        return LOSSY, ""
    return CRITICAL, ""


class Sampler:
    """A token bucket: lets through about `per_s` events a second, and a burst of up to one
    second's worth after a quiet spell; `per_s` 0 lets everything through. Evenly spaced under a
    flood, so what a viewer reads stays a sample of the whole stream."""

    def __init__(self, per_s: float) -> None:
        if per_s < 0:
            raise ValueError("per_s must not be negative")
        self.per_s = per_s
        self.burst = max(1.0, per_s)
        self._tokens = self.burst
        self._at: float | None = None

    def take(self, now: float) -> bool:
        if not self.per_s:
            return True
        if self._at is not None:
            self._tokens = min(self.burst, self._tokens + (now - self._at) * self.per_s)
        self._at = now
        if self._tokens < 1:
            return False
        self._tokens -= 1
        return True


class Lanes:
    """The events some reader has not been offered yet: critical events after the oldest
    reader's position, the latest state event per key, the `lossy_cap` most recent lossy events
    the sampler let through, and the count of every lossy event so far (sampled away or not). A
    reader is a position (`cursor`: the seq it was offered everything up to; `lossy_seen`:
    `lossy_count` then). Events come in seq order."""

    def __init__(self, lossy_cap: int, sampler: Sampler | None = None) -> None:
        self.critical: list[Event] = []
        self.state: dict[str, Event] = {}
        self.lossy: deque[Event] = deque(maxlen=lossy_cap)
        self.lossy_count = 0
        self.sampler = sampler

    def add(self, seq: int, raw: bytes, event: Mapping[str, object], now: float = 0.0) -> None:
        """`now` (seconds, any monotonic clock) is when a lossy event came, for the sampler."""
        lane, key = route(event)
        if lane == STATE:
            self.state[key] = Event(seq, raw)
        elif lane == LOSSY:
            self.lossy_count += 1
            if self.sampler is None or self.sampler.take(now):
                self.lossy.append(Event(seq, raw))
        else:
            self.critical.append(Event(seq, raw))

    def since(self, cursor: int, lossy_seen: int) -> Selection:
        """What a reader at (`cursor`, `lossy_seen`) has not had: of the lossy events that came
        since, the most recent (up to the cap) are kept and the rest skipped."""
        start = bisect.bisect_right(self.critical, cursor, key=lambda e: e.seq)
        kept = [*self.critical[start:], *(e for e in self.state.values() if e.seq > cursor)]
        kept.sort(key=lambda e: e.seq)
        lossy = [e for e in self.lossy if e.seq > cursor]
        skipped = self.lossy_count - lossy_seen - len(lossy)
        return Selection(kept, lossy, skipped, len(self.critical) - start)

    def forget(self, upto: int) -> None:
        """Every reader has been offered the critical and state events up to `upto`."""
        done = bisect.bisect_right(self.critical, upto, key=lambda e: e.seq)
        if done:
            del self.critical[:done]
        for key in [key for key, event in self.state.items() if event.seq <= upto]:
            del self.state[key]

    def clear(self) -> None:
        """Drop every buffered event (the count of lossy events goes on)."""
        self.critical.clear()
        self.state.clear()
        self.lossy.clear()


def select(events: Iterable[bytes], lossy_cap: int) -> Selection:
    """The lanes' rules applied once to encoded events in seq order."""
    lanes = Lanes(lossy_cap)
    for raw in events:
        event = json.loads(raw)
        lanes.add(int(event["seq"]), raw, event)
    return lanes.since(-1, 0)
