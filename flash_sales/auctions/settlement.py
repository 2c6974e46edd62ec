"""Settlement: the winner pays, or the runner-up gets a second chance.

At the end the winner's offer (made with the move to ended, flash_sales/auctions/store.py) gets
a hold of the auction's one item in an inventory_lock pool of its own (`auction-<id>`), at the
winning price, with its own timer; the winner confirms it as a flash-sale buyer confirms:
held -> confirming in Redis, the order in PostgreSQL (guarded: the offer moves from `offered`
once, an auction has one order at most), confirming -> confirmed. A hold that runs out voids
its offer in PostgreSQL and, for the winner's, offers the runner-up their own highest bid (if
it meets the reserve), once. Whichever of a confirm and the sweep reaches PostgreSQL first
decides; Redis refuses to confirm a hold past its expiry, so the sweep only voids holds Redis
has ended. After a Redis restart the pool is repaired first (pools.py); a hold Redis lost is
made again, under a new id (a confirm of the old id answers 409 `conflict` naming where to find
the new one).
"""

from __future__ import annotations

import logging
import secrets
from typing import Any

from flash_sales.auctions.announcements import AuctionAnnouncer
from flash_sales.auctions.model import Auction, OfferState, auction_id_of, ms, pool_name
from flash_sales.auctions.pools import SettlementPools
from flash_sales.auctions.store import AuctionStore, Offer
from flash_sales.model import Order
from inventory_lock import HoldState, InventoryLock, Rejection, pool_of
from rooms.actors import Action, Actor, authorize
from rooms.errors import STORAGE_ERRORS, Conflict, invalid, not_found, unavailable

log = logging.getLogger("live.auctions")

RETRY = "orders are unavailable for a moment; retry the confirm"
_OVER = (HoldState.EXPIRED, HoldState.RELEASED)


def is_auction_hold(reservation_id: str) -> bool:
    """Whether a reservation id is a settlement hold of an auction (not a flash sale's)."""
    try:
        return auction_id_of(pool_of(reservation_id)) is not None
    except ValueError:
        return False


def order_view(order: Order, auction_id: int) -> dict[str, Any]:
    return {**order.view(), "auction_id": auction_id}


