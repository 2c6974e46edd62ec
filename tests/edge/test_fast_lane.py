"""The fast lane (gateway/fast_lane.py) answers a sale's reserve and confirm exactly as the
Starlette routes behind it would: the same request, drawn by hypothesis as the HTTP fuzz test
draws them (odd ids, tokens, headers and bodies), is sent to the served app and to a second
uvicorn server on the Starlette stack behind its fast lane (same app, same services), and both
answers must have the same status, headers (but `date`) and body. The second is sent right
after the first with the same Idempotency-Key, so a reserve or confirm that succeeded is
answered again as a replay, which the domain answers as it did the first time. The room
WebSocket, which the fast lane serves too, is opened on both with the same paths and tokens:
the same frames' types and the same close (or refused handshake)."""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import AsyncIterator
from dataclasses import dataclass

import httpx
import pytest
import uvicorn
from edge_kit import ROOM_A, make_world, token, weighted
from http_fuzz_bodies import bodies
from http_fuzz_kit import ROUTES, Req, Resolver, header_text, segment
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st
from prometheus_client import REGISTRY
from serve_kit import Served
from starlette.types import Receive, Scope, Send
from websockets.asyncio.client import connect
from websockets.exceptions import ConnectionClosed, InvalidStatus

from gateway.fast_lane import FastLane
from gateway.http_sales import BURST_PATHS, CONFIRM, RESERVE
from live.embedded import free_port
from live.settings import Settings
from rooms.actors import Role

HOT = [route for route in ROUTES if route.path in BURST_PATHS]


@st.composite
def hot_requests(draw: st.DrawFn) -> Req:
    route = draw(st.sampled_from(HOT))
    method = draw(weighted((9, st.just("POST")), (1, st.sampled_from(["GET", "PUT", "DELETE"]))))
    params = {name: draw(segment(name)) for name in route.params}
    auth = draw(
        weighted(
            (8, st.sampled_from(["$who:viewer", "$who:other-viewer", "$who:service"])),
            (2, st.sampled_from(["$who:host", "$who:buyer-in-room-b", "$who:anonymous"])),
            (1, st.integers(0, 16).map(lambda n: f"$odd:{n}")),
            (1, header_text),
        )
    )
    key = draw(weighted((3, st.just(b"$fresh")), (1, st.none()), (1, header_text)))
    content_type = draw(st.sampled_from([None, b"application/json", b"text/plain"]))
    return Req(method, route, params, auth, key, content_type, draw(bodies()))


@contextlib.asynccontextmanager
async def starlette_only(served: Served) -> AsyncIterator[str]:
    """The served app's Starlette stack, the one behind its fast lane, under a second uvicorn
    server (no lifespan: the services are the served app's)."""
    lane = served.app.middleware_stack
    assert isinstance(lane, FastLane)

    async def app(scope: Scope, receive: Receive, send: Send) -> None:
        scope["app"] = served.app
        await lane.app(scope, receive, send)

    port = free_port()
    config = uvicorn.Config(app, host="127.0.0.1", port=port, lifespan="off", log_level="warning")
    server = uvicorn.Server(config)
    task = asyncio.create_task(server.serve())
    try:
        async with asyncio.timeout(30):
            while not server.started:
                assert not task.done(), task.result()
                await asyncio.sleep(0.02)  # polling, bounded by the timeout
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        await asyncio.wait_for(task, 30)


@dataclass
class Pair:
    fast: httpx.AsyncClient
    plain: httpx.AsyncClient
    resolver: Resolver
    stack: contextlib.AsyncExitStack


PAIRS: dict[str, Pair] = {}


async def pair(served: Served, settings: Settings) -> Pair:
    found = PAIRS.get(served.url)
    if found is None:
        stack = contextlib.AsyncExitStack()
        plain_url = await stack.enter_async_context(starlette_only(served))
        fast = await stack.enter_async_context(httpx.AsyncClient(base_url=served.url, timeout=30))
        plain = await stack.enter_async_context(httpx.AsyncClient(base_url=plain_url, timeout=30))
        world = await make_world(fast, settings, holds=3)
        found = PAIRS[served.url] = Pair(fast, plain, Resolver(world), stack)
    return found


