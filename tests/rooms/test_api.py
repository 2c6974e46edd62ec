"""The rooms HTTP API over loopback against the real app, real Redis and real PostgreSQL."""

from __future__ import annotations

import json
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from typing import Any, cast

import httpx
import pytest
import redis.asyncio as aioredis
from room_helpers import Room, Tokens, bearer, create_room, pg_pool, room_service

from gateway.http_body import MAX_BODY_BYTES
from live.settings import Settings
from rooms.actors import Role
from rooms.log import RoomLog

SNAPSHOT_FIELDS = {
    "room",
    "pinned",
    "host_message",
    "sale",
    "auction",  # flash_sales.auctions adds its part, as sales add theirs
    "stock",
    "slow_mode",
    "viewers",
    "comments",
    "seq",
    "epoch",
    "server_time_ms",
}


@pytest.fixture
def tokens(settings: Settings) -> Tokens:
    return Tokens(settings.jwt_secret)


@pytest.fixture
async def api(server: str) -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(base_url=server, timeout=10) as client:
        yield client


@pytest.fixture
async def room(api: httpx.AsyncClient, tokens: Tokens) -> Room:
    return await create_room(api, tokens)


@pytest.fixture
def room_log(redis: aioredis.Redis, settings: Settings) -> RoomLog:
    return RoomLog(redis, settings.redis_prefix)


async def snapshot(api: httpx.AsyncClient, room: Room) -> dict[str, Any]:
    response = await api.get(f"/api/rooms/{room.id}", headers=bearer(room.viewer))
    assert response.status_code == 200, response.text
    body: dict[str, Any] = response.json()
    return body


async def last_event(room_log: RoomLog, room: str) -> dict[str, Any]:
    raw = await room_log.client.xrevrange(room_log.keys(room).log, count=1)
    entries = cast(list[tuple[bytes, dict[bytes, bytes]]], raw)
    event: dict[str, Any] = json.loads(entries[0][1][b"e"])
    return event


def assert_error(response: httpx.Response, status: int, code: str, context: str = "") -> None:
    assert response.status_code == status, f"{context}: {response.status_code} {response.text}"
    body = response.json()
    assert set(body) == {"error", "detail"}, context
    assert body["error"] == code, f"{context}: {body}"
    assert isinstance(body["detail"], str) and body["detail"], context


# -- rooms ----------------------------------------------------------------------------------


async def test_the_host_creates_and_updates_a_room(
    api: httpx.AsyncClient, tokens: Tokens, room_log: RoomLog
) -> None:
    alice = bearer(tokens(Role.HOST, "r1", "alice"))
    settings = {"blocked_words": ["Spam", " spam "], "allow_anonymous": False}
    created = await api.put(
        "/api/rooms/r1", json={"title": "Spring", "settings": settings}, headers=alice
    )
    assert created.status_code == 200, created.text
    assert created.json() == {
        "id": "r1",
        "title": "Spring",
        "host": "alice",
        "settings": {"blocked_words": ["spam"], "allow_anonymous": False},
        "ended": False,
    }
    updated = await api.put("/api/rooms/r1", json={"title": "Summer"}, headers=alice)
    assert updated.status_code == 200
    assert updated.json()["title"] == "Summer"
    assert updated.json()["settings"] == {"blocked_words": [], "allow_anonymous": True}
    event = await last_event(room_log, "r1")
    assert (event["seq"], event["type"], event["data"]["room"]) == (
        2,
        "room_updated",
        updated.json(),
    )

    position = await room_log.position("r1")
    for role, room in [(Role.MODERATOR, "r1"), (Role.VIEWER, "r1"), (Role.HOST, "r2")]:
        other = bearer(tokens(role, room, "alice"))
        refused = await api.put("/api/rooms/r1", json={"title": "Mine now"}, headers=other)
        assert_error(refused, 403, "forbidden", f"{role} of {room}")
    assert await room_log.position("r1") == position
    view = await api.get("/api/rooms/r1", headers=alice)
    assert view.json()["room"]["title"] == "Summer"
    # A co-host (any host token of the room) may change it; the room keeps who made it.
    cohost = bearer(tokens(Role.HOST, "r1", "bob"))
    changed = await api.put("/api/rooms/r1", json={"title": "Autumn"}, headers=cohost)
    assert (changed.status_code, changed.json()["title"], changed.json()["host"]) == (
        200,
        "Autumn",
        "alice",
    )


