"""Orders into PostgreSQL: group commit, one lane per sale, each hold's outcome decided there.

Confirms of one sale that arrive while its previous batch is being written go together in the
next: one statement per batch (at most one in flight per sale, so a sale whose row is locked
holds up only its own buyers). The statement, all or nothing:
- claims each hold's outcome (`hold_outcomes`, keyed by reservation id) as an order; a hold
  already decided, an order by an earlier confirm or voided by the recovery sweep or a cancel,
  gets no second row, so a late confirm can never add an order to a hold that was rolled back;
- inserts the orders (each with the buyer's referrer in the room, if a share link brought
  them: flash_sales/referrals.py), adds them to `sales.sold` (CHECK sold <= stock) and to each
  buyer's `sale_buyers.bought` (CHECK bought <= the sale's limit): PostgreSQL's own guards,
  which hold even when Redis forgot what it sold;
- writes the batch's `order.created` events into the outbox (flash_sales/outbox.py): one entry
  listing its orders, numbered in the same UPDATE of the sale's row. Nothing outside is called,
  so a receiver that is slow or down never slows a confirm.
A guard that fails rolls the batch back; its orders are then written one by one, so only the
order that would oversell or pass the limit is refused. The answer for a hold already decided
is read afterwards, and an earlier order counts only if it is this buyer's, sale's and quantity.
"""

from __future__ import annotations

import asyncio
import logging
from collections import deque
from dataclasses import dataclass, field
from typing import Literal

import asyncpg

from flash_sales.model import Order, OrderRequest, Outcome
from flash_sales.outbox import ORDER_CREATED
from flash_sales.referrals import referrer_sql
from flash_sales.store import ORDER_COLUMNS, ORDER_FIELDS, order_of

log = logging.getLogger("live.flash_sales")

DEFAULT_MAX_BATCH = 256
DEFAULT_MAX_PENDING = 10_000
# The buyer's referrer in the sale's room (share links, flash_sales/referrals.py).
_REFERRER = referrer_sql("(SELECT room_id FROM sales WHERE id = $5)", "i.buyer_id")


def place_statement(outbox: bool) -> str:
    """The group-commit statement; with `outbox`, one outbox entry with an `order.created` event
    per order placed (in order id order), numbered from the sale's event counter in the same
    UPDATE of the sale's row (see flash_sales/outbox.py). Without it (bench/confirm.py's
    baseline) the statement of issue 12."""
    counter = ", event_seq = event_seq + (SELECT count(*) FROM placed)" if outbox else ""
    announced = (
        f"""
), announced AS (
    INSERT INTO outbox (sale_id, seq, type, order_ids)
    SELECT $5, min(s.event_seq) - count(*) + 1, '{ORDER_CREATED}', array_agg(p.id ORDER BY p.id)
    FROM placed p, sold s HAVING count(*) > 0"""
        if outbox
        else ""
    )
    return f"""
WITH input AS (
    SELECT * FROM unnest($1::text[], $2::text[], $3::int[], $4::text[])
        AS i (reservation_id, buyer_id, qty, payment_ref)
), decided AS (
    INSERT INTO hold_outcomes (reservation_id, sale_id, outcome)
    SELECT reservation_id, $5::bigint, 'order' FROM input
    ON CONFLICT (reservation_id) DO NOTHING
    RETURNING reservation_id
), placed AS (
    INSERT INTO orders (reservation_id, sale_id, buyer_id, qty, price_cents, total_cents,
                        payment_ref, referrer_id)
    SELECT i.reservation_id, $5, i.buyer_id, i.qty, $6::int, i.qty::bigint * $6::int,
           i.payment_ref, {_REFERRER}
    FROM input i JOIN decided USING (reservation_id)
    ON CONFLICT (reservation_id) DO NOTHING  -- written by a release without hold_outcomes
    RETURNING {ORDER_COLUMNS}
), sold AS (
    UPDATE sales SET sold = sold + (SELECT sum(qty) FROM placed){counter}
    WHERE id = $5 AND EXISTS (SELECT 1 FROM placed)
    RETURNING id, event_seq
), bought AS (
    -- After `sold` (it reads it): every batch of a sale locks the sale's row before any buyer's.
    INSERT INTO sale_buyers (sale_id, buyer_id, bought, max_per_buyer)
    SELECT $5, buyer_id, sum(qty), $7::int FROM placed WHERE EXISTS (SELECT 1 FROM sold)
    GROUP BY buyer_id
    ON CONFLICT (sale_id, buyer_id) DO UPDATE SET bought = sale_buyers.bought + EXCLUDED.bought
    RETURNING buyer_id{announced}
)
SELECT {ORDER_COLUMNS} FROM placed
"""


