"""Buying over the WebSocket: the gateway's `buy`, `confirm` and `cancel` commands, answered to
that buyer only, with the same rules and results as the HTTP API."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

from flash_sales.service import SaleService
from rooms.auth import Claims

Handler = Callable[[str, Claims, dict[str, Any]], Awaitable[dict[str, Any]]]


def sale_commands(sales: SaleService) -> dict[str, Handler]:
    async def buy(room: str, claims: Claims, fields: dict[str, Any]) -> dict[str, Any]:
        return await sales.buying.reserve(
            fields["sale_id"], claims, fields["qty"], fields["idempotency_key"]
        )

    async def confirm(room: str, claims: Claims, fields: dict[str, Any]) -> dict[str, Any]:
        return await sales.buying.confirm(
            fields["reservation_id"], claims, fields["payment_ref"], show_name=fields["show_name"]
        )

    async def cancel(room: str, claims: Claims, fields: dict[str, Any]) -> dict[str, Any]:
        return await sales.buying.cancel(fields["reservation_id"], claims)

    return {"buy": buy, "confirm": confirm, "cancel": cancel}
