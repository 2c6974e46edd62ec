"""Room event types and the fan-out lane each travels in.

critical: never dropped (pins, host messages, sale lifecycle, moderation).
state: conflated to the latest value per tick (stock left, viewer count).
lossy: sampled to a per-tick cap when a room floods (comments, purchases).
"""

from __future__ import annotations

from enum import StrEnum


class Lane(StrEnum):
    CRITICAL = "critical"
    STATE = "state"
    LOSSY = "lossy"


LANES: dict[str, Lane] = {
    "pinned": Lane.CRITICAL,
    "unpinned": Lane.CRITICAL,
    "host_message": Lane.CRITICAL,
    "comment_deleted": Lane.CRITICAL,
    "slow_mode": Lane.CRITICAL,
    "room_updated": Lane.CRITICAL,
    "room_ended": Lane.CRITICAL,
    "sale_scheduled": Lane.CRITICAL,
    "sale_started": Lane.CRITICAL,
    "sale_ended": Lane.CRITICAL,
    "sold_out": Lane.CRITICAL,
    "stock": Lane.STATE,
    "viewers": Lane.STATE,
    "comment": Lane.LOSSY,
    "purchase": Lane.LOSSY,
}


def lane_of(event_type: str) -> Lane:
    try:
        return LANES[event_type]
    except KeyError:
        raise ValueError(f"unknown room event type {event_type!r}") from None
