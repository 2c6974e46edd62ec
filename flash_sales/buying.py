"""Buying: reserve a hold, confirm it into an order, or cancel it.

A hold's end is decided in PostgreSQL (see flash_sales/orders.py): a confirm claims it as an
order, the recovery sweep or a cancel claims it as void, and whichever claims first stands; what
Redis says about a hold is acted on, and where Redis and PostgreSQL disagree PostgreSQL wins and
Redis is brought in line (see flash_sales/repair.py). A buyer is answered with an order only if
it is theirs; a storage failure is a 503 with a time to retry after.
"""

from __future__ import annotations

import logging
import time
from typing import Any

from flash_sales import metrics
from flash_sales.announcements import SaleAnnouncer
from flash_sales.lifecycle import SaleLifecycle
from flash_sales.model import LIVE_STATES, Order, OrderRequest, Outcome, Sale, sale_id_of
from flash_sales.orders import Mismatch, OrderWriter, Refused, WriterFull
from flash_sales.repair import PoolRepair
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
    pool_of,
)
from rooms.actors import Action, Actor, authorize
from rooms.errors import (
    STORAGE_ERRORS,
    Conflict,
    Invalid,
    Refusal,
    invalid,
    not_found,
    unavailable,
)

log = logging.getLogger("live.flash_sales")

LIVE_CHECK_S = 1.0
REPAIR_WAIT_S = 2.0  # a reserve waits this long for a repair of its pool, then answers 503
RETRY_CONFIRM = "orders are unavailable for a moment; retry the confirm"


