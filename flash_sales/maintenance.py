"""The background work that keeps Redis in line with PostgreSQL, run in every process (each
step is idempotent and safe to run anywhere at once)."""

from __future__ import annotations

import logging

from flash_sales import metrics
from flash_sales.announcements import SaleAnnouncer
from flash_sales.lifecycle import SaleLifecycle
from flash_sales.model import Outcome, Sale, SaleState, sale_id_of
from flash_sales.repair import PoolRepair
from flash_sales.store import SaleStore
from inventory_lock import InventoryLock
from rooms.errors import STORAGE_ERRORS

log = logging.getLogger("live.flash_sales")

RECENTLY_ENDED_S = 3600  # ended sales whose pools are kept on the sweepers' list


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
        await self.lock.register([sale.pool for sale in sales] + kept)
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
            return  # a repair is running (in some process); its lease covers its death
        elif sale.sold > snap.confirmed + snap.confirming:
            log.error(
                "sale %s: Redis is behind PostgreSQL (sold %d, confirmed %d + confirming %d)",
                sale.id,
                sale.sold,
                snap.confirmed,
                snap.confirming,
            )
            await self.repair.repair(sale, "behind")
        elif sale.state is SaleState.OPEN and snap.remaining <= 0:
            await self.lifecycle.sold_out(sale.id)  # a reserve elsewhere raced an expiry
        elif sale.state is SaleState.SOLD_OUT and snap.remaining > 0:
            await self.lifecycle.reopen_if_stock(sale.id)

    async def sweep_expired(self) -> None:
        for result in await self.lock.expire_due_all():
            sale_id = sale_id_of(result.pool)
            if result.holds and sale_id is not None:
                self.announcer.stock_changed(sale_id)
                await self.lifecycle.reopen_if_stock(sale_id)

    async def recover_confirms(self) -> None:
        """End each confirm stuck between Redis and PostgreSQL (its caller gave up or died) the
        way PostgreSQL decides: an order if one was written, else void, claimed so that no late
        write of that confirm can make one afterwards; then Redis follows."""
        now_ms = await self.lock.server_ms()  # the clock the holds were stamped with
        for pool in await self.lock.pools():
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
        for pool in await self.lock.pools():
            sale_id = sale_id_of(pool)
            if sale_id is None:
                continue
            snap = await self.lock.snapshot(pool)
            if snap is not None and (not snap.closed or snap.held or snap.confirming):
                continue
            sale = await self.store.get(sale_id)
            if sale is None or sale.state is SaleState.ENDED:
                await self.lock.drop(pool)  # also forgets a pool already gone
