"""Server-side timing in /metrics (gateway/timing.py): HTTP requests counted under their route
template and method, WebSocket commands under their type, the fan-out lag of frames written,
and a bounded label set whatever paths and methods clients send."""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import AsyncIterator

import httpx
from gateway_testkit import Room, make_room, ws_url
from hypothesis import given, settings
from hypothesis import strategies as st
from prometheus_client import REGISTRY
from serve_kit import Served
from starlette.applications import Starlette
from websockets.asyncio.client import ClientConnection, connect

from gateway.auth import Authenticator
from gateway.metrics import HTTP_DURATION
from gateway.routes import Edge, edge_app
from gateway.timing import METHODS, OTHER, UNMATCHED
from live.settings import Settings

SECRET = "timing-secret-0123456789abcdef0123456789abcdef"


def count(name: str, **labels: str) -> float:
    return REGISTRY.get_sample_value(f"{name}_count", labels) or 0.0


def http_count(route: str, method: str) -> float:
    return count("live_http_request_duration_seconds", route=route, method=method)


async def test_requests_are_timed_under_their_route_template(
    served: Served, settings: Settings
) -> None:
    products = "/api/rooms/{room}/products"
    before = {
        key: http_count(*key)
        for key in [(products, "POST"), ("/healthz", "GET"), (UNMATCHED, "GET")]
    }
    await make_room(served.url, settings, products=3)
    async with httpx.AsyncClient(base_url=served.url, timeout=10) as client:
        for _ in range(2):
            assert (await client.get("/healthz")).status_code == 200
        assert (await client.get("/no/such/path/42")).status_code == 404
        text = (await client.get("/metrics")).text
    assert http_count(products, "POST") == before[(products, "POST")] + 3
    assert http_count("/healthz", "GET") == before[("/healthz", "GET")] + 2
    assert http_count(UNMATCHED, "GET") == before[(UNMATCHED, "GET")] + 1
    assert 'method="POST",route="/api/rooms/{room}/products"' in text
    assert "/api/rooms/show/products" not in text and "/no/such/path" not in text


@contextlib.asynccontextmanager
async def viewer(room: Room, sub: str) -> AsyncIterator[ClientConnection]:
    async with connect(ws_url(room.url, room.id, token=room.viewer_token(sub))) as ws:
        welcome = json.loads(await ws.recv())
        assert welcome["type"] == "welcome"
        yield ws


async def answer(ws: ClientConnection, ref: str) -> dict[str, object]:
    while True:
        frame: dict[str, object] = json.loads(await ws.recv())
        if frame.get("ref") == ref:
            return frame


async def test_websocket_commands_and_fanout_lag_are_timed(
    served: Served, settings: Settings
) -> None:
    room = await make_room(served.url, settings)
    ping, buy = (
        count("live_ws_command_duration_seconds", command="ping"),
        count("live_ws_command_duration_seconds", command="buy"),
    )
    lag = REGISTRY.get_sample_value("live_gateway_fanout_lag_seconds_count") or 0.0
    async with viewer(room, "viewer-1") as ws:
        for ref in ("a", "b"):
            await ws.send(json.dumps({"type": "ping", "ref": ref}))
            assert (await answer(ws, ref))["ok"] is True
        await ws.send(
            json.dumps({"type": "buy", "ref": "c", "sale_id": 999, "idempotency_key": "k"})
        )
        assert (await answer(ws, "c"))["ok"] is False  # refused: still timed
        await room.pin()
        while True:  # the pin's frame: written to this viewer, so its lag is observed
            frame = json.loads(await ws.recv())
            if frame.get("type") == "events":
                break
    assert count("live_ws_command_duration_seconds", command="ping") == ping + 2
    assert count("live_ws_command_duration_seconds", command="buy") == buy + 1
    assert (REGISTRY.get_sample_value("live_gateway_fanout_lag_seconds_count") or 0.0) > lag


def _no_edge() -> Edge:
    raise RuntimeError("no services in this test")


@contextlib.asynccontextmanager
async def _no_lifespan(app: Starlette) -> AsyncIterator[None]:
    yield


APP = edge_app(_no_edge, Authenticator(SECRET), _no_lifespan, 1.0)  # the real route table
TEMPLATES = {getattr(route, "path", "") for route in APP.routes}
SEGMENTS = st.sampled_from(["api", "rooms", "sales", "1", "reservations", "healthz", "ws", "x"])
TEXT = st.text("abcXYZ019-_.~%", min_size=1, max_size=12)


async def _request(method: str, path: str) -> None:
    transport = httpx.ASGITransport(app=APP)
    async with httpx.AsyncClient(transport=transport, base_url="http://test") as client:
        await client.request(method, path, headers={"authorization": "Bearer not-a-token"})


@settings(max_examples=150, deadline=None)
@given(
    parts=st.lists(SEGMENTS | TEXT, min_size=0, max_size=6),
    method=st.sampled_from(["GET", "POST", "DELETE", "PUT", "PATCH", "OPTIONS", "BREW", "PURGE"]),
)
def test_the_label_set_stays_bounded_whatever_the_path(parts: list[str], method: str) -> None:
    asyncio.run(_request(method, "/" + "/".join(parts)))
    for metric in HTTP_DURATION.collect():
        for sample in metric.samples:
            route, used = sample.labels.get("route"), sample.labels.get("method")
            assert route in TEMPLATES or route == UNMATCHED, route
            assert used in METHODS or used == OTHER, used
