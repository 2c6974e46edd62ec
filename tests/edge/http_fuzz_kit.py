"""The requests the HTTP fuzz draws (tests/edge/test_fuzz_http.py, test_fast_lane.py): every route
of the app with odd path parameters, headers and bodies (http_fuzz_bodies.py), and the symbols
(`$...`) that stand for the ids of the world the test made, resolved per request."""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote

import httpx
from edge_kit import (
    HttpRoute,
    Who,
    World,
    actor_token,
    assert_json_error,
    digits,
    hold_ids,
    http_routes,
    long_digits,
    make_world,
    odd_tokens,
    weighted,
)
from http_fuzz_bodies import Raw, bodies
from hypothesis import event
from hypothesis import strategies as st

from live.app import create_app
from live.settings import Settings

ROUTES = http_routes(
    create_app(
        Settings(
            redis_url="redis://127.0.0.1:1/0",  # never connected: the routes are all we read
            database_url="postgresql://nobody@127.0.0.1:1/none",
            jwt_secret="routes-only-0123456789abcdef0123456789abcdef",
        )
    )
)
WEIGHTED_ROUTES = [r for r in ROUTES for _ in range(3 if r.path.startswith("/api/") else 1)]
ODD_TOKENS = 17  # len(odd_tokens(...))


@dataclass(frozen=True)
class Req:
    method: str
    route: HttpRoute
    params: dict[str, str]  # encoded for the URL, or a `$` symbol
    auth: str | bytes | None  # a `$` symbol, or the header's raw value
    idempotency_key: bytes | None
    content_type: bytes | None
    body: Raw | Any  # None: no body; Raw: bytes; anything else: sent as JSON


# -- strategies -------------------------------------------------------------------------------

ODD_SEGMENTS = [  # already encoded for the URL
    "%C2%B2",  # '²'.isdigit() is True (a 500 once)
    "%D9%A3",  # an Arabic-Indic digit
    "%F0%9D%9F%99",  # a mathematical bold digit
    "%EF%BC%91",  # a full-width digit
    "1%0A",
    "room-a%0A",  # a room id with a trailing newline ('$' matches before it)
    "%00",
    "1%00",
    "%FF%FE",  # not UTF-8
    "%ED%A0%80",  # an encoded surrogate
    "%",
    "%zz",
    "%25",
    "..",
    ".",
    "%2E%2E",
    "a%2Fb",
    "-1",
    "+1",
    "0",
    "00000000000000000001",
    "999999999999999999",  # 18 digits
    "9999999999999999999",  # 19
    "9223372036854775808",  # 2**63
    "1e3",
    "0x10",
    "1.5",
    "%201",
    "1%20",
    "NaN",
    "1.1",
    "1.1-0123456789abcdef",
    "room-a.1-0123456789abcdef",
    "x" * 64,
    "x" * 65,
    "x" * 5000,
    "1" * 3000,
    "%E2%80%AE",  # right-to-left override
]
SYMBOLS = {
    "room": ["$room:a", "$room:b", "no-such-room"],
    "sale": ["$sale:a", "$sale:b", "$group_sale:a", "$group_sale:b"],
    "group": ["$group:a", "$group:b"],
    "reservation": ["$hold:0", "$hold:1", "$hold:2"],
    "comment": ["abc", "0123456789abcdef"],
    "user": ["buyer-1", "host-a"],
    "webhook": ["1", "2"],
    "auction": ["$auction:a", "$auction:b"],
    "path": ["client.js", "watch.html", "missing.js", "../web/watch.html"],
}

header_text = st.text(
    st.characters(min_codepoint=0x21, max_codepoint=0xFF, exclude_characters="\x7f"),
    max_size=300,
).map(lambda s: s.encode("latin-1"))


TRICKY: dict[str, st.SearchStrategy[str]] = {
    "reservation": hold_ids,
    "sale": long_digits | digits,
    "auction": long_digits | digits,
    "group": long_digits | digits,
}


def segment(name: str) -> st.SearchStrategy[str]:
    return weighted(
        (6, st.sampled_from(SYMBOLS.get(name, ["x"]))),
        (3, st.sampled_from(ODD_SEGMENTS)),
        (6 if name in TRICKY else 3, TRICKY.get(name, digits).map(lambda s: quote(s, safe=""))),
        (1, st.text(max_size=80).filter(bool).map(lambda s: quote(s, safe=""))),
        (1, st.binary(min_size=1, max_size=40).map(lambda b: "".join(f"%{c:02X}" for c in b))),
        (1, st.integers(min_value=-(2**70), max_value=2**70).map(str)),
    )


