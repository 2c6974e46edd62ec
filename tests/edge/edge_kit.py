"""What the edge tests share: tokens of every kind of actor, an HTTP client of the served app, a
world of two rooms with an open sale each and holds of known buyers (made through its HTTP API),
the routes read from the app itself, the JSON error shape, and a WebSocket client that answers
each message with the frame that answers it. (Not a conftest.py: see scripts/check.)"""

from __future__ import annotations

import asyncio
import json
import time
import warnings
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any
from urllib.parse import urlencode

import httpx
import jwt
import pytest
from hypothesis import strategies as st
from serve_kit import Served
from starlette.applications import Starlette
from starlette.routing import BaseRoute, Mount, Route, WebSocketRoute
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed

from gateway.auth import mint
from live.settings import Settings
from rooms.actors import Role

ROOM_A = "room-a"
ROOM_B = "room-b"
HOST = "host-a"  # the host who created room A
BUYER = "buyer-1"  # a viewer of room A who holds items of room A's sale
FRAME_TIMEOUT_S = 10.0


STARTER = "starter"  # the viewer who starts each room's group: none of the Who actors
GROUP_DEAL = {  # no join of the tests fills a group of it: each stays forming
    "kind": "group",
    "stock": 50,
    "price_cents": 200,
    "group_price_cents": 100,
    "limit_per_buyer": 1,
    "group_size": 20,
    "group_window_s": 3600,
}


class Who(StrEnum):
    """The actors of the "who may do what" table (README, "HTTP API"), seen from room A."""

    ANONYMOUS = "anonymous"
    VIEWER = "viewer"  # a signed-in viewer of room A (the buyer, where a hold is concerned)
    OTHER_VIEWER = "other-viewer"  # another viewer of room A
    BUYER_ELSEWHERE = "buyer-in-room-b"  # the same user as VIEWER, with a token of room B
    MODERATOR = "moderator"
    HOST = "host"  # the host who created room A
    COHOST = "cohost"  # another host token of room A (any host token of the room is a host)
    OTHER_HOST = "other-host"  # the host of room B
    SERVICE = "service"  # a merchant's server with a service token of room A


def token(settings: Settings, sub: str, role: Role, room: str, ttl_s: int = 3600) -> str:
    return mint(settings.jwt_secret, sub=sub, role=role, room=room, ttl_s=ttl_s, name=sub.title())


def signed(settings: Settings, payload: dict[str, Any], secret: str | None = None) -> str:
    """A token with any payload, signed with the service's secret (or `secret`)."""
    return jwt.encode(payload, secret or settings.jwt_secret, algorithm="HS256")


def actor_token(
    settings: Settings, who: Who, room_a: str = ROOM_A, room_b: str = ROOM_B
) -> str | None:
    return {
        Who.ANONYMOUS: None,
        Who.VIEWER: token(settings, BUYER, Role.VIEWER, room_a),
        Who.OTHER_VIEWER: token(settings, "viewer-2", Role.VIEWER, room_a),
        Who.BUYER_ELSEWHERE: token(settings, BUYER, Role.VIEWER, room_b),
        Who.MODERATOR: token(settings, "mod-a", Role.MODERATOR, room_a),
        Who.HOST: token(settings, HOST, Role.HOST, room_a),
        Who.COHOST: token(settings, "cohost-a", Role.HOST, room_a),
        Who.OTHER_HOST: token(settings, "host-b", Role.HOST, room_b),
        Who.SERVICE: token(settings, "payments", Role.SERVICE, room_a),
    }[who]


def bearer(value: str | None) -> dict[str, str]:
    return {} if value is None else {"authorization": f"Bearer {value}"}


def odd_tokens(settings: Settings, room_a: str = ROOM_A, room_b: str = ROOM_B) -> list[str]:
    """Tokens a client may send that are not good for room A: garbage, expired, signed with
    another key, missing or odd claims, another room."""
    now = int(time.time())
    good = {"sub": "x", "role": "viewer", "room": room_a, "exp": now + 600}
    with warnings.catch_warnings():  # the test secret is short for HS512, which is the point
        warnings.simplefilter("ignore")
        hs512 = jwt.encode(good, settings.jwt_secret, algorithm="HS512")
    return [
        "garbage",
        "a.b.c",
        "",
        " ",
        "Bearer",
        signed(settings, {**good, "exp": now - 60}),
        signed(settings, good, secret="another-secret-0123456789abcdef0123456789"),
        signed(settings, {**good, "role": "admin"}),
        signed(settings, {**good, "role": None}),
        signed(settings, {**good, "sub": ""}),
        signed(settings, {**good, "sub": 7}),
        signed(settings, {**good, "room": [room_a]}),
        signed(settings, {k: v for k, v in good.items() if k != "exp"}),
        signed(settings, {**good, "exp": "tomorrow"}),
        hs512,
        token(settings, BUYER, Role.VIEWER, room_b),
        token(settings, "other", Role.MODERATOR, "no-such-room"),
    ]


# -- the world: two rooms with a product and an open sale each, holds of known buyers ---------


