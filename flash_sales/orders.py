"""Group commit of orders: confirms that arrive within a few milliseconds share one transaction.

Per batch: one INSERT of every order (keyed by reservation id, so a retried confirm finds its
order instead of making a second), then one guarded `UPDATE sales SET sold = sold + n WHERE
sold + n <= stock` per sale. If a guard fails, the batch is rolled back and its orders are
written one by one, so each order stays all-or-nothing and only the one that would oversell is
refused. A hot sale row is then updated once per batch, not once per order.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections import defaultdict
from dataclasses import dataclass

import asyncpg

from flash_sales.model import Order, OrderRequest
from flash_sales.store import ORDER_COLUMNS, order_of

log = logging.getLogger("live.flash_sales")


@dataclass(frozen=True)
class Refused:
    """PostgreSQL's guard refused the order: it would have sold more than the stock."""

    reason: str = "sold_out"


WriteResult = Order | Refused


class _Oversold(Exception):
    pass


@dataclass
class _Pending:
    request: OrderRequest
    future: asyncio.Future[WriteResult]
    deadline: float  # loop time after which it is not written any more


class OrderWriter:
    def __init__(
        self,
        pg: asyncpg.Pool,
        *,
        window_s: float = 0.002,
        max_batch: int = 256,
        timeout_s: float = 5.0,
    ) -> None:
        self.pg = pg
        self.window_s = window_s
        self.max_batch = max_batch
        self.timeout_s = timeout_s
        self._queue: asyncio.Queue[_Pending] = asyncio.Queue(maxsize=10_000)
        self._task: asyncio.Task[None] | None = None
        self.batches = 0

    def start(self) -> None:
        self._task = asyncio.create_task(self._loop(), name="order-writer")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        while not self._queue.empty():
            future = self._queue.get_nowait().future
            if not future.done():
                future.set_exception(ConnectionError("the service is stopping"))

    async def write(self, request: OrderRequest) -> WriteResult:
        """The order (new, or the one a previous confirm of this reservation made), or Refused.
        Raises on a database failure; then nothing was written, or the order exists already."""
        loop = asyncio.get_running_loop()
        # Past its deadline a request is never written: once its caller has given up, the
        # recovery sweep may roll the hold back, and a late order must not appear after that.
        pending = _Pending(request, loop.create_future(), loop.time() + self.timeout_s * 2)
        async with asyncio.timeout(self.timeout_s):
            await self._queue.put(pending)
        return await asyncio.wait_for(asyncio.shield(pending.future), self.timeout_s * 2)

    @property
    def longest_wait_s(self) -> float:
        """How long after `write` was called an order may still be committed."""
        return self.timeout_s * 3

    async def _loop(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            batch = [await self._queue.get()]
            deadline = loop.time() + self.window_s
            while len(batch) < self.max_batch:
                remaining = deadline - loop.time()
                if remaining <= 0:
                    break
                try:
                    batch.append(await asyncio.wait_for(self._queue.get(), remaining))
                except TimeoutError:
                    break
            await self._commit(batch)

    async def _commit(self, batch: list[_Pending]) -> None:
        now = asyncio.get_running_loop().time()
        live = []
        for pending in batch:
            if pending.deadline <= now:
                pending.future.set_exception(TimeoutError("the order was not written in time"))
                pending.future.exception()  # its caller may have given up: nothing to log
            else:
                live.append(pending)
        if not live:
            return
        try:
            results = await self._write([p.request for p in live])
        except (_Oversold, asyncpg.DataError):
            # One order would oversell or carries data PostgreSQL refuses: write them one by
            # one, so only that order fails.
            await self._commit_each(live)
            return
        except Exception as exc:
            for pending in live:
                pending.future.set_exception(exc)
            return
        self.batches += 1
        for pending, result in zip(live, results, strict=True):
            pending.future.set_result(result)

    async def _commit_each(self, batch: list[_Pending]) -> None:
        for pending in batch:
            try:
                (result,) = await self._write([pending.request])
            except _Oversold:
                result = Refused()
            except Exception as exc:
                pending.future.set_exception(exc)
                continue
            self.batches += 1
            pending.future.set_result(result)

    async def _write(self, requests: list[OrderRequest]) -> list[WriteResult]:
        async with asyncio.timeout(self.timeout_s), self.pg.acquire() as conn:
            async with conn.transaction():
                rows = await conn.fetch(
                    f"""INSERT INTO orders (reservation_id, sale_id, buyer_id, qty, price_cents,
                                            total_cents, payment_ref)
                        SELECT * FROM unnest($1::text[], $2::bigint[], $3::text[], $4::int[],
                                             $5::int[], $6::bigint[], $7::text[])
                        ON CONFLICT (reservation_id) DO NOTHING
                        RETURNING {ORDER_COLUMNS}""",
                    [r.reservation_id for r in requests],
                    [r.sale_id for r in requests],
                    [r.buyer for r in requests],
                    [r.qty for r in requests],
                    [r.price_cents for r in requests],
                    [r.qty * r.price_cents for r in requests],
                    [r.payment_ref for r in requests],
                )
                orders = {row["reservation_id"]: order_of(row) for row in rows}
                added: dict[int, int] = defaultdict(int)
                for order in orders.values():
                    added[order.sale_id] += order.qty
                for sale_id, qty in sorted(added.items()):
                    sold = await conn.fetchval(
                        "UPDATE sales SET sold = sold + $2 WHERE id = $1 AND sold + $2 <= stock "
                        "RETURNING sold",
                        sale_id,
                        qty,
                    )
                    if sold is None:
                        raise _Oversold(sale_id)
                missing = [r.reservation_id for r in requests if r.reservation_id not in orders]
                if missing:
                    earlier = await conn.fetch(
                        f"SELECT {ORDER_COLUMNS} FROM orders WHERE reservation_id = ANY($1)",
                        missing,
                    )
                    orders.update({row["reservation_id"]: order_of(row) for row in earlier})
        return [orders[r.reservation_id] for r in requests]
