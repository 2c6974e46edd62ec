"""The app of `live serve`: the edge (gateway/) on the services of live/services.py. Its lifespan
opens the services, runs their background work in one task group (live/background.py) and, when
the server stops, takes the one shutdown path (`at_work`)."""

from __future__ import annotations

import gc
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from typing import Any

from starlette.applications import Starlette

from gateway.auth import Authenticator
from gateway.routes import Edge, edge_app
from gateway.wire import LiveWebSocketProtocol
from live.background import Background
from live.drain import Drain
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


@asynccontextmanager
async def at_work(opened: Services) -> AsyncIterator[Background]:
    """The services at work: every background loop of the domain and the gateway runs in one
    task group. At exit, the one shutdown path, each step bounded and logged (live.services.
    bounded), none in the way of the next:
    1. the gateway takes no more viewers and closes each with SERVICE_RESTART (1012: they resume
       on another process), and waits for their sessions to end;
    2. the hubs of sessions that did not end in time are stopped;
    3. the order writer takes no more confirms and writes those in hand;
    4. the task group is cancelled: every background loop ends.
    build_services then closes Redis and PostgreSQL."""
    background = Background()
    try:
        await background.start(
            [
                *opened.sales.loops(),
                # The end at the deadline, books checked and rebuilt, bids copied, settlement,
                # settlement pools repaired, settled auctions tidied.
                *opened.auctions.loops(),
                # Group deals: scheduled starts and ends, windows closed short, formations
                # finished after a fault, stale pools rebuilt from PostgreSQL.
                *opened.groups.loops(),
                *opened.gateway.loops(),
                *opened.dispatcher.loops(),
            ]
        )
        yield background
    finally:
        await bounded("the viewers", opened.gateway.close_viewers())
        await bounded("the visit counts", opened.gateway.referrals.write_anonymous_visits())
        await bounded("the room hubs", opened.gateway.stop_hubs())
        await bounded("the order writer", opened.sales.writer.stop())
        await bounded("the background loops", background.stop())


def create_app(
    settings: Settings,
    tune: Callable[[Services], None] | None = None,
    *,
    drain_on_sigterm: bool = False,
) -> Starlette:
    """`tune`, if given, is called on the services before they go to work (tests use it for
    what the settings do not cover, such as the gateway's intervals). With `drain_on_sigterm`
    (`live serve`) a SIGTERM drains the node first (live/drain.py)."""
    if not settings.redis_url or not settings.database_url:
        raise ValueError("create_app needs redis_url and database_url (live serve embeds servers)")

    @asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        async with build_services(settings) as opened:
            if tune is not None:
                tune(opened)
            async with at_work(opened) as background:
                drain = Drain(
                    settings.drain_s,
                    lambda: bounded("the viewers", opened.gateway.close_viewers()),
                )
                readiness = {**opened.readiness, "serving": drain.check}
                app.state.services = opened
                app.state.background = background
                app.state.drain = drain
                app.state.edge = Edge(
                    opened.rooms,
                    opened.sales,
                    opened.webhooks,
                    opened.gateway,
                    readiness,
                    auctions=opened.auctions,
                    groups=opened.groups,
                )
                calm_garbage_collector()
                if drain_on_sigterm:
                    drain.install()
                try:
                    yield
                finally:
                    drain.uninstall()

    def edge() -> Edge:
        opened: Edge = app.state.edge
        return opened

    auth = Authenticator(settings.resolved_jwt_secret())
    app = edge_app(edge, auth, lifespan, settings.io_timeout_s)
    return app


def app_from_env() -> Starlette:
    """uvicorn factory for worker processes: settings come from the environment."""
    return create_app(Settings.from_env(), drain_on_sigterm=True)
