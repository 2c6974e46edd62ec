"""HTTP routes of a room's webhooks, for its hosts: add an endpoint (or change its secrets),
list them, remove one. Each is one call of RoomWebhooks with the caller's Actor."""

from __future__ import annotations

from collections.abc import Callable

from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from flash_sales.webhooks.endpoints import MAX_SECRET_CHARS, MAX_SECRETS, MAX_URL_CHARS
from flash_sales.webhooks.rooms import RoomWebhooks
from gateway import fields
from gateway.auth import Authenticator
from gateway.http_body import json_body, path_id


class WebhookRoutes:
    def __init__(self, service: Callable[[], RoomWebhooks], auth: Authenticator) -> None:
        self._service = service
        self.auth = auth

    @property
    def service(self) -> RoomWebhooks:
        return self._service()

    async def put(self, request: Request) -> JSONResponse:
        actor = self.auth.actor(request.headers.get("authorization"))
        body = await json_body(request)
        webhook, created = await self.service.put(
            request.path_params["room"],
            actor,
            fields.text(body, "url", max_len=MAX_URL_CHARS),
            fields.text(body, "secret", max_len=MAX_SECRETS * (MAX_SECRET_CHARS + 1)),
        )
        return JSONResponse(webhook, status_code=201 if created else 200)

    async def endpoints(self, request: Request) -> JSONResponse:
        actor = self.auth.actor(request.headers.get("authorization"))
        found = await self.service.endpoints(request.path_params["room"], actor)
        return JSONResponse({"webhooks": found})

    async def remove(self, request: Request) -> JSONResponse:
        actor = self.auth.actor(request.headers.get("authorization"))
        webhook = path_id(request, "webhook", "webhook")
        return JSONResponse(await self.service.remove(request.path_params["room"], actor, webhook))

    def routes(self) -> list[Route]:
        base = "/api/rooms/{room}/webhooks"
        return [
            Route(base, self.put, methods=["POST"]),
            Route(base, self.endpoints, methods=["GET"]),
            Route(f"{base}/{{webhook}}", self.remove, methods=["DELETE"]),
        ]
