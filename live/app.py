"""The app of `live serve`: the edge (gateway/) on the services of live/services.py, with the
background work of each started by the lifespan and stopped by it."""

from __future__ import annotations

import gc
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from starlette.applications import Starlette

from gateway.auth import Authenticator
from gateway.routes import Edge, edge_app
from gateway.wire import LiveWebSocketProtocol
from live.services import Services, bounded, build_services
from live.settings import Settings


def calm_garbage_collector() -> None:
    """Thousands of connections mean hundreds of thousands of tracked objects; with CPython's
    default thresholds a full collection then stops the loop for half a second, longer than the
    fan-out latency budget. Freeze what start-up made and collect the young generation rarely."""
    gc.collect()
    gc.freeze()
    gc.set_threshold(50_000, 50, 100)


def websocket_options(settings: Settings) -> dict[str, Any]:
    """uvicorn's WebSocket settings for this app (live serve and tests alike): the protocol
    that allows the gateway's direct writes, the message size limit, no compression."""
    return {
        "ws": LiveWebSocketProtocol,
        "ws_max_size": settings.max_message_bytes,
        "ws_per_message_deflate": False,
    }


def services(app: Starlette) -> Services:
    """The services the lifespan opened (routes run only after it did)."""
    opened: Services = app.state.services
    return opened


def create_app(settings: Settings) -> Starlette:
    if not settings.redis_url or not settings.database_url:
        raise ValueError("create_app needs redis_url and database_url (live serve embeds servers)")

    @asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        async with build_services(settings) as opened:
            await opened.sales.start()
            await opened.gateway.start()
            app.state.services = opened
            app.state.edge = Edge(opened.rooms, opened.sales, opened.gateway, opened.readiness)
            calm_garbage_collector()
            try:
                yield
            finally:
                await bounded("the gateway", opened.gateway.stop())
                await bounded("flash sales", opened.sales.stop())

    def edge() -> Edge:
        opened: Edge = app.state.edge
        return opened

    auth = Authenticator(settings.resolved_jwt_secret())
    app = edge_app(edge, auth, lifespan, settings.io_timeout_s)
    return app


def app_from_env() -> Starlette:
    """uvicorn factory for worker processes: settings come from the environment."""
    return create_app(Settings.from_env())
