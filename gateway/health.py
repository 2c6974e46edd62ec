"""The operator's routes: liveness, readiness (each check named, the failing one said), and
Prometheus metrics merged across workers (see gateway/prometheus.py)."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Mapping

from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from gateway.prometheus import metrics_endpoint

Check = Callable[[], Awaitable[str | None]]
"""A readiness check: None when ready, else what is wrong."""


def health_routes(checks: Callable[[], Mapping[str, Check]], timeout_s: float) -> list[Route]:
    async def healthz(request: Request) -> JSONResponse:
        return JSONResponse({"status": "ok"})

    async def readyz(request: Request) -> JSONResponse:
        found: dict[str, str] = {}
        for name, check in checks().items():
            try:
                async with asyncio.timeout(timeout_s):
                    problem = await check()
            except Exception as exc:
                problem = f"{type(exc).__name__}: {exc}"
            found[name] = "ok" if problem is None else f"error: {problem}"
        ready = all(value == "ok" for value in found.values())
        return JSONResponse(
            {"status": "ready" if ready else "not_ready", "checks": found},
            status_code=200 if ready else 503,
        )

    return [
        Route("/healthz", healthz),
        Route("/readyz", readyz),
        Route("/metrics", metrics_endpoint),
    ]