@st.composite
def requests(draw: st.DrawFn) -> Req:
    route = draw(st.sampled_from(WEIGHTED_ROUTES))
    method = draw(
        weighted(
            (9, st.sampled_from(route.methods)),
            (1, st.sampled_from(["GET", "POST", "PUT", "DELETE", "PATCH", "OPTIONS"])),
        )
    )
    params = {name: draw(segment(name)) for name in route.params}
    auth = draw(
        weighted(
            (8, st.sampled_from(["$who:host", "$who:cohost"])),  # most routes are the host's
            (6, st.sampled_from([f"$who:{who.value}" for who in Who])),
            (1, st.none()),
            (1, st.integers(0, ODD_TOKENS - 1).map(lambda n: f"$odd:{n}")),
            (1, header_text),
            (1, st.sampled_from([b"Bearer", b"Basic dXNlcjpwYXNz", b"bearer x.y.z"])),
        )
    )
    key = draw(
        weighted(
            (3, st.just(b"$fresh")),
            (1, st.none()),
            (1, header_text),
            (1, st.sampled_from([b"k", b"k" * 128, b"k" * 129])),
        )
    )
    content_type = draw(
        weighted(
            (2, st.none()),
            (
                2,
                st.sampled_from(
                    [
                        b"application/json",
                        b"application/json; charset=latin-1",
                        b"text/plain",
                        b"application/x-www-form-urlencoded",
                        b"multipart/form-data; boundary=xyz",
                    ]
                ),
            ),
            (1, header_text),
        )
    )
    return Req(method, route, params, auth, key, content_type, draw(bodies()))


# -- running a request ---------------------------------------------------------------------------


class Resolver:
    def __init__(self, world: World) -> None:
        self.fresh = 0
        self.worlds = 1
        self.use(world)

    def use(self, world: World) -> None:
        self.world = world
        self.odd = odd_tokens(world.settings, world.room_a, world.room_b)
        assert len(self.odd) == ODD_TOKENS

    def room(self, arg: str) -> str:
        return self.world.room_a if arg == "a" else self.world.room_b

    def value(self, value: Any) -> Any:
        """`value` with every `$` symbol replaced by what it stands for in the world."""
        if isinstance(value, dict):
            return {k: self.value(v) for k, v in value.items()}
        if isinstance(value, list):
            return [self.value(v) for v in value]
        if not (isinstance(value, str) and value.startswith("$")):
            return value
        kind, _, arg = value[1:].partition(":")
        if kind == "room":
            return self.room(arg)
        if kind == "product":
            return self.world.products[self.room(arg)]
        if kind == "sale":
            return str(self.world.sales[self.room(arg)])
        if kind == "auction":
            return str(self.world.auctions[self.room(arg)])
        if kind == "group_sale":
            return str(self.world.group_sales[self.room(arg)])
        if kind == "group":
            return str(self.world.groups[self.room(arg)])
        if kind == "hold":
            return self.world.holds[int(arg)]
        if kind == "who":
            return actor_token(self.world.settings, Who(arg), self.world.room_a, self.world.room_b)
        if kind == "odd":
            return self.odd[int(arg)]
        return value

    def headers(self, req: Req) -> dict[bytes, bytes]:
        headers: dict[bytes, bytes] = {}
        if isinstance(req.auth, str):
            found = self.value(req.auth)
            if found is not None:
                headers[b"authorization"] = f"Bearer {found}".strip().encode()
        elif req.auth is not None:
            headers[b"authorization"] = req.auth.encode() if isinstance(req.auth, str) else req.auth
        if req.idempotency_key == b"$fresh":
            self.fresh += 1
            headers[b"idempotency-key"] = f"fresh-{self.fresh}".encode()
        elif req.idempotency_key is not None:
            headers[b"idempotency-key"] = req.idempotency_key
        if req.content_type is not None:
            headers[b"content-type"] = req.content_type
        return headers

    def content(self, req: Req) -> bytes | None:
        if req.body is None:
            return None
        if isinstance(req.body, Raw):
            return req.body.data
        return json.dumps(self.value(req.body)).encode("utf-8", "surrogatepass")

    def url(self, req: Req) -> str:
        return req.route.url({k: str(self.value(v)) for k, v in req.params.items()})


async def run(client: httpx.AsyncClient, resolver: Resolver, req: Req) -> httpx.Response:
    url = resolver.url(req)
    response = await client.request(
        req.method,
        url,
        headers=resolver.headers(req),
        content=resolver.content(req),
    )
    event(f"{req.method} {req.route.path}: {response.status_code}")
    context = (req.method, url[:300], response.status_code, response.text[:500])
    assert response.status_code < 500, context
    if req.method == "HEAD":
        return response
    if response.status_code in (307, 308):  # Starlette's redirect of a trailing slash
        assert response.headers["location"], context
    elif response.status_code >= 300:
        assert 400 <= response.status_code < 500, context
        assert_json_error(response, context)
    elif req.route.path.startswith("/api/"):
        response.json()  # every 2xx of the API is JSON
        if url.endswith(("/end", "/stop")):  # the world's room or sale is over: a new world
            resolver.worlds += 1
            world = resolver.world
            n = resolver.worlds
            resolver.use(await make_world(client, world.settings, room_a=f"a-{n}", room_b=f"b-{n}"))
    return response