def answer(response: httpx.Response) -> tuple[int, list[tuple[bytes, bytes]], bytes]:
    headers = [(k, v) for k, v in response.headers.raw if k.lower() != b"date"]
    return response.status_code, headers, response.content


@settings(
    max_examples=300,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(req=hot_requests())
async def test_the_fast_lane_answers_as_the_starlette_route(
    served: Served, settings: Settings, req: Req
) -> None:
    both = await pair(served, settings)
    url = both.resolver.url(req)
    headers, content = both.resolver.headers(req), both.resolver.content(req)
    fast = await both.fast.request(req.method, url, headers=headers, content=content)
    plain = await both.plain.request(req.method, url, headers=headers, content=content)
    event(f"{req.method} {req.route.path}: {fast.status_code}")
    assert answer(fast) == answer(plain), (req.method, url[:200], headers)


async def test_hot_routes_are_timed_under_their_template(
    served: Served, settings: Settings
) -> None:
    def count(route: str) -> float:
        labels = {"route": route, "method": "POST"}
        return REGISTRY.get_sample_value("live_http_request_duration_seconds_count", labels) or 0

    before = {path: count(path) for path in (RESERVE, CONFIRM)}
    async with httpx.AsyncClient(base_url=served.url, timeout=30) as client:
        world = await make_world(client, settings, holds=2)  # two reserves
        assert (await client.post(f"/api/reservations/{world.holds[0]}/confirm")).status_code == 401
    assert count(RESERVE) == before[RESERVE] + 2
    assert count(CONFIRM) == before[CONFIRM] + 1


@pytest.fixture(autouse=True)
async def _close() -> AsyncIterator[None]:
    yield
    for found in PAIRS.values():
        await found.stack.aclose()
    PAIRS.clear()


async def socket_outcome(base: str, path: str) -> tuple[object, ...]:
    """What a client sees of the room WebSocket at `path`: the types of the frames up to the
    snapshot and the close code, or the refused handshake's status."""
    url = base.replace("http://", "ws://") + path
    try:
        async with connect(url, open_timeout=10, close_timeout=5) as ws:
            types: list[str] = []
            try:
                async with asyncio.timeout(10):
                    while "snapshot" not in types:
                        types.append(json.loads(await ws.recv())["type"])
            except ConnectionClosed as closed:
                return (*types, closed.rcvd.code if closed.rcvd else None)
            return tuple(types)
    except InvalidStatus as refused:
        return ("refused", refused.response.status_code)


async def test_the_room_websocket_is_served_as_by_the_starlette_route(
    served: Served, settings: Settings
) -> None:
    lane = served.app.middleware_stack
    assert isinstance(lane, FastLane) and [r.path for r in lane.sockets] == ["/ws/rooms/{room}"]
    both = await pair(served, settings)
    viewer = token(settings, "ann", Role.VIEWER, ROOM_A)
    other_room = token(settings, "ann", Role.VIEWER, "elsewhere")
    paths = [
        f"/ws/rooms/{ROOM_A}?token={viewer}",
        f"/ws/rooms/{ROOM_A}",
        f"/ws/rooms/{ROOM_A}?token={other_room}",
        f"/ws/rooms/{ROOM_A}?token=not-a-token",
        "/ws/rooms/no-such-room",
        f"/ws/rooms/{ROOM_A}/extra",
        "/ws/rooms/",
    ]
    outcomes = []
    for path in paths:
        fast = await socket_outcome(served.url, path)
        plain = await socket_outcome(str(both.plain.base_url), path)
        assert fast == plain, path
        outcomes.append(fast)
    assert outcomes[0] == ("welcome", "snapshot")
    assert outcomes[-1] == ("refused", 403)  # no such route: Starlette's router refuses it
