"""Group deals as plain values and their input rules, without I/O.

A group deal is a sale (`sales`, kind `group`) with its group settings (`group_deals`). A group
is `forming` until its last place fills or its window closes; while its orders are written it is
`filling` (in Redis only: shown as `forming` with no place left); then `formed` (every member an
order at the group price) or `failed` (no order, every hold released).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum
from typing import Any

from flash_sales.model import MAX_LIMIT, MAX_PRICE_CENTS, MAX_STOCK, SaleState
from rooms.errors import invalid

MIN_GROUP_SIZE = 2
MAX_GROUP_SIZE = 100
MIN_WINDOW_S = 1
MAX_WINDOW_S = 86_400
MAX_ID = 10**15 - 1  # as lua/_prelude.lua's count_arg reads an id


class GroupState(StrEnum):
    FORMING = "forming"
    FILLING = "filling"  # full, its orders being written (Redis only)
    FORMED = "formed"
    FAILED = "failed"


@dataclass(frozen=True)
class GroupDeal:
    """A group sale: the sale's fields and its group settings. `epoch` names the Redis pool
    that may write its groups (None before it first opened)."""

    sale_id: int
    room: str
    product_id: int
    price_cents: int
    group_price_cents: int
    stock: int
    sold: int
    limit_per_buyer: int
    group_size: int
    window_ms: int
    state: SaleState
    epoch: str | None

    @property
    def live(self) -> bool:
        return self.state in (SaleState.OPEN, SaleState.SOLD_OUT)

    def view(self) -> dict[str, Any]:
        return {
            "id": self.sale_id,
            "room": self.room,
            "kind": "group",
            "product_id": self.product_id,
            "price_cents": self.price_cents,
            "group_price_cents": self.group_price_cents,
            "stock": self.stock,
            "sold": self.sold,
            "limit_per_buyer": self.limit_per_buyer,
            "group_size": self.group_size,
            "group_window_s": self.window_ms // 1000,
            "state": self.state.value,
        }


@dataclass(frozen=True)
class Group:
    id: int
    sale_id: int
    size: int
    state: GroupState
    members: tuple[str, ...]
    closes_at_ms: int
    starter: str

    @property
    def places_left(self) -> int:
        if self.state is not GroupState.FORMING:
            return 0
        return max(self.size - len(self.members), 0)

    def view(self, viewer: str | None = None) -> dict[str, Any]:
        """What anyone may see (members as a count: never who they are); `joined` when
        `viewer` is one of them."""
        shown = GroupState.FORMING if self.state is GroupState.FILLING else self.state
        view: dict[str, Any] = {
            "id": self.id,
            "sale_id": self.sale_id,
            "size": self.size,
            "members": len(self.members),
            "places_left": self.places_left,
            "closes_at": self.closes_at_ms,
            "state": shown.value,
        }
        if viewer is not None:
            view["joined"] = viewer in self.members
        return view


def count(name: str, value: object, low: int, high: int) -> int:
    """An integer in [low, high] (never a bool, float or text), else Invalid."""
    if isinstance(value, bool) or not isinstance(value, int):
        raise invalid(f"{name} must be an integer")
    if not low <= value <= high:
        raise invalid(f"{name} must be between {low} and {high}")
    return value


def identifier(name: str, value: object) -> int:
    """An id from a path or a message: a positive integer, or its digits as text."""
    if isinstance(value, str) and value.isascii() and value.isdigit() and len(value) <= 15:
        value = int(value)
    return count(name, value, 1, MAX_ID)


@dataclass(frozen=True)
class DealConfig:
    price_cents: int
    group_price_cents: int
    stock: int
    limit_per_buyer: int
    group_size: int
    window_ms: int


def deal_config(
    *,
    price_cents: object,
    group_price_cents: object,
    stock: object,
    limit_per_buyer: object,
    group_size: object,
    group_window_s: object,
) -> DealConfig:
    """The settings of a new group deal, checked (Invalid with the first that is wrong)."""
    price = count("price_cents", price_cents, 0, MAX_PRICE_CENTS)
    group_price = count("group_price_cents", group_price_cents, 0, MAX_PRICE_CENTS)
    items = count("stock", stock, 1, MAX_STOCK)
    limit = count("limit_per_buyer", limit_per_buyer, 1, MAX_LIMIT)
    size = count("group_size", group_size, MIN_GROUP_SIZE, MAX_GROUP_SIZE)
    window = count("group_window_s", group_window_s, MIN_WINDOW_S, MAX_WINDOW_S)
    if group_price > price:
        raise invalid("group_price_cents cannot exceed price_cents")
    if limit > items:
        raise invalid("limit_per_buyer cannot exceed stock")
    if size > items:
        raise invalid("group_size cannot exceed stock")
    return DealConfig(price, group_price, items, limit, size, window * 1000)


def hold_id(group_id: int, buyer: str) -> str:
    """A member's hold, as orders.reservation_id and hold_outcomes know it."""
    return f"group-{group_id}-{buyer}"


def ms(moment: datetime | None) -> int:
    return 0 if moment is None else int(moment.timestamp() * 1000)
