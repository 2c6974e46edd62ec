"""Stock changed from outside while a sale runs (the merchant's order management system, or the
host): units added or taken out, in Redis and PostgreSQL, never below what is sold, held or
being confirmed; each change once per request id, however often its call is retried.

The steps, and why in this order (a confirm's, see flash_sales/buying.py):
0. PostgreSQL is asked first whether the request id was decided already: a retry of a decided
   change is answered from that decision and never begun in Redis again, since the pool may
   have been loaded since with PostgreSQL's stock, the change in it (`_decided_before`).
1. Redis (lua/adjust_stock.lua), first because only Redis knows what is held: a decrease takes
   its units out of `remaining` at once, so no reserve can hold them meanwhile, and is refused
   (`too_low`) when they are held, being confirmed or sold; an increase is only recorded. The
   change is `pending` in the pool.
2. PostgreSQL decides, in one transaction: the change claimed under its request id in
   `stock_changes` as applied, `sales.stock` updated under its guards (never below `sold`), the
   `sale.stock_changed` event written to the outbox. A refusal leaves nothing.
3. Redis settles the change as PostgreSQL decided: applied (an increase's units come into
   `remaining`) or void (a decrease's units go back).
A caller that dies or gives up between the steps leaves the change pending: its retry finishes
it, or the recovery sweep (SaleMaintenance.recover_stock_changes) claims it as void in
PostgreSQL unless it applied, then settles Redis the same way. A repair of the pool settles
every pending change that way too, then gives the pool PostgreSQL's stock (flash_sales/repair.py).
A scheduled sale has no pool yet: its change is PostgreSQL's alone, and the pool is loaded with
the stock it has when the sale opens.
"""

from __future__ import annotations

import logging
from typing import Any

from flash_sales.announcements import SaleAnnouncer
from flash_sales.lifecycle import SaleLifecycle
from flash_sales.model import LIVE_STATES, MAX_STOCK, Sale, SaleState
from flash_sales.repair import PoolRepair
from flash_sales.store import SaleStore, StockDecision
from inventory_lock import InventoryLock, StockReason, StockResult
from rooms.actors import Action, Actor, authorize
from rooms.errors import STORAGE_ERRORS, Conflict, Invalid, invalid, unavailable

log = logging.getLogger("live.flash_sales")

REPAIR_WAIT_S = 2.0
RETRY = "stock cannot be changed for a moment; retry with the same Idempotency-Key"