class Buying:
    def __init__(
        self,
        lifecycle: SaleLifecycle,
        store: SaleStore,
        lock: InventoryLock,
        writer: OrderWriter,
        repair: PoolRepair,
        announcer: SaleAnnouncer,
    ) -> None:
        self.lifecycle = lifecycle
        self.store = store
        self.lock = lock
        self.reserver = ReserveBatcher(lock)  # the burst's reserves, one script call per batch
        self.writer = writer
        self.repair = repair
        self.announcer = announcer
        self._live_checked: dict[int, tuple[float, bool]] = {}  # sale: (when, live)

    # -- reserve -----------------------------------------------------------------------------

    async def reserve(
        self, sale_id: int, actor: Actor, qty: int, idempotency_key: str
    ) -> dict[str, Any]:
        sale = await self.lifecycle.fixed(sale_id)
        authorize(actor, sale.room, Action.BUY)
        if not 0 < len(idempotency_key) <= 128:
            raise invalid("send an Idempotency-Key of 1-128 characters, unique per attempt")
        if not 0 < qty <= sale.limit_per_buyer:
            raise Invalid("limit", f"qty must be 1-{sale.limit_per_buyer}")
        result = await self._reserve(sale, actor.user, qty, idempotency_key)
        if isinstance(result, Rejection) and await self._repaired(sale, result.reason):
            result = await self._reserve(sale, actor.user, qty, idempotency_key)
        if isinstance(result, Rejection):
            raise _rejection(result.reason)
        self.announcer.stock_changed(sale.id)
        if result.remaining <= 0:
            try:
                await self.lifecycle.sold_out(sale.id)
            except STORAGE_ERRORS as exc:  # the hold is made; check_pools corrects the state
                log.warning("sale %s: sold-out transition failed: %s", sale.id, exc)
        return _hold_view(result, sale)

    async def _reserve(self, sale: Sale, buyer: str, qty: int, key: str) -> ReserveResult:
        try:
            return await self.reserver.reserve(sale.pool, buyer, qty, key)
        except BatcherFull:
            raise unavailable("too many reservations waiting; retry") from None

    async def _repaired(self, sale: Sale, reason: RejectReason) -> bool:
        """Repair a pool that must be repaired before it sells (stale), or that is missing while
        the sale is live; True when it sells again. Whether the sale of a missing pool is live
        is asked of PostgreSQL at most once a second per sale, so that clicks on a sale that has
        not opened (or has ended) do not all reach the database."""
        if reason is RejectReason.STALE:
            return await self.repair.repair(sale, "stale", wait_s=REPAIR_WAIT_S)
        if reason is not RejectReason.UNKNOWN_POOL:
            return False
        now = time.monotonic()
        checked_at, live = self._live_checked.get(sale.id, (0.0, False))
        if now - checked_at >= LIVE_CHECK_S:
            current = await self.store.get(sale.id)
            live = current is not None and current.state in LIVE_STATES
            self._live_checked[sale.id] = (now, live)
        return live and await self.repair.repair(sale, "missing", wait_s=REPAIR_WAIT_S)

    # -- confirm -----------------------------------------------------------------------------

    async def confirm(
        self, reservation_id: str, actor: Actor, payment_ref: str, *, show_name: bool = False
    ) -> dict[str, Any]:
        """Hold to order, by its buyer or by a service of the room on the buyer's behalf (a
        payment provider's callback): the order is the buyer's either way, with the same
        idempotency. `show_name`: the buyer allows their name in the "just bought" event."""
        if not 0 < len(payment_ref) <= 200:
            raise invalid("payment_ref must be 1-200 characters")
        sale, hold = await self._hold_of(reservation_id, actor, on_behalf=actor.service)
        buyer = hold.buyer if hold is not None else None if actor.service else actor.user
        if hold is None or hold.state is HoldState.CONFIRMED:
            missing = not_found("no such reservation")
            return await self._order(sale, reservation_id, buyer, missing, payment_ref)
        begun = await self.lock.begin_confirm(reservation_id)
        if not begun.ok:
            if begun.state in (HoldState.EXPIRED, HoldState.RELEASED, HoldState.CONFIRMED, None):
                # Over, says Redis; PostgreSQL has the last word (Redis may have gone back).
                gone = Conflict("expired", "the hold has expired or was cancelled")
                return await self._order(sale, reservation_id, buyer, gone, payment_ref)
            raise Conflict("conflict", f"the hold cannot be confirmed ({begun.reason})")
        request = OrderRequest(
            reservation_id,
            sale.id,
            hold.buyer,
            hold.qty,
            sale.price_cents,
            sale.limit_per_buyer,
            payment_ref,
        )
        try:
            result = await self.writer.write(request)
        except WriterFull:
            raise unavailable(RETRY_CONFIRM) from None
        except STORAGE_ERRORS as exc:
            log.warning("sale %s: confirm of %s deferred: %r", sale.id, reservation_id, exc)
            raise unavailable(RETRY_CONFIRM) from None
        if isinstance(result, Order):
            await self._tell_redis(sale, result)
            _same_payment(result, payment_ref)
            name = actor.display_name if show_name and not actor.service else None
            await self.announcer.purchased(sale, name)
            return result.view()
        if isinstance(result, Mismatch):
            metrics.ORDER_MISMATCHES.inc()
            log.error(
                "sale %s: confirm of %s by %s found order %s of %s (qty %s); refused",
                sale.id,
                reservation_id,
                actor.user,
                result.order.id,
                result.order.buyer,
                result.order.qty,
            )
            try:  # the hold is that order's in Redis too, not this buyer's
                await self.repair.adopt(sale, result.order)
            except STORAGE_ERRORS as exc:
                log.warning("sale %s: order %s not adopted: %s", sale.id, result.order.id, exc)
            raise Conflict("conflict", "this reservation belongs to another order")
        await self.lock.abort_confirm(reservation_id, release=True)
        self.announcer.stock_changed(sale.id)
        if isinstance(result, Refused):
            detail = "sold out" if result.reason == "sold_out" else "you reached the limit"
            raise Conflict(result.reason, detail)
        raise Conflict("expired", "the confirm was rolled back after it stalled; reserve again")

    async def _order(
        self,
        sale: Sale,
        reservation_id: str,
        buyer: str | None,
        otherwise: Refusal,
        payment_ref: str | None = None,
    ) -> dict[str, Any]:
        """The buyer's order of this hold from PostgreSQL (a retry after the answer was lost, or
        a hold Redis no longer has right); `otherwise` when there is none. `buyer` None: a
        service asks, for whichever buyer the order is (Redis no longer says whose hold it was).
        A confirm (`payment_ref`) with another payment reference is not a retry: see
        `_same_payment`."""
        try:
            order = await self.store.order(reservation_id)
        except STORAGE_ERRORS:
            raise unavailable(RETRY_CONFIRM) from None
        if order is None or order.sale_id != sale.id or buyer not in (None, order.buyer):
            raise otherwise
        await self._tell_redis(sale, order)
        if payment_ref is not None:
            _same_payment(order, payment_ref)
        return order.view()

    async def _tell_redis(self, sale: Sale, order: Order) -> None:
        """The order is made whatever Redis answers now: should Redis be away, the recovery
        sweep or a repair brings it in line later."""
        try:
            await self.repair.confirmed(sale, order)
        except STORAGE_ERRORS as exc:
            log.warning("sale %s: order %s made, Redis not told yet: %s", sale.id, order.id, exc)

    # -- cancel ------------------------------------------------------------------------------

    async def cancel(self, reservation_id: str, actor: Actor) -> dict[str, Any]:
        sale, hold = await self._hold_of(reservation_id, actor)
        already = Conflict("confirmed", "the reservation is already an order")
        if hold is None or hold.state is HoldState.CONFIRMED:
            await self._order(sale, reservation_id, actor.user, not_found("no such reservation"))
            raise already
        if hold.state is HoldState.CONFIRMING:
            raise Conflict("conflict", "a confirm of this reservation is in progress")
        if await self.store.decide_void(reservation_id, sale.id) is Outcome.ORDER:
            await self._order(sale, reservation_id, actor.user, not_found("no such reservation"))
            raise already
        await self.lock.cancel(reservation_id)  # a hold already over stays over
        self.announcer.stock_changed(sale.id)
        await self.lifecycle.reopen_if_stock(sale.id)
        return {"id": reservation_id, "state": "released"}

    async def _hold_of(
        self, reservation_id: str, actor: Actor, *, on_behalf: bool = False
    ) -> tuple[Sale, HoldRecord | None]:
        """The sale and the caller's hold (None when Redis has no such hold); 404 when the id is
        not a hold of a sale or the hold is someone else's, 403 for another room's token. A
        service of the room reaches any buyer's hold `on_behalf` of the buyer (to confirm it)."""
        try:
            sale_id = sale_id_of(pool_of(reservation_id))
        except ValueError:
            sale_id = None
        if sale_id is None:
            raise not_found("no such reservation")
        sale = await self.lifecycle.fixed(sale_id)
        authorize(actor, sale.room, Action.CONFIRM_FOR_BUYER if on_behalf else Action.BUY)
        hold = await self.lock.get_hold(reservation_id)
        if hold is not None and hold.buyer != actor.user and not on_behalf:
            raise not_found("no such reservation")
        return sale, hold