async def test_the_snapshot_has_every_field(
    api: httpx.AsyncClient, room: Room, room_log: RoomLog
) -> None:
    before_ms = int(time.time() * 1000)
    view = await snapshot(api, room)
    assert set(view) == SNAPSHOT_FIELDS
    assert view["room"] == {
        "id": "r1",
        "title": "Room r1",
        "host": "host-1",
        "settings": {"blocked_words": [], "allow_anonymous": True},
        "ended": False,
    }
    assert view["pinned"] is None and view["host_message"] is None and view["sale"] is None
    assert (view["slow_mode"], view["viewers"], view["comments"]) == (0, 0, [])
    assert (view["epoch"], view["seq"]) == await room_log.position("r1")
    assert view["seq"] == 1  # the room_updated of its creation
    assert abs(view["server_time_ms"] - before_ms) < 5000
    anonymous = await api.get("/api/rooms/r1")
    assert anonymous.status_code == 200
    assert anonymous.json()["room"] == view["room"]


# -- products, pin, host message ------------------------------------------------------------


async def test_products_are_added_and_listed(api: httpx.AsyncClient, room: Room) -> None:
    host = bearer(room.host)
    body = {"sku": "tee-2", "title": "T-shirt", "price_cents": 2500, "image_url": "https://x/t.png"}
    added = await api.post("/api/rooms/r1/products", json=body, headers=host)
    assert added.status_code == 201, added.text
    product = added.json()
    assert isinstance(product["id"], int)
    assert product == {"id": product["id"], **body}
    listing = await api.get("/api/rooms/r1/products")
    assert listing.status_code == 200
    assert listing.json() == {"products": [room.product, product]}
    # The same sku again updates the product instead of adding another.
    again = await api.post(
        "/api/rooms/r1/products", json={**body, "price_cents": 1999}, headers=host
    )
    assert again.status_code == 201
    assert again.json() == {**product, "price_cents": 1999}
    listing = await api.get("/api/rooms/r1/products", headers=bearer(room.viewer))
    assert [p["price_cents"] for p in listing.json()["products"]] == [1299, 1999]


async def test_a_moderator_runs_the_room_but_only_the_host_owns_it(
    api: httpx.AsyncClient, room: Room, tokens: Tokens
) -> None:
    moderator = bearer(tokens(Role.MODERATOR, "r1", "mod-1"))
    added = await api.post(
        "/api/rooms/r1/products",
        json={"sku": "cap", "title": "Cap", "price_cents": 900},
        headers=moderator,
    )
    assert added.status_code == 201
    pinned = await api.post(
        "/api/rooms/r1/pin", json={"product_id": added.json()["id"]}, headers=moderator
    )
    assert pinned.status_code == 200
    assert_error(await api.post("/api/rooms/r1/end", headers=moderator), 403, "forbidden")


async def test_pin_and_unpin_show_in_the_snapshot_and_the_log(
    api: httpx.AsyncClient, room: Room, room_log: RoomLog
) -> None:
    host = bearer(room.host)
    pinned = await api.post(
        "/api/rooms/r1/pin", json={"product_id": room.product["id"]}, headers=host
    )
    assert pinned.status_code == 200, pinned.text
    epoch, seq = await room_log.position("r1")
    assert pinned.json() == {"seq": seq, "epoch": epoch}
    event = await last_event(room_log, "r1")
    assert (event["type"], event["lane"]) == ("pinned", "critical")
    assert event["data"] == {"product": room.product}
    view = await snapshot(api, room)
    assert view["pinned"] == room.product
    assert view["seq"] == seq

    unpinned = await api.delete("/api/rooms/r1/pin", headers=host)
    assert unpinned.status_code == 200
    assert unpinned.json()["seq"] == seq + 1
    assert (await last_event(room_log, "r1"))["type"] == "unpinned"
    assert (await snapshot(api, room))["pinned"] is None


async def test_pinning_a_product_of_another_room_is_not_found(
    api: httpx.AsyncClient, room: Room, tokens: Tokens, room_log: RoomLog
) -> None:
    other = await create_room(api, tokens, "r2")
    position = await room_log.position("r1")
    for product_id in (other.product["id"], 10**9):
        response = await api.post(
            "/api/rooms/r1/pin", json={"product_id": product_id}, headers=bearer(room.host)
        )
        assert_error(response, 404, "not_found", str(product_id))
    assert await room_log.position("r1") == position
    assert (await snapshot(api, room))["pinned"] is None


