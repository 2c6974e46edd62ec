"""The waitlist of a sold-out flash sale: a buyer queues (`join`, one place each, at most
MAX_WAITING), leaves, or asks their place. A unit freed by a hold that expires or is cancelled
goes to the next waiter inside the script that frees it (inventory_lock/waitlist.py): an
`offered` hold of one unit with the sale's hold time, which the buyer confirms or cancels at the
reservation routes like any hold. `announce_offers` tells each new offer's buyer, as the direct
message `offer`, on the room's direct channel (the auctions' `outbid` travels the same way).

Waiters live in Redis only: a Redis that loses the pool loses its queue (the pool is repaired
from PostgreSQL, which knows orders, not waiters). An offer is told once; a buyer who is gone
lets it lapse, and it goes on to the next waiter.
"""

from __future__ import annotations

import json
import logging
from typing import Any

from flash_sales.auctions.announcements import direct_channel
from flash_sales.lifecycle import SaleLifecycle
from flash_sales.model import sale_id_of
from inventory_lock import HoldRecord, InventoryLock, WaitReason
from rooms.actors import Action, Actor, authorize
from rooms.errors import STORAGE_ERRORS, Conflict, Refusal, invalid
from rooms.log import RoomLog

TELL_ERRORS: tuple[type[Exception], ...] = (*STORAGE_ERRORS, Refusal)  # an offer not told
log = logging.getLogger("live.flash_sales")

MAX_WAITING = 10_000  # buyers on one sale's waitlist
OFFER = "offer"

_REFUSALS = {
    WaitReason.ALREADY_WAITING: ("already_waiting", "you are on the waitlist already"),
    WaitReason.NOT_SOLD_OUT: ("not_sold_out", "stock is left: reserve instead"),
    WaitReason.LIMIT: ("limit", "you reached the limit per buyer for this sale"),
    WaitReason.FULL: ("waitlist_full", "the waitlist is full"),
    WaitReason.CLOSED: ("not_open", "the sale is not open"),
    WaitReason.UNKNOWN_POOL: ("not_open", "the sale is not open"),
}


class Waitlist:
    def __init__(self, lifecycle: SaleLifecycle, lock: InventoryLock, room_log: RoomLog) -> None:
        self.lifecycle = lifecycle
        self.lock = lock
        self.room_log = room_log
        self._publish = "SPUBLISH" if room_log.sharded else "PUBLISH"

    async def join(self, sale_id: int, actor: Actor) -> dict[str, Any]:
        sale = await self.lifecycle.fixed(sale_id)
        authorize(actor, sale.room, Action.BUY)
        waiting = await self.lock.waitlists.join(sale.pool, actor.user, MAX_WAITING)
        if waiting.reason is WaitReason.INVALID:
            raise invalid("invalid waitlist request")
        if waiting.reason is not None:
            code, detail = _REFUSALS[waiting.reason]
            if waiting.reason is WaitReason.ALREADY_WAITING:
                detail += f" (position {waiting.position})"
            raise Conflict(code, detail)
        return {"sale_id": sale.id, "position": waiting.position}

    async def leave(self, sale_id: int, actor: Actor) -> dict[str, Any]:
        sale = await self.lifecycle.fixed(sale_id)
        authorize(actor, sale.room, Action.BUY)
        if not await self.lock.waitlists.leave(sale.pool, actor.user):
            raise Conflict("not_waiting", "you are not on the waitlist")
        return {"sale_id": sale.id, "state": "left"}

    async def position(self, sale_id: int, actor: Actor) -> dict[str, Any]:
        """The caller's place on the waitlist, null when not waiting."""
        sale = await self.lifecycle.fixed(sale_id)
        authorize(actor, sale.room, Action.BUY)
        position = await self.lock.waitlists.position(sale.pool, actor.user)
        return {"sale_id": sale.id, "position": position}

    async def announce_offers(self, pools: list[str]) -> None:
        """Tell the buyer of each offer made since the last run (in any process) about it."""
        for pool in pools:
            sale_id = sale_id_of(pool)
            if sale_id is None:
                continue
            try:
                offers = await self.lock.waitlists.take_offers(pool)
            except STORAGE_ERRORS as exc:
                log.warning("sale %s: offers not taken: %r", sale_id, exc)
                continue
            for offer in offers:  # each told on its own: one that fails lapses to the next waiter
                try:
                    await self._tell(sale_id, offer)
                except TELL_ERRORS as exc:
                    log.warning("sale %s: offer %s not told: %r", sale_id, offer.id, exc)

    async def _tell(self, sale_id: int, offer: HoldRecord) -> None:
        sale = await self.lifecycle.fixed(sale_id)
        data = {
            "sale_id": sale.id,
            "reservation_id": offer.id,
            "qty": offer.qty,
            "price_cents": sale.price_cents,
            "expires_at": offer.expires_at_ms,
        }
        message = json.dumps({"to": offer.buyer, "type": OFFER, "data": data})
        channel = direct_channel(self.room_log, sale.room)
        await self.room_log.client.execute_command(self._publish, channel, message)
