"""Moderation over the rooms HTTP API against the real app, real Redis and real PostgreSQL:
deleting a comment, mutes, slow mode and ending the room."""

from __future__ import annotations

import httpx
from room_helpers import (
    Room,
    Tokens,
    api,
    assert_error,
    bearer,
    comment,
    last_event,
    room,
    room_log,
    snapshot,
    tokens,
)

from rooms.actors import Role
from rooms.log import RoomLog

__all__ = ["api", "room", "room_log", "tokens"]  # the fixtures, used by name


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
