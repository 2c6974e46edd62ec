"""Settlement pools (`auction-<id>` in inventory_lock: one item, the offer's hold) in step with
PostgreSQL, as flash_sales/repair.py keeps sale pools.

- `ensure`: a pool that is missing or `stale` (Redis restarted, was restored or failed over) is
  repaired before it is used: fenced, the auction's order adopted as a confirmed hold if one
  was written, the holds of voided offers let go, unfenced. An open offer whose hold Redis lost
  is made again by the sweep (settlement.py), under a new id and with a full hold time (the
  outage is not the bidder's fault), and the bidder is told the new id.
- `recover_orders`: a confirm stuck between PostgreSQL and Redis after its order was written
  (its process died) is finished: the hold adopted as confirmed. One outcome per hold is
  decided in PostgreSQL by the offer's guarded move from `offered`; Redis follows it.
- `drop_settled`: the pool of an auction whose offers are all decided leaves Redis once nothing
  in it is held or confirming (PostgreSQL has the order; a retried confirm finds it there).
"""

from __future__ import annotations

import logging
import secrets

from flash_sales.auctions.model import OfferState, pool_name
from flash_sales.auctions.store import AuctionStore, Offer
from inventory_lock import HoldState, InventoryLock, OrderFact
from rooms.errors import STORAGE_ERRORS

log = logging.getLogger("live.auctions")

FENCE_LEASE_S = 30.0
SETTLED_GRACE_S = 60.0  # a decided offer's hold is left this long before its pool goes


class SettlementPools:
    def __init__(self, store: AuctionStore, lock: InventoryLock, *, hold_s: float) -> None:
        self.store = store
        self.lock = lock
        self.hold_s = hold_s

    async def ensure(self, auction_id: int) -> bool:
        """Whether the pool is up to date with PostgreSQL (repaired here if it was not)."""
        snap = await self.lock.snapshot(pool_name(auction_id))
        if snap is not None and not snap.stale:
            return not snap.fenced  # fenced: a repair is running (its lease covers its death)
        return await self._repair(auction_id, "missing" if snap is None else "stale")

    async def _repair(self, auction_id: int, reason: str) -> bool:
        pool, token = pool_name(auction_id), secrets.token_hex(8)
        fenced = await self.lock.fence(pool, 1, 1, self.hold_s, token, FENCE_LEASE_S)
        if not fenced.ok:
            return False
        order = await self.store.auction_order(auction_id)
        if order is not None:
            await self.lock.adopt(pool, [OrderFact(order.reservation_id, order.buyer, 1)])
        for offer in await self.store.offers(auction_id):
            if offer.state is OfferState.VOID and offer.reservation_id is not None:
                await self._let_go(offer.reservation_id)
        done = await self.lock.unfence(pool, token, 1)
        log.warning(
            "auction %s: settlement pool repaired from PostgreSQL (%s)%s",
            auction_id,
            reason,
            "" if done.ok else "; fenced again meanwhile",
        )
        return done.ok

    async def _let_go(self, reservation_id: str) -> None:
        """The hold of a voided offer, back to stock (Redis went back to before the void)."""
        hold = await self.lock.get_hold(reservation_id)
        if hold is not None and hold.state is HoldState.HELD:
            await self.lock.cancel(reservation_id)
        elif hold is not None and hold.state is HoldState.CONFIRMING:
            await self.lock.abort_confirm(reservation_id, release=True)

    async def recover_orders(self) -> None:
        for offer in await self.store.unsettled_orders():
            try:
                await self._adopt(offer)
            except STORAGE_ERRORS as exc:
                log.warning("auction %s: order not finished yet: %r", offer.auction_id, exc)

    async def _adopt(self, offer: Offer) -> None:
        assert offer.reservation_id is not None  # an order's offer had its hold
        hold = await self.lock.get_hold(offer.reservation_id)
        if hold is not None and hold.state is HoldState.CONFIRMED:
            return
        if not await self.ensure(offer.auction_id):
            return
        fact = OrderFact(offer.reservation_id, offer.bidder, 1)
        await self.lock.adopt(pool_name(offer.auction_id), [fact])
        log.warning("auction %s: order of %s finished in Redis", offer.auction_id, fact.hold_id)

    async def drop_settled(self, after_s: float = SETTLED_GRACE_S) -> list[int]:
        """The auctions whose pools were dropped now."""
        dropped = []
        for auction_id in await self.store.settled(after_s):
            snap = await self.lock.snapshot(pool_name(auction_id))
            if snap is not None and (snap.held or snap.confirming):
                continue  # expires or is recovered first
            await self.lock.drop(pool_name(auction_id))
            await self.store.pool_dropped(auction_id)
            dropped.append(auction_id)
        return dropped
