"""Sales as PostgreSQL rows: their columns, the values made of them, when one is due to move,
and the insert of a new one, shared by the stores of flash sales (store.py) and group deals
(group_deals/store.py)."""

from __future__ import annotations

from datetime import datetime
from typing import TypedDict

import asyncpg

from flash_sales import outbox
from flash_sales.model import Sale, SaleState

SALE_COLUMNS = (
    "id, room_id, product_id, price_cents, stock, sold, limit_per_buyer, hold_seconds, state, "
    "starts_at, ends_at, kind"
)

# When a sale of `sales s` may have to move: a scheduled one at its start or end, a live one at
# its end.
DUE = """(s.state = 'scheduled' AND (s.starts_at <= now() OR s.ends_at <= now()))
         OR (s.state IN ('open', 'sold_out') AND s.ends_at <= now())"""


class SaleFields(TypedDict):
    """The fields a flash sale (Sale) and a group deal (GroupDeal) read alike from `sales`."""

    room: str
    product_id: int
    price_cents: int
    stock: int
    sold: int
    limit_per_buyer: int
    state: SaleState


def sale_fields(row: asyncpg.Record) -> SaleFields:
    return SaleFields(
        room=row["room_id"],
        product_id=row["product_id"],
        price_cents=row["price_cents"],
        stock=row["stock"],
        sold=row["sold"],
        limit_per_buyer=row["limit_per_buyer"],
        state=SaleState(row["state"]),
    )


def sale_of(row: asyncpg.Record) -> Sale:
    return Sale(
        id=row["id"],
        hold_seconds=row["hold_seconds"],
        starts_at=row["starts_at"],
        ends_at=row["ends_at"],
        kind=row["kind"],
        **sale_fields(row),
    )


async def insert_sale(
    conn: outbox.Conn | asyncpg.Pool,
    room: str,
    product_id: int,
    price_cents: int,
    stock: int,
    limit_per_buyer: int,
    hold_seconds: int,
    starts_at: datetime | None,
    ends_at: datetime | None,
    kind: str = "flash",
) -> asyncpg.Record | None:
    """The new sale's row, or None when the product is not in the room."""
    return await conn.fetchrow(
        f"""INSERT INTO sales (room_id, product_id, price_cents, stock, limit_per_buyer,
                               hold_seconds, starts_at, ends_at, kind)
            SELECT $1, p.id, $3, $4, $5, $6, $7, $8, $9 FROM products p
            WHERE p.id = $2 AND p.room_id = $1
            RETURNING {SALE_COLUMNS}""",
        room,
        product_id,
        price_cents,
        stock,
        limit_per_buyer,
        hold_seconds,
        starts_at,
        ends_at,
        kind,
    )
