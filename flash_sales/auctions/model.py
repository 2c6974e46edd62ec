"""Auctions as plain values and their rules, without I/O: the configuration a host sends and
its checks, the price bands of the increment, the minimum next bid, the states.

States: scheduled -> open -> ended. While open, Redis (lua/bid.lua) holds the live price and
decides every bid by its own clock; PostgreSQL keeps the auction, every accepted bid (recorded
before it is acknowledged) and the settlement.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum
from typing import Any, TypeGuard

from flash_sales.model import MAX_PRICE_CENTS
from rooms.errors import invalid

MAX_DURATION_MS = 86_400_000
MAX_SNIPE_WINDOW_MS = 3_600_000
MAX_EXTENSIONS = 1000
MAX_BANDS = 20

Bands = tuple[tuple[int, int], ...]
"""Increment bands: ((from_cents, step_cents), ...), the first from 0, `from` increasing."""


class AuctionState(StrEnum):
    SCHEDULED = "scheduled"
    OPEN = "open"
    ENDED = "ended"


class OfferState(StrEnum):
    """A settlement offer: open with a hold, then an order or void (the hold ran out)."""

    OFFERED = "offered"
    ORDER = "order"
    VOID = "void"


@dataclass(frozen=True)
class AuctionConfig:
    """What a host sets when creating an auction; every field checked by `config_of`."""

    start_cents: int
    bands: Bands
    duration_ms: int
    snipe_window_ms: int
    max_extensions: int
    reserve_cents: int | None


@dataclass(frozen=True)
class Auction:
    """An auction as PostgreSQL has it (the live price of an open one is in Redis)."""

    id: int
    room: str
    product_id: int
    config: AuctionConfig
    state: AuctionState
    price_cents: int | None
    leader: str | None
    leader_name: str | None
    bids: int
    extensions: int
    ends_at: datetime | None

    @property
    def pool(self) -> str:
        """The inventory_lock pool its settlement holds are taken from (one item)."""
        return pool_name(self.id)


POOL_PREFIX = "auction-"


def pool_name(auction_id: int) -> str:
    return f"{POOL_PREFIX}{auction_id}"


def auction_id_of(pool: str) -> int | None:
    """The auction whose settlement pool this is, None for another pool (a flash sale's)."""
    digits = pool.removeprefix(POOL_PREFIX)
    if digits != pool and digits.isascii() and digits.isdigit() and len(digits) <= 18:
        return int(digits)
    return None


def whole(value: object) -> TypeGuard[int]:
    """An int that is not a bool: JSON's 1.5, "7" and true are not amounts."""
    return isinstance(value, int) and not isinstance(value, bool)


def cents(value: object, name: str, minimum: int = 1) -> int:
    if whole(value) and minimum <= value <= MAX_PRICE_CENTS:
        return value
    raise invalid(f"{name} must be an integer of {minimum}-{MAX_PRICE_CENTS} cents")


def millis(value: object, name: str, minimum_ms: int, maximum_ms: int) -> int:
    """Seconds (fractions allowed) as whole ms within the bounds."""
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        raise invalid(f"{name} must be a number of seconds")
    ms = round(value * 1000)
    if not minimum_ms <= ms <= maximum_ms:
        raise invalid(f"{name} must be {minimum_ms / 1000:g}-{maximum_ms / 1000:g} s")
    return ms


def bands_of(increment_cents: object, increments: object) -> Bands:
    """The increment bands from exactly one of `increment_cents` or `increments`."""
    if (increment_cents is None) == (increments is None):
        raise invalid("send exactly one of increment_cents or increments")
    if increments is None:
        return ((0, cents(increment_cents, "increment_cents")),)
    if not isinstance(increments, list | tuple) or not 1 <= len(increments) <= MAX_BANDS:
        raise invalid(f"increments must be a list of 1-{MAX_BANDS} [from_cents, step_cents]")
    bands: list[tuple[int, int]] = []
    for band in increments:
        if not isinstance(band, list | tuple) or len(band) != 2:
            raise invalid("each increment band is [from_cents, step_cents]")
        start = cents(band[0], "an increment band's from_cents", minimum=0)
        step = cents(band[1], "an increment band's step_cents")
        if bands and start <= bands[-1][0]:
            raise invalid("increment bands must start at increasing prices")
        bands.append((start, step))
    if bands[0][0] != 0:
        raise invalid("the first increment band must start at 0")
    return tuple(bands)


def config_of(
    *,
    start_cents: object = None,
    increment_cents: object = None,
    increments: object = None,
    duration_s: object = None,
    snipe_window_s: object = 0,
    max_extensions: object = 0,
    reserve_cents: object = None,
) -> AuctionConfig:
    """The checked configuration; Invalid naming the first field missing or out of range."""
    if not (whole(max_extensions) and 0 <= max_extensions <= MAX_EXTENSIONS):
        raise invalid(f"max_extensions must be an integer of 0-{MAX_EXTENSIONS}")
    return AuctionConfig(
        start_cents=cents(start_cents, "start_cents"),
        bands=bands_of(increment_cents, increments),
        duration_ms=millis(duration_s, "duration_s", 1000, MAX_DURATION_MS),
        snipe_window_ms=millis(snipe_window_s, "snipe_window_s", 0, MAX_SNIPE_WINDOW_MS),
        max_extensions=max_extensions,
        reserve_cents=None if reserve_cents is None else cents(reserve_cents, "reserve_cents"),
    )


def increment_at(bands: Sequence[tuple[int, int]], price_cents: int) -> int:
    """The step of the band the price is in (the last band starting at or below it)."""
    step = bands[0][1]
    for start, band_step in bands:
        if start > price_cents:
            break
        step = band_step
    return step


def min_next_bid(config: AuctionConfig, price_cents: int | None) -> int:
    """The lowest bid taken now: the start price before any bid, else price plus the step."""
    if price_cents is None:
        return config.start_cents
    return price_cents + increment_at(config.bands, price_cents)


def encode_bands(bands: Bands) -> str:
    """The bands as lua/open.lua reads them: `from:step,from:step`."""
    return ",".join(f"{start}:{step}" for start, step in bands)


def reserve_met(config: AuctionConfig, price_cents: int | None) -> bool:
    if price_cents is None:
        return False
    return config.reserve_cents is None or price_cents >= config.reserve_cents


def config_view(config: AuctionConfig) -> dict[str, Any]:
    """The configuration as anyone may see it: the reserve stays hidden."""
    return {
        "start_cents": config.start_cents,
        "increments": [list(band) for band in config.bands],
        "duration_s": config.duration_ms / 1000,
        "snipe_window_s": config.snipe_window_ms / 1000,
        "max_extensions": config.max_extensions,
        "has_reserve": config.reserve_cents is not None,
    }


def ms(moment: datetime | None) -> int | None:
    return None if moment is None else int(moment.timestamp() * 1000)
