"""Bad requests to the rooms HTTP API against the real app, real Redis and real PostgreSQL: each
gets a clear JSON error (refused tokens and roles, unknown rooms, malformed or out-of-range
input, oversized bodies) and changes nothing."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from typing import Any

import httpx
import pytest
from room_helpers import (
    Room,
    Tokens,
    api,
    assert_error,
    bearer,
    room,
    room_log,
    snapshot,
    tokens,
)

from gateway.http_body import MAX_BODY_BYTES
from rooms.actors import Role
from rooms.log import RoomLog

__all__ = ["api", "room", "room_log", "tokens"]  # the fixtures, used by name


@dataclass
class Case:
    name: str
    method: str
    path: str
    token: Callable[[Tokens], str | None]
    status: int
    code: str
    body: Any = None
    content: bytes | None = None
    headers: dict[str, str] = field(default_factory=dict)


def host(t: Tokens) -> str:
    return t(Role.HOST, "r1", "host-1")


def viewer(t: Tokens) -> str:
    return t(Role.VIEWER, "r1", "viewer-1")


STAFF_ROUTES: list[tuple[str, str, Any]] = [
    ("PUT", "/api/rooms/r1", {"title": "x"}),
    ("POST", "/api/rooms/r1/products", {"sku": "a", "title": "A", "price_cents": 1}),
    ("POST", "/api/rooms/r1/pin", {"product_id": 1}),
    ("DELETE", "/api/rooms/r1/pin", None),
    ("POST", "/api/rooms/r1/messages", {"text": "hi"}),
    ("DELETE", "/api/rooms/r1/comments/abc", None),
    ("PUT", "/api/rooms/r1/mutes/u1", {"seconds": 10}),
    ("DELETE", "/api/rooms/r1/mutes/u1", None),
    ("PUT", "/api/rooms/r1/slow-mode", {"seconds": 5}),
    ("POST", "/api/rooms/r1/end", None),
]

AUTH_CASES = [
    *[Case(f"viewer {m} {p}", m, p, viewer, 403, "forbidden", body=b) for m, p, b in STAFF_ROUTES],
    *[
        Case(f"no token {m} {p}", m, p, lambda t: None, 401, "token_required", body=b)
        for m, p, b in STAFF_ROUTES
    ],
    Case(
        "expired",
        "POST",
        "/api/rooms/r1/pin",
        lambda t: t.expired(Role.HOST, "r1"),
        401,
        "token_expired",
        body={"product_id": 1},
    ),
    Case(
        "expired viewer",
        "GET",
        "/api/rooms/r1",
        lambda t: t.expired(Role.VIEWER, "r1"),
        401,
        "token_expired",
    ),
    Case(
        "bad signature",
        "GET",
        "/api/rooms/r1",
        lambda t: host(Tokens("x" * 40)),
        401,
        "invalid_token",
    ),
    Case("garbage token", "GET", "/api/rooms/r1", lambda t: "not.a.jwt", 401, "invalid_token"),
    Case(
        "comment without token",
        "POST",
        "/api/rooms/r1/comments",
        lambda t: None,
        401,
        "token_required",
        body={"text": "hi"},
    ),
    Case(
        "host token of another room",
        "POST",
        "/api/rooms/r1/messages",
        lambda t: t(Role.HOST, "r2"),
        403,
        "forbidden",
        body={"text": "hi"},
    ),
    Case(
        "viewer token of another room",
        "GET",
        "/api/rooms/r1",
        lambda t: t(Role.VIEWER, "r2"),
        403,
        "forbidden",
    ),
    Case(
        "comment with a token of another room",
        "POST",
        "/api/rooms/r1/comments",
        lambda t: t(Role.VIEWER, "r2"),
        403,
        "forbidden",
        body={"text": "hi"},
    ),
    Case(
        "unknown room", "GET", "/api/rooms/nope", lambda t: t(Role.VIEWER, "nope"), 404, "not_found"
    ),
    Case("unknown room, anonymous", "GET", "/api/rooms/nope", lambda t: None, 404, "not_found"),
    Case(
        "unknown room products", "GET", "/api/rooms/nope/products", lambda t: None, 404, "not_found"
    ),
    Case(
        "unknown room pin",
        "POST",
        "/api/rooms/nope/pin",
        lambda t: t(Role.HOST, "nope"),
        404,
        "not_found",
        body={"product_id": 1},
    ),
    Case(
        "unknown room comment",
        "POST",
        "/api/rooms/nope/comments",
        lambda t: t(Role.VIEWER, "nope"),
        404,
        "not_found",
        body={"text": "hi"},
    ),
    Case("bad room id", "GET", "/api/rooms/no.such", lambda t: None, 422, "invalid"),
    Case("unknown method", "PATCH", "/api/rooms/r1", host, 405, "method_not_allowed"),
]

P = "/api/rooms/r1/products"
INPUT_CASES = [
    Case("malformed JSON", "POST", P, host, 400, "bad_request", content=b'{"sku": '),
    Case("JSON array", "POST", P, host, 400, "bad_request", content=b"[1, 2]"),
    Case("empty body", "POST", P, host, 400, "bad_request", content=b""),
    Case("not UTF-8", "POST", P, host, 400, "bad_request", content=b'{"sku": "\xff"}'),
    Case("deep JSON", "POST", P, host, 400, "bad_request", content=b"[" * 10_000),
    Case("title not a string", "PUT", "/api/rooms/r1", host, 422, "invalid", body={"title": 5}),
    Case("title too long", "PUT", "/api/rooms/r1", host, 422, "invalid", body={"title": "t" * 201}),
    Case(
        "settings not an object",
        "PUT",
        "/api/rooms/r1",
        host,
        422,
        "invalid",
        body={"title": "t", "settings": "open"},
    ),
    Case(
        "blocked_words not a list",
        "PUT",
        "/api/rooms/r1",
        host,
        422,
        "invalid",
        body={"title": "t", "settings": {"blocked_words": "spam"}},
    ),
    Case(
        "unknown setting",
        "PUT",
        "/api/rooms/r1",
        host,
        422,
        "invalid",
        body={"title": "t", "settings": {"colour": "red"}},
    ),
    Case(
        "allow_anonymous not a bool",
        "PUT",
        "/api/rooms/r1",
        host,
        422,
        "invalid",
        body={"title": "t", "settings": {"allow_anonymous": "no"}},
    ),
    Case(
        "price as text",
        "POST",
        P,
        host,
        422,
        "invalid",
        body={"sku": "a", "title": "A", "price_cents": "12"},
    ),
    Case(
        "price as bool",
        "POST",
        P,
        host,
        422,
        "invalid",
        body={"sku": "a", "title": "A", "price_cents": True},
    ),
    Case(
        "negative price",
        "POST",
        P,
        host,
        422,
        "invalid",
        body={"sku": "a", "title": "A", "price_cents": -1},
    ),
    Case("missing sku", "POST", P, host, 422, "invalid", body={"title": "A", "price_cents": 1}),
    Case(
        "sku too long",
        "POST",
        P,
        host,
        422,
        "invalid",
        body={"sku": "s" * 65, "title": "A", "price_cents": 1},
    ),
    Case(
        "product_id as text",
        "POST",
        "/api/rooms/r1/pin",
        host,
        422,
        "invalid",
        body={"product_id": "1"},
    ),
    Case(
        "product_id zero", "POST", "/api/rooms/r1/pin", host, 422, "invalid", body={"product_id": 0}
    ),
    Case(
        "empty host message",
        "POST",
        "/api/rooms/r1/messages",
        host,
        422,
        "invalid",
        body={"text": "   "},
    ),
    Case(
        "host message too long",
        "POST",
        "/api/rooms/r1/messages",
        host,
        422,
        "invalid",
        body={"text": "m" * 501},
    ),
    Case(
        "slow mode as float",
        "PUT",
        "/api/rooms/r1/slow-mode",
        host,
        422,
        "invalid",
        body={"seconds": 1.5},
    ),
    Case(
        "slow mode too long",
        "PUT",
        "/api/rooms/r1/slow-mode",
        host,
        422,
        "invalid",
        body={"seconds": 3601},
    ),
    Case(
        "mute for zero seconds",
        "PUT",
        "/api/rooms/r1/mutes/u1",
        host,
        422,
        "invalid",
        body={"seconds": 0},
    ),
    Case(
        "comment not a string",
        "POST",
        "/api/rooms/r1/comments",
        viewer,
        422,
        "invalid",
        body={"text": ["hi"]},
    ),
    Case(
        "oversized body",
        "POST",
        P,
        host,
        413,
        "too_large",
        content=b'{"sku": "' + b"x" * MAX_BODY_BYTES + b'"}',
    ),
]


async def chunks(data: bytes) -> AsyncIterator[bytes]:
    for start in range(0, len(data), 4096):
        yield data[start : start + 4096]


async def send(api: httpx.AsyncClient, tokens: Tokens, case: Case) -> httpx.Response:
    token = case.token(tokens)
    headers = {**case.headers, **(bearer(token) if token else {})}
    if case.content is not None:
        headers["content-type"] = "application/json"
        return await api.request(case.method, case.path, content=case.content, headers=headers)
    if case.body is None:
        return await api.request(case.method, case.path, headers=headers)
    return await api.request(case.method, case.path, json=case.body, headers=headers)


async def observable_state(api: httpx.AsyncClient, room: Room, room_log: RoomLog) -> Any:
    view = await snapshot(api, room)
    del view["server_time_ms"]
    products = (await api.get("/api/rooms/r1/products")).json()
    return view, products, await room_log.position("r1"), await room_log.position("nope")


@pytest.mark.parametrize("cases", [AUTH_CASES, INPUT_CASES], ids=["auth", "input"])
async def test_bad_requests_get_a_json_error_and_change_nothing(
    api: httpx.AsyncClient, room: Room, tokens: Tokens, room_log: RoomLog, cases: list[Case]
) -> None:
    before = await observable_state(api, room, room_log)
    for case in cases:
        assert_error(await send(api, tokens, case), case.status, case.code, case.name)
    assert await observable_state(api, room, room_log) == before


async def test_an_oversized_body_without_length_is_refused(
    api: httpx.AsyncClient, room: Room, room_log: RoomLog
) -> None:
    position = await room_log.position("r1")
    data = b'{"text": "' + b"x" * (MAX_BODY_BYTES * 2) + b'"}'
    response = await api.post(
        "/api/rooms/r1/messages",
        content=chunks(data),
        headers={**bearer(room.host), "content-type": "application/json"},
    )
    assert "content-length" not in response.request.headers
    assert_error(response, 413, "too_large")
    assert await room_log.position("r1") == position
