"""Bad input and refusals over real WebSockets: error frames keep the connection up, abuse and
refusals close it with the documented codes, and none of it is broadcast."""

from __future__ import annotations

import asyncio
import json
from dataclasses import replace

import httpx
import pytest
import redis.asyncio as aioredis
from gateway_testkit import Room, Viewer, make_room, serve, ws_url
from websockets.asyncio.client import connect
from websockets.exceptions import ConnectionClosed
from websockets.typing import Origin

from gateway.auth import mint
from gateway.protocol import CloseCode
from live.settings import Settings
from rooms.actors import Role
from rooms.log import RoomLog


async def _position(redis: aioredis.Redis, settings: Settings, room: str) -> tuple[str, int]:
    return await RoomLog(redis, settings.redis_prefix).position(room)


async def _logged_since(
    redis: aioredis.Redis, settings: Settings, room: str, position: tuple[str, int]
) -> list[str]:
    """The types of the events logged in the room since `position`, but presence counts (the
    gateway announces those by itself)."""
    replay = await RoomLog(redis, settings.redis_prefix).read_since(room, *position, 1000)
    assert not replay.gap
    return [kind for kind in (json.loads(e)["type"] for e in replay.events) if kind != "viewers"]


async def _alive(viewer: Viewer, ref: str = "alive") -> None:
    await viewer.send({"type": "ping", "ref": ref})
    reply = await viewer.reply(ref)
    assert reply["type"] == "reply" and reply["ok"] is True and isinstance(reply["data"]["ts"], int)


async def test_bad_messages_get_error_frames_and_the_connection_stays_up(
    settings: Settings, redis: aioredis.Redis
) -> None:
    async with serve(settings, messages_per_s=100, abuse_limit=100) as served:
        room = await make_room(served.url, settings)
        viewer = await Viewer.open(ws_url(served.url, room.id, token=room.viewer_token("v1")))
        before = await _position(redis, settings, room.id)
        cases: list[tuple[str | bytes, str]] = [
            ("not json", "bad_json"),
            (b"\xff\xfe binary garbage", "bad_json"),
            ("[" * 2000 + "]" * 2000, "bad_json"),  # nesting deeper than the parser goes
            ("[1, 2]", "bad_message"),
            ('"text"', "bad_message"),
            ('{"type": "dance", "ref": "r1"}', "unknown_type"),
            ('{"ref": "r2"}', "unknown_type"),
            ('{"type": 7}', "unknown_type"),
            ('{"type": "comment", "ref": "r3"}', "invalid"),
            ('{"type": "comment", "text": "", "ref": "r4"}', "invalid"),
            ('{"type": "comment", "text": 12}', "invalid"),
            ('{"type": "buy", "qty": 1, "idempotency_key": "k"}', "invalid"),  # no sale_id
            ('{"type": "buy", "sale_id": true, "idempotency_key": "k"}', "invalid"),
            ('{"type": "buy", "sale_id": 1, "qty": 0, "idempotency_key": "k"}', "invalid"),
            ('{"type": "confirm", "reservation_id": "r"}', "invalid"),
            ('{"type": "cancel"}', "invalid"),
            ('{"type": "auth"}', "invalid"),
            ('{"type": "ping", "ref": 5}', "invalid"),
            ('{"type": "ping", "ref": "' + "x" * 65 + '"}', "invalid"),
        ]
        for message, code in cases:
            count = len(viewer.others)
            await viewer.send(message)
            await viewer.wait_for(lambda count=count: len(viewer.others) > count)  # type: ignore[misc]
            error = viewer.others[-1]
            assert error["type"] == "error" and error["ok"] is False, (message, error)
            assert error["error"] == code, (message, error)
            assert error["detail"]
        assert [e["ref"] for e in viewer.others if e["error"] == "unknown_type"] == [
            "r1",
            "r2",
            None,
        ]
        await _alive(viewer)
        assert await _logged_since(redis, settings, room.id, before) == []
        assert viewer.applied == []
        await viewer.close()


async def test_oversized_message_closes_with_1009(settings: Settings) -> None:
    async with serve(settings) as served:
        room = await make_room(served.url, settings)
        viewer = await Viewer.open(ws_url(served.url, room.id))
        big = '{"type":"comment","text":"' + "x" * settings.max_message_bytes + '"}'
        await viewer.send(big)
        assert await viewer.wait_closed() == CloseCode.MESSAGE_TOO_BIG
        # Others are unaffected.
        other = await Viewer.open(ws_url(served.url, room.id))
        await _alive(other)
        await other.close()


