"""The outbox to the merchant's systems: events written in the same PostgreSQL transaction as
what they announce, never by a call to the outside world inside it (DESIGN.md, "the dual-write
problem"); flash_sales/webhooks/ delivers them afterwards.

Every event belongs to a sale and takes the sale's next event number (`sales.event_seq`) in the
UPDATE of the sale's row that its transaction makes anyway (an auction's, `auction.won`, its
auction's, `auctions.event_seq`: a stream of its own): the row's lock orders the numbers
as the transactions commit, without gaps, which is what lets the dispatcher deliver a sale's
events in order. A sale's moves and stock changes `add` one entry (one event) in their
transaction. Orders write theirs inside the group-commit statement (flash_sales/orders.py): one
entry per batch, listing its orders, whose `order.created` events take the batch's numbers in
turn; a row per order would cost each confirm a fifth of its throughput (bench/confirm.py).

An event as sent: `{"id": "evt_<32 hex>", "type", "created_at": epoch ms, "data"}`. Its id is
fixed when its entry is written (the entry's id, or for an order the entry's and the order's
made one: `order_event`), so every retry carries the same id for the receiver's dedup.
"""

from __future__ import annotations

import json
import uuid
from datetime import datetime
from typing import Any, TypeAlias

import asyncpg
from asyncpg.pool import PoolConnectionProxy

from flash_sales.model import Sale, SaleState

ORDER_CREATED = "order.created"
SALE_STARTED = "sale.started"
SALE_SOLD_OUT = "sale.sold_out"
SALE_ENDED = "sale.ended"
STOCK_CHANGED = "sale.stock_changed"
AUCTION_WON = "auction.won"  # an auction's order: its winner (or runner-up) confirmed
EVENT_TYPES = (ORDER_CREATED, SALE_STARTED, SALE_SOLD_OUT, SALE_ENDED, STOCK_CHANGED, AUCTION_WON)

Conn: TypeAlias = "asyncpg.Connection[asyncpg.Record] | PoolConnectionProxy[asyncpg.Record]"
_EVENT_PREFIX = "evt_"


async def add(conn: Conn, sale: Sale, seq: int, event_type: str, data: dict[str, Any]) -> None:
    """One event of `sale`, numbered `seq` (taken from the sale's row in this transaction)."""
    await conn.execute(
        "INSERT INTO outbox (sale_id, seq, type, data) VALUES ($1, $2, $3, $4::jsonb)",
        sale.id,
        seq,
        event_type,
        json.dumps({"sale_id": sale.id, "room": sale.room, **data}, separators=(",", ":")),
    )


async def add_auction_order(conn: Conn, auction_id: int, order_id: int) -> None:
    """`auction.won` of the auction's order, in the transaction that made it: numbered by the
    auction's row (`auctions.event_seq`), rendered with the order at fan-out as `order.created`
    is."""
    seq = await conn.fetchval(
        "UPDATE auctions SET event_seq = event_seq + 1 WHERE id = $1 RETURNING event_seq",
        auction_id,
    )
    await conn.execute(
        "INSERT INTO outbox (auction_id, seq, type, order_ids) VALUES ($1, $2, $3, $4)",
        auction_id,
        seq,
        AUCTION_WON,
        [order_id],
    )


def lifecycle_event(from_states: tuple[SaleState, ...], to: SaleState) -> tuple[str, bool]:
    """The event of a sale's move to `to`, and whether it is a sold-out sale opening again."""
    if to is SaleState.OPEN:
        return SALE_STARTED, from_states == (SaleState.SOLD_OUT,)
    if to is SaleState.SOLD_OUT:
        return SALE_SOLD_OUT, False
    if to is SaleState.ENDED:
        return SALE_ENDED, False
    raise ValueError(f"no event for a move to {to}")


def sale_data(sale: Sale) -> dict[str, Any]:
    """A sale as its lifecycle events carry it: its view and what it has sold."""
    return {"sale": {**sale.view(), "sold": sale.sold}}


def order_event(entry: uuid.UUID, order_id: int) -> uuid.UUID:
    """The id of the `order.created` event of order `order_id` in entry `entry` (random): the
    same whenever it is made again, and never another event's."""
    return uuid.uuid5(entry, str(order_id))


def event_id(event: uuid.UUID) -> str:
    return _EVENT_PREFIX + event.hex


def event_uuid(event: str) -> uuid.UUID | None:
    """The uuid of an event id (`evt_<32 hex>`), None when it is not one."""
    if not event.startswith(_EVENT_PREFIX) or len(event) != len(_EVENT_PREFIX) + 32:
        return None
    try:
        return uuid.UUID(hex=event[len(_EVENT_PREFIX) :])
    except ValueError:
        return None


def render(event: uuid.UUID, event_type: str, created_at: datetime, data: dict[str, Any]) -> str:
    """The event's body, exactly as every attempt sends it (and signs it)."""
    return json.dumps(
        {
            "id": event_id(event),
            "type": event_type,
            "created_at": int(created_at.timestamp() * 1000),
            "data": data,
        },
        separators=(",", ":"),
        ensure_ascii=False,
    )
