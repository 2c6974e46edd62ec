"""HTTP routes of share links: a viewer's share code and link, a visit through a link (for
clients that do not open the WebSocket with `share`), and for the room's hosts the referral
report and its reward rule. Each is one call of Referrals with the caller's Actor."""

from __future__ import annotations

from urllib.parse import quote

from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from flash_sales.referrals import MAX_PERCENT, Referrals
from gateway import fields
from gateway.http_body import json_body
from gateway.share_codes import MAX_CODE_CHARS, mint_share, sharer_of
from gateway.watched_routes import WatchedRoutes


def share_link(room: str, code: str) -> str:
    """The watch page of `room` opened with `code` (a path: the page adds its origin)."""
    return f"/watch/{quote(room, safe='')}?share={code}"


class ReferralRoutes(WatchedRoutes[Referrals]):
    async def share(self, request: Request) -> JSONResponse:
        actor = self.auth.actor(request.headers.get("authorization"))
        room: str = request.path_params["room"]
        await self.service.share(room, actor)
        code = mint_share(self.auth.secret, room, actor.user)
        return JSONResponse({"room": room, "code": code, "link": share_link(room, code)})

    async def visit(self, request: Request) -> JSONResponse:
        actor = self.auth.watcher(request.headers.get("authorization"))
        room: str = request.path_params["room"]
        await self.may_watch(room, actor)
        body = await json_body(request)
        sharer = sharer_of(
            self.auth.secret, room, fields.text(body, "share", max_len=MAX_CODE_CHARS)
        )
        return JSONResponse({"recorded": await self.service.visit(room, actor, sharer, fresh=True)})

    async def report(self, request: Request) -> JSONResponse:
        actor = self.auth.actor(request.headers.get("authorization"))
        return JSONResponse(await self.service.report(request.path_params["room"], actor))

    async def set_rule(self, request: Request) -> JSONResponse:
        actor = self.auth.actor(request.headers.get("authorization"))
        body = await json_body(request)
        percent = fields.integer(body, "percent", low=0, high=MAX_PERCENT)
        return JSONResponse(
            await self.service.set_rule(request.path_params["room"], actor, percent)
        )

    def routes(self) -> list[Route]:
        base = "/api/rooms/{room}"
        return [
            Route(f"{base}/share", self.share, methods=["POST"]),
            Route(f"{base}/visits", self.visit, methods=["POST"]),
            Route(f"{base}/referrals", self.report, methods=["GET"]),
            Route(f"{base}/referrals/rule", self.set_rule, methods=["PUT"]),
        ]
