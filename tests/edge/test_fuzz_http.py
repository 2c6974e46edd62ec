"""Every HTTP route of the app, driven by hypothesis with odd path parameters, headers and
bodies, against the real app under uvicorn with real Redis and PostgreSQL: each answer is a
2xx, or a 4xx with the JSON body `{"error", "detail"}`; never a 5xx (Redis and PostgreSQL are up
all along, so not even a 503), and the service still answers /healthz afterwards.

The routes are read from the app (`create_app(...).routes`), so a new route is driven without a
change here. Values that depend on the world the test made first (tokens of each actor, ids of
products, sales, holds and auctions) are drawn as symbols (`$...`) and resolved per request, so
that a drawn request can also reach the domain past the edge's checks."""

from __future__ import annotations

import math
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

import httpx
import pytest
from edge_kit import (
    http_routes,
    make_world,
)
from http_fuzz_kit import ROUTES, Req, Resolver, requests, run
from hypothesis import HealthCheck, example, given, settings
from serve_kit import Served

from live.settings import Settings


@dataclass
class State:
    """The world, made once per test (hypothesis runs the examples in one served app)."""

    client: httpx.AsyncClient
    resolver: Resolver


STATE: dict[str, State] = {}


def _request(method: str, path: str, body: Any = None, auth: str | None = "$who:host") -> Req:
    """An explicit example."""
    route = next(r for r in ROUTES if r.path == path and method in r.methods)
    return Req(method, route, {}, auth, b"$fresh", b"application/json", body)


def _with(req: Req, **params: str) -> Req:
    return Req(
        req.method,
        req.route,
        params,
        req.auth,
        req.idempotency_key,
        req.content_type,
        req.body,
    )


SALE = {
    "product_id": "$product:a",
    "stock": 5,
    "price_cents": 100,
    "limit_per_buyer": 1,
    "hold_seconds": 60,
}


AUCTION = {
    "product_id": "$product:a",
    "start_cents": 100,
    "increment_cents": 10,
    "duration_s": 60,
    "snipe_window_s": 5,
    "max_extensions": 2,
}


@settings(
    max_examples=1500,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(req=requests())
@example(req=_with(_request("GET", "/api/sales/{sale}"), sale="%C2%B2"))
@example(req=_with(_request("POST", "/api/sales/{sale}/start"), sale="%D9%A3"))
@example(req=_with(_request("POST", "/api/sales/{sale}/waitlist"), sale="$sale:b"))
@example(
    req=_with(_request("DELETE", "/api/reservations/{reservation}"), reservation="9" * 25 + ".1")
)
@example(req=_with(_request("GET", "/api/rooms/{room}"), room="room-a%0A"))
@example(
    req=_with(
        _request(
            "PUT", "/api/rooms/{room}", {"title": "t", "settings": {"blocked_words": ["\x00"]}}
        ),
        room="$room:a",
    )
)
@example(
    req=_with(
        _request(
            "PUT", "/api/rooms/{room}", {"title": "t", "settings": {"blocked_words": ["\ud800"]}}
        ),
        room="$room:a",
    )
)
@example(
    req=_with(
        _request(
            "POST", "/api/rooms/{room}/sales", {**SALE, "starts_at": "0001-01-01T00:00:00+14:00"}
        ),
        room="$room:a",
    )
)
@example(
    req=_with(
        _request(
            "POST", "/api/rooms/{room}/sales", {**SALE, "ends_at": "9999-12-31T23:59:59-14:00"}
        ),
        room="$room:a",
    )
)
@example(
    req=_with(
        _request("POST", "/api/rooms/{room}/sales", {**SALE, "starts_at": math.nan}), room="$room:a"
    )
)
@example(
    req=_with(
        _request("POST", "/api/auctions/{auction}/bids", {"amount_cents": 2**63}, "$who:viewer"),
        auction="$auction:a",
    )
)
@example(
    req=_with(
        _request(
            "POST",
            "/api/auctions/{auction}/bids",
            {"amount_cents": 200, "max_cents": 199.5},
            "$who:viewer",
        ),
        auction="$auction:a",
    )
)
@example(
    req=_with(
        _request(
            "POST",
            "/api/rooms/{room}/auctions",
            {**AUCTION, "increments": [[0, 10], [5, "x"]], "reserve_cents": -1},
        ),
        room="$room:a",
    )
)
@example(req=_with(_request("GET", "/api/auctions/{auction}/offers"), auction="%C2%B2"))
async def test_no_request_gets_a_5xx_or_a_bare_error(
    served: Served, settings: Settings, req: Req
) -> None:
    state = STATE.get(served.url)
    if state is None:
        assert http_routes(served.app) == ROUTES  # the served app is the one drawn from
        client = httpx.AsyncClient(base_url=served.url, timeout=30)
        state = STATE[served.url] = State(client, Resolver(await make_world(client, settings)))
    await run(state.client, state.resolver, req)
    health = await state.client.get("/healthz")
    assert health.status_code == 200 and health.json() == {"status": "ok"}


@pytest.fixture(autouse=True)
async def _close_clients() -> AsyncIterator[None]:
    yield
    for state in STATE.values():
        await state.client.aclose()
    STATE.clear()
