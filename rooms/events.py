"""The envelope of a room event: how it travels is said by whoever publishes it.

Every event is logged and broadcast as
`{"seq", "epoch", "ts", "type", "lane", ["key",] "data"}`: the room's sequence number, the log's
epoch, the server's time, what happened, its lane and its fields. The publisher chooses the lane
(and, in the state lane, the merge key); the log and the gateway obey the envelope and know no
event type of anyone's:

- critical: never dropped (pins, host messages, moderation, a sale's lifecycle);
- state: conflated to the latest event per `key` and tick (a sale's stock left: `stock:<sale>`,
  the viewer count: `viewers`); only state events carry a `key`;
- lossy: sampled to a per-tick cap when a room floods (comments, purchases).
"""

from __future__ import annotations

import re
from enum import StrEnum


class Lane(StrEnum):
    CRITICAL = "critical"
    STATE = "state"
    LOSSY = "lossy"


# Event types and merge keys are written into the envelope as they are (no escaping), so they
# are kept to characters that need none.
EVENT_TYPE = re.compile(r"[a-z][a-z0-9_]{0,63}")
MERGE_KEY = re.compile(r"[A-Za-z0-9_.:-]{1,128}")


def route(event_type: str, lane: Lane | str, key: str) -> Lane:
    """The event's lane, checked with its type and key: refuses (ValueError) an envelope the
    gateway could not obey: an ill-formed type, an unknown lane, a state event without a merge
    key, or a key on an event of another lane."""
    if not EVENT_TYPE.fullmatch(event_type):
        raise ValueError(f"malformed room event type {event_type!r}")
    lane = Lane(lane)  # ValueError for an unknown lane
    if lane is Lane.STATE:
        if not MERGE_KEY.fullmatch(key):
            raise ValueError(f"a state event needs a merge key (1-128 of [A-Za-z0-9_.:-]): {key!r}")
    elif key:
        raise ValueError(f"only state events have a merge key ({event_type} is {lane.value})")
    return lane