async def test_comment_needs_a_token_and_respects_mutes(
    settings: Settings, redis: aioredis.Redis
) -> None:
    async with serve(settings) as served:
        room = await make_room(served.url, settings)
        watcher = await Viewer.open(ws_url(served.url, room.id))
        anonymous = await Viewer.open(ws_url(served.url, room.id))
        before = await _position(redis, settings, room.id)

        await anonymous.send({"type": "comment", "text": "hello", "ref": "c1"})
        error = await anonymous.reply("c1")
        assert error["error"] == "token_required"

        async with httpx.AsyncClient(base_url=served.url, timeout=10) as client:
            response = await client.put(
                f"/api/rooms/{room.id}/mutes/troll", json={"seconds": 60}, headers=room.headers()
            )
            assert response.status_code == 200, response.text
        muted = await Viewer.open(ws_url(served.url, room.id, token=room.viewer_token("troll")))
        await muted.send({"type": "comment", "text": "spam", "ref": "c2"})
        error = await muted.reply("c2")
        assert error["error"] == "muted" and error["retry_after_s"] > 0
        await _alive(muted)

        # An anonymous viewer may authenticate on the open connection, then comment.
        await anonymous.send({"type": "auth", "token": room.viewer_token("ann"), "ref": "a1"})
        assert (await anonymous.reply("a1"))["data"]["user"] == "ann"
        await asyncio.sleep(0.3)
        assert await _logged_since(redis, settings, room.id, before) == []  # nothing broadcast
        assert watcher.applied == []
        await anonymous.send({"type": "comment", "text": "hello", "ref": "c3"})
        reply = await anonymous.reply("c3")
        assert reply["type"] == "reply" and reply["data"]["seq"] > before[1]
        await watcher.wait_for(lambda: watcher.applied_types() == ["comment"])
        assert watcher.applied[0]["data"]["text"] == "hello"
        assert watcher.applied[0]["data"]["user"] == "ann"
        for viewer in (watcher, anonymous, muted):
            await viewer.close()


async def test_flood_is_rate_limited_then_closed_for_abuse(
    settings: Settings, redis: aioredis.Redis
) -> None:
    async with serve(settings) as served:
        room = await make_room(served.url, settings)
        viewer = await Viewer.open(ws_url(served.url, room.id))
        other = await Viewer.open(ws_url(served.url, room.id))
        before = await _position(redis, settings, room.id)
        limit = served.gateway.config.messages_per_s
        for n in range(200):
            try:
                await viewer.send({"type": "ping", "ref": f"p{n}"})
            except ConnectionClosed:
                break
        assert await viewer.wait_closed() == CloseCode.ABUSE
        replies = [f for f in viewer.others if f["type"] == "reply"]
        limited = [f for f in viewer.others if f.get("error") == "rate_limited"]
        assert len(replies) == limit
        assert len(limited) == served.gateway.config.abuse_limit + 1
        assert await _logged_since(redis, settings, room.id, before) == []
        await _alive(other)
        await other.close()


async def test_host_actions_need_a_host_token(settings: Settings, redis: aioredis.Redis) -> None:
    async with serve(settings) as served:
        room = await make_room(served.url, settings)
        watcher = await Viewer.open(ws_url(served.url, room.id))
        before = await _position(redis, settings, room.id)
        viewer = room.viewer_token("v1")
        other_host = mint(settings.jwt_secret, sub="h2", role=Role.HOST, room="elsewhere")
        async with httpx.AsyncClient(base_url=served.url, timeout=10) as client:
            pin = {"product_id": room.products[0]}
            for token, status in ((viewer, 403), (other_host, 403), (None, 401), ("junk", 401)):
                headers = {"authorization": f"Bearer {token}"} if token else {}
                for method, path, body in (
                    ("POST", "pin", pin),
                    ("DELETE", "pin", None),
                    ("POST", "messages", {"text": "buy now"}),
                    ("PUT", "slow-mode", {"seconds": 5}),
                    ("PUT", "mutes/v1", {"seconds": 5}),
                    ("POST", "end", None),
                ):
                    response = await client.request(
                        method, f"/api/rooms/{room.id}/{path}", json=body, headers=headers
                    )
                    assert response.status_code == status, (token, path, response.text)
                    assert response.json()["error"]
            response = await client.put(
                f"/api/rooms/{room.id}",
                json={"title": "mine"},
                headers={"authorization": f"Bearer {viewer}"},
            )
            assert response.status_code == 403
        await asyncio.sleep(0.3)
        assert await _logged_since(redis, settings, room.id, before) == []
        assert watcher.applied == []
        await watcher.close()


