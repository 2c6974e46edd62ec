"""What a room's viewers learn about its group deals: critical `group_started`, `group_formed`
and `group_failed` (never dropped), the state event `group_progress` (members and places left,
conflated per group by its merge key `group:<id>`), the deal's `sale_started` and
`sale_ended` (the room snapshot's `sale` part) and `stock` left (its `stock` part), with the
shapes and merge keys of a flash sale's, so an overlay shows either the same way. Best effort:
what is decided in PostgreSQL stands whether or not the room hears of it."""

from __future__ import annotations

import json
import logging
from typing import Any

from flash_sales.announcements import SALE_PART, STOCK_PART
from flash_sales.group_deals.model import Group, GroupDeal
from rooms.errors import STORAGE_ERRORS
from rooms.events import Lane
from rooms.log import RoomLog

log = logging.getLogger("live.group_deals")

GROUP_STARTED = "group_started"
GROUP_PROGRESS = "group_progress"
GROUP_FORMED = "group_formed"
GROUP_FAILED = "group_failed"


class GroupAnnouncer:
    def __init__(self, room_log: RoomLog) -> None:
        self.log = room_log

    async def group(self, deal: GroupDeal, group: Group, event: str) -> None:
        data: dict[str, Any] = {"group": group.view(), "sale_id": deal.sale_id}
        try:
            if event == GROUP_PROGRESS:
                await self.log.publish(
                    deal.room, event, data, lane=Lane.STATE, key=f"group:{group.id}"
                )
            else:
                await self.log.publish(deal.room, event, data, lane=Lane.CRITICAL)
        except STORAGE_ERRORS as exc:
            log.warning("group %s: %s not announced: %r", group.id, event, exc)

    async def sale(self, deal: GroupDeal, event: str, remaining: int | None = None) -> None:
        view = deal.view()
        view["remaining"] = deal.stock - deal.sold if remaining is None else remaining
        try:
            await self.log.publish(
                deal.room,
                event,
                {"sale": view},
                lane=Lane.CRITICAL,
                state_op="set",
                state_field=SALE_PART,
                state_value=json.dumps(view),
            )
        except STORAGE_ERRORS as exc:
            log.warning("group sale %s: %s not announced: %r", deal.sale_id, event, exc)

    async def stock(self, deal: GroupDeal, remaining: int) -> None:
        """The items left for new places, after a join, a leave or a failed group."""
        stock = {"sale_id": deal.sale_id, "remaining": max(remaining, 0), "stock": deal.stock}
        try:
            await self.log.publish(
                deal.room,
                "stock",
                stock,
                lane=Lane.STATE,
                key=f"stock:{deal.sale_id}",
                state_op="set",
                state_field=STOCK_PART,
                state_value=json.dumps(stock),
            )
        except STORAGE_ERRORS as exc:
            log.warning("group sale %s: stock not announced: %r", deal.sale_id, exc)
