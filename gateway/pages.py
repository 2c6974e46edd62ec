"""The host console and the viewer overlay: static pages served by the app itself, no build
step and nothing from the network; they speak only the documented protocol and HTTP API."""

from __future__ import annotations

from pathlib import Path

from starlette.requests import Request
from starlette.responses import FileResponse
from starlette.routing import BaseRoute, Mount, Route
from starlette.staticfiles import StaticFiles

WEB = Path(__file__).parent / "web"
_NO_CACHE = {"cache-control": "no-cache"}


async def watch(request: Request) -> FileResponse:
    return FileResponse(WEB / "watch.html", headers=_NO_CACHE)


async def host(request: Request) -> FileResponse:
    return FileResponse(WEB / "host.html", headers=_NO_CACHE)


def routes() -> list[BaseRoute]:
    return [
        Route("/watch/{room}", watch),
        Route("/host/{room}", host),
        Mount("/static", StaticFiles(directory=WEB), name="static"),
    ]
