"""Sales and orders in PostgreSQL, the system of record.

Every state change is a guarded UPDATE (`WHERE state = <from>`), so concurrent schedulers in
several processes move a sale once and exactly one of them learns it did.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Literal

import asyncpg

from flash_sales import outbox
from flash_sales.model import MAX_STOCK, Order, Outcome, Sale, SaleState
from flash_sales.sale_rows import DUE, SALE_COLUMNS, insert_sale, sale_of
from inventory_lock import OrderFact

FACTS_PAGE = 5000  # orders per query when a repair reads a sale's orders


class _Refused(Exception):
    """A stock change PostgreSQL refused: its transaction is rolled back."""


@dataclass(frozen=True)
class StockDecision:
    """How PostgreSQL decided a stock change: `applied` (with the sale's stock after it and
    what it has sold now), `void` (rolled back by a sweep or a repair), `refused` (the sale is
    not in a state that takes it, or it would go below what is sold or above the maximum), or
    `mismatch` (the request id was used with another delta)."""

    outcome: Literal["applied", "void", "refused", "mismatch"]
    stock: int = 0
    sold: int = 0


ORDER_FIELDS = (
    "id",
    "reservation_id",
    "sale_id",
    "buyer_id",
    "qty",
    "price_cents",
    "total_cents",
    "payment_ref",
    "created_at",
)
ORDER_COLUMNS = ", ".join(ORDER_FIELDS)


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
        self._fixed: dict[int, Sale] = {}

    async def sale(self, sale_id: int) -> Sale | None:
        """The sale as it is now; remembered for `fixed`."""
        sale = await self.get(sale_id)
        if sale is not None:
            self._fixed[sale.id] = sale
        return sale

    async def fixed(self, sale_id: int) -> Sale | None:
        """The sale with the fields that never change (room, product, price, limit, hold time)
        right, from memory when it was read before: its state, stock and sold may be old."""
        return self._fixed.get(sale_id) or await self.sale(sale_id)

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
        row = await insert_sale(
            self.pg,
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
        row = await self.pg.fetchrow(f"SELECT {SALE_COLUMNS} FROM sales WHERE id = $1", sale_id)
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
        """Move the sale if it is in one of `from_states`; None if another process did. The
        move's event (sale.started, sale.sold_out, sale.ended) goes into the outbox in the same
        transaction as the guarded UPDATE."""
        event, reopened = outbox.lifecycle_event(from_states, to)
        stamp = {SaleState.OPEN: "started_at", SaleState.ENDED: "ended_at"}.get(to)
        extra = f", {stamp} = coalesce({stamp}, now())" if stamp else ""
        async with self.pg.acquire() as conn, conn.transaction():
            row = await conn.fetchrow(
                f"""UPDATE sales SET state = $2, event_seq = event_seq + 1{extra}
                    WHERE id = $1 AND state = ANY($3::text[])
                    RETURNING {SALE_COLUMNS}, event_seq""",
                sale_id,
                to.value,
                [s.value for s in from_states],
            )
            if row is None:
                return None
            sale = sale_of(row)
            data = outbox.sale_data(sale)
            if reopened:
                data["reopened"] = True
            await outbox.add(conn, sale, row["event_seq"], event, data)
        return sale

    async def change_stock(
        self, sale_id: int, request_id: str, delta: int, states: tuple[SaleState, ...]
    ) -> StockDecision:
        """Apply a stock change once per request id, to a sale in one of `states`, never below
        what it sold nor above MAX_STOCK; with its `sale.stock_changed` event in the same
        transaction. What PostgreSQL decided, also for a request decided before."""
        try:
            async with self.pg.acquire() as conn, conn.transaction():
                return await self._change_stock(conn, sale_id, request_id, delta, states)
        except _Refused:
            return StockDecision("refused")

    async def _change_stock(
        self,
        conn: outbox.Conn,
        sale_id: int,
        request_id: str,
        delta: int,
        states: tuple[SaleState, ...],
    ) -> StockDecision:
        claimed = await conn.fetchval(
            "INSERT INTO stock_changes (sale_id, request_id, delta, outcome) "
            "VALUES ($1, $2, $3, 'applied') ON CONFLICT DO NOTHING RETURNING true",
            sale_id,
            request_id,
            delta,
        )
        if not claimed:
            return await self._stock_decided(conn, sale_id, request_id, delta)
        row = await conn.fetchrow(
            f"""UPDATE sales SET stock = stock + $2, event_seq = event_seq + 1
                WHERE id = $1 AND state = ANY($3::text[])
                  AND stock + $2 >= sold AND stock + $2 <= $4
                RETURNING {SALE_COLUMNS}, event_seq""",
            sale_id,
            delta,
            [s.value for s in states],
            MAX_STOCK,
        )
        if row is None:  # refused: nothing of this request stays
            raise _Refused
        sale = sale_of(row)
        await conn.execute(
            "UPDATE stock_changes SET stock_after = $3 WHERE sale_id = $1 AND request_id = $2",
            sale_id,
            request_id,
            sale.stock,
        )
        data = {"delta": delta, "stock": sale.stock, "sold": sale.sold}
        await outbox.add(conn, sale, row["event_seq"], outbox.STOCK_CHANGED, data)
        return StockDecision("applied", sale.stock, sale.sold)

    async def stock_decision(
        self, sale_id: int, request_id: str, delta: int
    ) -> StockDecision | None:
        """How PostgreSQL decided the change of this request id, None while it has not."""
        async with self.pg.acquire() as conn:
            return await self._stock_row(conn, sale_id, request_id, delta)

    async def decide_stock_void(self, sale_id: int, request_id: str, delta: int) -> StockDecision:
        """Void the change unless it applied already: the recovery sweep's and a repair's side
        of the race with the change's own call (see `change_stock`)."""
        async with self.pg.acquire() as conn:
            voided = await conn.fetchval(
                "INSERT INTO stock_changes (sale_id, request_id, delta, outcome) "
                "VALUES ($1, $2, $3, 'void') ON CONFLICT DO NOTHING RETURNING true",
                sale_id,
                request_id,
                delta,
            )
            if voided:
                return StockDecision("void")
            return await self._stock_decided(conn, sale_id, request_id, delta)

    async def _stock_decided(
        self, conn: outbox.Conn, sale_id: int, request_id: str, delta: int
    ) -> StockDecision:
        decided = await self._stock_row(conn, sale_id, request_id, delta)
        assert decided is not None  # the row that conflicted is committed: decisions stay
        return decided

    async def _stock_row(
        self, conn: outbox.Conn, sale_id: int, request_id: str, delta: int
    ) -> StockDecision | None:
        row = await conn.fetchrow(
            "SELECT s.delta, s.outcome, s.stock_after, sales.sold FROM stock_changes s "
            "JOIN sales ON sales.id = s.sale_id WHERE s.sale_id = $1 AND s.request_id = $2",
            sale_id,
            request_id,
        )
        if row is None:
            return None
        if row["delta"] != delta:
            return StockDecision("mismatch")
        return StockDecision(row["outcome"], row["stock_after"] or 0, row["sold"])

    async def due(self) -> list[Sale]:
        """Sales the scheduler may have to move now."""
        rows = await self.pg.fetch(
            f"SELECT {SALE_COLUMNS} FROM sales s WHERE s.kind = 'flash' AND ({DUE}) LIMIT 100"
        )
        return [sale_of(r) for r in rows]

    async def live(self) -> list[Sale]:
        rows = await self.pg.fetch(
            f"SELECT {SALE_COLUMNS} FROM sales "
            "WHERE kind = 'flash' AND state IN ('open', 'sold_out') LIMIT 1000"
        )
        return [sale_of(r) for r in rows]

    async def recently_ended(self, within_s: int) -> list[Sale]:
        """Sales ended in the last `within_s` seconds (their pools may still hold confirms)."""
        rows = await self.pg.fetch(
            f"SELECT {SALE_COLUMNS} FROM sales WHERE kind = 'flash' AND state = 'ended' "
            "AND ended_at > now() - make_interval(secs => $1) LIMIT 1000",
            within_s,
        )
        return [sale_of(r) for r in rows]

    async def order_facts(self, sale_id: int) -> AsyncIterator[list[OrderFact]]:
        """Every order of the sale, a page at a time, for a repair of its pool. Pages are read
        one after another; an order committed before the first page is in one of them."""
        after = 0
        while True:
            rows = await self.pg.fetch(
                "SELECT id, reservation_id, buyer_id, qty FROM orders "
                "WHERE sale_id = $1 AND id > $2 ORDER BY id LIMIT $3",
                sale_id,
                after,
                FACTS_PAGE,
            )
            if not rows:
                return
            yield [OrderFact(r["reservation_id"], r["buyer_id"], r["qty"]) for r in rows]
            after = rows[-1]["id"]

    async def decide_void(self, reservation_id: str, sale_id: int) -> Outcome:
        """Void the hold unless it is an order already: the recovery sweep's and a cancel's side
        of the race with a confirm (see migration 0002). The outcome that stands is returned."""
        decided = await self.pg.fetchval(
            "INSERT INTO hold_outcomes (reservation_id, sale_id, outcome) VALUES ($1, $2, 'void') "
            "ON CONFLICT (reservation_id) DO NOTHING RETURNING outcome",
            reservation_id,
            sale_id,
        )
        if decided is not None:
            return Outcome(decided)
        outcome = await self.outcome(reservation_id)
        assert outcome is not None  # the row that conflicted is committed: outcomes stay
        return outcome

    async def outcome(self, reservation_id: str) -> Outcome | None:
        value = await self.pg.fetchval(
            "SELECT outcome FROM hold_outcomes WHERE reservation_id = $1", reservation_id
        )
        return None if value is None else Outcome(value)

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

    async def buyers_over_limit(self, sale_id: int, limit: int) -> list[str]:
        rows = await self.pg.fetch(
            "SELECT buyer_id FROM orders WHERE sale_id = $1 GROUP BY buyer_id "
            "HAVING sum(qty) > $2 ORDER BY buyer_id LIMIT 100",
            sale_id,
            limit,
        )
        return [r["buyer_id"] for r in rows]

    async def ids_by_kind(self, sale_ids: list[int] | None = None) -> dict[str, list[int]]:
        """Every sale's id (or those named) by kind: `flash` and `group`. A named id that no
        sale has is listed as `flash`, whose check reports it unknown."""
        rows = await self.pg.fetch(
            "SELECT id, kind FROM sales WHERE $1::bigint[] IS NULL OR id = ANY($1) ORDER BY id",
            sale_ids,
        )
        kinds = {r["id"]: r["kind"] for r in rows}
        found: dict[str, list[int]] = {"flash": [], "group": []}
        for sale_id in sorted(set(kinds) | set(sale_ids or ())):
            found[kinds.get(sale_id, "flash")].append(sale_id)
        return found