def _rejection(reason: RejectReason) -> Refusal:
    if reason is RejectReason.SOLD_OUT:
        return Conflict("sold_out", "sold out")
    if reason is RejectReason.LIMIT:
        return Conflict("limit", "you reached the limit per buyer for this sale")
    if reason in (RejectReason.CLOSED, RejectReason.UNKNOWN_POOL):
        return Conflict("not_open", "the sale is not open")
    if reason in (RejectReason.STALE, RejectReason.FENCED):
        return unavailable("the sale is being brought up to date; retry")
    return invalid("invalid reservation request")


def _hold_view(hold: Hold, sale: Sale) -> dict[str, Any]:
    return {
        "id": hold.id,
        "sale_id": sale.id,
        "qty": hold.qty,
        "expires_at": hold.expires_at_ms,
        "remaining": max(hold.remaining, 0),
        "state": hold.state.value,
        "price_cents": sale.price_cents,
    }


def _same_payment(order: Order, payment_ref: str) -> None:
    """A confirm of a hold that is an order already is a retry only with the order's payment
    reference. Another one is a second payment (a provider's callback for another charge, a
    client's bug): answered 409 `conflict`, so that the payer refunds it instead of taking the
    order for its own."""
    if order.payment_ref != payment_ref:
        raise Conflict("conflict", "this reservation was confirmed with another payment_ref")
