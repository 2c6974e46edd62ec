"""What a room's viewers learn about its sales: lifecycle events (critical: never dropped), the
stock left (state: conflated per sale, one per interval) and sampled purchases (lossy social
proof). Each event says its lane (and merge key) in its envelope; the sale and the stock left
are parts of the room's snapshot, kept in the room's live state with the events."""

from __future__ import annotations

import json
import logging
import time
from typing import Any

from flash_sales.model import Sale
from flash_sales.store import SaleStore
from inventory_lock import InventoryLock
from rooms.errors import STORAGE_ERRORS
from rooms.events import Lane
from rooms.log import RoomLog

log = logging.getLogger("live.flash_sales")

PURCHASE_INTERVAL_S = 0.5
SALE_PART = "sale"  # the room snapshot's last announced sale
STOCK_PART = "stock"  # and the last announced stock left (of any sale of the room)


class SaleAnnouncer:
    def __init__(self, store: SaleStore, lock: InventoryLock, room_log: RoomLog) -> None:
        self.store = store
        self.lock = lock
        self.log = room_log
        room_log.add_snapshot_part(SALE_PART)
        room_log.add_snapshot_part(STOCK_PART)
        self._dirty_stock: set[int] = set()
        self._last_purchase: dict[int, float] = {}

    async def sale_event(self, sale: Sale, event: str, **extra: Any) -> None:
        """A change of the sale's state; the room's snapshot keeps the sale as announced."""
        view = sale.view()
        view["product"] = await self.store.product(sale.room, sale.product_id)
        snap = await self.lock.snapshot(sale.pool)
        view["remaining"] = max(snap.remaining, 0) if snap else sale.stock - sale.sold
        await self.log.publish(
            sale.room,
            event,
            {"sale": view, **extra},
            lane=Lane.CRITICAL,
            state_op="set",
            state_field=SALE_PART,
            state_value=json.dumps(view),
        )

    def stock_changed(self, sale_id: int) -> None:
        """The next `announce_stock` tells the sale's room how much is left."""
        self._dirty_stock.add(sale_id)

    async def announce_stock(self) -> None:
        """Publish the latest stock of every sale that changed, conflated per interval."""
        dirty, self._dirty_stock = self._dirty_stock, set()
        for sale_id in dirty:
            try:
                await self._announce_stock(sale_id)
            except STORAGE_ERRORS as exc:
                self._dirty_stock.add(sale_id)  # told next interval
                log.warning("sale %s: stock not announced: %r", sale_id, exc)

    async def _announce_stock(self, sale_id: int) -> None:
        sale = await self.store.fixed(sale_id)
        snap = await self.lock.snapshot(str(sale_id))
        if sale is None or snap is None:
            return
        stock = {"sale_id": sale.id, "remaining": max(snap.remaining, 0), "stock": snap.stock}
        await self.log.publish(
            sale.room,
            "stock",
            stock,
            lane=Lane.STATE,
            key=f"stock:{sale.id}",
            state_op="set",
            state_field=STOCK_PART,
            state_value=json.dumps(stock),
        )

    async def purchased(self, sale: Sale, name: str | None) -> None:
        """A sampled "someone just bought", at most one per sale per interval; best effort (the
        order is made whether or not the room hears of it)."""
        now = time.monotonic()
        if now - self._last_purchase.get(sale.id, 0.0) < PURCHASE_INTERVAL_S:
            return
        self._last_purchase[sale.id] = now
        try:
            await self.log.publish(
                sale.room, "purchase", {"sale_id": sale.id, "name": name}, lane=Lane.LOSSY
            )
        except STORAGE_ERRORS as exc:
            log.warning("sale %s: purchase not announced: %r", sale.id, exc)
        except Exception:  # never the confirm's failure: its order is made
            log.exception("sale %s: purchase not announced", sale.id)
