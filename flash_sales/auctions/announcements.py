"""What a room's viewers learn about its auctions: critical `auction_started`,
`auction_extended` and `auction_ended` (never dropped), the state event `auction` (price, bids,
leader, deadline; conflated per auction by its merge key `auction:<id>`), and `outbid`, told to
the one bidder who lost the lead. The room snapshot keeps the last announced auction (its part
`auction`), changed atomically with each event.

A direct message is not logged: it goes on the room's direct channel (`RoomKeys.direct`, with
the room's hash tag, so it stays on the room's shard) as `{"to": user, "type", "data"}`,
for the gateway to write to that user's connections in the room only."""

from __future__ import annotations

import json
from typing import Any

from flash_sales.auctions.book import Live
from flash_sales.auctions.model import Auction, config_view, ms, reserve_met
from flash_sales.store import SaleStore
from rooms.events import Lane
from rooms.log import RoomLog

AUCTION_PART = "auction"


def direct_channel(room_log: RoomLog, room: str) -> str:
    return room_log.keys(room).direct


def auction_view(auction: Auction, live: Live | None) -> dict[str, Any]:
    """The auction as anyone may see it: never a maximum, the reserve, nor who leads unless
    they let their name be shown."""
    price = live.price_cents if live else auction.price_cents
    name = live.leader_name if live else auction.leader_name
    return {
        "id": auction.id,
        "room": auction.room,
        "product_id": auction.product_id,
        "state": live.state if live and live.state else auction.state.value,
        "price_cents": price,
        "leader": name,
        "bids": live.bids if live else auction.bids,
        "ends_at": live.ends_at_ms if live and live.ends_at_ms else ms(auction.ends_at),
        "extensions": live.extensions if live else auction.extensions,
        "reserve_met": reserve_met(auction.config, price),
        "min_next_cents": live.min_next_cents if live else None,
        **config_view(auction.config),
    }


class AuctionAnnouncer:
    def __init__(self, room_log: RoomLog, sales: SaleStore) -> None:
        self.log = room_log
        self.sales = sales
        room_log.add_snapshot_part(AUCTION_PART)
        self._command = "SPUBLISH" if room_log.sharded else "PUBLISH"

    async def lifecycle(self, auction: Auction, live: Live | None, event: str) -> None:
        """`auction_started` or `auction_ended` (with the winning price and, if they allowed
        it, the winner's name; none below the reserve)."""
        view = auction_view(auction, live)
        view["product"] = await self.sales.product(auction.room, auction.product_id)
        data: dict[str, Any] = {"auction": view}
        if event == "auction_ended":
            won = view["reserve_met"]
            data["price_cents"] = view["price_cents"] if won else None
            data["winner"] = view["leader"] if won else None
        await self._critical(auction, event, data, view)

    async def extended(self, auction: Auction, live: Live) -> None:
        view = auction_view(auction, live)
        data = {"auction_id": auction.id, "ends_at": live.ends_at_ms, "extensions": live.extensions}
        await self._critical(auction, "auction_extended", data, view)

    async def moved(self, auction: Auction, live: Live) -> None:
        """The price, bids, leader or deadline changed: the state event of this auction."""
        view = auction_view(auction, live)
        await self.log.publish(
            auction.room,
            "auction",
            view,
            lane=Lane.STATE,
            key=f"auction:{auction.id}",
            state_op="set",
            state_field=AUCTION_PART,
            state_value=json.dumps(view),
        )

    async def direct(self, room: str, user: str, event: str, data: dict[str, Any]) -> None:
        """One message to one user's connections in the room (see the module's docstring)."""
        message = {"to": user, "type": event, "data": data}
        await self.log.client.execute_command(
            self._command, direct_channel(self.log, room), json.dumps(message)
        )

    async def outbid(self, auction: Auction, user: str, live: Live) -> None:
        data = {
            "auction_id": auction.id,
            "price_cents": live.price_cents,
            "min_next_cents": live.min_next_cents,
            "ends_at": live.ends_at_ms,
        }
        await self.direct(auction.room, user, "outbid", data)

    async def _critical(
        self, auction: Auction, event: str, data: dict[str, Any], view: dict[str, Any]
    ) -> None:
        await self.log.publish(
            auction.room,
            event,
            data,
            lane=Lane.CRITICAL,
            state_op="set",
            state_field=AUCTION_PART,
            state_value=json.dumps(view),
        )
