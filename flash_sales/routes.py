"""HTTP routes of flash sales: the host API and the buyer API."""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime
from typing import Any

from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from flash_sales.model import MAX_HOLD_SECONDS, MAX_LIMIT, MAX_PRICE_CENTS, MAX_STOCK
from flash_sales.service import SaleService
from rooms.auth import Authenticator, Claims, Role, TokenError, bearer
from rooms.errors import ApiError, forbidden, invalid, unauthorized
from rooms.http import int_field, json_body, text_field


def _moment(body: dict[str, Any], name: str) -> datetime | None:
    value = body.get(name)
    if value is None:
        return None
    try:
        if isinstance(value, bool):
            raise ValueError
        if isinstance(value, int | float):
            moment = datetime.fromtimestamp(value / 1000).astimezone()
        elif isinstance(value, str) and len(value) <= 40:
            moment = datetime.fromisoformat(value)
        else:
            raise ValueError
    except (ValueError, OverflowError, OSError):
        raise invalid(f"{name} must be an ISO 8601 time or epoch milliseconds") from None
    if moment.tzinfo is None:
        raise invalid(f"{name} must carry a time zone")
    return moment


def _sale_id(request: Request) -> int:
    raw: str = request.path_params["sale"]
    if not (raw.isascii() and raw.isdigit()) or len(raw) > 18:
        raise ApiError(404, "not_found", f"no sale {raw!r}")
    return int(raw)


class SaleRoutes:
    def __init__(self, service: Callable[[], SaleService], auth: Authenticator) -> None:
        self._service = service
        self.auth = auth

    @property
    def service(self) -> SaleService:
        return self._service()

    def _token(self, request: Request) -> Claims:
        token = bearer(request.headers.get("authorization"))
        if not token:
            raise unauthorized("token_required", "send a token: Authorization: Bearer <jwt>")
        try:
            claims = self.auth.claims(token)
        except TokenError as exc:
            raise unauthorized(exc.code, exc.detail) from None
        assert claims is not None
        return claims

    async def _host_of_sale(self, request: Request) -> int:
        claims = self._token(request)
        sale = await self.service.lifecycle.sale(_sale_id(request))
        if claims.room != sale.room:
            raise forbidden("this token is for another room")
        if claims.role is not Role.HOST:
            raise forbidden("only the host of this room may do this")
        return sale.id

    async def create(self, request: Request) -> JSONResponse:
        room: str = request.path_params["room"]
        self.auth.for_room(bearer(request.headers.get("authorization")), room, staff=True)
        claims = self._token(request)
        if claims.role is not Role.HOST:
            raise forbidden("only the host may create a flash sale")
        body = await json_body(request)
        stock = int_field(body, "stock", low=1, high=MAX_STOCK)
        sale = await self.service.lifecycle.create(
            room,
            product_id=int_field(body, "product_id", low=1, high=2**62),
            price_cents=int_field(body, "price_cents", low=0, high=MAX_PRICE_CENTS),
            stock=stock,
            limit_per_buyer=int_field(body, "limit_per_buyer", low=1, high=MAX_LIMIT, default=1),
            hold_seconds=int_field(body, "hold_seconds", low=1, high=MAX_HOLD_SECONDS, default=120),
            starts_at=_moment(body, "starts_at"),
            ends_at=_moment(body, "ends_at"),
        )
        return JSONResponse(sale, status_code=201)

    async def start(self, request: Request) -> JSONResponse:
        return JSONResponse(
            await self.service.lifecycle.start_now(await self._host_of_sale(request))
        )

    async def stop(self, request: Request) -> JSONResponse:
        return JSONResponse(
            await self.service.lifecycle.stop_now(await self._host_of_sale(request))
        )

    async def figures(self, request: Request) -> JSONResponse:
        claims = self._token(request)
        figures = await self.service.lifecycle.figures(_sale_id(request))
        if claims.room != figures["room"]:
            raise forbidden("this token is for another room")
        if not claims.staff:
            raise forbidden("only the host or a moderator may read the live figures")
        return JSONResponse(figures)

    async def reserve(self, request: Request) -> JSONResponse:
        claims = self._token(request)
        key = request.headers.get("idempotency-key", "")
        if not key:
            raise invalid("send an Idempotency-Key header (any unique string per attempt)")
        body = await json_body(request, required=False)
        qty = int_field(body, "qty", low=1, high=MAX_LIMIT, default=1)
        hold = await self.service.buying.reserve(_sale_id(request), claims, qty, key)
        return JSONResponse(hold, status_code=201)

    async def confirm(self, request: Request) -> JSONResponse:
        claims = self._token(request)
        body = await json_body(request)
        payment_ref = text_field(body, "payment_ref", max_len=200)
        show_name = body.get("show_name", False)
        if not isinstance(show_name, bool):
            raise invalid("show_name must be true or false")
        order = await self.service.buying.confirm(
            request.path_params["reservation"], claims, payment_ref, show_name=show_name
        )
        return JSONResponse(order, status_code=201)

    async def cancel(self, request: Request) -> JSONResponse:
        claims = self._token(request)
        return JSONResponse(
            await self.service.buying.cancel(request.path_params["reservation"], claims)
        )

    def routes(self) -> list[Route]:
        return [
            Route("/api/rooms/{room}/sales", self.create, methods=["POST"]),
            Route("/api/sales/{sale}", self.figures, methods=["GET"]),
            Route("/api/sales/{sale}/start", self.start, methods=["POST"]),
            Route("/api/sales/{sale}/stop", self.stop, methods=["POST"]),
            Route("/api/sales/{sale}/reservations", self.reserve, methods=["POST"]),
            Route("/api/reservations/{reservation}/confirm", self.confirm, methods=["POST"]),
            Route("/api/reservations/{reservation}", self.cancel, methods=["DELETE"]),
        ]
