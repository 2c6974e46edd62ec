"""HTTP routes of group deals: start a group of a sale, join and leave one, a group's view and
a sale's open groups; each one call of the group deals service with the caller's Actor. The
deal itself is made, started, stopped and shown at the sales' routes (gateway/http_sales.py)."""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from flash_sales.group_deals.service import GroupDeals
from gateway.http_body import path_id
from gateway.watched_routes import WatchedRoutes


class GroupRoutes(WatchedRoutes[GroupDeals]):
    async def start(self, request: Request) -> JSONResponse:
        actor = self.auth.actor(request.headers.get("authorization"))
        key = request.headers.get("idempotency-key", "")
        sale_id = path_id(request, "sale", "sale")
        return JSONResponse(await self.service.start_group(sale_id, actor, key), status_code=201)

    async def join(self, request: Request) -> JSONResponse:
        actor = self.auth.actor(request.headers.get("authorization"))
        return JSONResponse(await self.service.join(path_id(request, "group", "group"), actor))

    async def leave(self, request: Request) -> JSONResponse:
        actor = self.auth.actor(request.headers.get("authorization"))
        return JSONResponse(await self.service.leave(path_id(request, "group", "group"), actor))

    async def view(self, request: Request) -> JSONResponse:
        """A group, to anyone allowed to watch its room."""
        actor = self.auth.watcher(request.headers.get("authorization"))
        service = self.service
        group = await service.group(path_id(request, "group", "group"), actor)
        deal = await service.deal(group["sale_id"])
        await self.may_watch(deal.room, actor)
        return JSONResponse(group)

    async def open_groups(self, request: Request) -> JSONResponse:
        """A sale's forming groups with places left, to anyone allowed to watch its room."""
        actor = self.auth.watcher(request.headers.get("authorization"))
        service = self.service
        deal = await service.deal(path_id(request, "sale", "sale"))
        await self.may_watch(deal.room, actor)
        return JSONResponse({"groups": await service.groups(deal.sale_id)})

    def routes(self) -> list[Route]:
        return [
            Route("/api/sales/{sale}/groups", self.start, methods=["POST"]),
            Route("/api/sales/{sale}/groups", self.open_groups, methods=["GET"]),
            Route("/api/groups/{group}", self.view, methods=["GET"]),
            Route("/api/groups/{group}/join", self.join, methods=["POST"]),
            Route("/api/groups/{group}/leave", self.leave, methods=["POST"]),
        ]
