"""The background work that keeps Redis in line with PostgreSQL, run in every process (each
step is idempotent and safe to run anywhere at once)."""

from __future__ import annotations

import logging

from flash_sales import metrics
from flash_sales.announcements import SaleAnnouncer
from flash_sales.lifecycle import SaleLifecycle
from flash_sales.model import MAX_HOLD_SECONDS, Outcome, Sale, SaleState, sale_id_of
from flash_sales.repair import PoolRepair
from flash_sales.store import SaleStore
from inventory_lock import InventoryLock
from rooms.errors import STORAGE_ERRORS

log = logging.getLogger("live.flash_sales")

# Ended sales whose pools the sweeps still walk: a hold taken just before the end expires
# within MAX_HOLD_SECONDS, and a stuck confirm is ended within seconds of that.
RECENTLY_ENDED_S = MAX_HOLD_SECONDS + 600


class SaleMaintenance:
    def __init__(
        self,
        store: SaleStore,
        lock: InventoryLock,
        lifecycle: SaleLifecycle,
        repair: PoolRepair,
        announcer: SaleAnnouncer,
        *,
        stuck_confirm_s: float,
    ) -> None:
        self.store = store
        self.lock = lock
        self.lifecycle = lifecycle
        self.repair = repair
        self.announcer = announcer
        self.stuck_confirm_ms = int(stuck_confirm_s * 1000)
        # The pools the sweeps walk, from PostgreSQL (live sales', and recently ended sales'
        # that Redis still has), as check_pools last read them. PostgreSQL's list, not a
        # registry key in Redis: on a cluster such a key lives on one shard, whose failover
        # would lose registrations and stop every shard's sweeps meanwhile.
        self.pools: list[str] = []

    async def check_pools(self) -> None:
        """Every live sale's pool against PostgreSQL: repaired when missing, stale (Redis
        restarted, was restored or failed over) or behind (fewer items confirmed or confirming
        than PostgreSQL sold); the sale's open / sold-out state kept in step with its stock.
        PostgreSQL is read first, so a confirm finishing meanwhile cannot look like a loss."""
        sales = await self.store.live()
        kept = []
        for ended in await self.store.recently_ended(RECENTLY_ENDED_S):
            snap = await self.lock.snapshot(ended.pool)
            if snap is None:
                continue
            kept.append(ended.pool)
            if not snap.closed:  # the end failed half way (or raced a start): finish it
                log.warning("sale %s: ended, but its pool was open; closed now", ended.id)
                await self.lifecycle.finish_end(ended)
        self.pools = [sale.pool for sale in sales] + kept
        live = {sale.id for sale in sales}
        for sale_id in [s for s in self.repair.unfinished if s not in live]:
            del self.repair.unfinished[sale_id]  # an ended sale needs no repair
        for sale in sales:
            try:
                await self._check(sale)
            except STORAGE_ERRORS as exc:
                log.warning("sale %s: pool check failed: %r", sale.id, exc)
            except Exception:
                log.exception("sale %s: pool check failed", sale.id)

    async def _check(self, sale: Sale) -> None:
        snap = await self.lock.snapshot(sale.pool)
        if snap is None:
            await self.repair.repair(sale, "missing")
        elif snap.stale:
            await self.repair.repair(sale, "stale")
        elif snap.fenced:
            # A repair is running (in some process; its lease covers its death), or this
            # process's own was interrupted and left its fence: that one is done again.
            if await self.repair.left_fenced(sale):
                await self.repair.repair(sale, "stale")
        elif sale.sold > snap.confirmed + snap.confirming:
            log.error(
                "sale %s: Redis is behind PostgreSQL (sold %d, confirmed %d + confirming %d)",
                sale.id,
                sale.sold,
                snap.confirmed,
                snap.confirming,
            )
            await self.repair.repair(sale, "behind")
        elif sale.stock != snap.stock and not snap.stock_changes_pending:
            await self._check_stock(sale, snap.stock)
        elif sale.state is SaleState.OPEN and snap.remaining <= 0:
            await self.lifecycle.sold_out(sale.id)  # a reserve elsewhere raced an expiry
        elif sale.state is SaleState.SOLD_OUT and snap.remaining > 0:
            await self.lifecycle.reopen_if_stock(sale.id)

    async def _check_stock(self, sale: Sale, redis_stock: int) -> None:
        """Repair a pool whose stock is not PostgreSQL's when no change is in flight. A change
        that completed between the two reads looks the same, so both are read again: Redis
        first, then PostgreSQL, then Redis; with no change pending and Redis's stock the same at
        both ends, PostgreSQL's stock read between them is the one Redis should have."""
        fresh = await self.store.get(sale.id)
        again = await self.lock.snapshot(sale.pool)
        if fresh is None or again is None or again.stock_changes_pending:
            return
        if again.stock == redis_stock and fresh.stock != redis_stock:
            log.error(
                "sale %s: Redis stock %d is not PostgreSQL's %d", sale.id, redis_stock, fresh.stock
            )
            await self.repair.repair(fresh, "stock")

    async def recover_stock_changes(self) -> None:
        """End each stock change stuck between Redis and PostgreSQL (see flash_sales/stock.py)
        as PostgreSQL decides, as `recover_confirms` does for confirms."""
        for pool in list(self.pools):
            sale_id = sale_id_of(pool)
            if sale_id is not None and await self.repair.settle_stock_changes(
                sale_id, stuck_ms=self.stuck_confirm_ms
            ):
                await self.lifecycle.reopen_if_stock(sale_id)

    async def sweep_expired(self) -> None:
        for result in await self.lock.expire_due_many(self.pools):
            sale_id = sale_id_of(result.pool)
            if result.holds and sale_id is not None:
                self.announcer.stock_changed(sale_id)
                await self.lifecycle.reopen_if_stock(sale_id)

    async def recover_confirms(self) -> None:
        """End each confirm stuck between Redis and PostgreSQL (its caller gave up or died) the
        way PostgreSQL decides: an order if one was written, else void, claimed so that no late
        write of that confirm can make one afterwards; then Redis follows."""
        now_ms = await self.lock.server_ms()  # the clock the holds were stamped with
        for pool in list(self.pools):
            sale_id = sale_id_of(pool)
            if sale_id is None:
                continue
            for hold in await self.lock.confirming_holds(pool):
                if now_ms - hold.updated_at_ms < self.stuck_confirm_ms:
                    continue
                outcome = await self.store.decide_void(hold.id, sale_id)
                order = await self.store.order(hold.id) if outcome is Outcome.ORDER else None
                if order is not None:
                    sale = await self.lifecycle.fixed(sale_id)
                    await self.repair.confirmed(sale, order)
                else:
                    await self.lock.abort_confirm(hold.id, release=True)
                    metrics.VOIDED_CONFIRMS.inc()
                    self.announcer.stock_changed(sale_id)
                    await self.lifecycle.reopen_if_stock(sale_id)
                log.warning("recovered a stuck confirm of %s: %s", hold.id, outcome.value)

    async def drop_finished_pools(self) -> None:
        """A pool whose sale has ended and that has no hold in flight is only memory (and work
        for every sweeper): drop it, and forget pools of ended sales that are gone already.
        Orders stay in PostgreSQL; a retried confirm finds them."""
        for pool in list(self.pools):
            sale_id = sale_id_of(pool)
            if sale_id is None:
                continue
            snap = await self.lock.snapshot(pool)
            if snap is not None and (
                not snap.closed or snap.held or snap.offered or snap.confirming
            ):
                continue
            sale = await self.store.get(sale_id)
            if sale is None or sale.state is SaleState.ENDED:
                await self.lock.drop(pool)  # also forgets a pool already gone
