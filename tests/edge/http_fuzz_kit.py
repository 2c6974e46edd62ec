"""The requests the HTTP fuzz draws (tests/edge/test_fuzz_http.py, test_fast_lane.py): every route
of the app with odd path parameters, headers and bodies, and the symbols (`$...`) that stand for
the ids of the world the test made, resolved per request."""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import datetime
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
from hypothesis import event
from hypothesis import strategies as st
from serve_kit import TEST_SECRET

from gateway.share_codes import mint_share
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
FIELDS = (  # every field a body of the HTTP API has (README), and the room settings
    "title",
    "settings",
    "sku",
    "price_cents",
    "image_url",
    "product_id",
    "text",
    "seconds",
    "stock",
    "limit_per_buyer",
    "hold_seconds",
    "starts_at",
    "ends_at",
    "qty",
    "payment_ref",
    "show_name",
    "delta",
    "url",
    "secret",
    "start_cents",
    "increment_cents",
    "increments",
    "duration_s",
    "snipe_window_s",
    "max_extensions",
    "reserve_cents",
    "amount_cents",
    "max_cents",
    "kind",
    "group_price_cents",
    "group_size",
    "group_window_s",
    "share",
    "percent",
)
VALID_BODY: dict[str, Any] = {  # good for every route at once: each reads only its own fields
    "title": "A title",
    "settings": {"blocked_words": ["spam"], "allow_anonymous": True},
    "sku": "sku-1",
    "price_cents": 1000,
    "image_url": "https://example.com/i.png",
    "product_id": "$product:a",
    "text": "hello",
    "seconds": 5,
    "stock": 10,
    "limit_per_buyer": 2,
    "hold_seconds": 60,
    "qty": 1,
    "payment_ref": "pay-1",
    "show_name": True,
    "delta": 1,
    "url": "http://hooks.invalid/hook",  # never resolves (RFC 2606): deliveries fail, retry
    "secret": "whsec-0123456789abcdef",
    "start_cents": 100,
    "increment_cents": 10,
    "duration_s": 600,
    "snipe_window_s": 10,
    "max_extensions": 3,
    "amount_cents": 150,
    "max_cents": 500,
    "share": mint_share(TEST_SECRET, "room-a", "buyer-1"),  # a share code of room A
    "percent": 10,
    "group_price_cents": 800,
    "group_size": 3,
    "group_window_s": 600,
}


@dataclass(frozen=True)
class Raw:
    """Body bytes sent as they are."""

    data: bytes


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


json_scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(),
    st.sampled_from([0, 1, -1, 2**31, 2**53 + 1, 2**62, 2**63, 2**64, 10**30, -(10**30)]),
    st.floats(allow_nan=True, allow_infinity=True),
    st.text(max_size=40),
    st.sampled_from(["", " ", "\x00", "a\x00b", "\ud800", "\udfff", "1", "true", "x" * 300]),
)
json_values = st.recursive(
    json_scalars,
    lambda inner: (
        st.lists(inner, max_size=4)
        | st.dictionaries(st.sampled_from(FIELDS) | st.text(max_size=10), inner, max_size=4)
    ),
    max_leaves=12,
)
moments = st.one_of(
    st.integers(min_value=-(2**64), max_value=2**64),
    st.floats(),
    st.datetimes(timezones=st.timezones()).map(lambda d: d.isoformat()),
    st.datetimes(max_value=datetime(1, 1, 2), timezones=st.timezones()).map(str),  # the edges
    st.datetimes(min_value=datetime(9999, 12, 30), timezones=st.timezones()).map(str),
    st.datetimes().map(lambda d: d.isoformat()),  # no zone
    st.sampled_from(
        [
            "0001-01-01T00:00:00+14:00",  # in UTC: before year 1
            "9999-12-31T23:59:59-14:00",  # in UTC: after year 9999
            "0001-01-01T00:00:00+00:00",
            "9999-12-31T23:59:59+00:00",
            253402300799999,  # 9999-12-31 in epoch ms
            -62135596800000,  # 0001-01-01 in epoch ms
            "2030-01-01",
            "tomorrow",
        ]
    ),
)
odd_words = st.sampled_from(["\x00", "a\x00", "\ud800", "\udfff", " ", "", "w" * 51, "Ünïcödé"])
room_settings = weighted(
    (
        3,
        st.fixed_dictionaries(
            {},
            optional={
                "blocked_words": st.lists(st.text(max_size=60) | odd_words, max_size=5),
                "allow_anonymous": st.booleans(),
            },
        ),
    ),
    (1, st.dictionaries(st.sampled_from(["blocked_words", "allow_anonymous", "x"]), json_values)),
)
odd_field_value: dict[str, st.SearchStrategy[Any]] = {
    "starts_at": moments,
    "ends_at": moments,
    "settings": room_settings,
    "product_id": st.sampled_from(["$product:a", "$product:b"]) | json_values,
}


@st.composite
def bodies(draw: st.DrawFn) -> Any:
    kind = draw(st.sampled_from(["valid", "mutated", "mutated", "mutated", "none", "json", "raw"]))
    if kind == "none":
        return None
    if kind == "json":
        return draw(json_values)
    if kind == "raw":
        return Raw(
            draw(
                st.one_of(
                    st.binary(max_size=200),
                    st.sampled_from(
                        [
                            b"\xff\xfe{}",
                            b'{"title": "\xff"}',
                            b"{",
                            b"not json",
                            b"[" * 5000 + b"]" * 5000,
                            b'{"a":' * 3000 + b"1" + b"}" * 3000,
                            b'{"title": "x"}' + b" " * 20_000,  # over the body limit
                            b'{"title": "' + b"x" * 20_000 + b'"}',
                            b'{"qty": NaN, "stock": Infinity}',
                            b'{"qty": 1, "qty": "2"}',
                            b"\xef\xbb\xbf{}",  # a byte order mark
                            b"null",
                            b"   ",
                        ]
                    ),
                )
            )
        )
    body = dict(VALID_BODY)
    if kind == "mutated":
        for name in draw(st.lists(st.sampled_from(FIELDS), min_size=1, max_size=3, unique=True)):
            if draw(st.booleans()):
                body.pop(name, None)
            else:
                body[name] = draw(odd_field_value.get(name, json_values))
    return body


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