@dataclass
class World:
    settings: Settings
    room_a: str = ROOM_A
    room_b: str = ROOM_B
    products: dict[str, int] = field(default_factory=dict)  # room -> product id
    sales: dict[str, int] = field(default_factory=dict)  # room -> open sale id
    holds: list[str] = field(default_factory=list)  # held by BUYER in room A's sale
    auctions: dict[str, int] = field(default_factory=dict)  # room -> open auction id
    group_sales: dict[str, int] = field(default_factory=dict)  # room -> open group deal id
    groups: dict[str, int] = field(default_factory=dict)  # room -> a forming group (of STARTER)


@pytest.fixture
async def client(served: Served) -> AsyncIterator[httpx.AsyncClient]:
    """An HTTP client of the served app."""
    async with httpx.AsyncClient(base_url=served.url, timeout=30) as http:
        yield http


async def check(response: httpx.Response, status: int) -> dict[str, Any]:
    assert response.status_code == status, f"{response.request.url}: {response.text}"
    body: dict[str, Any] = response.json()
    return body


async def make_world(
    client: httpx.AsyncClient,
    settings: Settings,
    holds: int = 3,
    room_a: str = ROOM_A,
    room_b: str = ROOM_B,
) -> World:
    world = World(settings, room_a, room_b)
    for room, host in ((room_a, HOST), (room_b, "host-b")):
        headers = bearer(token(settings, host, Role.HOST, room))
        await check(
            await client.put(f"/api/rooms/{room}", json={"title": room}, headers=headers), 200
        )
        product = await check(
            await client.post(
                f"/api/rooms/{room}/products",
                json={"sku": "mug", "title": "Mug", "price_cents": 900},
                headers=headers,
            ),
            201,
        )
        world.products[room] = product["id"]
        sale = await check(
            await client.post(
                f"/api/rooms/{room}/sales",
                json={
                    "product_id": product["id"],
                    "stock": 100_000,
                    "price_cents": 500,
                    "limit_per_buyer": 1000,
                    "hold_seconds": 600,
                },
                headers=headers,
            ),
            201,
        )
        await check(await client.post(f"/api/sales/{sale['id']}/start", headers=headers), 200)
        world.sales[room] = sale["id"]
        auction = await check(
            await client.post(
                f"/api/rooms/{room}/auctions",
                json={
                    "product_id": product["id"],
                    "start_cents": 100,
                    "increment_cents": 10,
                    "duration_s": 3600,
                    "snipe_window_s": 10,
                    "max_extensions": 3,
                },
                headers=headers,
            ),
            201,
        )
        path = f"/api/auctions/{auction['id']}/start"
        await check(await client.post(path, headers=headers), 200)
        world.auctions[room] = auction["id"]
        deal = await check(
            await client.post(
                f"/api/rooms/{room}/sales",
                json={**GROUP_DEAL, "product_id": product["id"]},
                headers=headers,
            ),
            201,
        )
        await check(await client.post(f"/api/sales/{deal['id']}/start", headers=headers), 200)
        world.group_sales[room] = deal["id"]
        starting = bearer(token(settings, STARTER, Role.VIEWER, room))
        group = await client.post(f"/api/sales/{deal['id']}/groups", headers=starting)
        world.groups[room] = (await check(group, 201))["id"]
    for n in range(holds):
        world.holds.append(
            await reserve(client, settings, world.sales[room_a], BUYER, f"k{n}", room_a)
        )
    return world


async def reserve(
    client: httpx.AsyncClient,
    settings: Settings,
    sale: int,
    buyer: str,
    key: str,
    room: str = ROOM_A,
) -> str:
    """A hold of `buyer` (a viewer of `room`, the sale's) in `sale`; its id."""
    headers = {**bearer(token(settings, buyer, Role.VIEWER, room)), "idempotency-key": key}
    hold = await check(
        await client.post(f"/api/sales/{sale}/reservations", json={"qty": 1}, headers=headers),
        201,
    )
    hold_id: str = hold["id"]
    return hold_id


def weighted(*choices: tuple[int, st.SearchStrategy[Any]]) -> st.SearchStrategy[Any]:
    """One of the strategies, each as often as its weight says."""
    return st.sampled_from(
        [strategy for weight, strategy in choices for _ in range(weight)]
    ).flatmap(lambda strategy: strategy)


# ids that are almost numbers, or almost hold ids (a 500 once: '\u00b2'.isdigit() is true)
digits = st.one_of(
    # digits that are not ASCII: '\u00b2'.isdigit() is true, int('\u0661') is 1
    st.text(st.characters(categories=("Nd", "No", "Nl")), min_size=1, max_size=4),
    st.lists(
        st.sampled_from("\u00b2\u00b9\u2460\u2474\u00bd\u0663\U0001d7d9\uff11\u216b1"),
        min_size=1,
        max_size=3,
    ).map("".join),
    # with a space, sign, point, exponent or letter around them, or too many of them
    st.from_regex(r"\A[ +-]?[0-9]{1,25}([.eE_ x][0-9]{0,3})?[ \n]?\Z"),
)
long_digits = st.sampled_from([17, 18, 19, 20, 25]).map(lambda n: "9" * n)  # bigint's edge
# what looks like a hold id, <pool>.<seq>[-<nonce>], with any pool and seq
hold_ids = st.builds(
    "{}.{}{}".format,
    long_digits | st.from_regex(r"\A[A-Za-z0-9_-]{1,8}\Z") | st.text(min_size=1, max_size=4),
    long_digits | st.from_regex(r"\A[0-9]{1,3}\Z") | digits,
    st.sampled_from(["", "-0123456789abcdef", "-0123456789ABCDEF", "-x"]),
)


