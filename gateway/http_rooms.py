"""HTTP routes of rooms: the host and moderator API, the snapshot, comments over HTTP. Each
turns a request into one call of RoomService with the caller's Actor; the service decides."""

from __future__ import annotations

from collections.abc import Callable

from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from flash_sales.model import MAX_PRICE_CENTS
from gateway import fields
from gateway.auth import Authenticator
from gateway.http_body import json_body
from rooms.log import Published
from rooms.rules import MAX_MUTE_S, MAX_SLOW_MODE_S
from rooms.service import RoomService

MAX_TEXT = 10_000


def _published(published: Published, status: int = 200) -> JSONResponse:
    return JSONResponse({"seq": published.seq, "epoch": published.epoch}, status_code=status)


def _room(request: Request) -> str:
    room: str = request.path_params["room"]
    return room


class RoomRoutes:
    def __init__(self, service: Callable[[], RoomService], auth: Authenticator) -> None:
        self._service = service
        self.auth = auth

    @property
    def service(self) -> RoomService:
        return self._service()

    async def _watch(self, request: Request) -> str:
        """The room, for anyone allowed to watch it."""
        actor = self.auth.watcher(request.headers.get("authorization"))
        room = _room(request)
        await self.service.may_watch(room, actor)
        return room

    async def put_room(self, request: Request) -> JSONResponse:
        actor = self.auth.actor(request.headers.get("authorization"))
        body = await json_body(request)
        title = fields.text(body, "title", max_len=200)
        settings = fields.mapping(body, "settings")
        return JSONResponse(await self.service.put_room(_room(request), actor, title, settings))

    async def get_room(self, request: Request) -> JSONResponse:
        return JSONResponse(await self.service.snapshot(await self._watch(request)))

    async def list_products(self, request: Request) -> JSONResponse:
        room = await self._watch(request)
        return JSONResponse({"products": await self.service.products(room)})

    async def add_product(self, request: Request) -> JSONResponse:
        actor = self.auth.actor(request.headers.get("authorization"))
        body = await json_body(request)
        product = await self.service.add_product(
            _room(request),
            actor,
            sku=fields.text(body, "sku", max_len=64),
            title=fields.text(body, "title", max_len=200),
            price_cents=fields.integer(body, "price_cents", low=0, high=MAX_PRICE_CENTS),
            image_url=fields.text(body, "image_url", max_len=2000, default=""),
        )
        return JSONResponse(product, status_code=201)

    async def pin(self, request: Request) -> JSONResponse:
        actor = self.auth.actor(request.headers.get("authorization"))
        body = await json_body(request)
        product_id = fields.integer(body, "product_id", low=1, high=fields.MAX_ID)
        return _published(await self.service.pin(_room(request), actor, product_id))

    async def unpin(self, request: Request) -> JSONResponse:
        actor = self.auth.actor(request.headers.get("authorization"))
        return _published(await self.service.unpin(_room(request), actor))

    async def message(self, request: Request) -> JSONResponse:
        actor = self.auth.actor(request.headers.get("authorization"))
        text = fields.text(await json_body(request), "text", max_len=MAX_TEXT)
        return _published(await self.service.host_message(_room(request), actor, text), 201)

    async def comment(self, request: Request) -> JSONResponse:
        actor = self.auth.actor(request.headers.get("authorization"))
        text = fields.text(await json_body(request), "text", max_len=MAX_TEXT)
        return _published(await self.service.comment(_room(request), actor, text), 201)

    async def delete_comment(self, request: Request) -> JSONResponse:
        actor = self.auth.actor(request.headers.get("authorization"))
        comment: str = request.path_params["comment"]
        return _published(await self.service.delete_comment(_room(request), actor, comment))

    async def mute(self, request: Request) -> JSONResponse:
        actor = self.auth.actor(request.headers.get("authorization"))
        body = await json_body(request, required=False)
        seconds = fields.integer(body, "seconds", low=1, high=MAX_MUTE_S, default=600)
        user: str = request.path_params["user"]
        await self.service.mute(_room(request), actor, user, seconds)
        return JSONResponse({"user": user, "muted_for_s": seconds})

    async def unmute(self, request: Request) -> JSONResponse:
        actor = self.auth.actor(request.headers.get("authorization"))
        user: str = request.path_params["user"]
        await self.service.unmute(_room(request), actor, user)
        return JSONResponse({"user": user, "muted_for_s": 0})

    async def slow_mode(self, request: Request) -> JSONResponse:
        actor = self.auth.actor(request.headers.get("authorization"))
        body = await json_body(request)
        seconds = fields.integer(body, "seconds", low=0, high=MAX_SLOW_MODE_S)
        return _published(await self.service.slow_mode(_room(request), actor, seconds))

    async def end(self, request: Request) -> JSONResponse:
        actor = self.auth.actor(request.headers.get("authorization"))
        return _published(await self.service.end(_room(request), actor))

    def routes(self) -> list[Route]:
        base = "/api/rooms/{room}"
        return [
            Route(base, self.put_room, methods=["PUT"]),
            Route(base, self.get_room, methods=["GET"]),
            Route(f"{base}/products", self.list_products, methods=["GET"]),
            Route(f"{base}/products", self.add_product, methods=["POST"]),
            Route(f"{base}/pin", self.pin, methods=["POST"]),
            Route(f"{base}/pin", self.unpin, methods=["DELETE"]),
            Route(f"{base}/messages", self.message, methods=["POST"]),
            Route(f"{base}/comments", self.comment, methods=["POST"]),
            Route(f"{base}/comments/{{comment}}", self.delete_comment, methods=["DELETE"]),
            Route(f"{base}/mutes/{{user}}", self.mute, methods=["PUT"]),
            Route(f"{base}/mutes/{{user}}", self.unmute, methods=["DELETE"]),
            Route(f"{base}/slow-mode", self.slow_mode, methods=["PUT"]),
            Route(f"{base}/end", self.end, methods=["POST"]),
        ]
