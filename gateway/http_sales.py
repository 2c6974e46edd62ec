"""HTTP routes of flash sales: the host API and the buyer API, each one call of the sale
service with the caller's Actor."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from flash_sales.auctions.service import AuctionService
from flash_sales.auctions.settlement import is_auction_hold
from flash_sales.group_deals.service import GroupDeals
from flash_sales.model import MAX_HOLD_SECONDS, MAX_LIMIT, MAX_PRICE_CENTS, MAX_STOCK
from flash_sales.service import SaleService
from gateway import fields
from gateway.auth import Authenticator
from gateway.commands import confirm_hold
from gateway.http_body import json_body, path_id
from gateway.protocol import MAX_PAYMENT_REF_LEN
from rooms.actors import Actor
from rooms.errors import invalid

RESERVE = "/api/sales/{sale}/reservations"
CONFIRM = "/api/reservations/{reservation}/confirm"
BURST_PATHS = (RESERVE, CONFIRM)
"""The routes of a sale's opening burst: gateway/fast_lane.py answers them."""


class SaleRoutes:
    def __init__(
        self,
        service: Callable[[], SaleService],
        auth: Authenticator,
        auctions: Callable[[], AuctionService],
        groups: Callable[[], GroupDeals],
    ) -> None:
        """`auctions`: an auction's offer is a hold confirmed at the same route. `groups`: a
        group deal is made, started, stopped and shown at the sales' routes."""
        self._service = service
        self._auctions = auctions
        self._groups = groups
        self.auth = auth

    @property
    def service(self) -> SaleService:
        return self._service()

    async def create(self, request: Request) -> JSONResponse:
        actor = self.auth.actor(request.headers.get("authorization"))
        body = await json_body(request)
        kind = body.get("kind", "flash")
        if kind == "group":
            return JSONResponse(await self._create_group(request, actor, body), status_code=201)
        if kind != "flash":
            raise invalid("kind must be flash or group")
        sale = await self.service.lifecycle.create(
            request.path_params["room"],
            actor,
            product_id=fields.integer(body, "product_id", low=1, high=fields.MAX_ID),
            price_cents=fields.integer(body, "price_cents", low=0, high=MAX_PRICE_CENTS),
            stock=fields.integer(body, "stock", low=1, high=MAX_STOCK),
            limit_per_buyer=fields.integer(
                body, "limit_per_buyer", low=1, high=MAX_LIMIT, default=1
            ),
            hold_seconds=fields.integer(
                body, "hold_seconds", low=1, high=MAX_HOLD_SECONDS, default=120
            ),
            starts_at=fields.moment(body, "starts_at"),
            ends_at=fields.moment(body, "ends_at"),
        )
        return JSONResponse(sale, status_code=201)

    async def _create_group(
        self, request: Request, actor: Actor, body: dict[str, Any]
    ) -> dict[str, Any]:
        """A group deal: its numbers are the domain's to check (`invalid` naming the field)."""
        return await self._groups().create(
            request.path_params["room"],
            actor,
            fields.integer(body, "product_id", low=1, high=fields.MAX_ID),
            price_cents=body.get("price_cents"),
            group_price_cents=body.get("group_price_cents"),
            stock=body.get("stock"),
            limit_per_buyer=body.get("limit_per_buyer", 1),
            group_size=body.get("group_size"),
            group_window_s=body.get("group_window_s"),
            starts_at=fields.moment(body, "starts_at"),
            ends_at=fields.moment(body, "ends_at"),
        )

    async def start(self, request: Request) -> JSONResponse:
        actor = self.auth.actor(request.headers.get("authorization"))
        sale_id = path_id(request, "sale", "sale")
        if await self._groups().is_group(sale_id):
            return JSONResponse(await self._groups().start_sale(sale_id, actor))
        return JSONResponse(await self.service.lifecycle.start_now(sale_id, actor))

    async def stop(self, request: Request) -> JSONResponse:
        actor = self.auth.actor(request.headers.get("authorization"))
        sale_id = path_id(request, "sale", "sale")
        if await self._groups().is_group(sale_id):
            return JSONResponse(await self._groups().stop_sale(sale_id, actor))
        return JSONResponse(await self.service.lifecycle.stop_now(sale_id, actor))

    async def figures(self, request: Request) -> JSONResponse:
        actor = self.auth.actor(request.headers.get("authorization"))
        sale_id = path_id(request, "sale", "sale")
        if await self._groups().is_group(sale_id):
            return JSONResponse(await self._groups().figures(sale_id, actor))
        return JSONResponse(await self.service.lifecycle.figures(sale_id, actor))

    async def reserve(self, request: Request) -> JSONResponse:
        actor = self.auth.actor(request.headers.get("authorization"))
        key = request.headers.get("idempotency-key", "")
        qty = fields.integer(
            await json_body(request, required=False), "qty", low=1, high=MAX_LIMIT, default=1
        )
        hold = await self.service.buying.reserve(path_id(request, "sale", "sale"), actor, qty, key)
        return JSONResponse(hold, status_code=201)

    async def confirm(self, request: Request) -> JSONResponse:
        actor = self.auth.actor(request.headers.get("authorization"))
        body = await json_body(request)
        order = await confirm_hold(
            self.service,
            self._auctions(),
            request.path_params["reservation"],
            actor,
            fields.text(body, "payment_ref", max_len=MAX_PAYMENT_REF_LEN),
            show_name=fields.boolean(body, "show_name"),
        )
        return JSONResponse(order, status_code=201)

    async def stock(self, request: Request) -> JSONResponse:
        actor = self.auth.actor(request.headers.get("authorization"))
        key = request.headers.get("idempotency-key", "")
        delta = fields.integer(await json_body(request), "delta", low=-MAX_STOCK, high=MAX_STOCK)
        sale_id = path_id(request, "sale", "sale")
        return JSONResponse(await self.service.stock.change(sale_id, actor, delta, key))

    async def cancel(self, request: Request) -> JSONResponse:
        actor = self.auth.actor(request.headers.get("authorization"))
        reservation = request.path_params["reservation"]
        if is_auction_hold(reservation):  # the bidder declines an auction's offer
            return JSONResponse(await self._auctions().decline(reservation, actor))
        return JSONResponse(await self.service.buying.cancel(reservation, actor))

    def routes(self) -> list[Route]:
        return [
            Route("/api/rooms/{room}/sales", self.create, methods=["POST"]),
            Route("/api/sales/{sale}", self.figures, methods=["GET"]),
            Route("/api/sales/{sale}/start", self.start, methods=["POST"]),
            Route("/api/sales/{sale}/stop", self.stop, methods=["POST"]),
            Route("/api/sales/{sale}/stock", self.stock, methods=["POST"]),
            Route(RESERVE, self.reserve, methods=["POST"]),
            Route(CONFIRM, self.confirm, methods=["POST"]),
            Route("/api/reservations/{reservation}", self.cancel, methods=["DELETE"]),
        ]