async def test_a_host_message_is_logged_and_kept_in_the_snapshot(
    api: httpx.AsyncClient, room: Room, room_log: RoomLog, tokens: Tokens
) -> None:
    host = bearer(tokens(Role.HOST, "r1", "host-1", name="Ana"))
    sent = await api.post("/api/rooms/r1/messages", json={"text": "  20% off now!  "}, headers=host)
    assert sent.status_code == 201, sent.text
    message = {"text": "20% off now!", "by": "Ana", "role": "host"}
    event = await last_event(room_log, "r1")
    assert (event["seq"], event["type"], event["data"]) == (
        sent.json()["seq"],
        "host_message",
        message,
    )
    assert (await snapshot(api, room))["host_message"] == message


# -- moderation -----------------------------------------------------------------------------


async def comment(api: httpx.AsyncClient, token: str, text: str) -> httpx.Response:
    return await api.post("/api/rooms/r1/comments", json={"text": text}, headers=bearer(token))


async def test_deleting_a_comment_removes_it_and_tells_everyone(
    api: httpx.AsyncClient, room: Room, room_log: RoomLog
) -> None:
    first = await comment(api, room.viewer, "hello")
    second = await comment(api, room.viewer, "nice mug")
    assert first.status_code == second.status_code == 201, first.text
    view = await snapshot(api, room)
    assert [c["data"]["text"] for c in view["comments"]] == ["hello", "nice mug"]
    target = view["comments"][0]["data"]
    assert target["user"] == "viewer-1"

    deleted = await api.delete(f"/api/rooms/r1/comments/{target['id']}", headers=bearer(room.host))
    assert deleted.status_code == 200, deleted.text
    event = await last_event(room_log, "r1")
    assert (event["type"], event["lane"], event["data"]) == (
        "comment_deleted",
        "critical",
        {"id": target["id"]},
    )
    view = await snapshot(api, room)
    assert [c["data"]["text"] for c in view["comments"]] == ["nice mug"]
    assert view["seq"] == event["seq"]


async def test_mute_and_unmute(api: httpx.AsyncClient, room: Room, tokens: Tokens) -> None:
    host = bearer(room.host)
    muted = await api.put("/api/rooms/r1/mutes/viewer-1", json={"seconds": 120}, headers=host)
    assert muted.status_code == 200, muted.text
    assert muted.json() == {"user": "viewer-1", "muted_for_s": 120}
    refused = await comment(api, room.viewer, "let me talk")
    assert_error(refused, 403, "muted")
    assert 110 <= int(refused.headers["retry-after"]) <= 120
    assert (await comment(api, tokens(Role.VIEWER, "r1", "viewer-2"), "hi")).status_code == 201
    unmuted = await api.delete("/api/rooms/r1/mutes/viewer-1", headers=host)
    assert unmuted.json() == {"user": "viewer-1", "muted_for_s": 0}
    assert (await comment(api, room.viewer, "thanks")).status_code == 201
    # A mute without a body lasts the default ten minutes.
    default = await api.put("/api/rooms/r1/mutes/viewer-1", headers=host)
    assert default.json() == {"user": "viewer-1", "muted_for_s": 600}


async def test_slow_mode_is_announced_and_kept_in_the_snapshot(
    api: httpx.AsyncClient, room: Room, room_log: RoomLog
) -> None:
    host = bearer(room.host)
    on = await api.put("/api/rooms/r1/slow-mode", json={"seconds": 30}, headers=host)
    assert on.status_code == 200, on.text
    event = await last_event(room_log, "r1")
    assert (event["type"], event["data"]) == ("slow_mode", {"seconds": 30})
    assert (await snapshot(api, room))["slow_mode"] == 30
    off = await api.put("/api/rooms/r1/slow-mode", json={"seconds": 0}, headers=host)
    assert off.status_code == 200
    assert (await snapshot(api, room))["slow_mode"] == 0


async def test_ending_the_room(api: httpx.AsyncClient, room: Room, room_log: RoomLog) -> None:
    host = bearer(room.host)
    ended = await api.post("/api/rooms/r1/end", headers=host)
    assert ended.status_code == 200, ended.text
    event = await last_event(room_log, "r1")
    assert (event["seq"], event["type"]) == (ended.json()["seq"], "room_ended")
    view = await snapshot(api, room)
    assert view["room"]["ended"] is True
    position = await room_log.position("r1")
    pin = await api.post("/api/rooms/r1/pin", json={"product_id": room.product["id"]}, headers=host)
    assert_error(pin, 409, "room_ended", "pin")
    assert_error(await comment(api, room.viewer, "still here?"), 409, "room_ended", "comment")
    message = await api.post("/api/rooms/r1/messages", json={"text": "bye"}, headers=host)
    assert_error(message, 409, "room_ended", "message")
    assert await room_log.position("r1") == position
    # The snapshot still answers, and ending twice is harmless.
    assert (await api.post("/api/rooms/r1/end", headers=host)).status_code == 200


