"""The rooms HTTP API over loopback against the real app, real Redis and real PostgreSQL: a room
made and changed by its host, its snapshot, its products, the pin and the host's message."""

from __future__ import annotations

import time

import httpx
from room_helpers import (
    Room,
    Tokens,
    api,
    assert_error,
    bearer,
    create_room,
    last_event,
    room,
    room_log,
    snapshot,
    tokens,
)

from rooms.actors import Role
from rooms.log import RoomLog

__all__ = ["api", "room", "room_log", "tokens"]  # the fixtures, used by name


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
    for role, of_room in [(Role.MODERATOR, "r1"), (Role.VIEWER, "r1"), (Role.HOST, "r2")]:
        other = bearer(tokens(role, of_room, "alice"))
        refused = await api.put("/api/rooms/r1", json={"title": "Mine now"}, headers=other)
        assert_error(refused, 403, "forbidden", f"{role} of {of_room}")
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