async def _closed_with(url: str, code: int, origin: str | None = None) -> None:
    async with connect(url, open_timeout=10, origin=Origin(origin) if origin else None) as ws:
        with pytest.raises(ConnectionClosed):
            async with asyncio.timeout(10):
                await ws.recv()
        assert ws.close_code == code, (url, ws.close_code, ws.close_reason)


async def test_refusals_close_with_documented_codes(settings: Settings) -> None:
    origin = "https://shop.example"
    async with serve(replace(settings, allowed_origins=origin), auth_timeout_s=0.5) as served:
        room = await make_room(served.url, settings)
        closed = await make_room(served.url, settings, room="members", allow_anonymous=False)
        good = {"origin": origin}
        typed = Origin(origin)

        await _closed_with(ws_url(served.url, "nowhere"), CloseCode.ROOM_NOT_FOUND, **good)
        await _closed_with(ws_url(served.url, "bad.id"), CloseCode.ROOM_NOT_FOUND, **good)
        await _closed_with(ws_url(served.url, room.id), CloseCode.FORBIDDEN)  # no origin
        await _closed_with(
            ws_url(served.url, room.id), CloseCode.FORBIDDEN, origin="https://evil.example"
        )
        await _closed_with(
            ws_url(served.url, room.id, token="junk"), CloseCode.UNAUTHORIZED, **good
        )
        expired = mint(settings.jwt_secret, sub="v", role=Role.VIEWER, room=room.id, ttl_s=1)
        await asyncio.sleep(1.1)
        await _closed_with(
            ws_url(served.url, room.id, token=expired), CloseCode.UNAUTHORIZED, **good
        )
        await _closed_with(
            ws_url(served.url, room.id, token=closed.viewer_token("v")), CloseCode.FORBIDDEN, **good
        )
        # A room without anonymous viewers: an auth message first, within the timeout.
        started = asyncio.get_running_loop().time()
        await _closed_with(ws_url(served.url, closed.id), CloseCode.AUTH_TIMEOUT, **good)
        assert asyncio.get_running_loop().time() - started < 5
        async with connect(ws_url(served.url, closed.id), origin=typed) as ws:
            await ws.send('{"type": "comment", "text": "hi"}')
            with pytest.raises(ConnectionClosed):
                await asyncio.wait_for(ws.recv(), 10)
            assert ws.close_code == CloseCode.UNAUTHORIZED
        async with connect(ws_url(served.url, closed.id), origin=typed) as ws:
            await ws.send(f'{{"type": "auth", "token": "{room.viewer_token("v")}"}}')
            with pytest.raises(ConnectionClosed):
                await asyncio.wait_for(ws.recv(), 10)
            assert ws.close_code == CloseCode.FORBIDDEN  # a token for another room

        member = await Viewer.open(ws_url(served.url, closed.id), wait_welcome=False, origin=typed)
        await member.send({"type": "auth", "token": closed.viewer_token("m1"), "ref": "a"})
        await member.wait_for(lambda: member.welcome is not None)
        assert member.others[0]["type"] == "reply" and member.others[0]["ref"] == "a"
        assert member.others[0]["data"]["user"] == "m1" and member.others[0]["data"]["exp"] > 0
        assert member.welcome is not None and member.welcome["user"] == "m1"
        assert member.snapshots == 1
        await _alive(member)
        await member.close()
        with_token = await Viewer.open(
            ws_url(served.url, closed.id, token=closed.viewer_token("m2")),
            origin=typed,
        )
        assert with_token.welcome is not None and with_token.welcome["user"] == "m2"
        await with_token.close()


async def test_gateway_wide_anonymous_switch(settings: Settings) -> None:
    async with serve(settings, allow_anonymous=False, auth_timeout_s=0.3) as served:
        room: Room = await make_room(served.url, settings)  # the room itself allows anonymous
        await _closed_with(ws_url(served.url, room.id), CloseCode.AUTH_TIMEOUT)
        viewer = await Viewer.open(ws_url(served.url, room.id, token=room.viewer_token("v")))
        await _alive(viewer)
        await viewer.close()
