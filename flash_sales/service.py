"""Flash sales: lifecycle, reserve / confirm / cancel, and the background work that keeps Redis
and PostgreSQL in agreement (expiry, recovery of interrupted confirms, rebuild of lost pools).

Two guards: inventory_lock's Lua stops the burst in Redis; PostgreSQL's guarded UPDATE and
CHECK (sold <= stock) make an oversell impossible even if Redis lost writes.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import time
from collections.abc import Awaitable, Callable
from datetime import datetime
from typing import Any

from flash_sales.model import LIVE_STATES, OrderRequest, Sale, SaleState, due_transition
from flash_sales.orders import OrderWriter, Refused
from flash_sales.store import SaleStore
from inventory_lock import (
    BatcherFull,
    Hold,
    HoldRecord,
    HoldState,
    InventoryLock,
    Rejection,
    RejectReason,
    ReserveBatcher,
    ReserveResult,
    TransitionReason,
    pool_of,
)
from rooms.auth import Claims
from rooms.errors import ApiError, forbidden, invalid, not_found
from rooms.log import RoomLog

log = logging.getLogger("live.flash_sales")

STOCK_INTERVAL_S = 0.1
PURCHASE_INTERVAL_S = 0.5
STUCK_CONFIRM_MS = 10_000


def unavailable(detail: str) -> ApiError:
    return ApiError(503, "unavailable", detail, retry_after_s=1.0)


class SaleService:
    def __init__(
        self, store: SaleStore, lock: InventoryLock, room_log: RoomLog, writer: OrderWriter
    ):
        self.store = store
        self.lock = lock
        self.reserver = ReserveBatcher(lock)  # the burst's reserves, one script call per batch
        self.log = room_log
        self.writer = writer
        self._sales: dict[int, Sale] = {}  # immutable fields (room, price, limits) per sale
        self._dirty_stock: set[int] = set()
        self._last_purchase: dict[int, float] = {}
        self._pool_checked: dict[int, float] = {}
        self._tasks: list[asyncio.Task[None]] = []
        # Only a confirm no writer can still commit counts as stuck.
        self.stuck_confirm_ms = max(STUCK_CONFIRM_MS, int(writer.longest_wait_s * 1000) + 5000)

    # -- lifecycle ---------------------------------------------------------------------------

    async def start(self) -> None:
        self.writer.start()
        self._tasks = [
            asyncio.create_task(_every(0.25, self.run_scheduler), name="sales-scheduler"),
            asyncio.create_task(_every(0.25, self.sweep_expired), name="sales-expiry"),
            asyncio.create_task(_every(2.0, self.recover_confirms), name="sales-recovery"),
            asyncio.create_task(_every(5.0, self.drop_finished_pools), name="sales-cleanup"),
            asyncio.create_task(_every(STOCK_INTERVAL_S, self.announce_stock), name="sales-stock"),
        ]

    async def stop(self) -> None:
        for task in self._tasks:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
        await self.writer.stop()

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
    ) -> dict[str, Any]:
        if limit_per_buyer > stock:
            raise invalid("limit_per_buyer cannot exceed stock")
        if starts_at and ends_at and ends_at <= starts_at:
            raise invalid("ends_at must be after starts_at")
        sale = await self.store.create(
            room, product_id, price_cents, stock, limit_per_buyer, hold_seconds, starts_at, ends_at
        )
        if sale is None:
            raise not_found(f"no product {product_id} in room {room!r}")
        await self._announce(sale, "sale_scheduled")
        return await self.figures(sale.id)

    async def sale(self, sale_id: int) -> Sale:
        sale = await self.store.get(sale_id)
        if sale is None:
            raise not_found(f"no sale {sale_id}")
        self._sales[sale.id] = sale
        return sale

    async def start_now(self, sale_id: int) -> dict[str, Any]:
        sale = await self.sale(sale_id)
        if sale.state is SaleState.ENDED:
            raise ApiError(409, "ended", "the sale has ended")
        moved = await self.store.move(sale.id, (SaleState.SCHEDULED,), SaleState.OPEN)
        if moved is not None:
            await self._open(moved)
        return await self.figures(sale.id)

    async def stop_now(self, sale_id: int) -> dict[str, Any]:
        sale = await self.sale(sale_id)
        moved = await self.store.move(sale.id, (SaleState.SCHEDULED, *LIVE_STATES), SaleState.ENDED)
        if moved is not None:
            await self._end(moved)
        else:
            await self.lock.close(sale.pool)  # idempotent: finishes a stop interrupted before
        return await self.figures(sale.id)

    async def _open(self, sale: Sale) -> None:
        await self.lock.load(
            sale.pool, sale.stock - sale.sold, sale.limit_per_buyer, sale.hold_seconds
        )
        await self._announce(sale, "sale_started")

    async def _end(self, sale: Sale) -> None:
        await self.lock.close(sale.pool)
        await self._announce(sale, "sale_ended")

    async def _announce(self, sale: Sale, event: str, **extra: Any) -> None:
        view = sale.view()
        product = await self.store.product(sale.room, sale.product_id)
        view["product"] = product
        snap = await self.lock.snapshot(sale.pool)
        view["remaining"] = snap.remaining if snap else sale.stock - sale.sold
        await self.log.publish(
            sale.room,
            event,
            {"sale": view, **extra},
            state_op="set",
            state_field="sale",
            state_value=json.dumps(view),
        )

    async def figures(self, sale_id: int) -> dict[str, Any]:
        sale = await self.sale(sale_id)
        snap = await self.lock.snapshot(sale.pool)
        figures = await self.store.figures(sale.id)
        remaining = snap.remaining if snap else sale.stock - sale.sold
        return {
            **sale.view(),
            "remaining": remaining,
            "held": snap.held if snap else 0,
            "confirming": snap.confirming if snap else 0,
            "sold": sale.sold,
            "orders": figures["orders"],
            "revenue_cents": figures["revenue_cents"],
        }

    # -- buying ------------------------------------------------------------------------------

    async def _cached(self, sale_id: int) -> Sale:
        return self._sales.get(sale_id) or await self.sale(sale_id)

    async def reserve(
        self, sale_id: int, claims: Claims, qty: int, idempotency_key: str
    ) -> dict[str, Any]:
        sale = await self._cached(sale_id)
        if claims.room != sale.room:
            raise forbidden("this token is for another room")
        if not 0 < len(idempotency_key) <= 128:
            raise invalid("Idempotency-Key must be 1-128 characters")
        if not 0 < qty <= sale.limit_per_buyer:
            raise ApiError(422, "limit", f"qty must be 1-{sale.limit_per_buyer}")
        result = await self._reserve(sale.pool, claims.sub, qty, idempotency_key)
        if isinstance(result, Rejection) and result.reason is RejectReason.UNKNOWN_POOL:
            if await self._pool_may_be_lost(sale_id) and await self.ensure_pool(sale_id):
                result = await self._reserve(sale.pool, claims.sub, qty, idempotency_key)
        if isinstance(result, Rejection):
            raise _rejection(result.reason)
        assert isinstance(result, Hold)
        self._dirty_stock.add(sale.id)
        if result.remaining == 0:
            try:
                await self._sold_out(sale.id)
            except Exception as exc:  # the hold is made; the scheduler corrects the state
                log.warning("sale %s: sold-out transition failed: %s", sale.id, exc)
        return _hold_view(result, sale)

    async def _reserve(self, pool: str, buyer: str, qty: int, key: str) -> ReserveResult:
        try:
            return await self.reserver.reserve(pool, buyer, qty, key)
        except BatcherFull:
            raise unavailable("too many reservations waiting; retry") from None

    async def _pool_may_be_lost(self, sale_id: int) -> bool:
        """Whether a missing pool is worth asking PostgreSQL about: at most once a second per
        sale, so clicks on a sale that has not opened yet do not all reach the database."""
        now = time.monotonic()
        if now - self._pool_checked.get(sale_id, 0.0) < 1.0:
            return False
        self._pool_checked[sale_id] = now
        return True

    async def ensure_pool(self, sale_id: int) -> bool:
        """Rebuild the sale's pool from PostgreSQL if Redis lost it while the sale is live.
        True if the pool exists afterwards."""
        sale = await self.sale(sale_id)
        if sale.state not in LIVE_STATES:
            return False
        if await self.lock.exists(sale.pool):
            return True
        confirmed = await self.store.confirmed_by_buyer(sale.id)
        change = await self.lock.rebuild(
            sale.pool, sale.stock, confirmed, sale.limit_per_buyer, sale.hold_seconds
        )
        if change.ok:
            log.warning("sale %s: pool rebuilt from PostgreSQL (sold %s)", sale.id, sale.sold)
            self._dirty_stock.add(sale.id)
        return await self.lock.exists(sale.pool)

    async def _hold_of(self, reservation_id: str, claims: Claims) -> tuple[Sale, HoldRecord | None]:
        try:
            pool = pool_of(reservation_id)
        except ValueError:
            raise not_found("no such reservation") from None
        if not pool.isdigit() or len(pool) > 18:
            raise not_found("no such reservation")
        sale = await self._cached(int(pool))
        hold = await self.lock.get_hold(reservation_id)
        if hold is None:
            order = await self.store.order(reservation_id)
            if order is not None and order.buyer == claims.sub:
                return sale, None
            raise not_found("no such reservation")
        if hold.buyer != claims.sub:
            raise not_found("no such reservation")
        return sale, hold

    async def confirm(
        self, reservation_id: str, claims: Claims, payment_ref: str, *, show_name: bool = False
    ) -> dict[str, Any]:
        """Hold to order. `show_name`: the buyer allows their name in the "just bought" event."""
        if not 0 < len(payment_ref) <= 200:
            raise invalid("payment_ref must be 1-200 characters")
        sale, hold = await self._hold_of(reservation_id, claims)
        if hold is None or hold.state is HoldState.CONFIRMED:
            return await self._existing_order(reservation_id)  # a retry after the answer was lost
        begun = await self.lock.begin_confirm(reservation_id)
        if not begun.ok:
            state = begun.hold.state if begun.hold else None
            if state is HoldState.CONFIRMED:
                return await self._existing_order(reservation_id)
            if begun.reason is TransitionReason.EXPIRED or state in (
                HoldState.EXPIRED,
                HoldState.RELEASED,
            ):
                raise ApiError(409, "expired", "the hold has expired or was cancelled")
            if state is not HoldState.CONFIRMING:  # confirming: a retry, the write is idempotent
                raise ApiError(409, "conflict", f"the hold cannot be confirmed ({begun.reason})")
        request = OrderRequest(
            reservation_id, sale.id, claims.sub, hold.qty, sale.price_cents, payment_ref
        )
        try:
            result = await self.writer.write(request)
        except Exception as exc:
            log.warning("sale %s: confirm of %s deferred: %s", sale.id, reservation_id, exc)
            raise unavailable("orders are unavailable for a moment; retry the confirm") from None
        if isinstance(result, Refused):
            await self.lock.abort_confirm(reservation_id, release=True)
            self._dirty_stock.add(sale.id)
            raise ApiError(409, "sold_out", "sold out")
        await self.lock.finish_confirm(reservation_id)
        await self._purchased(sale, claims.name if show_name else None)
        return result.view()

    async def _existing_order(self, reservation_id: str) -> dict[str, Any]:
        """The order of a hold already confirmed (or dropped with its ended sale)."""
        try:
            order = await self.store.order(reservation_id)
        except Exception:
            raise unavailable("orders are unavailable for a moment; retry the confirm") from None
        if order is None:
            raise ApiError(409, "conflict", "the hold is confirmed but its order is not found")
        return order.view()

    async def cancel(self, reservation_id: str, claims: Claims) -> dict[str, Any]:
        sale, hold = await self._hold_of(reservation_id, claims)
        if hold is None:
            raise ApiError(409, "confirmed", "the reservation is already an order")
        result = await self.lock.cancel(reservation_id)
        if not result.ok:
            state = result.hold.state.value if result.hold else "unknown"
            if state not in ("released", "expired"):
                raise ApiError(409, "conflict", f"the reservation is {state}")
        self._dirty_stock.add(sale.id)
        await self._reopen_if_stock(sale.id)
        return {"id": reservation_id, "state": "released"}

    async def _purchased(self, sale: Sale, name: str | None) -> None:
        """A sampled "someone just bought" for social proof, at most one per interval."""
        now = time.monotonic()
        if now - self._last_purchase.get(sale.id, 0.0) < PURCHASE_INTERVAL_S:
            return
        self._last_purchase[sale.id] = now
        with contextlib.suppress(Exception):
            await self.log.publish(
                sale.room, "purchase", {"sale_id": sale.id, "name": name or None}
            )

    # -- state changes driven by stock -------------------------------------------------------

    async def _sold_out(self, sale_id: int) -> None:
        moved = await self.store.move(sale_id, (SaleState.OPEN,), SaleState.SOLD_OUT)
        if moved is not None:
            await self._announce(moved, "sold_out")

    async def _reopen_if_stock(self, sale_id: int) -> None:
        sale = await self._cached(sale_id)
        snap = await self.lock.snapshot(sale.pool)
        if snap is None or snap.remaining == 0 or snap.closed:
            return
        moved = await self.store.move(sale_id, (SaleState.SOLD_OUT,), SaleState.OPEN)
        if moved is not None:
            await self._announce(moved, "sale_started", reopened=True)

    async def announce_stock(self) -> None:
        """Publish the latest stock of every sale that changed, conflated per interval."""
        dirty, self._dirty_stock = self._dirty_stock, set()
        for sale_id in dirty:
            sale = await self._cached(sale_id)
            snap = await self.lock.snapshot(sale.pool)
            if snap is None:
                continue
            stock = {"sale_id": sale.id, "remaining": snap.remaining, "stock": snap.stock}
            await self.log.publish(
                sale.room,
                "stock",
                stock,
                state_op="set",
                state_field="stock",
                state_value=json.dumps(stock),
            )

    # -- background work ---------------------------------------------------------------------

    async def run_scheduler(self) -> None:
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
        for sale in await self.store.live():
            snap = await self.lock.snapshot(sale.pool)
            if snap is None:
                await self.ensure_pool(sale.id)
            elif sale.state is SaleState.OPEN and snap.remaining == 0:
                await self._sold_out(sale.id)  # a reserve in another process raced an expiry
            elif sale.state is SaleState.SOLD_OUT and snap.remaining > 0:
                await self._reopen_if_stock(sale.id)

    async def sweep_expired(self) -> None:
        for result in await self.lock.expire_due_all():
            if result.holds and result.pool.isdigit():
                self._dirty_stock.add(int(result.pool))
                await self._reopen_if_stock(int(result.pool))

    async def recover_confirms(self) -> None:
        """Finish or roll back confirms interrupted between Redis and PostgreSQL, by asking
        PostgreSQL whether the order exists."""
        seconds, micros = await self.log.client.time()  # the clock the holds were stamped with
        now_ms = seconds * 1000 + micros // 1000
        for pool in await self.lock.pools():
            for hold in await self.lock.confirming_holds(pool):
                if now_ms - hold.updated_at_ms < self.stuck_confirm_ms:
                    continue
                order = await self.store.order(hold.id)
                if order is not None:
                    await self.lock.finish_confirm(hold.id)
                else:
                    expired = hold.expires_at_ms <= now_ms
                    await self.lock.abort_confirm(hold.id, release=expired)
                    if pool.isdigit():
                        self._dirty_stock.add(int(pool))
                log.warning("recovered interrupted confirm %s: order %s", hold.id, bool(order))

    async def drop_finished_pools(self) -> None:
        """A pool whose sale has ended and that has no hold in flight is only memory (and work
        for every sweeper): drop it. Orders stay in PostgreSQL; a retried confirm finds them."""
        for pool in await self.lock.pools():
            if not pool.isdigit() or len(pool) > 18:
                continue
            snap = await self.lock.snapshot(pool)
            if snap is None or not snap.closed or snap.held or snap.confirming:
                continue
            sale = await self.store.get(int(pool))
            if sale is not None and sale.state is SaleState.ENDED:
                await self.lock.drop(pool)


def _rejection(reason: RejectReason) -> ApiError:
    if reason is RejectReason.SOLD_OUT:
        return ApiError(409, "sold_out", "sold out")
    if reason is RejectReason.LIMIT:
        return ApiError(409, "limit", "you reached the limit per buyer for this sale")
    if reason in (RejectReason.CLOSED, RejectReason.UNKNOWN_POOL):
        return ApiError(409, "not_open", "the sale is not open")
    return ApiError(422, "invalid", "invalid reservation request")


def _hold_view(hold: Hold, sale: Sale) -> dict[str, Any]:
    return {
        "id": hold.id,
        "sale_id": sale.id,
        "qty": hold.qty,
        "expires_at": hold.expires_at_ms,
        "remaining": hold.remaining,
        "state": hold.state.value,
        "price_cents": sale.price_cents,
    }


async def _every(interval_s: float, work: Callable[[], Awaitable[None]]) -> None:
    """Run `work` every interval; a failure is logged and the loop goes on."""
    while True:
        await asyncio.sleep(interval_s)
        try:
            await work()
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            log.warning("%s failed: %s", getattr(work, "__name__", work), exc)