_DECIDED = f"""
SELECT h.reservation_id AS decided, h.outcome, {", ".join(f"o.{c}" for c in ORDER_FIELDS)}
FROM hold_outcomes h LEFT JOIN orders o ON o.reservation_id = h.reservation_id
WHERE h.reservation_id = ANY($1::text[])
"""

# The guards, by constraint name (migrations 0001 and 0002), and what a refusal says.
_GUARDS: dict[str, Literal["sold_out", "limit"]] = {
    "sales_never_oversold": "sold_out",
    "sale_buyers_within_limit": "limit",
}


@dataclass(frozen=True)
class Refused:
    """A guard of PostgreSQL refused the order: it would oversell, or pass the buyer's limit."""

    reason: Literal["sold_out", "limit"]


@dataclass(frozen=True)
class Voided:
    """The hold was voided before this confirm reached PostgreSQL (swept up, or cancelled)."""


@dataclass(frozen=True)
class Mismatch:
    """An order exists under this reservation id, but not this buyer's, sale's and quantity."""

    order: Order


WriteResult = Order | Refused | Voided | Mismatch


class WriterFull(Exception):
    """Too many confirms already wait for this sale in this process; retry later."""


@dataclass
class _Lane:
    """One sale's waiting confirms and the task that writes them, a batch at a time."""

    waiting: deque[tuple[OrderRequest, asyncio.Future[WriteResult]]] = field(default_factory=deque)
    sender: asyncio.Task[None] | None = None


