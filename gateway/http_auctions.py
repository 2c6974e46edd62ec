"""HTTP routes of auctions: the host API (create, start, stop, the bid list), anyone's view of
an auction, a viewer's bids and their settlement offers; each one call of the auction service
with the caller's Actor. Amounts and the configuration are checked by the domain
(flash_sales/auctions/model.py), which answers `invalid` naming the field."""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from flash_sales.auctions.service import AuctionService
from gateway import fields
from gateway.http_body import json_body, path_id
from gateway.watched_routes import WatchedRoutes

CONFIG_FIELDS = (
    "start_cents",
    "increment_cents",
    "increments",
    "duration_s",
    "snipe_window_s",
    "max_extensions",
    "reserve_cents",
)


class AuctionRoutes(WatchedRoutes[AuctionService]):
    async def create(self, request: Request) -> JSONResponse:
        actor = self.auth.actor(request.headers.get("authorization"))
        body = await json_body(request)
        config = {name: body[name] for name in CONFIG_FIELDS if name in body}
        auction = await self.service.lifecycle.create(
            request.path_params["room"],
            actor,
            fields.integer(body, "product_id", low=1, high=fields.MAX_ID),
            **config,
        )
        return JSONResponse(auction, status_code=201)

    async def start(self, request: Request) -> JSONResponse:
        actor = self.auth.actor(request.headers.get("authorization"))
        auction_id = path_id(request, "auction", "auction")
        return JSONResponse(await self.service.lifecycle.start(auction_id, actor))

    async def stop(self, request: Request) -> JSONResponse:
        actor = self.auth.actor(request.headers.get("authorization"))
        auction_id = path_id(request, "auction", "auction")
        return JSONResponse(await self.service.lifecycle.stop(auction_id, actor))

    async def view(self, request: Request) -> JSONResponse:
        """The auction as the room's events show it, to anyone allowed to watch the room."""
        actor = self.auth.watcher(request.headers.get("authorization"))
        auction = await self.service.lifecycle.view(path_id(request, "auction", "auction"))
        await self.may_watch(auction["room"], actor)
        return JSONResponse(auction)

    async def bids(self, request: Request) -> JSONResponse:
        actor = self.auth.actor(request.headers.get("authorization"))
        auction_id = path_id(request, "auction", "auction")
        return JSONResponse(await self.service.lifecycle.bids(auction_id, actor))

    async def bid(self, request: Request) -> JSONResponse:
        actor = self.auth.actor(request.headers.get("authorization"))
        body = await json_body(request)
        answer = await self.service.bidding.bid(
            path_id(request, "auction", "auction"),
            actor,
            body.get("amount_cents"),
            body.get("max_cents"),
            request.headers.get("idempotency-key", ""),
            show_name=fields.boolean(body, "show_name"),
        )
        return JSONResponse(answer, status_code=201)

    async def offers(self, request: Request) -> JSONResponse:
        actor = self.auth.actor(request.headers.get("authorization"))
        auction_id = path_id(request, "auction", "auction")
        return JSONResponse({"offers": await self.service.offers(auction_id, actor)})

    def routes(self) -> list[Route]:
        return [
            Route("/api/rooms/{room}/auctions", self.create, methods=["POST"]),
            Route("/api/auctions/{auction}", self.view, methods=["GET"]),
            Route("/api/auctions/{auction}/start", self.start, methods=["POST"]),
            Route("/api/auctions/{auction}/stop", self.stop, methods=["POST"]),
            Route("/api/auctions/{auction}/bids", self.bids, methods=["GET"]),
            Route("/api/auctions/{auction}/bids", self.bid, methods=["POST"]),
            Route("/api/auctions/{auction}/offers", self.offers, methods=["GET"]),
        ]
