"""The whole edge as one Starlette app: the HTTP API of rooms, sales, auctions and group deals, the
WebSocket, the pages, the operator's routes, and one family of error handlers. The composition
root (live/) gives it the services, opened by its lifespan."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from contextlib import AbstractAsyncContextManager
from dataclasses import dataclass

from starlette.applications import Starlette
from starlette.routing import WebSocketRoute

from flash_sales.auctions.service import AuctionService
from flash_sales.group_deals.service import GroupDeals
from flash_sales.service import SaleService
from flash_sales.webhooks.rooms import RoomWebhooks
from gateway import pages
from gateway.auth import Authenticator
from gateway.errors import HANDLERS
from gateway.fast_lane import FastLaneApp
from gateway.health import Check, health_routes
from gateway.http_auctions import AuctionRoutes
from gateway.http_groups import GroupRoutes
from gateway.http_referrals import ReferralRoutes
from gateway.http_rooms import RoomRoutes
from gateway.http_sales import BURST_PATHS, SaleRoutes
from gateway.http_waitlist import WaitlistRoutes
from gateway.http_webhooks import WebhookRoutes
from gateway.server import Gateway
from rooms.service import RoomService

ROOM_SOCKET = "/ws/rooms/{room}"


@dataclass(frozen=True)
class Edge:
    """What the routes call, once the lifespan opened it."""

    rooms: RoomService
    sales: SaleService
    webhooks: RoomWebhooks
    gateway: Gateway
    readiness: Mapping[str, Check]
    auctions: AuctionService
    groups: GroupDeals


def edge_app(
    edge: Callable[[], Edge],
    auth: Authenticator,
    lifespan: Callable[[Starlette], AbstractAsyncContextManager[None]],
    io_timeout_s: float,
) -> Starlette:
    routes = [
        *RoomRoutes(lambda: edge().rooms, auth).routes(),
        *SaleRoutes(
            lambda: edge().sales, auth, lambda: edge().auctions, lambda: edge().groups
        ).routes(),
        *WaitlistRoutes(lambda: edge().sales, auth).routes(),
        *AuctionRoutes(lambda: edge().auctions, lambda: edge().rooms, auth).routes(),
        *GroupRoutes(lambda: edge().groups, lambda: edge().rooms, auth).routes(),
        *WebhookRoutes(lambda: edge().webhooks, auth).routes(),
        *ReferralRoutes(lambda: edge().gateway.referrals, lambda: edge().rooms, auth).routes(),
        WebSocketRoute(ROOM_SOCKET, lambda ws: edge().gateway.endpoint(ws)),
        *pages.routes(),
        *health_routes(lambda: edge().readiness, io_timeout_s),
    ]
    # Every request timed for /metrics; a sale's reserve and confirm, and the room WebSocket,
    # past Starlette's layers.
    return FastLaneApp(
        hot=BURST_PATHS,
        sockets=(ROOM_SOCKET,),
        routes=routes,
        lifespan=lifespan,
        exception_handlers=dict(HANDLERS),
    )