class OrderWriter:
    def __init__(
        self,
        pg: asyncpg.Pool,
        *,
        max_batch: int = DEFAULT_MAX_BATCH,
        max_pending: int = DEFAULT_MAX_PENDING,
        timeout_s: float = 5.0,
        outbox: bool = True,
    ) -> None:
        """`outbox`: write the `order.created` events with the orders (off only to measure
        what they cost)."""
        self.pg = pg
        self._place = place_statement(outbox)
        self.max_batch = max_batch
        self.max_pending = max_pending
        self.timeout_s = timeout_s
        self._lanes: dict[int, _Lane] = {}
        self._stopped = False
        self.batches = 0

    async def write(self, request: OrderRequest) -> WriteResult:
        """The order (new, or the one an earlier confirm of this hold made), or why there is
        none. Raises on a database failure or after `2 * timeout_s`: then the order may or may
        not exist, and a retry (or the recovery sweep) finds out which."""
        if self._stopped:
            raise ConnectionError("the service is stopping")
        lane = self._lanes.get(request.sale_id)
        if lane is None:
            lane = self._lanes[request.sale_id] = _Lane()
        if len(lane.waiting) >= self.max_pending:
            raise WriterFull(f"too many confirms waiting for sale {request.sale_id}")
        future: asyncio.Future[WriteResult] = asyncio.get_running_loop().create_future()
        lane.waiting.append((request, future))
        if lane.sender is None or lane.sender.done():
            lane.sender = asyncio.create_task(
                self._send_all(request.sale_id, lane), name=f"orders-{request.sale_id}"
            )
        try:
            return await asyncio.wait_for(asyncio.shield(future), self.timeout_s * 2)
        except BaseException:
            future.cancel()  # not sent yet: it never will be; in flight: its answer is dropped
            raise

    async def stop(self) -> None:
        """Take no more confirms (`write` raises ConnectionError, a storage error: retry
        elsewhere) and wait until each sale's sender has written what already waits, so every
        confirm in hand gets its answer. The caller bounds the wait; a batch stuck on
        PostgreSQL then ends when the pool is closed."""
        self._stopped = True
        senders = [lane.sender for lane in self._lanes.values() if lane.sender is not None]
        if senders:
            await asyncio.wait(senders)

    async def _send_all(self, sale_id: int, lane: _Lane) -> None:
        try:
            while lane.waiting:
                batch: list[tuple[OrderRequest, asyncio.Future[WriteResult]]] = []
                while lane.waiting and len(batch) < self.max_batch:
                    waiter = lane.waiting.popleft()
                    if not waiter[1].done():  # a caller who gave up is not written
                        batch.append(waiter)
                if batch:
                    await self._commit(batch)
        finally:
            if self._lanes.get(sale_id) is lane and not lane.waiting:
                del self._lanes[sale_id]

    async def _commit(self, batch: list[tuple[OrderRequest, asyncio.Future[WriteResult]]]) -> None:
        try:
            results = await self._write([request for request, _ in batch])
        except (asyncpg.CheckViolationError, asyncpg.DataError) as exc:
            if len(batch) == 1:
                _settle(batch[0][1], exc)
                return
            for waiter in batch:  # only the order that breaks a guard is refused
                if not waiter[1].done():  # a caller who gave up meanwhile is not written
                    await self._commit([waiter])
            return
        except Exception as exc:
            for _, future in batch:
                _settle(future, exc)
            return
        self.batches += 1
        for (_, future), result in zip(batch, results, strict=True):
            if not future.done():
                future.set_result(result)

    async def _write(self, requests: list[OrderRequest]) -> list[WriteResult]:
        first = requests[0]
        # Each hold once (two confirms of one hold may share a batch), in reservation id order:
        # two processes writing the same holds then claim them in the same order.
        unique = {r.reservation_id: r for r in reversed(requests)}
        ordered = [unique[rid] for rid in sorted(unique)]
        async with asyncio.timeout(self.timeout_s), self.pg.acquire() as conn:
            rows = await conn.fetch(
                self._place,
                [r.reservation_id for r in ordered],
                [r.buyer for r in ordered],
                [r.qty for r in ordered],
                [r.payment_ref for r in ordered],
                first.sale_id,
                first.price_cents,
                first.limit_per_buyer,
            )
            placed: dict[str, WriteResult] = {r["reservation_id"]: order_of(r) for r in rows}
            rest = [rid for rid in unique if rid not in placed]
            if rest:  # decided before this statement, or by one that committed during it
                for row in await conn.fetch(_DECIDED, rest):
                    placed[row["decided"]] = _decided(row)
        missing = [rid for rid in unique if rid not in placed]
        if missing:
            raise RuntimeError(f"no outcome recorded for {missing}")
        return [_checked(placed[r.reservation_id], r) for r in requests]


def _decided(row: asyncpg.Record) -> WriteResult:
    if Outcome(row["outcome"]) is Outcome.VOID:
        return Voided()
    return order_of(row)


def _checked(result: WriteResult, request: OrderRequest) -> WriteResult:
    """An order answers this confirm only if it is of this buyer, sale and quantity."""
    if isinstance(result, Order) and (result.buyer, result.sale_id, result.qty) != (
        request.buyer,
        request.sale_id,
        request.qty,
    ):
        return Mismatch(result)
    return result


def _settle(future: asyncio.Future[WriteResult], exc: Exception) -> None:
    """One order's failure: a guard's refusal is an answer, anything else the caller's error."""
    if future.done():
        return
    constraint = getattr(exc, "constraint_name", None)
    if isinstance(exc, asyncpg.CheckViolationError) and constraint in _GUARDS:
        future.set_result(Refused(_GUARDS[constraint]))
    else:
        future.set_exception(exc)
