"""HTTP routes of a sold-out flash sale's waitlist: join, leave, and one's place in it; each one
call of the sale service's waitlist with the caller's Actor. An offer of a freed unit comes as
the direct message `offer` and is confirmed or declined at the reservation routes."""

from __future__ import annotations

from collections.abc import Callable

from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from flash_sales.service import SaleService
from gateway.auth import Authenticator
from gateway.http_body import path_id

PATH = "/api/sales/{sale}/waitlist"


class WaitlistRoutes:
    def __init__(self, service: Callable[[], SaleService], auth: Authenticator) -> None:
        self._service = service
        self.auth = auth

    async def join(self, request: Request) -> JSONResponse:
        actor = self.auth.actor(request.headers.get("authorization"))
        sale_id = path_id(request, "sale", "sale")
        return JSONResponse(await self._service().waitlist.join(sale_id, actor), status_code=201)

    async def leave(self, request: Request) -> JSONResponse:
        actor = self.auth.actor(request.headers.get("authorization"))
        sale_id = path_id(request, "sale", "sale")
        return JSONResponse(await self._service().waitlist.leave(sale_id, actor))

    async def position(self, request: Request) -> JSONResponse:
        actor = self.auth.actor(request.headers.get("authorization"))
        sale_id = path_id(request, "sale", "sale")
        return JSONResponse(await self._service().waitlist.position(sale_id, actor))

    def routes(self) -> list[Route]:
        return [
            Route(PATH, self.join, methods=["POST"]),
            Route(PATH, self.leave, methods=["DELETE"]),
            Route(PATH, self.position, methods=["GET"]),
        ]
