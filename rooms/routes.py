"""HTTP routes of rooms: the host and moderator API, the snapshot, comments over HTTP."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from rooms.auth import Authenticator, Claims, Role, bearer
from rooms.errors import forbidden, invalid, unauthorized
from rooms.http import int_field, json_body, text_field
from rooms.log import Published
from rooms.service import MAX_MUTE_S, MAX_SLOW_MODE_S, RoomService

MAX_PRICE_CENTS = 100_000_000


def _published(published: Published, status: int = 200) -> JSONResponse:
    return JSONResponse({"seq": published.seq, "epoch": published.epoch}, status_code=status)


class RoomRoutes:
    def __init__(self, service: Callable[[], RoomService], auth: Authenticator) -> None:
        self._service = service
        self.auth = auth

    @property
    def service(self) -> RoomService:
        return self._service()

    def _claims(self, request: Request, *, staff: bool = False) -> tuple[str, Claims]:
        room: str = request.path_params["room"]
        token = bearer(request.headers.get("authorization"))
        return room, self.auth.for_room(token, room, staff=staff)

    async def watcher(self, request: Request) -> tuple[str, Claims | None]:
        """Anyone allowed to watch: a token for the room, or nobody if the room allows it."""
        room: str = request.path_params["room"]
        token = bearer(request.headers.get("authorization"))
        if token:
            return room, self.auth.for_room(token, room)
        settings = await self.service.settings(room)  # 404 for no such room
        if not settings["allow_anonymous"]:
            raise unauthorized("token_required", "this room needs a token to watch")
        return room, None

    async def put_room(self, request: Request) -> JSONResponse:
        room, claims = self._claims(request, staff=True)
        if claims.role is not Role.HOST:
            raise forbidden("only the host may create or change the room")
        body = await json_body(request)
        settings: Any = body.get("settings", {})
        if not isinstance(settings, dict):
            raise invalid("settings must be a JSON object")
        view = await self.service.put_room(
            room, claims, text_field(body, "title", max_len=200), settings
        )
        return JSONResponse(view)

    async def get_room(self, request: Request) -> JSONResponse:
        room, _ = await self.watcher(request)
        return JSONResponse(await self.service.snapshot(room))

    async def list_products(self, request: Request) -> JSONResponse:
        room, _ = await self.watcher(request)
        return JSONResponse({"products": await self.service.products(room)})

    async def add_product(self, request: Request) -> JSONResponse:
        room, _ = self._claims(request, staff=True)
        body = await json_body(request)
        product = await self.service.add_product(
            room,
            sku=text_field(body, "sku", max_len=64),
            title=text_field(body, "title", max_len=200),
            price_cents=int_field(body, "price_cents", low=0, high=MAX_PRICE_CENTS),
            image_url=text_field(body, "image_url", max_len=2000, default=""),
        )
        return JSONResponse(product, status_code=201)

    async def pin(self, request: Request) -> JSONResponse:
        room, _ = self._claims(request, staff=True)
        body = await json_body(request)
        product_id = int_field(body, "product_id", low=1, high=2**62)
        return _published(await self.service.pin(room, product_id))

    async def unpin(self, request: Request) -> JSONResponse:
        room, _ = self._claims(request, staff=True)
        return _published(await self.service.unpin(room))

    async def message(self, request: Request) -> JSONResponse:
        room, claims = self._claims(request, staff=True)
        body = await json_body(request)
        text = text_field(body, "text", max_len=10_000)
        return _published(await self.service.host_message(room, claims, text), 201)

    async def comment(self, request: Request) -> JSONResponse:
        room, claims = self._claims(request)
        body = await json_body(request)
        text = text_field(body, "text", max_len=10_000)
        return _published(await self.service.comment(room, claims, text), 201)

    async def delete_comment(self, request: Request) -> JSONResponse:
        room, _ = self._claims(request, staff=True)
        comment: str = request.path_params["comment"]
        return _published(await self.service.delete_comment(room, comment))

    async def mute(self, request: Request) -> JSONResponse:
        room, _ = self._claims(request, staff=True)
        body = await json_body(request, required=False)
        seconds = int_field(body, "seconds", low=1, high=MAX_MUTE_S, default=600)
        user: str = request.path_params["user"]
        await self.service.mute(room, user, seconds)
        return JSONResponse({"user": user, "muted_for_s": seconds})

    async def unmute(self, request: Request) -> JSONResponse:
        room, _ = self._claims(request, staff=True)
        user: str = request.path_params["user"]
        await self.service.unmute(room, user)
        return JSONResponse({"user": user, "muted_for_s": 0})

    async def slow_mode(self, request: Request) -> JSONResponse:
        room, _ = self._claims(request, staff=True)
        body = await json_body(request)
        seconds = int_field(body, "seconds", low=0, high=MAX_SLOW_MODE_S)
        return _published(await self.service.slow_mode(room, seconds))

    async def end(self, request: Request) -> JSONResponse:
        room, claims = self._claims(request, staff=True)
        if claims.role is not Role.HOST:
            raise forbidden("only the host may end the stream")
        return _published(await self.service.end(room))

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
