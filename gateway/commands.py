"""What a viewer's WebSocket commands do: each is one call of a domain service with the caller's
Actor and the fields gateway/protocol.py validated, answered to that viewer only, with the same
rules and results as the HTTP API."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

from flash_sales.service import SaleService
from rooms.actors import Actor
from rooms.service import RoomService

Handler = Callable[[str, Actor, dict[str, Any]], Awaitable[dict[str, Any]]]
"""(room of the connection, the caller, the command's fields) -> reply data; raises a Refusal to
answer with an error frame."""


def commands(rooms: RoomService, sales: SaleService) -> dict[str, Handler]:
    async def comment(room: str, actor: Actor, fields: dict[str, Any]) -> dict[str, Any]:
        published = await rooms.comment(room, actor, fields["text"])
        return {"seq": published.seq}

    async def buy(room: str, actor: Actor, fields: dict[str, Any]) -> dict[str, Any]:
        return await sales.buying.reserve(
            fields["sale_id"], actor, fields["qty"], fields["idempotency_key"]
        )

    async def confirm(room: str, actor: Actor, fields: dict[str, Any]) -> dict[str, Any]:
        return await sales.buying.confirm(
            fields["reservation_id"], actor, fields["payment_ref"], show_name=fields["show_name"]
        )

    async def cancel(room: str, actor: Actor, fields: dict[str, Any]) -> dict[str, Any]:
        return await sales.buying.cancel(fields["reservation_id"], actor)

    return {"comment": comment, "buy": buy, "confirm": confirm, "cancel": cancel}
