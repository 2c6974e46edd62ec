"""The real app served in the test's event loop, the one way every test serves it (the tests of
each folder import it from here: two conftest.py modules make `from conftest import` depend on
the order pytest collects them)."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from typing import Any

import uvicorn
from starlette.applications import Starlette

from gateway.logs import uvicorn_log_config
from live.app import create_app, services, websocket_options
from live.embedded import free_port
from live.services import Services
from live.settings import Settings

TEST_SECRET = "test-secret-0123456789abcdef0123456789abcdef"  # the JWT secret of every test


@dataclass(frozen=True)
class Served:
    url: str
    app: Starlette

    @property
    def services(self) -> Services:
        return services(self.app)


@contextlib.asynccontextmanager
async def serve_app(
    settings: Settings,
    tune: Callable[[Services], None] | None = None,
    ws_options: dict[str, Any] | None = None,
) -> AsyncIterator[Served]:
    """The real app (`create_app`: build_services and the lifespan of `live serve`) under
    uvicorn on a loopback port in this event loop, as every test serves it; `tune` adjusts the
    services before they go to work (see create_app); `ws_options` replaces uvicorn's
    WebSocket settings of `live serve` (websocket_options)."""
    port = free_port()
    app = create_app(settings, tune)
    config = uvicorn.Config(
        app,
        host="127.0.0.1",
        port=port,
        log_level="warning",
        log_config=uvicorn_log_config("warning"),  # as `live serve`: no token in any log
        lifespan="on",
        backlog=4096,
        **(websocket_options(settings) if ws_options is None else ws_options),
    )
    instance = uvicorn.Server(config)
    task = asyncio.create_task(instance.serve())
    try:
        async with asyncio.timeout(30):
            while not instance.started:
                if task.done():
                    task.result()
                    raise RuntimeError("server exited during start")
                await asyncio.sleep(0.02)  # polling, bounded by the timeout
        yield Served(f"http://127.0.0.1:{port}", app)
    finally:
        instance.should_exit = True
        with contextlib.suppress(asyncio.CancelledError):
            await asyncio.wait_for(task, 30)