class Settlement:
    def __init__(
        self,
        store: AuctionStore,
        lock: InventoryLock,
        announcer: AuctionAnnouncer,
        *,
        hold_s: float,
        stuck_confirm_s: float,
    ) -> None:
        """`hold_s`: how long an offer's hold lasts; `stuck_confirm_s`: how long a confirm may
        sit between Redis and PostgreSQL before the sweep voids it."""
        self.store = store
        self.lock = lock
        self.announcer = announcer
        self.hold_s = hold_s
        self.stuck_confirm_s = stuck_confirm_s
        self.pools = SettlementPools(store, lock, hold_s=hold_s)

    async def offer(self, auction: Auction, offer: Offer, *, renew: bool = False) -> None:
        """Make the offer's hold (again after a crash: the reserve is keyed by the offer; with
        `renew`, a new one for a hold Redis lost) and tell the bidder: `auction_offer`."""
        await self.lock.load(auction.pool, 1, 1, self.hold_s)  # `exists` for a second chance
        key = f"offer-{offer.rank}" + (f"-{secrets.token_hex(4)}" if renew else "")
        hold = await self.lock.reserve(auction.pool, offer.bidder, 1, key)
        if isinstance(hold, Rejection):
            log.warning("auction %s: no hold for offer %s: %s", auction.id, offer.rank, hold)
            return
        await self.store.held(offer, hold.id, hold.expires_at_ms)
        data = {
            "auction_id": auction.id,
            "reservation_id": hold.id,
            "price_cents": offer.price_cents,
            "expires_at": hold.expires_at_ms,
            "second_chance": offer.rank > 1,
        }
        await self.announcer.direct(auction.room, offer.bidder, "auction_offer", data)

    async def offers(self, auction_id: int, actor: Actor) -> list[dict[str, Any]]:
        """The caller's offers of this auction (to find the hold to confirm)."""
        return [
            {
                "auction_id": o.auction_id,
                "reservation_id": o.reservation_id,
                "price_cents": o.price_cents,
                "expires_at": ms(o.expires_at),
                "state": o.state.value,
                "second_chance": o.rank > 1,
            }
            for o in await self.store.offers(auction_id)
            if o.bidder == actor.user
        ]

    async def confirm(
        self, reservation_id: str, actor: Actor, payment_ref: str, auction: Auction
    ) -> dict[str, Any]:
        """The offer's hold into an order, by its bidder or by a service of the room on the
        bidder's behalf (a payment provider's callback, as for a sale's hold); idempotent (a
        retry gets the order)."""
        on_behalf = actor.service
        authorize(actor, auction.room, Action.CONFIRM_FOR_BUYER if on_behalf else Action.BUY)
        if not 0 < len(payment_ref) <= 200:
            raise invalid("payment_ref must be 1-200 characters")
        offer = await self.store.offer_by_hold(reservation_id)
        if offer is None and not on_behalf and await self._renewed(auction, actor):
            raise Conflict(
                "conflict",
                f"the offer's hold was renewed: see GET /api/auctions/{auction.id}/offers",
            )
        mine = offer is not None and (on_behalf or offer.bidder == actor.user)
        if offer is None or not mine or offer.auction_id != auction.id:
            raise not_found("no such reservation")
        begun = await self.lock.begin_confirm(reservation_id)
        if not begun.ok:  # over, or confirmed by an earlier call: PostgreSQL knows which
            return await self._decided(offer, Conflict("expired", "the offer's hold has expired"))
        try:
            placed = await self.store.place_order(offer, payment_ref)
        except STORAGE_ERRORS as exc:
            log.warning("auction %s: confirm of %s deferred: %r", auction.id, reservation_id, exc)
            raise unavailable(RETRY) from None
        if isinstance(placed, Order):
            await self._finish(auction.id, reservation_id)
            return order_view(placed, auction.id)
        if placed is OfferState.ORDER:
            return await self._decided(offer, Conflict("expired", "the offer has ended"))
        aborted = await self.lock.abort_confirm(reservation_id, release=True)
        if not aborted.ok:  # already over in Redis: nothing held is left behind
            log.warning(
                "auction %s: hold %s not aborted: %s", auction.id, reservation_id, aborted.reason
            )
        raise Conflict("expired", "the offer's hold has expired")

    async def _finish(self, auction_id: int, reservation_id: str) -> None:
        """The order is made whatever Redis answers now: a hold Redis did not move to
        `confirmed` (it went back, or is away) is adopted by `pools.recover_orders`."""
        try:
            done = await self.lock.finish_confirm(reservation_id)
        except STORAGE_ERRORS as exc:
            log.warning(
                "auction %s: order of %s made, Redis not told yet: %r",
                auction_id,
                reservation_id,
                exc,
            )
            return
        if not done.ok and done.state is not HoldState.CONFIRMED:
            log.warning(
                "auction %s: order of %s made, Redis answered %s: recovered later",
                auction_id,
                reservation_id,
                done.reason,
            )

    async def decline(self, reservation_id: str, actor: Actor, auction: Auction) -> dict[str, Any]:
        """The bidder lets their offer go (DELETE /api/reservations/{id}): the offer is voided
        in PostgreSQL (guarded, as the sweep voids it: a confirm that got there first wins),
        the hold released, and for the winner's offer the runner-up's second chance starts at
        once. Idempotent: a declined offer answers `released` again."""
        authorize(actor, auction.room, Action.BUY)
        offer = await self.store.offer_by_hold(reservation_id)
        if offer is None or offer.bidder != actor.user or offer.auction_id != auction.id:
            raise not_found("no such reservation")
        hold = await self.lock.get_hold(reservation_id)
        if hold is not None and hold.state is HoldState.CONFIRMING:
            raise Conflict("conflict", "a confirm of this reservation is in progress")
        voided, second = await self.store.void(offer, auction.config.reserve_cents)
        if not voided:
            decided = next(o for o in await self.store.offers(auction.id) if o.rank == offer.rank)
            if decided.state is OfferState.ORDER:
                raise Conflict("confirmed", "the reservation is already an order")
        released = await self.lock.cancel(reservation_id)
        if not released.ok and released.state is HoldState.CONFIRMING:
            # A confirm began after the check: PostgreSQL refuses its order (the offer is
            # void) and it gives the hold back itself.
            log.warning("auction %s: declined hold %s is confirming", auction.id, reservation_id)
        if second is not None:
            await self.offer(auction, second)
        return {"id": reservation_id, "state": "released"}

    async def _renewed(self, auction: Auction, actor: Actor) -> bool:
        """Whether the caller has an open offer of this auction (under another hold id)."""
        offers = await self.store.offers(auction.id)
        return any(o.bidder == actor.user and o.state is OfferState.OFFERED for o in offers)

    async def _decided(self, offer: Offer, otherwise: Exception) -> dict[str, Any]:
        """The order this offer became (Redis told it is confirmed), else `otherwise`."""
        assert offer.reservation_id is not None
        order = await self.store.order(offer.reservation_id)
        if order is None or order.buyer != offer.bidder:
            raise otherwise
        await self._finish(offer.auction_id, offer.reservation_id)  # no-op once confirmed
        return order_view(order, offer.auction_id)

    async def sweep(self) -> None:
        """Every open offer: its pool repaired if Redis lost or rolled it back, its missing
        hold made, or the offer voided once Redis ended its hold (or a confirm stalled past
        `stuck_confirm_s`), then the runner-up offered."""
        for offer, auction in await self.store.open_offers():
            try:
                if await self.pools.ensure(auction.id):
                    await self._sweep(auction, offer)
            except STORAGE_ERRORS as exc:
                log.warning("auction %s: offer %s not swept: %r", auction.id, offer.rank, exc)

    async def _sweep(self, auction: Auction, offer: Offer) -> None:
        if offer.reservation_id is None:
            await self.offer(auction, offer)
            return
        await self.lock.expire_due(pool_name(auction.id))
        hold = await self.lock.get_hold(offer.reservation_id)
        if hold is None:  # lost with Redis's data (a hold record is never deleted)
            log.warning("auction %s: the hold of offer %s was lost", auction.id, offer.rank)
            await self.offer(auction, offer, renew=True)
            return
        stuck = (
            hold.state is HoldState.CONFIRMING
            and await self.lock.server_ms() - hold.updated_at_ms > self.stuck_confirm_s * 1000
        )
        if hold.state not in _OVER and not stuck:
            return
        voided, second = await self.store.void(offer, auction.config.reserve_cents)
        if voided and stuck:
            aborted = await self.lock.abort_confirm(offer.reservation_id, release=True)
            if not aborted.ok:  # over already (expired meanwhile): nothing is left held
                log.warning(
                    "auction %s: stuck hold %s not aborted: %s",
                    auction.id,
                    offer.reservation_id,
                    aborted.reason,
                )
        if second is not None:
            await self.offer(auction, second)