# -- bad input: a clear JSON error and nothing changed ----------------------------------------


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


async def test_anonymous_watching_is_refused_when_the_room_disallows_it(
    api: httpx.AsyncClient, tokens: Tokens
) -> None:
    closed = await create_room(api, tokens, "r1", settings={"allow_anonymous": False})
    for path in ("/api/rooms/r1", "/api/rooms/r1/products"):
        assert_error(await api.get(path), 401, "token_required", path)
        assert (await api.get(path, headers=bearer(closed.viewer))).status_code == 200
    # Reopened by its host.
    reopened = await api.put("/api/rooms/r1", json={"title": "open"}, headers=bearer(closed.host))
    assert reopened.status_code == 200
    assert (await api.get("/api/rooms/r1")).status_code == 200


async def test_the_service_wide_switch_refuses_anonymous_watching_in_every_room(
    api: httpx.AsyncClient, room: Room, redis: aioredis.Redis, settings: Settings, db_schema: str
) -> None:
    """LIVE_ALLOW_ANONYMOUS=false: no room may allow anonymous watching."""
    async with pg_pool(settings.database_url, db_schema) as pg:
        closed = room_service(pg, redis, settings.redis_prefix, allow_anonymous=False)
        open_ = room_service(pg, redis, settings.redis_prefix)
        assert (await closed.settings("r1"))["allow_anonymous"] is False
        assert (await open_.settings("r1"))["allow_anonymous"] is True
        assert (await closed.settings("r1"))["blocked_words"] == []


async def test_snapshots_come_from_redis_and_a_lost_room_from_postgres(
    api: httpx.AsyncClient, room: Room, redis: aioredis.Redis, settings: Settings, db_schema: str
) -> None:
    """A viewer's join reads the room from its live state; PostgreSQL is asked only when Redis
    lost it, and the answer is put back."""
    updated = await api.put(
        "/api/rooms/r1",
        json={"title": "Renamed", "settings": {"blocked_words": ["spam"]}},
        headers=bearer(room.host),
    )
    assert updated.status_code == 200
    async with pg_pool(settings.database_url, db_schema) as pg:
        service = room_service(pg, redis, settings.redis_prefix)
    # The pool is closed now: any query would fail.
    snapshot = await service.snapshot("r1")
    assert snapshot["room"]["title"] == "Renamed" and snapshot["room"]["ended"] is False
    assert (await service.settings("r1"))["blocked_words"] == ["spam"]

    state = RoomLog(redis, settings.redis_prefix).keys("r1").state
    await redis.hdel(state, "room")
    async with pg_pool(settings.database_url, db_schema) as pg:
        service = room_service(pg, redis, settings.redis_prefix)
        assert (await service.snapshot("r1"))["room"]["title"] == "Renamed"
        restored = await redis.hget(state, "room")
        assert restored is not None and json.loads(restored)["title"] == "Renamed"  # put back
        ended = await api.post("/api/rooms/r1/end", headers=bearer(room.host))
        assert ended.status_code == 200
        assert (await service.snapshot("r1"))["room"]["ended"] is True


async def test_an_ended_rooms_live_state_expires(
    api: httpx.AsyncClient, room: Room, redis: aioredis.Redis, settings: Settings, db_schema: str
) -> None:
    keys = RoomLog(redis, settings.redis_prefix).keys("r1")
    await api.post("/api/rooms/r1/comments", json={"text": "hello"}, headers=bearer(room.viewer))
    assert await redis.ttl(keys.state) == -1  # a live room's state does not expire
    assert (await api.post("/api/rooms/r1/end", headers=bearer(room.host))).status_code == 200
    ttls = {key: await redis.ttl(key) for key in keys.live if await redis.exists(key)}
    assert {keys.state, keys.log, keys.seq, keys.epoch} <= set(ttls)
    assert all(0 < ttl <= settings.ended_room_ttl_s for ttl in ttls.values()), ttls
    # Redis lost it: a late visitor's snapshot restores the ended room, and it expires too.
    await redis.delete(*keys.live)
    async with pg_pool(settings.database_url, db_schema) as pg:
        service = room_service(pg, redis, settings.redis_prefix)
        assert (await service.snapshot("r1"))["room"]["ended"] is True
    assert 0 < await redis.ttl(keys.state) <= 86400
