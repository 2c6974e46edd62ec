"""The compact wire form of room events (docs/protocol.md, "Events"): what a viewer is sent of
each event's envelope.

The log and the hub keep the full envelope (rooms/events.py); on the wire an `events` frame
carries the log's `epoch` once, and each event drops what the frame or its type already says:
its `epoch` always, its `lane` when it is the lane `IMPLIED_LANES` gives its type, its `key` when
it is the key `implied_key` builds from its type and data. An event the table does not know (a
new type, another publisher's choice) keeps its `lane` and `key`, so nothing is guessed.
`expand` is the inverse a client applies (the tests' and the bench's decoders use it).
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

from gateway import lanes

CRITICAL, STATE, LOSSY = lanes.CRITICAL, lanes.STATE, lanes.LOSSY

# The lane each type is published in (docs/protocol.md's table of event types).
IMPLIED_LANES: Mapping[str, str] = {
    "room_updated": CRITICAL,
    "pinned": CRITICAL,
    "unpinned": CRITICAL,
    "host_message": CRITICAL,
    "comment_deleted": CRITICAL,
    "slow_mode": CRITICAL,
    "room_ended": CRITICAL,
    "sale_scheduled": CRITICAL,
    "sale_started": CRITICAL,
    "sale_ended": CRITICAL,
    "sold_out": CRITICAL,
    "auction_started": CRITICAL,
    "auction_extended": CRITICAL,
    "auction_ended": CRITICAL,
    "stock": STATE,
    "viewers": STATE,
    "auction": STATE,
    "comment": LOSSY,
    "purchase": LOSSY,
}

# The merge key of each state type: a prefix, and the field of `data` that ends it (or None).
IMPLIED_KEYS: Mapping[str, tuple[str, str | None]] = {
    "stock": ("stock:", "sale_id"),
    "viewers": ("viewers", None),
    "auction": ("auction:", "id"),
}


def implied_key(kind: object, data: object) -> str | None:
    """The merge key a state event of type `kind` has unless it says otherwise; None when the
    type implies none."""
    rule = IMPLIED_KEYS.get(kind) if isinstance(kind, str) else None
    if rule is None:
        return None
    prefix, field = rule
    if field is None:
        return prefix
    value = data.get(field) if isinstance(data, Mapping) else None
    return f"{prefix}{value}" if isinstance(value, int | str) else None


def wire_event(event: Mapping[str, Any]) -> bytes:
    """The event as a frame carries it: without `epoch`, and without the `lane` and `key` that
    its type implies. Its lane is the one the hub obeyed (lanes.route), so an event without a
    readable lane is written as critical, as it was treated."""
    lane, _ = lanes.route(event)
    kind, key = event.get("type"), event.get("key")
    compact: dict[str, Any] = {}
    for name, value in event.items():
        if name == "epoch":
            continue
        if name == "lane":
            if isinstance(kind, str) and IMPLIED_LANES.get(kind) == lane:
                continue
            value = lane
        elif name == "key" and key == implied_key(kind, event.get("data")) and lane == STATE:
            continue
        compact[name] = value
    if "lane" not in event and IMPLIED_LANES.get(str(kind)) != lane:
        compact["lane"] = lane
    return json.dumps(compact, separators=(",", ":"), ensure_ascii=False).encode()


def expand(frame: Mapping[str, Any]) -> list[dict[str, Any]]:
    """The full events of an `events` frame: each with the frame's `epoch`, its lane and, for a
    state event, its merge key."""
    epoch = frame.get("epoch", "")
    events: list[dict[str, Any]] = []
    for event in frame["events"]:
        kind = event.get("type")
        lane = event.get("lane") or IMPLIED_LANES.get(kind, CRITICAL)
        full = {**event, "epoch": epoch, "lane": lane}
        if lane == STATE and "key" not in event:
            key = implied_key(kind, event.get("data"))
            if key is not None:
                full["key"] = key
        events.append(full)
    return events