class StockChanges:
    def __init__(
        self,
        store: SaleStore,
        lock: InventoryLock,
        lifecycle: SaleLifecycle,
        repair: PoolRepair,
        announcer: SaleAnnouncer,
    ) -> None:
        self.store = store
        self.lock = lock
        self.lifecycle = lifecycle
        self.repair = repair
        self.announcer = announcer

    async def change(
        self, sale_id: int, actor: Actor, delta: int, request_id: str
    ) -> dict[str, Any]:
        """Add (`delta` > 0) or take out units of a sale, once per `request_id`: the stock
        right after the change, and what is sold and remaining now. A retry with the same
        request id changes nothing more and answers the same stock."""
        sale = await self.lifecycle.sale(sale_id)
        authorize(actor, sale.room, Action.CHANGE_STOCK)
        if not 0 < len(request_id) <= 128:
            raise invalid("send an Idempotency-Key of 1-128 characters, unique per change")
        if delta == 0 or not -MAX_STOCK <= delta <= MAX_STOCK:
            raise invalid(f"delta must be a non-zero integer from {-MAX_STOCK} to {MAX_STOCK}")
        try:
            earlier = await self.store.stock_decision(sale.id, request_id, delta)
        except STORAGE_ERRORS as exc:
            log.warning("sale %s: stock change %s deferred: %r", sale.id, request_id, exc)
            raise unavailable(RETRY) from None
        if earlier is not None:
            return await self._decided_before(sale, request_id, delta, earlier)
        if sale.state is SaleState.SCHEDULED:
            decision = await self.store.change_stock(sale.id, request_id, delta, (sale.state,))
            if decision.outcome != "refused":
                return await self._answer(sale, request_id, delta, decision, None)
            sale = await self.lifecycle.sale(sale_id)  # it opened meanwhile, or it is refused
            if sale.state is SaleState.SCHEDULED:
                raise _refusal(sale, delta)
        if sale.state is SaleState.ENDED:
            raise Conflict("ended", "the sale has ended")
        await self._begin(sale, request_id, delta)
        try:
            decision = await self.store.change_stock(sale.id, request_id, delta, LIVE_STATES)
        except STORAGE_ERRORS as exc:
            log.warning("sale %s: stock change %s deferred: %r", sale.id, request_id, exc)
            raise unavailable(RETRY) from None
        settled = await self._settle(sale, request_id, decision.outcome == "applied")
        return await self._answer(sale, request_id, delta, decision, settled)

    async def _decided_before(
        self, sale: Sale, request_id: str, delta: int, decision: StockDecision
    ) -> dict[str, Any]:
        """A retry of a change PostgreSQL decided already: answered from that decision, and
        never begun in Redis again. The pool may have been loaded after the decision (the sale
        opened, or was repaired, since), its stock PostgreSQL's with the change in it: a new
        record there would apply the change a second time. Only a record the change's first
        call left pending is settled."""
        settled = None
        if sale.state is not SaleState.SCHEDULED and decision.outcome in ("applied", "void"):
            settled = await self._settle(
                sale, request_id, decision.outcome == "applied", retry=True
            )
        return await self._answer(sale, request_id, delta, decision, settled)

    async def _begin(self, sale: Sale, request_id: str, delta: int) -> StockResult:
        """Step 1 in Redis, after a repair of the pool when it must be repaired first."""
        begun = await self.lock.adjust_stock(sale.pool, request_id, delta)
        if begun.reason in (StockReason.STALE, StockReason.UNKNOWN_POOL):
            reason = "stale" if begun.reason is StockReason.STALE else "missing"
            if await self.repair.repair(sale, reason, wait_s=REPAIR_WAIT_S):
                begun = await self.lock.adjust_stock(sale.pool, request_id, delta)
        if begun.ok:
            return begun
        if begun.reason is StockReason.TOO_LOW:
            raise _too_low(begun.floor)
        if begun.reason is StockReason.UNDONE:
            raise _rolled_back()
        if begun.reason is StockReason.MISMATCH:
            raise _mismatch()
        if begun.reason is StockReason.CLOSED:
            raise Conflict("ended", "the sale has ended")
        if begun.reason is StockReason.INVALID:
            raise invalid(f"the stock cannot be changed by {delta}")
        raise unavailable(RETRY)  # stale, fenced or missing: a repair is on its way

    async def _settle(
        self, sale: Sale, request_id: str, applied: bool, *, retry: bool = False
    ) -> StockResult | None:
        """Step 3; a failure here leaves the change pending for the recovery sweep (PostgreSQL
        decided already, so the caller has its answer). When Redis lost the change (or the
        whole pool) after step 1, a repair that ran meanwhile may have read PostgreSQL's stock
        before step 2 applied it: the pool is repaired again at once. A retry's change
        (`retry`) has no record in a pool loaded after its decision, as it should."""
        try:
            settled = await self.lock.settle_stock(sale.pool, request_id, applied)
        except STORAGE_ERRORS as exc:
            log.warning(
                "sale %s: stock change %s not settled in Redis: %r", sale.id, request_id, exc
            )
            return None
        lost = settled.reason in (StockReason.NOT_FOUND, StockReason.UNKNOWN_POOL)
        if not settled.ok and not (retry and lost):
            log.warning("sale %s: stock change %s: %s", sale.id, request_id, settled.reason)
        if lost and applied and not retry:
            try:
                now = await self.store.get(sale.id)
                if now is not None and now.state in LIVE_STATES:  # an ended sale needs no pool
                    await self.repair.repair(now, "stock", wait_s=REPAIR_WAIT_S)
            except STORAGE_ERRORS as exc:  # the pool check repairs it later
                log.warning("sale %s: repair after a lost change failed: %r", sale.id, exc)
        if not settled.ok:
            return None
        await self.after(sale.id)
        return settled

    async def after(self, sale_id: int) -> None:
        """Tell the room the stock left, and keep the sale's open / sold-out state in step."""
        self.announcer.stock_changed(sale_id)
        try:
            snap = await self.lock.snapshot(str(sale_id))
            if snap is not None and snap.remaining <= 0:
                await self.lifecycle.sold_out(sale_id)
            else:
                await self.lifecycle.reopen_if_stock(sale_id)
        except STORAGE_ERRORS as exc:  # the pool check corrects the state
            log.warning("sale %s: state after a stock change not updated: %r", sale_id, exc)

    async def _answer(
        self,
        sale: Sale,
        request_id: str,
        delta: int,
        decision: StockDecision,
        redis: StockResult | None,
    ) -> dict[str, Any]:
        """The figures after an applied change (`remaining` as Redis settled it, or what
        PostgreSQL knows: nothing held before a sale opens), or why it did not apply."""
        if decision.outcome == "mismatch":
            raise _mismatch()
        if decision.outcome == "void":
            raise _rolled_back()
        if decision.outcome == "refused":
            raise _refusal(await self.lifecycle.sale(sale.id), delta)
        remaining = decision.stock - decision.sold if redis is None else redis.remaining
        return {
            "sale_id": sale.id,
            "request_id": request_id,
            "delta": delta,
            "stock": decision.stock,
            "sold": decision.sold,
            "remaining": max(remaining, 0),
        }


def _refusal(sale: Sale, delta: int) -> Conflict | Invalid:
    """Why PostgreSQL refused a change of `sale` (as it is now) by `delta`."""
    if sale.state is SaleState.ENDED:
        return Conflict("ended", "the sale has ended")
    if sale.stock + delta > MAX_STOCK:
        return invalid(f"the stock cannot go above {MAX_STOCK}")
    return _too_low(sale.sold)


def _too_low(floor: int) -> Conflict:
    return Conflict(
        "too_low",
        f"the stock cannot go below what is sold, held or being confirmed ({floor})",
    )


def _rolled_back() -> Conflict:
    return Conflict(
        "conflict", "this change was rolled back; send it again with a new Idempotency-Key"
    )


def _mismatch() -> Conflict:
    return Conflict("conflict", "this Idempotency-Key was used for another change")
