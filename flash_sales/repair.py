"""Repair of a sale's pool from PostgreSQL, the system of record, before it sells again.

Redis can lose a pool (flushed, evicted) or go back in time (a restart that lost the last
writes, a restored snapshot, a failover to a lagging replica). inventory_lock marks such a pool
`stale` (its Redis run id changed) and reserve refuses it. A repair:
1. fences the pool (created empty if missing) with a token of its own and a lease: nothing
   sells from here on, and only the last repair to fence may unfence;
2. ends every stock change the pool has pending the way PostgreSQL decides it (void unless it
   applied, so that none can apply later), then reads the sale and every order of it;
3. adopts each order as a confirmed hold (idempotent, whatever Redis had of it);
4. closes the pool if the sale is no longer live, then unfences it with the stock PostgreSQL
   has. No change can begin in Redis while the pool is fenced, but one begun before a Redis
   restart lost its record may still apply in PostgreSQL after step 2 read the stock: its call
   then finds no record to settle and repairs the pool again (flash_sales/stock.py `_settle`).
An order committed after step 2 started belongs to a confirm that finishes in Redis after step
1, so that confirm finds its hold missing or not confirming and adopts its order itself (see
`adopt`); a repair can therefore not miss a confirm committed during it. A buyer found above the
limit (orders made before PostgreSQL guarded it) is loaded as is, logged and counted.
"""

from __future__ import annotations

import asyncio
import logging
import secrets
from collections import Counter

from flash_sales import metrics
from flash_sales.announcements import SaleAnnouncer
from flash_sales.model import LIVE_STATES, Order, Sale
from flash_sales.store import SaleStore
from inventory_lock import Adopted, InventoryLock, OrderFact, PoolReason, StockState
from rooms.errors import STORAGE_ERRORS

log = logging.getLogger("live.flash_sales")

REPAIR_ATTEMPTS = 3
FENCE_LEASE_S = 60.0  # a repair not done by then is taken over (its process may be dead)
RETRY_PAUSE_S = 0.2  # before another attempt of an interrupted repair (times the attempt)


