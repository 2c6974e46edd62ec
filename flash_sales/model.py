"""Sales and orders as plain values, and the lifecycle rules, without I/O.

States: scheduled -> open -> sold_out <-> open -> ended (sold out reopens when holds come back).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum
from typing import Any


class SaleState(StrEnum):
    SCHEDULED = "scheduled"
    OPEN = "open"
    SOLD_OUT = "sold_out"
    ENDED = "ended"


LIVE_STATES = (SaleState.OPEN, SaleState.SOLD_OUT)


class Outcome(StrEnum):
    """How a hold that reached PostgreSQL ended: exactly one of the two, decided there."""

    ORDER = "order"
    VOID = "void"  # rolled back (a stalled confirm swept up) or cancelled by its buyer


MAX_STOCK = 1_000_000
MAX_PRICE_CENTS = 100_000_000
MAX_HOLD_SECONDS = 3600
MAX_LIMIT = 1000


@dataclass(frozen=True)
class Sale:
    id: int
    room: str
    product_id: int
    price_cents: int
    stock: int
    sold: int
    limit_per_buyer: int
    hold_seconds: int
    state: SaleState
    starts_at: datetime | None
    ends_at: datetime | None
    kind: str = "flash"  # or "group": a group deal (flash_sales/group_deals), sold by its groups

    @property
    def pool(self) -> str:
        """The inventory_lock pool of this sale."""
        return str(self.id)

    def view(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "kind": self.kind,
            "room": self.room,
            "product_id": self.product_id,
            "price_cents": self.price_cents,
            "stock": self.stock,
            "limit_per_buyer": self.limit_per_buyer,
            "hold_seconds": self.hold_seconds,
            "state": self.state.value,
            "starts_at": _ms(self.starts_at),
            "ends_at": _ms(self.ends_at),
        }


@dataclass(frozen=True)
class Order:
    id: int
    reservation_id: str
    sale_id: int | None  # None: an auction's order (orders.auction_id)
    buyer: str
    qty: int
    price_cents: int
    total_cents: int
    payment_ref: str
    created_at: datetime

    def view(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "reservation_id": self.reservation_id,
            "sale_id": self.sale_id,
            "buyer": self.buyer,
            "qty": self.qty,
            "price_cents": self.price_cents,
            "total_cents": self.total_cents,
            "payment_ref": self.payment_ref,
            "created_at": _ms(self.created_at),
        }


@dataclass(frozen=True)
class OrderRequest:
    """One confirm as the order writer sees it."""

    reservation_id: str
    sale_id: int
    buyer: str
    qty: int
    price_cents: int
    limit_per_buyer: int
    payment_ref: str


def sale_id_of(pool: str) -> int | None:
    """The sale whose pool this is (the inverse of `Sale.pool`), None for another pool."""
    if pool.isascii() and pool.isdigit() and len(pool) <= 18:
        return int(pool)
    return None


def due_transition(sale: Sale, now: datetime) -> SaleState | None:
    """Where the scheduler should move a sale at `now`, if anywhere."""
    if sale.state in LIVE_STATES and sale.ends_at is not None and sale.ends_at <= now:
        return SaleState.ENDED
    if sale.state is SaleState.SCHEDULED:
        if sale.ends_at is not None and sale.ends_at <= now:
            return SaleState.ENDED
        if sale.starts_at is not None and sale.starts_at <= now:
            return SaleState.OPEN
    return None


def _ms(moment: datetime | None) -> int | None:
    return None if moment is None else int(moment.timestamp() * 1000)
