"""Sales and orders in PostgreSQL, the system of record.

Every state change is a guarded UPDATE (`WHERE state = <from>`), so concurrent schedulers in
several processes move a sale once and exactly one of them learns it did.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

import asyncpg

from flash_sales.model import Order, Sale, SaleState

_SALE_COLUMNS = (
    "id, room_id, product_id, price_cents, stock, sold, limit_per_buyer, hold_seconds, state, "
    "starts_at, ends_at"
)
ORDER_COLUMNS = (
    "id, reservation_id, sale_id, buyer_id, qty, price_cents, total_cents, payment_ref, created_at"
)


def sale_of(row: asyncpg.Record) -> Sale:
    return Sale(
        id=row["id"],
        room=row["room_id"],
        product_id=row["product_id"],
        price_cents=row["price_cents"],
        stock=row["stock"],
        sold=row["sold"],
        limit_per_buyer=row["limit_per_buyer"],
        hold_seconds=row["hold_seconds"],
        state=SaleState(row["state"]),
        starts_at=row["starts_at"],
        ends_at=row["ends_at"],
    )


def order_of(row: asyncpg.Record) -> Order:
    return Order(
        id=row["id"],
        reservation_id=row["reservation_id"],
        sale_id=row["sale_id"],
        buyer=row["buyer_id"],
        qty=row["qty"],
        price_cents=row["price_cents"],
        total_cents=row["total_cents"],
        payment_ref=row["payment_ref"],
        created_at=row["created_at"],
    )


class SaleStore:
    def __init__(self, pg: asyncpg.Pool) -> None:
        self.pg = pg

    async def create(
        self,
        room: str,
        product_id: int,
        price_cents: int,
        stock: int,
        limit_per_buyer: int,
        hold_seconds: int,
        starts_at: datetime | None,
        ends_at: datetime | None,
    ) -> Sale | None:
        """The new sale, or None when the product is not in the room."""
        row = await self.pg.fetchrow(
            f"""INSERT INTO sales (room_id, product_id, price_cents, stock, limit_per_buyer,
                                   hold_seconds, starts_at, ends_at)
                SELECT $1, p.id, $3, $4, $5, $6, $7, $8 FROM products p
                WHERE p.id = $2 AND p.room_id = $1
                RETURNING {_SALE_COLUMNS}""",
            room,
            product_id,
            price_cents,
            stock,
            limit_per_buyer,
            hold_seconds,
            starts_at,
            ends_at,
        )
        return None if row is None else sale_of(row)

    async def get(self, sale_id: int) -> Sale | None:
        row = await self.pg.fetchrow(f"SELECT {_SALE_COLUMNS} FROM sales WHERE id = $1", sale_id)
        return None if row is None else sale_of(row)

    async def product(self, room: str, product_id: int) -> dict[str, Any] | None:
        row = await self.pg.fetchrow(
            "SELECT id, sku, title, price_cents, image_url FROM products "
            "WHERE id = $1 AND room_id = $2",
            product_id,
            room,
        )
        return None if row is None else dict(row)

    async def move(
        self, sale_id: int, from_states: tuple[SaleState, ...], to: SaleState
    ) -> Sale | None:
        """Move the sale if it is in one of `from_states`; None if another process did."""
        stamp = {SaleState.OPEN: "started_at", SaleState.ENDED: "ended_at"}.get(to)
        extra = f", {stamp} = coalesce({stamp}, now())" if stamp else ""
        row = await self.pg.fetchrow(
            f"""UPDATE sales SET state = $2{extra}
                WHERE id = $1 AND state = ANY($3::text[])
                RETURNING {_SALE_COLUMNS}""",
            sale_id,
            to.value,
            [s.value for s in from_states],
        )
        return None if row is None else sale_of(row)

    async def due(self) -> list[Sale]:
        """Sales the scheduler may have to move now."""
        rows = await self.pg.fetch(
            f"""SELECT {_SALE_COLUMNS} FROM sales
                WHERE (state = 'scheduled' AND (starts_at <= now() OR ends_at <= now()))
                   OR (state IN ('open', 'sold_out') AND ends_at <= now())
                LIMIT 100"""
        )
        return [sale_of(r) for r in rows]

    async def live(self) -> list[Sale]:
        rows = await self.pg.fetch(
            f"SELECT {_SALE_COLUMNS} FROM sales WHERE state IN ('open', 'sold_out') LIMIT 1000"
        )
        return [sale_of(r) for r in rows]

    async def confirmed_by_buyer(self, sale_id: int) -> dict[str, int]:
        rows = await self.pg.fetch(
            "SELECT buyer_id, sum(qty)::int AS qty FROM orders "
            "WHERE sale_id = $1 GROUP BY buyer_id",
            sale_id,
        )
        return {r["buyer_id"]: r["qty"] for r in rows}

    async def order(self, reservation_id: str) -> Order | None:
        row = await self.pg.fetchrow(
            f"SELECT {ORDER_COLUMNS} FROM orders WHERE reservation_id = $1", reservation_id
        )
        return None if row is None else order_of(row)

    async def figures(self, sale_id: int) -> dict[str, int]:
        row = await self.pg.fetchrow(
            """SELECT count(*)::int AS orders, coalesce(sum(qty), 0)::int AS items,
                      coalesce(sum(total_cents), 0)::bigint AS revenue
               FROM orders WHERE sale_id = $1""",
            sale_id,
        )
        assert row is not None
        return {"orders": row["orders"], "items": row["items"], "revenue_cents": row["revenue"]}

    async def all_ids(self) -> list[int]:
        return [r["id"] for r in await self.pg.fetch("SELECT id FROM sales ORDER BY id")]