class PoolRepair:
    def __init__(self, store: SaleStore, lock: InventoryLock, announcer: SaleAnnouncer) -> None:
        self.store = store
        self.lock = lock
        self.announcer = announcer
        self._running: dict[int, asyncio.Task[bool]] = {}
        # sale -> the fence token of this process's last repair of it, when a failing store
        # interrupted that repair after it fenced the pool (see `left_fenced`)
        self.unfinished: dict[int, str] = {}

    async def repair(self, sale: Sale, reason: str, *, wait_s: float | None = None) -> bool:
        """Bring the pool up to PostgreSQL; True when it is whole again, False when it is not
        (yet: after `wait_s`, the repair goes on without this caller). Callers in this process
        share one repair per sale (others may run one at once: every step is idempotent)."""
        task = self._running.get(sale.id)
        if task is None or task.done():
            task = asyncio.create_task(self._repair(sale, reason), name=f"repair-{sale.id}")
            self._running[sale.id] = task
            task.add_done_callback(lambda _: self._forget(sale.id, task))
        try:
            return await asyncio.wait_for(asyncio.shield(task), wait_s)
        except TimeoutError:
            return False

    def _forget(self, sale_id: int, task: asyncio.Task[bool]) -> None:
        if self._running.get(sale_id) is task:
            del self._running[sale_id]
        if not task.cancelled() and task.exception() is not None:
            log.warning("sale %s: repair failed: %r", sale_id, task.exception())

    async def _repair(self, sale: Sale, reason: str) -> bool:
        """Up to REPAIR_ATTEMPTS repairs, until one unfences the pool. One that a failing store
        (Redis restarting again, PostgreSQL briefly away) interrupts after it fenced the pool is
        tried again after a pause: nothing else would lift its fence before the lease ends.
        Should the last attempt be interrupted too, its token is kept in `unfinished` for the
        maintenance sweep, which repairs again while the pool still bears that fence (and never
        takes over a fence another repair set since)."""
        self.unfinished.pop(sale.id, None)
        for attempt in range(REPAIR_ATTEMPTS):
            token = secrets.token_hex(8)
            try:
                if await self._repair_once(sale, reason, token):
                    return True
            except STORAGE_ERRORS as exc:
                if attempt == REPAIR_ATTEMPTS - 1:
                    self.unfinished[sale.id] = token
                    raise
                log.warning("sale %s: repair interrupted, trying again: %r", sale.id, exc)
                await asyncio.sleep(RETRY_PAUSE_S * (attempt + 1))
            reason = "stale"  # Redis restarted during the repair: what it wrote may be lost
        return False

    async def left_fenced(self, sale: Sale) -> bool:
        """Whether this process's last repair of the sale was interrupted and its fence is
        still on the pool; forgets the repair otherwise."""
        token = self.unfinished.get(sale.id)
        if token is not None and await self.lock.fenced_by(sale.pool, token):
            return True
        self.unfinished.pop(sale.id, None)
        return False

    async def _repair_once(self, sale: Sale, reason: str, token: str) -> bool:
        fenced = await self.lock.fence(
            sale.pool, sale.stock, sale.limit_per_buyer, sale.hold_seconds, token, FENCE_LEASE_S
        )
        if not fenced.ok:
            log.error("sale %s: cannot fence its pool for a repair: %s", sale.id, fenced.reason)
            return False
        await self.settle_stock_changes(sale.id, stuck_ms=0)
        now = await self.store.get(sale.id)
        if now is None:
            return False
        bought: Counter[str] = Counter()
        adopted = found = 0
        async for facts in self.store.order_facts(sale.id):
            result = await self.lock.adopt(sale.pool, facts)
            if not isinstance(result, Adopted):
                log.error("sale %s: repair could not adopt orders: %s", sale.id, result.reason)
                return False
            adopted += result.holds
            found += len(facts)
            for fact in facts:
                bought[fact.buyer] += fact.qty
        over = sorted(buyer for buyer, qty in bought.items() if qty > sale.limit_per_buyer)
        if over:
            metrics.BUYERS_OVER_LIMIT.inc(len(over))
            log.error(
                "sale %s: %d buyers above the limit of %d, loaded as they are: %s",
                sale.id,
                len(over),
                sale.limit_per_buyer,
                over[:10],
            )
        if now.state not in LIVE_STATES:
            await self.lock.close(sale.pool)
        done = await self.lock.unfence(sale.pool, token, now.stock)
        if fenced.reason is PoolReason.CREATED:
            reason = "missing"
        metrics.POOL_REPAIRS.labels(reason).inc()
        metrics.ADOPTED_ORDERS.inc(adopted)
        log.warning(
            "sale %s: pool repaired from PostgreSQL (%s): %d orders, %d of them adopted%s",
            sale.id,
            reason,
            found,
            adopted,
            "" if done.ok else "; fenced again meanwhile (Redis restarted, or another repair)",
        )
        self.announcer.stock_changed(sale.id)
        return done.ok

    async def settle_stock_changes(self, sale_id: int, *, stuck_ms: int) -> int:
        """End each stock change pending in the pool for at least `stuck_ms` (its caller gave
        up or died) the way PostgreSQL decides: applied if it was, else claimed as void so that
        it never applies later; then Redis follows. How many were ended. The pool's count of
        pending changes is read first: the changes themselves (every one the sale had, until
        its pool is dropped) are read only when some are pending."""
        pool = str(sale_id)
        snap = await self.lock.snapshot(pool)
        if snap is None or not snap.stock_changes_pending:
            return 0
        pending = [
            change
            for change in await self.lock.stock_changes(pool)
            if change.state is StockState.PENDING
        ]
        now_ms = await self.lock.server_ms() if pending else 0
        ended = 0
        for change in pending:
            if now_ms - change.updated_at_ms < stuck_ms:
                continue
            decided = await self.store.decide_stock_void(sale_id, change.request_id, change.delta)
            applied = decided.outcome == "applied"
            await self.lock.settle_stock(pool, change.request_id, applied)
            log.warning(
                "sale %s: stock change %s (%+d) ended as %s",
                sale_id,
                change.request_id,
                change.delta,
                "applied" if applied else "void",
            )
            ended += 1
        if ended:
            self.announcer.stock_changed(sale_id)
        return ended

    async def confirmed(self, sale: Sale, order: Order) -> None:
        """Tell Redis the hold of `order` is confirmed: confirming -> confirmed, or, when Redis
        had it otherwise (lost, taken back in time, expired meanwhile), adopt the order."""
        done = await self.lock.finish_confirm(order.reservation_id)
        if not done.ok:
            await self.adopt(sale, order)

    async def adopt(self, sale: Sale, order: Order) -> None:
        """A committed order whose hold Redis did not have as confirming (lost, rolled back, or
        rebuilt without it): record it, repairing the whole pool if the pool itself is gone."""
        fact = OrderFact(order.reservation_id, order.buyer, order.qty)
        result = await self.lock.adopt(sale.pool, [fact])
        if isinstance(result, Adopted):
            metrics.ADOPTED_ORDERS.inc(result.holds)
            log.warning("sale %s: order %s adopted into Redis", sale.id, order.reservation_id)
            self.announcer.stock_changed(sale.id)
        elif result.reason is PoolReason.UNKNOWN_POOL:
            now = await self.store.get(sale.id)
            if now is not None and now.state in LIVE_STATES:  # an ended sale needs no pool
                await self.repair(now, "missing")
        else:
            log.error("sale %s: cannot adopt order %s: %s", sale.id, order.id, result.reason)