# -- routes and answers -----------------------------------------------------------------------


@dataclass(frozen=True)
class HttpRoute:
    path: str  # the template, e.g. /api/rooms/{room}/pin
    methods: tuple[str, ...]
    params: tuple[str, ...]

    def url(self, values: dict[str, str]) -> str:
        """The path with each parameter replaced by its (already encoded) value."""
        path = self.path
        for name in self.params:
            path = path.replace(f"{{{name}}}", values[name])
        return path


def http_routes(app: Starlette) -> list[HttpRoute]:
    """Every route the app serves over HTTP, read from the app (a new route is covered without
    a change here). A WebSocket route is driven over plain HTTP too: it must refuse cleanly."""
    found: list[HttpRoute] = []

    def walk(routes: list[BaseRoute], prefix: str) -> Iterator[HttpRoute]:
        for route in routes:
            if isinstance(route, Route):
                methods = tuple(sorted(route.methods or {"GET"}))
                params = tuple(route.param_convertors)
                yield HttpRoute(prefix + route.path, methods, params)
            elif isinstance(route, WebSocketRoute):
                yield HttpRoute(prefix + route.path, ("GET",), tuple(route.param_convertors))
            elif isinstance(route, Mount):
                if route.routes:
                    yield from walk(list(route.routes), prefix + route.path)
                else:  # an app (static files) under the mount: any path below it
                    yield HttpRoute(f"{prefix}{route.path}/{{path}}", ("GET", "HEAD"), ("path",))
            else:
                raise AssertionError(f"a kind of route the edge tests do not know: {route!r}")

    found.extend(walk(list(app.routes), ""))
    assert len(found) >= 20, found  # the README's table has more than that
    return found


def assert_json_error(response: httpx.Response, context: object = "") -> dict[str, Any]:
    """The documented error shape: a JSON object of exactly `error` and `detail`, both text."""
    try:
        body = response.json()
    except ValueError:
        raise AssertionError(
            f"{context}: not JSON: {response.status_code} {response.text!r}"
        ) from None
    assert isinstance(body, dict) and set(body) == {"error", "detail"}, (context, body)
    assert isinstance(body["error"], str) and body["error"], (context, body)
    assert isinstance(body["detail"], str), (context, body)
    return body


# -- a WebSocket client -------------------------------------------------------------------------


def ws_url(base: str, room: str, **params: str) -> str:
    query = f"?{urlencode(params)}" if params else ""
    return f"{base.replace('http://', 'ws://', 1)}/ws/rooms/{room}{query}"


class Socket:
    """One WebSocket; `ask` sends a message and returns the reply or error frame answering it
    (each client message is answered by exactly one, in order), None once the server closed."""

    def __init__(self, ws: ClientConnection) -> None:
        self.ws = ws
        self.welcome: dict[str, Any] | None = None

    @classmethod
    async def open(cls, url: str, *, wait_welcome: bool = True) -> Socket:
        socket = cls(await connect(url, open_timeout=30, max_size=2**24))
        if wait_welcome:
            frame = await socket.next_frame(("welcome",))
            assert frame is not None, f"closed with {socket.close_code} before the welcome"
            socket.welcome = frame
        return socket

    @property
    def close_code(self) -> int | None:
        return self.ws.close_code

    async def next_frame(self, types: tuple[str, ...]) -> dict[str, Any] | None:
        """The next frame of one of `types` (others are skipped); None when the socket closed."""
        try:
            async with asyncio.timeout(FRAME_TIMEOUT_S):
                while True:
                    raw = await self.ws.recv()
                    frame: dict[str, Any] = json.loads(raw)
                    if frame["type"] in types:
                        return frame
        except ConnectionClosed:
            return None

    async def send(self, message: dict[str, Any] | str | bytes) -> None:
        await self.ws.send(message if isinstance(message, str | bytes) else json.dumps(message))

    async def ask(self, message: dict[str, Any] | str | bytes) -> dict[str, Any] | None:
        try:
            await self.send(message)
        except ConnectionClosed:
            return None
        return await self.next_frame(("reply", "error"))

    async def alive(self) -> bool:
        """A ping still answers."""
        answer = await self.ask({"type": "ping", "ref": "alive"})
        if answer is None:
            return False
        assert answer["type"] == "reply" and answer["ref"] == "alive", answer
        assert isinstance(answer["data"]["ts"], int), answer
        return True

    async def close(self) -> None:
        await asyncio.wait_for(self.ws.close(), 5)
