"""What a viewer's WebSocket commands do: each is one call of a domain service with the caller's
Actor and the fields gateway/protocol.py validated, answered to that viewer only, with the same
rules and results as the HTTP API."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

from flash_sales.auctions.service import AuctionService
from flash_sales.auctions.settlement import is_auction_hold
from flash_sales.group_deals.service import GroupDeals
from flash_sales.service import SaleService
from rooms.actors import Actor
from rooms.service import RoomService

Handler = Callable[[str, Actor, dict[str, Any]], Awaitable[dict[str, Any]]]
"""(room of the connection, the caller, the command's fields) -> reply data; raises a Refusal to
answer with an error frame."""


async def confirm_hold(
    sales: SaleService,
    auctions: AuctionService,
    reservation_id: str,
    actor: Actor,
    payment_ref: str,
    *,
    show_name: bool,
) -> dict[str, Any]:
    """Confirm a hold, a sale's or an auction's offer (its winner's or runner-up's): the same
    `confirm` over HTTP and the WebSocket. An offer's name showing was chosen with the bids."""
    if is_auction_hold(reservation_id):
        return await auctions.confirm(reservation_id, actor, payment_ref)
    return await sales.buying.confirm(reservation_id, actor, payment_ref, show_name=show_name)


def commands(
    rooms: RoomService, sales: SaleService, auctions: AuctionService, groups: GroupDeals
) -> dict[str, Handler]:
    async def comment(room: str, actor: Actor, fields: dict[str, Any]) -> dict[str, Any]:
        published = await rooms.comment(room, actor, fields["text"])
        return {"seq": published.seq}

    async def buy(room: str, actor: Actor, fields: dict[str, Any]) -> dict[str, Any]:
        return await sales.buying.reserve(
            fields["sale_id"], actor, fields["qty"], fields["idempotency_key"]
        )

    async def confirm(room: str, actor: Actor, fields: dict[str, Any]) -> dict[str, Any]:
        return await confirm_hold(
            sales,
            auctions,
            fields["reservation_id"],
            actor,
            fields["payment_ref"],
            show_name=fields["show_name"],
        )

    async def cancel(room: str, actor: Actor, fields: dict[str, Any]) -> dict[str, Any]:
        return await sales.buying.cancel(fields["reservation_id"], actor)

    async def bid(room: str, actor: Actor, fields: dict[str, Any]) -> dict[str, Any]:
        return await auctions.bidding.bid(
            fields["auction_id"],
            actor,
            fields["amount_cents"],
            fields["max_cents"],
            fields["idempotency_key"],
            show_name=fields["show_name"],
        )

    async def group_start(room: str, actor: Actor, fields: dict[str, Any]) -> dict[str, Any]:
        return await groups.start_group(fields["sale_id"], actor, fields["idempotency_key"])

    async def group_join(room: str, actor: Actor, fields: dict[str, Any]) -> dict[str, Any]:
        return await groups.join(fields["group_id"], actor)

    async def group_leave(room: str, actor: Actor, fields: dict[str, Any]) -> dict[str, Any]:
        return await groups.leave(fields["group_id"], actor)

    return {
        "comment": comment,
        "buy": buy,
        "confirm": confirm,
        "cancel": cancel,
        "bid": bid,
        "group_start": group_start,
        "group_join": group_join,
        "group_leave": group_leave,
    }
