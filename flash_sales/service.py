"""Flash sales, assembled: the lifecycle of a sale, buying, what rooms hear of it, the repair of
pools from PostgreSQL and the background loops that keep Redis and PostgreSQL in agreement.

Two guards: inventory_lock's Lua stops the burst in Redis; PostgreSQL's CHECKs (sold <= stock,
each buyer's bought <= limit) make an oversell or a limit breach impossible even if Redis lost
writes, and PostgreSQL decides how each hold ends (an order, or void).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable

from flash_sales.announcements import SaleAnnouncer
from flash_sales.buying import Buying
from flash_sales.lifecycle import SaleLifecycle
from flash_sales.maintenance import SaleMaintenance
from flash_sales.orders import OrderWriter
from flash_sales.repair import PoolRepair
from flash_sales.stock import StockChanges
from flash_sales.store import SaleStore
from flash_sales.waitlist import Waitlist
from inventory_lock import InventoryLock
from rooms.log import RoomLog

STOCK_INTERVAL_S = 0.1


class SaleService:
    def __init__(
        self,
        store: SaleStore,
        lock: InventoryLock,
        room_log: RoomLog,
        writer: OrderWriter,
        *,
        stuck_confirm_s: float,
    ) -> None:
        """`stuck_confirm_s`: how long a confirm may sit between Redis and PostgreSQL before the
        recovery sweep ends it; longer than a confirm's caller waits for its order."""
        self.store = store
        self.lock = lock
        self.writer = writer
        self.announcer = SaleAnnouncer(store, lock, room_log)
        self.repair = PoolRepair(store, lock, self.announcer)
        self.lifecycle = SaleLifecycle(store, lock, self.announcer)
        self.buying = Buying(self.lifecycle, store, lock, writer, self.repair, self.announcer)
        self.waitlist = Waitlist(self.lifecycle, lock, room_log)
        self.stock = StockChanges(store, lock, self.lifecycle, self.repair, self.announcer)
        self.maintenance = SaleMaintenance(
            store,
            lock,
            self.lifecycle,
            self.repair,
            self.announcer,
            stuck_confirm_s=stuck_confirm_s,
        )

    def loops(self) -> list[tuple[str, float | None, Callable[[], Awaitable[None]]]]:
        """The background work that keeps Redis and PostgreSQL in agreement, as (name, seconds
        between runs, work): the composition root runs each in its task group, logs a failure
        and goes on. The order writer is stopped with `writer.stop()`."""
        loops: list[tuple[float, Callable[[], Awaitable[None]]]] = [
            (0.25, self.lifecycle.run_scheduler),
            (0.25, self.maintenance.check_pools),
            (0.25, self.maintenance.sweep_expired),
            (1.0, self.maintenance.recover_confirms),
            (1.0, self.maintenance.recover_stock_changes),
            (5.0, self.maintenance.drop_finished_pools),
            (STOCK_INTERVAL_S, self.announcer.announce_stock),
            (STOCK_INTERVAL_S, self.announce_offers),
        ]
        return [(f"sales.{work.__name__}", interval, work) for interval, work in loops]

    async def announce_offers(self) -> None:
        """Tell the buyers of new waitlist offers, in the pools the sweeps walk."""
        await self.waitlist.announce_offers(self.maintenance.pools)
