"""A sale's life: made scheduled, opened (its pool loaded into Redis), sold out and reopened as
stock goes and comes back, ended (its pool closed). Every move is a guarded UPDATE in
PostgreSQL, so of several processes exactly one makes it and announces it."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from flash_sales.announcements import SaleAnnouncer
from flash_sales.model import LIVE_STATES, Sale, SaleState, due_transition
from flash_sales.store import SaleStore
from inventory_lock import InventoryLock
from rooms.actors import Action, Actor, authorize
from rooms.errors import Conflict, invalid, not_found


class SaleLifecycle:
    def __init__(self, store: SaleStore, lock: InventoryLock, announcer: SaleAnnouncer) -> None:
        self.store = store
        self.lock = lock
        self.announcer = announcer

    async def create(
        self,
        room: str,
        actor: Actor,
        product_id: int,
        price_cents: int,
        stock: int,
        limit_per_buyer: int,
        hold_seconds: int,
        starts_at: datetime | None,
        ends_at: datetime | None,
    ) -> dict[str, Any]:
        authorize(actor, room, Action.MANAGE_SALES)
        if limit_per_buyer > stock:
            raise invalid("limit_per_buyer cannot exceed stock")
        if starts_at and ends_at and ends_at <= starts_at:
            raise invalid("ends_at must be after starts_at")
        sale = await self.store.create(
            room, product_id, price_cents, stock, limit_per_buyer, hold_seconds, starts_at, ends_at
        )
        if sale is None:
            raise not_found(f"no product {product_id} in room {room!r}")
        await self.announcer.sale_event(sale, "sale_scheduled")
        return await self._figures(sale)

    async def sale(self, sale_id: int) -> Sale:
        """The flash sale as PostgreSQL has it now; 404 for an unknown id."""
        return _flash(sale_id, await self.store.sale(sale_id))

    async def fixed(self, sale_id: int) -> Sale:
        """The flash sale's fixed fields, from memory when known (see SaleStore.fixed); 404."""
        return _flash(sale_id, await self.store.fixed(sale_id))

    async def start_now(self, sale_id: int, actor: Actor) -> dict[str, Any]:
        sale = await self.sale(sale_id)
        authorize(actor, sale.room, Action.MANAGE_SALES)
        if sale.state is SaleState.ENDED:
            raise Conflict("ended", "the sale has ended")
        moved = await self.store.move(sale.id, (SaleState.SCHEDULED,), SaleState.OPEN)
        if moved is not None:
            await self._open(moved)
        return await self._figures(await self.sale(sale.id))

    async def stop_now(self, sale_id: int, actor: Actor) -> dict[str, Any]:
        sale = await self.sale(sale_id)
        authorize(actor, sale.room, Action.MANAGE_SALES)
        moved = await self.store.move(sale.id, (SaleState.SCHEDULED, *LIVE_STATES), SaleState.ENDED)
        if moved is not None:
            await self._end(moved)
        else:
            await self.lock.close(sale.pool)  # idempotent: finishes a stop interrupted before
        return await self._figures(await self.sale(sale.id))

    async def figures(self, sale_id: int, actor: Actor) -> dict[str, Any]:
        """The sale's live figures, for its room's hosts and moderators."""
        sale = await self.sale(sale_id)
        authorize(actor, sale.room, Action.READ_FIGURES)
        return await self._figures(sale)

    async def _figures(self, sale: Sale) -> dict[str, Any]:
        snap = await self.lock.snapshot(sale.pool)
        figures = await self.store.figures(sale.id)
        return {
            **sale.view(),
            "remaining": max(snap.remaining, 0) if snap else sale.stock - sale.sold,
            "held": snap.held if snap else 0,
            "offered": snap.offered if snap else 0,  # held for waitlisted buyers
            "confirming": snap.confirming if snap else 0,
            "sold": sale.sold,
            "orders": figures["orders"],
            "revenue_cents": figures["revenue_cents"],
        }

    async def sold_out(self, sale_id: int) -> None:
        moved = await self.store.move(sale_id, (SaleState.OPEN,), SaleState.SOLD_OUT)
        if moved is not None:
            await self.announcer.sale_event(moved, "sold_out")

    async def reopen_if_stock(self, sale_id: int) -> None:
        snap = await self.lock.snapshot(str(sale_id))
        if snap is None or snap.remaining <= 0 or snap.closed:
            return
        moved = await self.store.move(sale_id, (SaleState.SOLD_OUT,), SaleState.OPEN)
        if moved is not None:
            await self.announcer.sale_event(moved, "sale_started", reopened=True)

    async def run_scheduler(self) -> None:
        """Open and end the sales whose times have come."""
        now = datetime.now().astimezone()
        for sale in await self.store.due():
            target = due_transition(sale, now)
            if target is SaleState.OPEN:
                moved = await self.store.move(sale.id, (SaleState.SCHEDULED,), SaleState.OPEN)
                if moved is not None:
                    await self._open(moved)
            elif target is SaleState.ENDED:
                moved = await self.store.move(
                    sale.id, (SaleState.SCHEDULED, *LIVE_STATES), SaleState.ENDED
                )
                if moved is not None:
                    await self._end(moved)

    async def _open(self, sale: Sale) -> None:
        # Nothing is sold before a sale opens. Should this process die before the load, the
        # missing pool of a live sale is made by a repair (see SaleMaintenance.check_pools).
        await self.lock.load(sale.pool, sale.stock, sale.limit_per_buyer, sale.hold_seconds)
        current = await self.store.get(sale.id)
        if current is None or current.state not in LIVE_STATES:
            await self.lock.close(sale.pool)  # a stop came between the move and the load
            return
        await self.announcer.sale_event(sale, "sale_started")

    async def _end(self, sale: Sale) -> None:
        await self.finish_end(sale)

    async def finish_end(self, sale: Sale) -> None:
        """Close the pool of an ended sale and tell its room; again after a failure between
        the move to ended and this (SaleMaintenance.check_pools finds such a pool)."""
        await self.lock.close(sale.pool)
        await self.announcer.sale_event(sale, "sale_ended")


def _flash(sale_id: int, sale: Sale | None) -> Sale:
    """Every flash path (reserve, confirm, cancel, stock, start, stop) loads its sale here, so
    none of them can act on a group deal, which has no inventory_lock pool to sell from."""
    if sale is None:
        raise not_found(f"no sale {sale_id}")
    if sale.kind != "flash":
        raise Conflict("group_deal", "a group deal sells through its groups")
    return sale
